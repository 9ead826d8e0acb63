"""The LR of every recipe at every epoch and iteration, and progressive resizing (pure)."""

import pytest

from ffcv_inat.config import ProgressiveConfig, ScheduleConfig, load_config
from ffcv_inat.schedule import lr_at, milestones, res_at

pytestmark = pytest.mark.timeout(30)

# recipe -> (epochs, base lr, {first epoch of each plateau: lr})
RECIPES = {
    "pretrain_90ep.yaml": (90, 0.1, {0: 0.1, 30: 0.01, 60: 0.001}),
    "finetune_inat_60ep.yaml": (60, 0.1, {0: 0.1, 20: 0.01, 40: 0.001}),
    "scratch_inat_60ep.yaml": (60, 0.1, {0: 0.1, 20: 0.01, 40: 0.001}),
    "linear_imagenet_a_15ep.yaml": (15, 0.1, {0: 0.1, 5: 0.01, 10: 0.001}),
    "smoke_cpu.yaml": (3, 0.02, {0: 0.02, 2: 0.002}),
}


def expected_lr(plateaus: dict, epoch: int) -> float:
    return plateaus[max(e for e in plateaus if e <= epoch)]


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_lr_at_every_epoch_and_iteration(recipe):
    epochs, base, plateaus = RECIPES[recipe]
    cfg = load_config(recipe)
    assert cfg.schedule.epochs == epochs and cfg.optim.lr == base
    iters = 7
    for epoch in range(epochs):
        for it in range(iters):
            assert lr_at(cfg.schedule, cfg.optim.lr, epoch, it, iters) == pytest.approx(
                expected_lr(plateaus, epoch), rel=1e-12
            ), (epoch, it)


def test_recipes_hold_the_papers_hyperparameters():
    pre = load_config("pretrain_90ep.yaml")
    assert (pre.optim.momentum, pre.optim.weight_decay, pre.data.batch_size) == (0.9, 1e-4, 256)
    assert pre.model.init is None and pre.model.freeze == "none" and pre.optim.label_smoothing == 0
    assert load_config("finetune_inat_60ep.yaml").data.batch_size == 1024
    assert load_config("scratch_inat_60ep.yaml").model.init is None
    lin = load_config("linear_imagenet_a_15ep.yaml")
    assert lin.model.freeze == "backbone"
    for name in RECIPES:  # paper options are off by default
        c = load_config(name)
        assert not c.model.blurpool and not c.progressive.enabled and not c.eval.tta_flip
        assert not c.optim.no_bn_bias_decay and c.schedule.warmup_epochs == 0


def test_scaling_epochs_with_set_moves_the_steps():
    cfg = load_config("pretrain_90ep.yaml", ["schedule.epochs=9", "schedule.step_every=3"])
    assert milestones(cfg.schedule) == [3, 6]
    assert [lr_at(cfg.schedule, 0.1, e, 0, 10) for e in range(9)] == pytest.approx([0.1] * 3 + [0.01] * 3 + [0.001] * 3)
    # Only epochs overridden: the 30-epoch interval stays, so 20 epochs never decay.
    cfg = load_config("pretrain_90ep.yaml", ["schedule.epochs=20"])
    assert milestones(cfg.schedule) == []
    cfg = load_config("pretrain_90ep.yaml", ["schedule.milestones=[2, 5]", "schedule.epochs=6"])
    assert [lr_at(cfg.schedule, 0.1, e, 3, 10) for e in range(6)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.001])


def test_warmup_rises_per_iteration():
    s = ScheduleConfig(epochs=4, step_every=2, warmup_epochs=1)
    assert [lr_at(s, 0.4, 0, i, 4) for i in range(4)] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert lr_at(s, 0.4, 1, 0, 4) == pytest.approx(0.4)
    assert lr_at(s, 0.4, 2, 0, 4) == pytest.approx(0.04)


def test_progressive_resizing_ramp():
    p = ProgressiveConfig(enabled=True, start_res=160, end_res=192, start_epoch=2, end_epoch=6, multiple=32)
    assert [res_at(p, 224, e) for e in range(8)] == [160, 160, 160, 160, 160, 160, 192, 192]
    p = ProgressiveConfig(enabled=True, start_res=128, end_res=256, start_epoch=0, end_epoch=4, multiple=32)
    assert [res_at(p, 224, e) for e in range(6)] == [128, 160, 192, 224, 256, 256]
    assert res_at(ProgressiveConfig(), 224, 3) == 224
