"""Patches as in the seed paper: sliding windows labelled I / N / P by the organ mask.

A window of ``size`` px moves over each image with ``stride`` px (positions ``0, stride, ...`` up to
``H - size``; 2048 px, 299 px, stride 50 gives the paper's 35 x 35 = 1,225 windows). Its organ fraction is
the share of mask pixels inside it, read in O(1) per window (four lookups) from a summed-area table
(integral image); :func:`grid_window_sums` evaluates that table only on the grid lines the windows touch.
Labels:

* ``I`` (id 0): organ fraction ``< outside_max`` (default 0.01) -- outside the organ;
* ``N`` (id 1) / ``P`` (id 2): organ fraction ``> inside_min`` (default 0.85), N when the image is normal
  (diagnosis 0), P when it is diseased (diagnosis 1);
* every other window is discarded (it straddles the organ boundary).

Nothing here materialises all patches: a :class:`PatchIndex` stores only ``(image, y, x, label)`` per
patch (13 bytes; the paper's ~1M windows fit in ~13 MB), :class:`PatchSampler` cuts only the patches of a
drawn batch, and :func:`iter_image_patches` streams the windows of one image in chunks. Cut patches are
float32 in [0, 1] (``uint8 / 255``), optionally shrunk to ``out_size`` by exact area averaging.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError, UsageError
from sldpack.medical.similarity import area_resize

if TYPE_CHECKING:
    from sldpack.medical.loaders import ImageSet

__all__ = [
    "DEFAULT_INSIDE_MIN",
    "DEFAULT_OUTSIDE_MAX",
    "PATCH_CLASS_NAMES",
    "PATCH_I",
    "PATCH_N",
    "PATCH_P",
    "PatchChunk",
    "PatchConfig",
    "PatchIndex",
    "PatchSampler",
    "area_resize",
    "balanced_counts",
    "build_patch_index",
    "cut_patches",
    "grid_positions",
    "grid_window_sums",
    "index_image_set",
    "integral_image",
    "iter_image_patches",
    "label_patch_grid",
    "organ_fraction",
    "window_sums",
]

PATCH_I = 0
PATCH_N = 1
PATCH_P = 2
PATCH_CLASS_NAMES = ("I", "N", "P")
_DISCARDED = -1

_I64 = NDArray[np.int64]
_F32 = NDArray[np.float32]


DEFAULT_OUTSIDE_MAX = 0.01
"""I when the organ covers less than this share of the window (the seed paper's 1 %); the one definition."""
DEFAULT_INSIDE_MIN = 0.85
"""N/P when the organ covers more than this share of the window (the seed paper's 85 %); the one definition."""


@dataclass(frozen=True)
class PatchConfig:
    """Window geometry and labelling thresholds.

    Attributes:
        size: window side in pixels (>= 1).
        stride: step between windows in pixels (>= 1).
        outside_max: a window is ``I`` when its organ fraction is strictly below this (paper: 0.01).
        inside_min: a window is ``N``/``P`` when its organ fraction is strictly above this (paper: 0.85).
    """

    size: int
    stride: int
    outside_max: float = DEFAULT_OUTSIDE_MAX
    inside_min: float = DEFAULT_INSIDE_MIN

    def __post_init__(self) -> None:
        for name in ("size", "stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise UsageError(f"patch {name} must be a positive integer, got {v!r}")
        if not (0.0 <= self.outside_max <= self.inside_min <= 1.0):
            raise UsageError(
                "thresholds must satisfy 0 <= outside_max <= inside_min <= 1, "
                f"got outside_max={self.outside_max}, inside_min={self.inside_min}"
            )


def grid_positions(height: int, width: int, size: int, stride: int) -> tuple[_I64, _I64]:
    """Top-left window coordinates along each axis: ``range(0, H - size + 1, stride)`` (and for W).

    Returns:
        ``(ys, xs)``: 1-D int64 arrays (empty when the image is smaller than the window).
    """
    if size < 1 or stride < 1:
        raise UsageError(f"size and stride must be >= 1, got size={size}, stride={stride}")
    ys = np.arange(0, max(height - size + 1, 0), stride, dtype=np.int64)
    xs = np.arange(0, max(width - size + 1, 0), stride, dtype=np.int64)
    return ys, xs


def integral_image(mask: NDArray[Any]) -> _I64:
    """Summed-area table with a zero first row and column: ``S[y, x] = mask[:y, :x].sum()``.

    Args:
        mask: ``[H, W]`` array; nonzero counts as organ.

    Returns:
        int64 ``[H + 1, W + 1]``.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise DataError(f"a mask must be 2-D, got shape {m.shape}")
    sat = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(m != 0, axis=0, dtype=np.int64), axis=1, out=sat[1:, 1:])
    return sat


def window_sums(sat: _I64, ys: _I64, xs: _I64, size: int) -> _I64:
    """Organ pixel count of every window ``[y:y+size, x:x+size]`` on the ``ys x xs`` grid, 4 reads each.

    Returns:
        int64 ``[len(ys), len(xs)]``.
    """
    y0, x0 = ys[:, None], xs[None, :]
    y1, x1 = y0 + size, x0 + size
    out: _I64 = sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]
    return out


def grid_window_sums(mask: NDArray[Any], ys: _I64, xs: _I64, size: int) -> _I64:
    """Organ pixel count of every window, from a summed-area table evaluated only on the grid lines.

    The windows read the table only at rows ``{y, y + size}`` and columns ``{x, x + size}``. This computes
    exactly those entries in one pass over the mask (``np.add.reduceat`` over the strips between lines,
    then prefix sums): memory O(lines^2) instead of O(H W), a few milliseconds for a 2048 px mask. The
    result equals ``window_sums(integral_image(mask), ys, xs, size)``.

    Returns:
        int64 ``[len(ys), len(xs)]``.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise DataError(f"a mask must be 2-D, got shape {m.shape}")
    if ys.size == 0 or xs.size == 0:
        return np.zeros((ys.size, xs.size), dtype=np.int64)
    h, w = m.shape
    # lines where the table is needed; 0 always, so the first strip starts at the image edge
    rlines = np.unique(np.concatenate(([0], ys, ys + size))).astype(np.int64)
    clines = np.unique(np.concatenate(([0], xs, xs + size))).astype(np.int64)
    rcut, ccut = rlines[rlines < h], clines[clines < w]
    strips = np.add.reduceat(m != 0, rcut, axis=0, dtype=np.int64)  # rows between consecutive cuts
    blocks = np.add.reduceat(strips, ccut, axis=1)
    # table[i, j] = mask[:R[i], :C[j]].sum() with R = (cuts..., h), C = (cuts..., w)
    table = np.zeros((rcut.size + 1, ccut.size + 1), dtype=np.int64)
    table[1:, 1:] = blocks.cumsum(axis=0).cumsum(axis=1)
    r_ext, c_ext = np.append(rcut, h), np.append(ccut, w)
    y0 = np.searchsorted(r_ext, ys)[:, None]
    y1 = np.searchsorted(r_ext, ys + size)[:, None]
    x0 = np.searchsorted(c_ext, xs)[None, :]
    x1 = np.searchsorted(c_ext, xs + size)[None, :]
    out: _I64 = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    return out


def organ_fraction(mask: NDArray[Any], size: int, stride: int) -> NDArray[np.float64]:
    """Organ fraction of every window of the sliding grid, via the summed-area table.

    Returns:
        float64 ``[ny, nx]``, exactly ``mask[y:y+size, x:x+size].mean()`` (both are an integer count
        divided by ``size * size``).
    """
    m = np.asarray(mask)
    ys, xs = grid_positions(m.shape[0], m.shape[1], size, stride)
    counts = grid_window_sums(m, ys, xs, size)
    frac: NDArray[np.float64] = counts / float(size * size)
    return frac


def label_patch_grid(mask: NDArray[Any], diagnosis: int, config: PatchConfig) -> NDArray[np.int8]:
    """I/N/P label of every window of one image's grid, ``-1`` for discarded windows.

    Args:
        mask: ``[H, W]`` organ mask (nonzero = organ).
        diagnosis: 0 (normal -> N) or 1 (diseased -> P).
        config: geometry and thresholds.

    Returns:
        int8 ``[ny, nx]`` with values -1, 0 (I), 1 (N), 2 (P).

    Raises:
        DataError: diagnosis not 0/1, mask not 2-D.
    """
    if int(diagnosis) not in (0, 1):
        raise DataError(f"image diagnosis must be 0 (normal) or 1 (diseased), got {diagnosis!r}")
    frac = organ_fraction(mask, config.size, config.stride)
    out = np.full(frac.shape, _DISCARDED, dtype=np.int8)
    out[frac < config.outside_max] = PATCH_I
    out[frac > config.inside_min] = PATCH_P if int(diagnosis) == 1 else PATCH_N
    return out


@dataclass(frozen=True)
class PatchIndex:
    """Labelled patches as positions: patch ``k`` is ``images[image[k], y[k]:y[k]+size, x[k]:x[k]+size]``.

    Entries are sorted by ``(image, y, x)`` (every constructor here keeps that order), so the patches of
    one image are a contiguous run found by binary search.

    Attributes:
        image: int32 ``[M]`` image index.
        y: int32 ``[M]`` top row.
        x: int32 ``[M]`` left column.
        label: uint8 ``[M]`` 0 I, 1 N, 2 P.
        size: window side.
        stride: window step (informational for subsets).
        n_images: number of images of the source set (for per-image counts).
    """

    image: NDArray[np.int32]
    y: NDArray[np.int32]
    x: NDArray[np.int32]
    label: NDArray[np.uint8]
    size: int
    stride: int
    n_images: int

    def __post_init__(self) -> None:
        m = self.image.shape
        if not (self.image.ndim == 1 and self.y.shape == m and self.x.shape == m and self.label.shape == m):
            raise UsageError("PatchIndex arrays must be 1-D and of equal length")

    def __len__(self) -> int:
        return int(self.image.shape[0])

    def counts(self) -> _I64:
        """Number of I, N, P patches: int64 ``[3]``."""
        return np.bincount(self.label, minlength=3).astype(np.int64)[:3]

    def counts_per_image(self) -> _I64:
        """int64 ``[n_images, 3]``: I/N/P patches of every image (Eq. 9 with the true labels)."""
        out = np.zeros((self.n_images, 3), dtype=np.int64)
        np.add.at(out, (self.image.astype(np.int64), self.label.astype(np.int64)), 1)
        return out

    def summary(self) -> dict[str, int]:
        """``{"I": .., "N": .., "P": .., "total": .., "images": .., "size": .., "stride": ..}``."""
        c = self.counts()
        return {
            "I": int(c[0]),
            "N": int(c[1]),
            "P": int(c[2]),
            "total": len(self),
            "images": self.n_images,
            "size": self.size,
            "stride": self.stride,
        }

    def subset(self, selection: NDArray[np.bool_] | NDArray[np.integer[Any]] | Sequence[int]) -> PatchIndex:
        """Patches selected by a boolean mask or by indices (deduplicated and sorted to keep the order)."""
        sel = np.asarray(selection)
        if sel.dtype == np.bool_:
            if sel.shape != (len(self),):
                raise UsageError(f"boolean selection has shape {sel.shape}, index has {len(self)} patches")
            idx = np.flatnonzero(sel)
        else:
            idx = np.unique(sel.astype(np.int64).reshape(-1))
            if idx.size and (idx[0] < 0 or idx[-1] >= len(self)):
                raise UsageError(f"patch selection out of range 0..{len(self) - 1}")
        return PatchIndex(
            self.image[idx], self.y[idx], self.x[idx], self.label[idx], self.size, self.stride, self.n_images
        )

    def image_range(self, image_id: int) -> tuple[int, int]:
        """``(start, stop)`` of the run of patches of ``image_id``."""
        lo = int(np.searchsorted(self.image, image_id, side="left"))
        hi = int(np.searchsorted(self.image, image_id, side="right"))
        return lo, hi

    def for_images(self, image_ids: Sequence[int] | NDArray[np.integer[Any]]) -> PatchIndex:
        """Patches of the given images only (image indices unchanged, e.g. the train part of a split)."""
        ids = np.asarray(image_ids, dtype=np.int64).reshape(-1)
        return self.subset(np.isin(self.image, ids))

    def subsample_per_class(self, n_per_class: int, seed: int = 0) -> PatchIndex:
        """At most ``n_per_class`` patches of each class, drawn without replacement (the paper's
        ResNet18(3000/6000/9000) baselines)."""
        if n_per_class < 0:
            raise UsageError(f"n_per_class must be >= 0, got {n_per_class}")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC1A5]))
        keep: list[_I64] = []
        for c in range(3):
            members = np.flatnonzero(self.label == c)
            if members.size > n_per_class:
                members = rng.choice(members, size=n_per_class, replace=False)
            keep.append(members.astype(np.int64))
        return self.subset(np.concatenate(keep))


