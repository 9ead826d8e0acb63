"""Accuracy counts and their summaries; pure functions of tensors and manifest classes.

Counts stay on the device during evaluation (no host sync per batch) and are summed across
processes before they are turned into accuracies here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from .beton import ClassEntry

NO_SUPERCATEGORY = "(none)"
PER_CLASS_COLUMNS = ("label", "id", "name", "supercategory", "images", "correct", "accuracy")


def topk_correct(
    logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5), weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Number of samples whose label is among the top-k logits, for each k (k capped at the class
    count). `weight` (0/1 per sample) leaves samples out without changing any tensor's shape."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = (top == labels[:, None]).long()
    if weight is not None:
        hit = hit * weight[:, None]
    return torch.stack([hit[:, : min(k, kmax)].amax(dim=1).sum() for k in ks])


def per_class_counts(
    preds: torch.Tensor, labels: torch.Tensor, num_classes: int, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """(2, num_classes): images and correct top-1 predictions of each class (`weight`: 0/1 per sample).

    scatter_add into a fixed size, unlike bincount or boolean indexing, never waits for the GPU."""
    counts = torch.zeros(2, num_classes, dtype=torch.long, device=labels.device)
    ones = torch.ones_like(labels) if weight is None else weight.long()
    counts[0].scatter_add_(0, labels, ones)
    counts[1].scatter_add_(0, labels, (preds == labels).long() * ones)
    return counts


def per_class_rows(classes: Sequence[ClassEntry], images: Sequence[int], correct: Sequence[int]) -> list[dict]:
    """Rows of per_class.csv; accuracy is None for a class with no images."""
    rows = []
    for c, n, k in zip(classes, images, correct):
        rows.append(
            {
                "label": c.label,
                "id": c.id,
                "name": c.name,
                "supercategory": c.supercategory if c.supercategory is not None else NO_SUPERCATEGORY,
                "images": int(n),
                "correct": int(k),
                "accuracy": (int(k) / int(n)) if n else None,
            }
        )
    return rows


def per_supercategory(
    classes: Sequence[ClassEntry], images: Sequence[int], correct: Sequence[int]
) -> dict[str, float | None]:
    """Top-1 accuracy over all images of each supercategory (image-weighted), in manifest order."""
    n_by, k_by = defaultdict(int), defaultdict(int)
    for c, n, k in zip(classes, images, correct):
        name = c.supercategory if c.supercategory is not None else NO_SUPERCATEGORY
        n_by[name] += int(n)
        k_by[name] += int(k)
    return {name: (k_by[name] / n if n else None) for name, n in n_by.items()}
