"""The common in-memory (or on-disk, see :mod:`sldpack.medical.store`) form of a medical image set.

Its own module so that loaders and the on-disk store can both build one without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError, UsageError

__all__ = ["ImageSet"]


@dataclass(frozen=True)
class ImageSet:
    """Grayscale images with optional organ masks, integer labels and names.

    Attributes:
        images: uint8 ``[N, H, W]`` (any array supporting ``images[i]``, e.g. an ``np.memmap``).
        masks: uint8 ``[N, H, W]`` with values {0, 1} (1 = organ), or ``None`` when the source has none.
        labels: int64 ``[N]`` image-level labels (0 normal, 1 diseased for the detection task).
        names: one unique name per image (file name, or ``split_00012`` for array sources).
    """

    images: NDArray[np.uint8]
    masks: NDArray[np.uint8] | None
    labels: NDArray[np.int64]
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if self.images.ndim != 3:
            raise DataError(f"ImageSet images must be [N, H, W], got shape {self.images.shape}")
        if self.masks is not None and self.masks.shape != self.images.shape:
            raise DataError(f"ImageSet masks shape {self.masks.shape} != images shape {self.images.shape}")
        if self.labels.shape != (n,):
            raise DataError(f"ImageSet labels shape {self.labels.shape} != ({n},)")
        if len(self.names) != n:
            raise DataError(f"ImageSet has {len(self.names)} names for {n} images")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of every image."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def subset(self, indices: Sequence[int] | NDArray[np.integer[Any]]) -> ImageSet:
        """The images at ``indices`` (copied), in that order.

        Raises:
            UsageError: when an index is out of range.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise UsageError(f"subset index out of range 0..{len(self) - 1}")
        if hasattr(self.images, "take_rows"):  # on-disk sets (sldpack.medical.store): lazy views, nothing read
            masks = self.masks
            if masks is not None:
                masks = masks.take_rows(idx) if hasattr(masks, "take_rows") else np.ascontiguousarray(masks[idx])
            return ImageSet(images=self.images.take_rows(idx), masks=masks,
                            labels=self.labels[idx].copy(), names=tuple(self.names[int(i)] for i in idx))
        return ImageSet(
            images=np.ascontiguousarray(self.images[idx]),
            masks=None if self.masks is None else np.ascontiguousarray(self.masks[idx]),
            labels=self.labels[idx].copy(),
            names=tuple(self.names[int(i)] for i in idx),
        )

    def require_binary(self, what: str = "image labels") -> None:
        """Raise :class:`DataError` unless every label is 0 or 1 (the detection task is binary)."""
        bad = np.setdiff1d(np.unique(self.labels), [0, 1])
        if bad.size:
            raise DataError(f"{what} must be 0 (normal) or 1 (diseased); found {bad[:5].tolist()}")

    def require_masks(self) -> NDArray[np.uint8]:
        """The masks, or :class:`DataError` when the source has none (patch labelling needs them)."""
        if self.masks is None:
            raise DataError("this data set has no organ masks; I/N/P patch labels need a mask per image")
        return self.masks