def build_patch_index(
    masks: NDArray[Any],
    diagnoses: Sequence[int] | NDArray[np.integer[Any]],
    config: PatchConfig,
) -> PatchIndex:
    """Label every window of every image and keep the I/N/P ones as positions.

    Works image by image (one integral image at a time), so memory is O(one image + patches kept).

    Args:
        masks: ``[N, H, W]`` organ masks (nonzero = organ), any array supporting ``masks[i]``.
        diagnoses: ``[N]`` image labels, 0 normal / 1 diseased.
        config: geometry and thresholds.

    Returns:
        The :class:`PatchIndex`, sorted by ``(image, y, x)``.

    Raises:
        DataError: masks not 3-D, a count mismatch, a label other than 0/1, images smaller than the window.
    """
    if len(masks.shape) != 3:
        raise DataError(f"masks must be [N, H, W], got shape {masks.shape}")
    diag = np.asarray(diagnoses).reshape(-1)
    n = int(masks.shape[0])
    if diag.shape[0] != n:
        raise DataError(f"{diag.shape[0]} diagnoses for {n} masks")
    h, w = int(masks.shape[1]), int(masks.shape[2])
    if h < config.size or w < config.size:
        raise DataError(f"images are {h}x{w} px, smaller than the {config.size} px patch")
    ys, xs = grid_positions(h, w, config.size, config.stride)
    parts: list[tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int8]]] = []
    image_ids: list[NDArray[np.int32]] = []
    for i in range(n):
        grid = label_patch_grid(masks[i], int(diag[i]), config)
        gy, gx = np.nonzero(grid >= 0)  # row-major: sorted by (y, x)
        parts.append((ys[gy], xs[gx], grid[gy, gx]))
        image_ids.append(np.full(gy.size, i, dtype=np.int32))
    if parts:
        yy = np.concatenate([p[0] for p in parts]).astype(np.int32)
        xx = np.concatenate([p[1] for p in parts]).astype(np.int32)
        ll = np.concatenate([p[2] for p in parts]).astype(np.uint8)
        ii = np.concatenate(image_ids)
    else:
        yy = xx = ii = np.zeros(0, dtype=np.int32)
        ll = np.zeros(0, dtype=np.uint8)
    return PatchIndex(ii, yy, xx, ll, int(config.size), int(config.stride), n)


