"""The real side of the privacy audit: real items (whole images or windows) at the distilled resolution,
streamed chunk by chunk, and the reader of the real data files (numpy only).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sldpack.errors import DataError, UsageError
from sldpack.medical.loaders import check_pixels, read_npz_split
from sldpack.medical.patches import PatchSampler
from sldpack.medical.similarity import area_resize

__all__ = ["RealImages", "RealItems", "RealPatches", "RealPatchesAsDistilled", "as_nchw", "load_real_images",
           "pixel_scale"]

F64 = npt.NDArray[np.float64]


# --- real data sources --------------------------------------------------------------------------

class RealItems(Protocol):
    """Real items (whole images or windows) at the distilled resolution, in [0, 1] pixel scale, addressable by index."""

    def __len__(self) -> int: ...

    def batch(self, start: int, stop: int) -> F64:
        """Items ``start..stop-1`` as float64 ``[B, C, h, w]``."""
        ...

    def take(self, indices: npt.NDArray[np.int64]) -> F64:
        """Items at ``indices`` as float64 ``[B, C, h, w]``."""
        ...

    def groups(self, start: int, stop: int) -> npt.NDArray[np.int64]:
        """Source image index of items ``start..stop-1`` (items of one group are not 'distinct')."""
        ...

    def describe(self, index: int) -> str:
        """Human name of one item, e.g. ``train[1234]`` or ``train[12]@(32,64)``."""
        ...


def as_nchw(images: np.ndarray[Any, Any], what: str) -> np.ndarray[Any, Any]:
    """Accept [N,H,W], [N,H,W,C] or [N,C,H,W] (C in 1, 3, 4) and return [N,C,H,W] (a view)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        chans = (1, 3, 4)
        if images.shape[-1] in chans and images.shape[1] not in chans:
            return np.moveaxis(images, -1, 1)
        if images.shape[1] in chans:
            return images
        if images.shape[-1] in chans:
            return np.moveaxis(images, -1, 1)
    raise DataError(f"{what}: expected images shaped [N,H,W], [N,H,W,C] or [N,C,H,W], got {images.shape}")


def pixel_scale(images: np.ndarray[Any, Any]) -> float:
    """Divisor that maps stored values to [0, 1] by the one image dtype rule
    (:func:`sldpack.medical.loaders.check_pixels`: 255 for uint8, 1 for float in [0, 1]; float data in 0..255,
    NaN/Inf and other dtypes are refused, naming the problem)."""
    return check_pixels(np.asarray(images), "real images")


class RealImages:
    """Whole real images, area-resized to the distilled resolution per chunk.

    Args:
        images: ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` (u8, u16 or float in [0, 1]); a
            numpy memmap is read chunk by chunk.
        size: distilled ``(h, w)``.
        channels: distilled channel count; a 1-channel real set is repeated to match it.
        name: prefix for item names (the split name).
    """

    def __init__(self, images: np.ndarray[Any, Any], size: tuple[int, int], channels: int,
                 name: str = "train") -> None:
        self._raw = as_nchw(images, name)
        self._scale = pixel_scale(images)
        c, h, w = self._raw.shape[1:]
        if c not in (1, channels):
            raise DataError(f"real images have {c} channels but the distilled images have {channels}")
        if h < size[0] or w < size[1]:
            # up-sampling would make every real image a smooth blob and the real-real reference meaningless
            raise DataError(f"real images are {h}x{w} px, the distilled images {size[0]}x{size[1]}: the audit "
                            "compares at the distilled resolution and does not up-sample; give the real data "
                            "the file was distilled from")
        self._channels = channels
        self._size = size
        self._name = name

    def __len__(self) -> int:
        return int(self._raw.shape[0])

    def _prep(self, raw: np.ndarray[Any, Any]) -> F64:
        x = area_resize(np.asarray(raw, dtype=np.float64) / self._scale, self._size, dtype=np.float64)
        if x.shape[1] != self._channels:
            x = np.repeat(x, self._channels, axis=1)
        return x

    def batch(self, start: int, stop: int) -> F64:
        return self._prep(self._raw[start:stop])

    def take(self, indices: npt.NDArray[np.int64]) -> F64:
        order = np.argsort(indices)
        out = np.empty((len(indices), self._channels, *self._size), dtype=np.float64)
        # sorted reads are friendlier to memmaps
        out[order] = self._prep(self._raw[np.asarray(indices)[order]])
        return out

    def groups(self, start: int, stop: int) -> npt.NDArray[np.int64]:
        return np.arange(start, min(stop, len(self)), dtype=np.int64)

    def describe(self, index: int) -> str:
        return f"{self._name}[{index}]"


