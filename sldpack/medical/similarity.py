"""Image similarity for the privacy audit (numpy only): exact area resizing, normalised cross-correlation
(NCC) and SSIM (Wang et al. 2004).

:func:`area_resize` is also what shrinks patches to the network input (:func:`sldpack.medical.cut_patches`):
one implementation of the box integral for every caller.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from sldpack.errors import UsageError

__all__ = [
    "SSIM_GAUSSIAN_SIGMA",
    "SSIM_K1",
    "SSIM_K2",
    "Window",
    "area_matrix",
    "area_resize",
    "ncc",
    "ncc_matrix",
    "ssim",
    "ssim_batch",
    "unit_rows",
]

F64 = npt.NDArray[np.float64]
Window = Literal["uniform", "gaussian"]

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_GAUSSIAN_SIGMA = 1.5


# --- resizing -----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def area_matrix(n_in: int, n_out: int) -> F64:
    """``(n_out, n_in)`` weights of exact area averaging: output cell ``i`` averages the input interval
    ``[i*n_in/n_out, (i+1)*n_in/n_out)``; fractional overlaps get fractional weights, rows sum to 1
    (upsampling is then piecewise-constant interpolation). Read-only, cached."""
    if n_in < 1 or n_out < 1:
        raise UsageError(f"area resize sizes must be >= 1, got {n_in} -> {n_out}")
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    j = np.arange(n_in, dtype=np.float64)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], j + 1.0) - np.maximum(edges[:-1, None], j), 0.0, None)
    mat: F64 = overlap / (n_in / n_out)
    mat.setflags(write=False)
    return mat


def area_resize(images: npt.ArrayLike, size: int | tuple[int, int], *,
                dtype: type[np.floating[Any]] = np.float32) -> npt.NDArray[Any]:
    """Resize the last two axes by exact area averaging (the ``cv2.INTER_AREA`` idea, exact for any ratio).

    For an integer factor this is the mean of each block; the mean intensity is preserved.

    Args:
        images: array ``[..., H, W]``.
        size: output side, or ``(height, width)``.
        dtype: arithmetic and result dtype (float32 for network inputs, float64 for the audit).

    Returns:
        ``[..., height, width]`` in ``dtype``; the input itself (converted) when the sizes already match.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_h < 1 or out_w < 1:
        raise UsageError(f"out_size must be >= 1, got {size}")
    arr = np.asarray(images, dtype=dtype)
    if arr.shape[-2:] == (out_h, out_w):
        return arr
    ry = area_matrix(arr.shape[-2], out_h).astype(dtype)
    rx = area_matrix(arr.shape[-1], out_w).astype(dtype)
    return np.asarray(np.matmul(np.matmul(ry, arr), rx.T), dtype=dtype)


# --- similarity measures ------------------------------------------------------------------------