def index_image_set(image_set: ImageSet, config: PatchConfig) -> PatchIndex:
    """:func:`build_patch_index` for an :class:`~sldpack.medical.loaders.ImageSet` (needs masks and binary
    labels; raises :class:`DataError` otherwise)."""
    image_set.require_binary()
    return build_patch_index(image_set.require_masks(), image_set.labels, config)


def cut_patches(
    images: NDArray[Any],
    image_ids: NDArray[np.integer[Any]] | Sequence[int],
    ys: NDArray[np.integer[Any]] | Sequence[int],
    xs: NDArray[np.integer[Any]] | Sequence[int],
    size: int,
    *,
    out_size: int | None = None,
) -> _F32:
    """Cut the given windows out of ``images`` ``[N, H, W]`` uint8 into float32 ``[B, s, s]`` in [0, 1].

    Args:
        images: the source images (any array supporting ``images[i, y0:y1, x0:x1]``, e.g. a memmap).
        image_ids, ys, xs: window positions.
        size: window side.
        out_size: shrink each patch to this side by area averaging (``None``: keep ``size``).

    Raises:
        DataError: a window outside its image.
    """
    ii = np.asarray(image_ids, dtype=np.int64).reshape(-1)
    yy = np.asarray(ys, dtype=np.int64).reshape(-1)
    xx = np.asarray(xs, dtype=np.int64).reshape(-1)
    h, w = int(images.shape[1]), int(images.shape[2])
    if ii.size and (yy.min() < 0 or xx.min() < 0 or yy.max() + size > h or xx.max() + size > w):
        raise DataError(f"a {size} px window lies outside the {h}x{w} images")
    buf = np.empty((ii.size, size, size), dtype=np.uint8)
    # slices, not fancy indexing: each patch reads only its own rows (memmap-friendly, no index blow-up)
    for k in range(ii.size):
        buf[k] = images[ii[k], yy[k] : yy[k] + size, xx[k] : xx[k] + size]
    out = buf.astype(np.float32) / np.float32(255.0)  # exactly uint8 / 255, correctly rounded
    return out if out_size is None or out_size == size else area_resize(out, out_size)


