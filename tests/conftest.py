"""Shared synthetic datasets: made once per test session by the package itself."""
from __future__ import annotations

import pytest

from ffcv_inat.synthetic import make_imagenet, make_inat


@pytest.fixture(scope="session")
def imagenet_dir(tmp_path_factory):
    """All 1,000 real wnids, 2 train + 1 val image each, 32 px, plus odd files in class 0."""
    return make_imagenet(tmp_path_factory.mktemp("imagenet"), train_per_class=2, val_per_class=1, size=32,
                         odd_files=True)


@pytest.fixture(scope="session")
def inat_dir(tmp_path_factory):
    return make_inat(tmp_path_factory.mktemp("inat"), num_species=40, train_mini_per_class=3,
                     train_extra_per_class=5, val_per_class=2, size=32, odd_files=True)
