"""Checkpoints: written atomically, read with `weights_only=True` (no code runs on load).

An ffcv-train checkpoint is a dict with FORMAT under "format", the model's state_dict under
"model" and the training state (optimizer, scaler, epoch, RNG states, log history, config
as YAML text) beside it. Plain torchvision state_dicts are accepted wherever weights are read.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import UserError
from .atomic import atomic_outputs

FORMAT = "ffcv-train-checkpoint-v1"
# Prefixes added by DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def save_checkpoint(path: str | Path, state: dict[str, Any], also: tuple[Path, ...] = ()) -> None:
    """Write `state` to `path` atomically, and the same file to each of `also` (best.pt, kept
    epochs): hard links of the one written file where the filesystem has them, else copies.
    The extra files are renamed into place before `path`, so a kill at any moment leaves every
    file whole, and `path` (what --resume reads) never ahead of them: a resumed run redoes the
    epoch and writes them again. A full disk is atomic.DiskFull with the state's size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_outputs(*also, path, expected_bytes=tensor_bytes(state)) as temps:
        *extra_temps, tmp = temps
        torch.save({"format": FORMAT, **state}, tmp)
        for extra in extra_temps:
            same_file(tmp, extra)


def same_file(src: Path, dst: Path) -> None:
    """`dst` with `src`'s bytes: a hard link (no bytes written), or a copy where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in nested dicts, lists and tuples: what torch.save writes, less its
    small framing (the history, config and RNG states add kilobytes)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def checkpoint_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """The size last.pt will have, before the first step: the model's state, plus the
    optimiser's buffers (SGD's momentum, one per trainable parameter, exists only once it
    has stepped; a restored optimiser has them already)."""
    if optimizer.state:
        return tensor_bytes(model.state_dict()) + tensor_bytes(optimizer.state_dict())
    momentum = sum(
        p.numel() * p.element_size() for g in optimizer.param_groups if g.get("momentum") for p in g["params"]
    )
    return tensor_bytes(model.state_dict()) + momentum


def load_file(path: str | Path) -> Any:
    """torch.load with weights_only=True; a file that needs arbitrary objects is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        blocked = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if blocked:
            raise UserError(
                f"{path}: refused to load: it holds objects other than tensors and plain data, "
                f"which could run code ({blocked[0][:200]})"
            ) from None
        raise UserError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[-1][:200]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable torch checkpoint ({str(e).splitlines()[0][:200]})") from None


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state_dict.items():
        changed = True
        while changed:
            changed = False
            for p in _WRAPPER_PREFIXES:
                if k.startswith(p):
                    k, changed = k[len(p) :], True
        out[k] = v
    return out


def model_state(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The model weights of an ffcv-train checkpoint or of a plain state_dict."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a common wrapping of plain weights
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{source}: neither an ffcv-train checkpoint nor a state_dict of tensors")
    return strip_prefixes(obj)


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a complete ResNet-50 state into `model` (sized like it); a misfit is a UserError."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise UserError(f"{source}: weights do not fit a torchvision ResNet-50 ({detail})") from None


def checkpoint_num_classes(state: dict[str, torch.Tensor], source: str) -> int:
    if "fc.weight" not in state:
        raise UserError(f"{source}: no fc.weight: not a ResNet-50 classifier")
    return int(state["fc.weight"].shape[0])


def rng_state() -> dict[str, Any]:
    """RNG states of python, numpy and torch as plain data (loadable with weights_only)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
