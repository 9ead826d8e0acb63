"""Top-k, per-class and per-supercategory accuracy (pure functions)."""

import pytest
import torch

from ffcv_inat.beton import ClassEntry
from ffcv_inat.metrics import per_class_counts, per_class_rows, per_supercategory, topk_correct

pytestmark = pytest.mark.timeout(30)

CLASSES = [
    ClassEntry(0, "10", "a", "Birds", 5),
    ClassEntry(1, "11", "b", "Birds", 5),
    ClassEntry(2, "12", "c", "Insects", 5),
    ClassEntry(3, "13", "d", None, 0),
]


def test_topk_correct():
    logits = torch.tensor([[0.9, 0.5, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    labels = torch.tensor([0, 0, 2])
    assert topk_correct(logits, labels, (1, 2, 3, 5)).tolist() == [1, 1, 2, 3]  # k capped at 4 classes


def test_per_class_and_supercategory():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0, 0])
    images, correct = per_class_counts(preds, labels, 4).tolist()
    assert images == [2, 2, 3, 0] and correct == [1, 2, 1, 0]
    rows = per_class_rows(CLASSES, images, correct)
    assert rows[0] == {
        "label": 0,
        "id": "10",
        "name": "a",
        "supercategory": "Birds",
        "images": 2,
        "correct": 1,
        "accuracy": 0.5,
    }
    assert rows[3]["accuracy"] is None and rows[3]["supercategory"] == "(none)"
    # Image-weighted within a supercategory: Birds 3 of 4 images.
    assert per_supercategory(CLASSES, images, correct) == {
        "Birds": 0.75,
        "Insects": pytest.approx(1 / 3),
        "(none)": None,
    }


def test_weights_leave_samples_out_like_indexing():
    """Distributed eval masks padded samples by weight 0 (no boolean indexing, no GPU sync):
    the counts equal those of the indexed tensors."""
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(50, 7, generator=g), torch.randint(0, 7, (50,), generator=g)
    keep = (torch.arange(50) < 37).long()
    kept = keep.bool()
    assert (
        topk_correct(logits, labels, (1, 5), weight=keep).tolist()
        == topk_correct(logits[kept], labels[kept], (1, 5)).tolist()
    )
    preds = logits.argmax(dim=1)
    assert (
        per_class_counts(preds, labels, 7, weight=keep).tolist()
        == per_class_counts(preds[kept], labels[kept], 7).tolist()
    )