class RealPatches:
    """Every window of the distilled size in every real image (no resizing), at a given stride.

    Item ``i`` is window ``i % per_image`` of image ``i // per_image``; windows run row by row.
    """

    def __init__(self, images: np.ndarray[Any, Any], size: tuple[int, int], channels: int, stride: int,
                 name: str = "train") -> None:
        if stride < 1:
            raise UsageError(f"patch stride must be >= 1, got {stride}")
        self._raw = as_nchw(images, name)
        self._scale = pixel_scale(images)
        c, h, w = self._raw.shape[1:]
        if c not in (1, channels):
            raise DataError(f"real images have {c} channels but the distilled images have {channels}")
        if h < size[0] or w < size[1]:
            raise DataError(f"real images ({h}x{w}) are smaller than the distilled patches ({size[0]}x{size[1]})")
        self._ys = np.arange(0, h - size[0] + 1, stride, dtype=np.int64)
        self._xs = np.arange(0, w - size[1] + 1, stride, dtype=np.int64)
        self._per = len(self._ys) * len(self._xs)
        self._size = size
        self._channels = channels
        self._name = name

    def __len__(self) -> int:
        return int(self._raw.shape[0]) * self._per

    def _where(self, index: int) -> tuple[int, int, int]:
        img, k = divmod(int(index), self._per)
        yi, xi = divmod(k, len(self._xs))
        return img, int(self._ys[yi]), int(self._xs[xi])

    def take(self, indices: npt.NDArray[np.int64]) -> F64:
        h, w = self._size
        out = np.empty((len(indices), self._channels, h, w), dtype=np.float64)
        cache: dict[int, F64] = {}
        for n, idx in enumerate(np.asarray(indices)):
            img, y, x = self._where(int(idx))
            if img not in cache:
                if len(cache) > 8:
                    cache.clear()
                cache[img] = np.asarray(self._raw[img], dtype=np.float64) / self._scale
            out[n] = cache[img][:, y:y + h, x:x + w]  # broadcasts 1 -> C channels
        return out

    def batch(self, start: int, stop: int) -> F64:
        return self.take(np.arange(start, min(stop, len(self)), dtype=np.int64))

    def groups(self, start: int, stop: int) -> npt.NDArray[np.int64]:
        return np.arange(start, min(stop, len(self)), dtype=np.int64) // self._per

    def describe(self, index: int) -> str:
        img, y, x = self._where(index)
        return f"{self._name}[{img}]@({y},{x})"


class RealPatchesAsDistilled:
    """The labelled I/N/P patches of real images with masks, cut, labelled and resized exactly as the
    distiller saw them (the patch geometry a patch model's file records), cut per chunk.

    Args:
        sampler: the :class:`~sldpack.medical.patches.PatchSampler` of the distiller's patch index.
        channels: distilled channel count (the grayscale patches are repeated to match).
        name: prefix for item names.
    """

    def __init__(self, sampler: PatchSampler, channels: int, name: str = "train") -> None:
        self._sampler = sampler
        self._channels = channels
        self._name = name

    def __len__(self) -> int:
        return len(self._sampler.index)

    def take(self, indices: npt.NDArray[np.int64]) -> F64:
        patches, _ = self._sampler.cut(np.asarray(indices, dtype=np.int64))
        x = np.asarray(patches, dtype=np.float64)[:, None]
        return np.repeat(x, self._channels, axis=1) if self._channels != 1 else x

    def batch(self, start: int, stop: int) -> F64:
        return self.take(np.arange(start, min(stop, len(self)), dtype=np.int64))

    def groups(self, start: int, stop: int) -> npt.NDArray[np.int64]:
        return np.asarray(self._sampler.index.image[start:min(stop, len(self))], dtype=np.int64)

    def describe(self, index: int) -> str:
        ix = self._sampler.index
        return f"{self._name}[{int(ix.image[index])}]@({int(ix.y[index])},{int(ix.x[index])})"


def load_real_images(path: str | os.PathLike[str], split: str = "train"
                     ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """Load real training images (and labels, when present) for the audit.

    ``.npz``: arrays ``{split}_images`` / ``{split}_labels`` (MedMNIST layout) or ``images`` /
    ``labels`` (e.g. montgomery_512.npz). ``.npy``: an image array, memory-mapped (read per chunk).

    Raises:
        DataError: the file is missing, unreadable or has no image array.
    """
    p = Path(path)
    if p.suffix == ".npy":
        if not p.is_file():
            raise DataError(f"{p}: no such file")
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False), None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{p}: cannot read as .npy ({exc})") from exc
    arrays = read_npz_split(p, split, labels_required=False)
    return arrays.images, None if arrays.labels is None else arrays.labels.reshape(-1)
