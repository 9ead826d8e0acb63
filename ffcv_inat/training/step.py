"""One training step, exactly as the trainer runs it; `ffcv-bench model` times this same code.

The optimiser (SGD with the recipe's parameter groups), the loss (cross-entropy with the
recipe's label smoothing), the input conversion of a loader batch, autocast and the gradient
scaler all come from the recipe, so "model-only" throughput measures what training runs.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import OptimConfig
from ..environment import autocast_dtype
from ..loader import model_input


def param_groups(model: nn.Module, optim: OptimConfig) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    if not optim.no_bn_bias_decay:
        return [{"params": params}]
    # BatchNorm weights and all biases are 1-D; decaying them only hurts (Goyal et al. 2017).
    return [
        {"params": [p for p in params if p.ndim > 1]},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        param_groups(model, optim),
        lr=optim.lr,
        momentum=optim.momentum,
        weight_decay=optim.weight_decay,
        nesterov=optim.nesterov,
    )


class TrainStep:
    """`step(images, labels, lr) -> loss`: set the LR, convert the batch, forward under
    autocast, backward (scaled in fp16), optimiser step. The loss stays on the device."""

    def __init__(self, net: nn.Module, optimizer: torch.optim.Optimizer, optim: OptimConfig, precision: str):
        self.net = net
        self.optimizer = optimizer
        self.criterion = nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing)
        self.precision = precision  # what runs (environment.run_precision), not what was asked
        self.amp = autocast_dtype(precision)
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> torch.Tensor:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = model_input(images, self.precision)
        with torch.autocast(x.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            loss = self.criterion(self.net(x), labels.long())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()