def balanced_counts(k: int, num_classes: int) -> list[int]:
    """Per-class counts of a class-balanced batch of ``k``: ``k // K`` each, the first ``k % K`` get one more."""
    base, extra = divmod(k, num_classes)
    return [base + (1 if c < extra else 0) for c in range(num_classes)]


class PatchSampler:
    """Draw random batches of patches from a :class:`PatchIndex`, cutting only the drawn ones (the one
    sampler: :class:`sldpack.pipelines.patch_source.PatchSource` feeds the distiller through it).

    ``balanced=True`` draws ``balanced_counts(k, 3)`` patches of each class (I, N, P), without replacement
    inside a class unless it is too small, so the three classes are equally frequent whatever their counts;
    ``balanced=False`` draws patches uniformly (the natural class mix). The caller owns the random
    generator, so a run's draws are one reproducible stream.

    Args:
        images: ``[N, H, W]`` uint8 images the index refers to (a memmap works: only drawn windows are read).
        index: the patches.
        out_size: area-resize patches to this side (``None``: keep the window size).

    Raises:
        DataError: an empty index, or an index referring to more images than given.
    """

    def __init__(self, images: NDArray[Any], index: PatchIndex, *, out_size: int | None = None) -> None:
        if len(index) == 0:
            raise DataError("no labelled patches to sample from (check masks, patch size and thresholds)")
        if int(images.shape[0]) < index.n_images:
            raise DataError(f"the index refers to {index.n_images} images, only {images.shape[0]} given")
        self.images = images
        self.index = index
        self.out_size = out_size
        self.members = [np.flatnonzero(index.label == c) for c in range(3)]

    def counts(self) -> list[int]:
        """Number of I, N, P patches."""
        return [int(m.size) for m in self.members]

    def draw(self, k: int, rng: np.random.Generator, *, balanced: bool = True) -> _I64:
        """Positions (into the index) of one random batch of ``k``.

        Raises:
            UsageError: ``k < 1``. DataError: a balanced batch needs a class that has no patch.
        """
        if k < 1:
            raise UsageError(f"batch size must be >= 1, got {k}")
        if not balanced:
            return rng.integers(0, len(self.index), size=k, dtype=np.int64)
        parts = []
        for c, n in enumerate(balanced_counts(k, 3)):
            if n:
                pool = self.members[c]
                if pool.size == 0:
                    raise DataError(f"no {PATCH_CLASS_NAMES[c]} patch to draw a class-balanced batch from")
                parts.append(pool[rng.choice(pool.size, size=n, replace=n > pool.size)])
        return np.concatenate(parts).astype(np.int64)

    def cut(self, positions: _I64) -> tuple[_F32, _I64]:
        """The patches at ``positions`` of the index: ``(patches [B, s, s] float32 in [0, 1], labels [B] int64)``."""
        ix = self.index
        patches = cut_patches(self.images, ix.image[positions], ix.y[positions], ix.x[positions], ix.size,
                              out_size=self.out_size)
        return patches, ix.label[positions].astype(np.int64)

    def sample(self, k: int, rng: np.random.Generator, *, balanced: bool = True) -> tuple[_F32, _I64]:
        """One random batch: ``(patches [k, s, s] float32 in [0, 1], labels [k] int64 0/1/2)``."""
        return self.cut(self.draw(k, rng, balanced=balanced))

    def examples(self, per_class: int, rng: np.random.Generator) -> _I64:
        """Positions of up to ``per_class`` distinct patches of each class (for pictures)."""
        return np.concatenate([m[rng.choice(m.size, size=min(per_class, m.size), replace=False)]
                               for m in self.members]).astype(np.int64)

    def epoch(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[tuple[_F32, _I64]]:
        """Every patch of the index once, in batches (shuffled with ``rng``, or in index order without one)."""
        if batch_size < 1:
            raise UsageError(f"batch_size must be >= 1, got {batch_size}")
        order = rng.permutation(len(self.index)) if rng is not None else np.arange(len(self.index))
        for start in range(0, order.size, batch_size):
            yield self.cut(order[start : start + batch_size].astype(np.int64))


@dataclass(frozen=True)
class PatchChunk:
    """A chunk of windows of one image: top-left ``ys``, ``xs`` and ``patches`` float32 ``[B, s, s]``."""

    ys: _I64
    xs: _I64
    patches: _F32


def iter_image_patches(
    image: NDArray[Any],
    size: int,
    stride: int,
    *,
    chunk: int = 256,
    out_size: int | None = None,
    positions: tuple[NDArray[np.integer[Any]], NDArray[np.integer[Any]]] | None = None,
) -> Iterator[PatchChunk]:
    """Stream the windows of one image in chunks of at most ``chunk`` patches.

    Args:
        image: ``[H, W]`` uint8 image.
        size: window side.
        stride: window step (used when ``positions`` is ``None``).
        chunk: patches per chunk.
        out_size: area-resize patches to this side.
        positions: ``(ys, xs)`` of the windows to cut (e.g. ``index.y[a:b], index.x[a:b]`` for the labelled
            patches of one image); default: the whole sliding grid in raster order, which needs no mask
            (how a deployed detector sees a new image).

    Raises:
        DataError: image not 2-D or smaller than the window.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise DataError(f"an image must be 2-D, got shape {img.shape}")
    if chunk < 1:
        raise UsageError(f"chunk must be >= 1, got {chunk}")
    if positions is None:
        if img.shape[0] < size or img.shape[1] < size:
            raise DataError(f"image is {img.shape[0]}x{img.shape[1]} px, smaller than the {size} px patch")
        gy, gx = grid_positions(img.shape[0], img.shape[1], size, stride)
        ys = np.repeat(gy, gx.size)
        xs = np.tile(gx, gy.size)
    else:
        ys = np.asarray(positions[0], dtype=np.int64).reshape(-1)
        xs = np.asarray(positions[1], dtype=np.int64).reshape(-1)
        if ys.shape != xs.shape:
            raise UsageError("positions ys and xs differ in length")
    stack = img[None]
    for start in range(0, ys.size, chunk):
        cy, cx = ys[start : start + chunk], xs[start : start + chunk]
        patches = cut_patches(stack, np.zeros(cy.size, dtype=np.int64), cy, cx, size, out_size=out_size)
        yield PatchChunk(ys=cy, xs=cx, patches=patches)
