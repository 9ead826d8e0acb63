"""The model builder, head replacement, freezing, BlurPool and checkpoint loading (no betons)."""

import os

import pytest
import torch
import torchvision
from torch import nn

from ffcv_inat import UserError
from ffcv_inat.checkpoint import (
    FORMAT,
    checkpoint_num_classes,
    load_file,
    load_weights,
    model_state,
    save_checkpoint,
)
from ffcv_inat.model import BlurConv2d, apply_freeze, build_model, replace_head, set_train_mode

pytestmark = pytest.mark.timeout(120)


def test_build_model_is_torchvision_resnet50():
    m = build_model(7)
    assert isinstance(m, torchvision.models.ResNet) and m.fc.out_features == 7
    ref = torchvision.models.resnet50(weights=None)
    assert [k for k in m.state_dict() if not k.startswith("fc.")] == [
        k for k in ref.state_dict() if not k.startswith("fc.")
    ]


def test_blurpool_keeps_parameter_names_and_runs():
    m = build_model(5, blurpool=True, channels_last=True)
    blurred = [n for n, mod in m.named_modules() if isinstance(mod, BlurConv2d)]
    # The three stride-2 3x3 convs and three stride-2 downsample 1x1 convs (layers 2-4); not the stem.
    assert len(blurred) == 6 and "conv1" not in blurred
    assert list(m.state_dict()) == list(build_model(5).state_dict())
    m.eval()
    out = m(torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last))
    assert out.shape == (2, 5)


def test_head_replacement_keeps_the_backbone(tmp_path):
    torch.manual_seed(0)
    src = torchvision.models.resnet50(weights=None)  # a torchvision 1000-class state_dict
    path = tmp_path / "tv.pt"
    torch.save(src.state_dict(), path)
    state = model_state(load_file(path), str(path))
    assert checkpoint_num_classes(state, "x") == 1000
    m = build_model(1000)
    load_weights(m, state, str(path))
    assert replace_head(m, 12) is True and replace_head(m, 12) is False
    assert m.fc.weight.shape == (12, 2048) and m.fc.bias.shape == (12,)
    for k, v in m.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, src.state_dict()[k]), k


def test_ffcv_checkpoint_and_wrapper_prefixes(tmp_path):
    m = build_model(3)
    wrapped = {f"module._orig_mod.{k}": v for k, v in m.state_dict().items()}
    save_checkpoint(tmp_path / "c.pt", {"model": wrapped, "epoch": 1})
    obj = load_file(tmp_path / "c.pt")
    assert obj["format"] == FORMAT
    m2 = build_model(3)
    load_weights(m2, model_state(obj, "c.pt"), "c.pt")
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporaries


def test_wrong_weights_are_a_user_error(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "w.pt")
    state = model_state(load_file(tmp_path / "w.pt"), "w.pt")
    with pytest.raises(UserError, match="do not fit a torchvision ResNet-50"):
        load_weights(build_model(3), state, "w.pt")
    torch.save([1, 2], tmp_path / "l.pt")
    with pytest.raises(UserError, match="neither an ffcv-train checkpoint nor a state_dict"):
        model_state(load_file(tmp_path / "l.pt"), "l.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable torch checkpoint"):
        load_file(tmp_path / "junk.pt")


class _Payload:
    """Pickles into a call of os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": build_model(2).state_dict(), "extra": _Payload(marker)}, evil)
    with pytest.raises(UserError, match=r"evil.pt: refused to load.*posix.system|evil.pt: refused to load"):
        load_file(evil)
    assert not marker.exists()


def test_freeze_backbone_and_bn_eval_mode():
    m = build_model(4)
    apply_freeze(m, "backbone")
    assert {n for n, p in m.named_parameters() if p.requires_grad} == {"fc.weight", "fc.bias"}
    set_train_mode(m, "backbone")
    assert m.fc.training and not m.layer1.training
    assert not any(mod.training for mod in m.modules() if isinstance(mod, nn.BatchNorm2d))
    apply_freeze(m, "none")
    set_train_mode(m, "none")
    assert all(p.requires_grad for p in m.parameters()) and all(mod.training for mod in m.modules())
