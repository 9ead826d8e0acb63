"""Learning rate and train resolution as pure functions of (epoch, iteration).

The trainer sets the LR before every step from `lr_at`, so a resumed run follows exactly the
same curve as an uninterrupted one, and tests can pin the value at any point.
"""

from __future__ import annotations

from .config import ProgressiveConfig, ScheduleConfig


def milestones(s: ScheduleConfig) -> list[int]:
    """Epochs at whose start the LR is multiplied by gamma."""
    if s.milestones is not None:
        return sorted(m for m in s.milestones if 0 < m < s.epochs)
    return list(range(s.step_every, s.epochs, s.step_every))


def lr_at(s: ScheduleConfig, base_lr: float, epoch: int, iteration: int, iters_per_epoch: int) -> float:
    """LR for step `iteration` (0-based) of `epoch` (0-based): step decay, after optional warmup.

    Warmup rises linearly per iteration and reaches base_lr at the last warmup step; it
    overlaps the step decay (a milestone inside warmup also applies).
    """
    decays = sum(1 for m in milestones(s) if epoch >= m)
    lr = base_lr * s.gamma**decays
    if s.warmup_epochs > 0:
        step = epoch * iters_per_epoch + iteration + 1
        warm_steps = s.warmup_epochs * iters_per_epoch
        if step < warm_steps:
            lr *= step / warm_steps
    return lr


def res_at(p: ProgressiveConfig, fixed_res: int, epoch: int) -> int:
    """Train resolution at `epoch`: fixed, or the progressive-resizing ramp (as ffcv-imagenet)."""
    if not p.enabled:
        return fixed_res
    if epoch <= p.start_epoch:
        return p.start_res
    if epoch >= p.end_epoch:
        return p.end_res
    frac = (epoch - p.start_epoch) / (p.end_epoch - p.start_epoch)
    res = p.start_res + frac * (p.end_res - p.start_res)
    return int(res // p.multiple) * p.multiple
