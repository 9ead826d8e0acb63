"""torchvision ResNet-50 with the trainer's options: head size, BlurPool, freezing.

BlurPool keeps the parameter names of the plain network (the blur filter is a
non-persistent buffer), so checkpoints move freely between BlurPool and plain models and
torchvision state_dicts load into either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


class BlurConv2d(nn.Conv2d):
    """A strided conv that low-pass filters its input first (Zhang 2019), as ffcv-imagenet."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
        )
        self.weight = conv.weight
        self.bias = conv.bias
        k = torch.tensor([1.0, 2.0, 1.0])
        kernel = (k[:, None] * k[None, :]) / 16
        self.register_buffer("blur", kernel.expand(conv.in_channels, 1, 3, 3).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.blur.to(x.dtype), padding=1, groups=self.in_channels)
        return super().forward(x)


def add_blurpool(model: nn.Module) -> nn.Module:
    """Blur before every strided conv with at least 16 in-channels (the stem conv keeps its stride)."""
    for name, child in model.named_children():
        if isinstance(child, nn.Conv2d) and max(child.stride) > 1 and child.in_channels >= 16:
            setattr(model, name, BlurConv2d(child))
        else:
            add_blurpool(child)
    return model


def build_model(
    num_classes: int, *, blurpool: bool = False, channels_last: bool = False, zero_init_residual: bool = False
) -> nn.Module:
    """torchvision ResNet-50 from random init with a `num_classes` head."""
    model = torchvision.models.resnet50(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    if blurpool:
        add_blurpool(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def replace_head(model: nn.Module, num_classes: int) -> bool:
    """Give `model` a fresh fc layer for `num_classes` if it has another size; True if replaced."""
    fc = model.fc
    if fc.out_features == num_classes:
        return False
    new = nn.Linear(fc.in_features, num_classes).to(device=fc.weight.device, dtype=fc.weight.dtype)
    model.fc = new
    return True


def apply_freeze(model: nn.Module, freeze: str) -> None:
    """'backbone': only fc keeps requires_grad; 'none': everything trains."""
    for name, p in model.named_parameters():
        p.requires_grad_(freeze == "none" or name.startswith("fc."))


def set_train_mode(model: nn.Module, freeze: str) -> None:
    """model.train(), except that frozen parts stay in eval mode so that BatchNorm uses and
    keeps its running statistics (a linear probe must not change the features)."""
    model.train()
    if freeze == "backbone":
        for name, module in model.named_children():
            if name != "fc":
                module.eval()