def unit_rows(x: F64) -> F64:
    """Zero-mean, unit-norm rows; rows with zero variance become all-zero (NCC 0 with anything)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    out: F64 = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    return out


def ncc_matrix(a: npt.ArrayLike, b: npt.ArrayLike) -> F64:
    """Normalised cross-correlation of every item of ``a`` with every item of ``b``.

    Args:
        a: ``[n, ...]`` items (flattened per item).
        b: ``[m, ...]`` items with the same number of values per item.

    Returns:
        ``[n, m]`` values in [-1, 1]; 0 where either item is constant (no structure to correlate).
    """
    aa = np.asarray(a, dtype=np.float64)
    bb = np.asarray(b, dtype=np.float64)
    aa = aa.reshape(aa.shape[0], -1)
    bb = bb.reshape(bb.shape[0], -1)
    if aa.shape[1] != bb.shape[1]:
        raise UsageError(f"NCC needs items of the same size, got {aa.shape[1]} and {bb.shape[1]} values")
    out = unit_rows(aa) @ unit_rows(bb).T
    return np.clip(out, -1.0, 1.0)


def ncc(x: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Normalised cross-correlation (Pearson correlation) of two images of the same shape.

    Symmetric, in [-1, 1], invariant to ``a * x + b`` for ``a > 0``; 0 when either image is constant.
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xa.shape != ya.shape:
        raise UsageError(f"NCC needs two images of the same shape, got {xa.shape} and {ya.shape}")
    return float(ncc_matrix(xa[None], ya[None])[0, 0])


def _window_1d(win_size: int, window: Window) -> F64:
    if window == "uniform":
        return np.full(win_size, 1.0 / win_size)
    if window == "gaussian":
        r = np.arange(win_size, dtype=np.float64) - (win_size - 1) / 2
        g = np.exp(-(r**2) / (2 * SSIM_GAUSSIAN_SIGMA**2))
        return np.asarray(g / g.sum(), dtype=np.float64)
    raise UsageError(f"unknown SSIM window {window!r}: expected 'uniform' or 'gaussian'")


def _filter_matrix(n: int, win: F64) -> F64:
    """(n - w + 1, n) matrix applying the 1-D window at every valid position."""
    w = win.shape[0]
    m = np.zeros((n - w + 1, n), dtype=np.float64)
    for i in range(n - w + 1):
        m[i, i:i + w] = win
    return m


class _SsimFilter:
    """Separable 'valid' window filter for images of one size, as two small matrix products."""

    def __init__(self, h: int, w: int, win_size: int, window: Window) -> None:
        if win_size < 1 or win_size % 2 == 0:
            raise UsageError(f"SSIM window size must be odd and >= 1, got {win_size}")
        # images smaller than the window: use the largest odd window that fits
        k = min(win_size, h, w)
        k -= 1 - k % 2
        win = _window_1d(k, window)
        self.fh = _filter_matrix(h, win)
        self.fw = _filter_matrix(w, win)

    def __call__(self, z: F64) -> F64:
        return np.asarray((self.fh @ z) @ self.fw.T, dtype=np.float64)


def ssim_batch(x: npt.ArrayLike, ys: npt.ArrayLike, *, win_size: int = 7, window: Window = "uniform",
               data_range: float = 1.0) -> F64:
    """SSIM of one image against a batch of images.

    Args:
        x: ``[C, H, W]`` (or ``[H, W]``).
        ys: ``[B, C, H, W]`` (or ``[B, H, W]``).
        win_size: odd window size (7); shrunk to the image when the image is smaller.
        window: ``"uniform"`` or ``"gaussian"`` (sigma 1.5).
        data_range: L in the constants C1 = (K1 L)^2, C2 = (K2 L)^2.

    Returns:
        ``[B]`` mean SSIM over valid windows and channels; ``ssim(x, x) == 1``.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(ys, dtype=np.float64)
    if xa.ndim == 2:
        xa = xa[None]
    if ya.ndim == xa.ndim:
        ya = ya[:, None]
    if ya.shape[1:] != xa.shape:
        raise UsageError(f"SSIM needs images of the same shape, got {xa.shape} and {ya.shape[1:]}")
    filt = _SsimFilter(xa.shape[-2], xa.shape[-1], win_size, window)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = filt(xa)
    var_x = filt(xa * xa) - mu_x * mu_x
    mu_y = filt(ya)
    var_y = filt(ya * ya) - mu_y * mu_y
    cov = filt(xa[None] * ya) - mu_x[None] * mu_y
    num = (2 * mu_x[None] * mu_y + c1) * (2 * cov + c2)
    den = (mu_x[None] ** 2 + mu_y**2 + c1) * (var_x[None] + var_y + c2)
    smap = num / den
    return np.asarray(smap.reshape(smap.shape[0], -1).mean(axis=1), dtype=np.float64)


def ssim(x: npt.ArrayLike, y: npt.ArrayLike, *, win_size: int = 7, window: Window = "uniform",
         data_range: float = 1.0) -> float:
    """Structural similarity of two images of the same shape (``[H, W]`` or ``[C, H, W]``).

    See :func:`ssim_batch` for the definition; symmetric, at most 1, equal to 1 for identical images.
    """
    xa = np.asarray(x, dtype=np.float64)
    return float(ssim_batch(xa, np.asarray(y, dtype=np.float64)[None], win_size=win_size, window=window,
                            data_range=data_range)[0])


