"""Fixtures of the pipelines tests: a tiny masked image set whose I/N/P patches are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from sldpack.medical.loaders import ImageSet

TOY_LEVELS = np.array([20.0, 120.0, 220.0]) / 255.0
"""Pixel values of the toy set (outside 20, normal organ 120, diseased organ 220) in [0, 1], by I/N/P class."""


@pytest.fixture
def toy_patch_set() -> ImageSet:
    """4 images 16x32: organ = left 16 columns; images 1 and 3 diseased (brighter organ)."""
    n, h, w = 4, 16, 32
    images = np.full((n, h, w), 20, dtype=np.uint8)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1], dtype=np.int64)
    for i in range(n):
        masks[i, :, :16] = 1
        images[i, :, :16] = 220 if labels[i] else 120
    return ImageSet(images=images, masks=masks, labels=labels, names=tuple(f"img{i}" for i in range(n)))


@pytest.fixture
def toy_levels() -> np.ndarray:
    """:data:`TOY_LEVELS` (a fixture: test modules of a folder without ``__init__`` cannot import conftest)."""
    return TOY_LEVELS.copy()
