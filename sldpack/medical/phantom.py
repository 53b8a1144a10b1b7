"""Synthetic gastric-X-ray-like phantom data: sldpack's embedded default data set.

Each image shows a smooth organ (a stomach-like ellipse with a noisy boundary) on a darker, slowly varying
body background. Inside the organ the mucosa carries folds and texture, and the image's diagnosis decides
their look, mirroring what the seed paper describes for gastritis:

* normal (label 0): straight, parallel folds (sinusoidal stripes of one direction and period) over a
  uniform, fine mucosal texture;
* diseased (label 1): non-straight folds -- either wavy/tortuous or converging towards a point -- with
  irregular thickness, over a coarse, nodular texture.

Every length is defined in units of the image's shorter side, so the same seed gives the same anatomy at any
resolution (a 64 px patch of a 512 px image shows what a 32 px patch of the 256 px image shows). Per-image
nuisances (brightness, contrast, fold period and direction, noise) vary so that the task is learnable from
small patches but not solvable by a single intensity statistic.

Determinism: the same ``(n_images, size, seed, p_diseased)`` gives identical bytes with the same numpy
version on the same platform (numpy's ``Generator``/FFT/libm may differ in the last float bit across
versions or CPUs, which can flip a rounding to uint8).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from sldpack.budget import check_allocation
from sldpack.errors import UsageError

if TYPE_CHECKING:
    from sldpack.medical.loaders import ImageSet

__all__ = ["PHANTOM_LABEL_NAMES", "PhantomSet", "make_phantom"]

PHANTOM_LABEL_NAMES = ("normal", "diseased")

_F64 = NDArray[np.float64]


@dataclass(frozen=True)
class PhantomSet:
    """A generated phantom data set.

    Attributes:
        images: uint8 ``[N, H, W]`` grayscale images.
        masks: uint8 ``[N, H, W]`` organ masks with values {0, 1}.
        labels: uint8 ``[N]`` image diagnosis, 0 normal, 1 diseased.
    """

    images: NDArray[np.uint8]
    masks: NDArray[np.uint8]
    labels: NDArray[np.uint8]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def names(self) -> tuple[str, ...]:
        """Stable per-image names ``phantom_00000`` ... used in per-image results."""
        return tuple(f"phantom_{i:05d}" for i in range(len(self)))

    def to_image_set(self) -> ImageSet:
        """The same data as the loaders' common :class:`~sldpack.medical.loaders.ImageSet`."""
        from sldpack.medical.loaders import ImageSet

        return ImageSet(self.images, self.masks, self.labels.astype(np.int64), self.names)


@lru_cache(maxsize=32)
def _gaussian_gain(h: int, w: int, sigma_px: float) -> _F64:
    """Frequency response of a Gaussian blur on an ``h x w`` rfft2 grid (cached: sizes repeat)."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    gain: _F64 = np.exp(-2.0 * (np.pi * sigma_px) ** 2 * (fy * fy + fx * fx))
    gain.setflags(write=False)
    return gain


def _upsample_periodic(a: _F64, h: int, w: int, k: int) -> _F64:
    """Bilinear upsampling of a periodic low-resolution field by ``k`` to ``h x w`` (pixel centres aligned)."""

    def axis_weights(n: int, n_low: int) -> tuple[NDArray[np.intp], NDArray[np.intp], _F64]:
        pos = (np.arange(n, dtype=np.float64) + 0.5) / k - 0.5
        i0 = np.floor(pos)
        frac = pos - i0
        lo = i0.astype(np.intp) % n_low
        return lo, (lo + 1) % n_low, frac

    y0, y1, fy = axis_weights(h, a.shape[0])
    x0, x1, fx = axis_weights(w, a.shape[1])
    rows = a[y0] * (1.0 - fy)[:, None] + a[y1] * fy[:, None]
    out: _F64 = rows[:, x0] * (1.0 - fx)[None, :] + rows[:, x1] * fx[None, :]
    return out


def _smooth_noise(rng: np.random.Generator, h: int, w: int, sigma_px: float) -> _F64:
    """Gaussian-filtered white noise (periodic, via FFT) normalised to zero mean and unit std.

    Wide filters keep only low frequencies, so the noise is drawn on a grid ``k`` times coarser (``sigma``
    stays >= 2.5 coarse pixels, where bilinear upsampling is smooth) and upsampled: k^2 fewer random
    numbers and FFT work for the slowly varying fields.
    """
    k = max(1, min(int(sigma_px / 2.5), h // 8, w // 8))
    hl, wl = -(-h // k), -(-w // k)
    white = rng.standard_normal((hl, wl))
    sig = sigma_px / k
    # below ~0.3 px the filter is ~identity: skip two FFTs
    out: _F64 = (
        np.fft.irfft2(np.fft.rfft2(white) * _gaussian_gain(hl, wl, sig), s=(hl, wl)) if sig > 0.3 else white
    )
    if k > 1:
        out = _upsample_periodic(out, h, w, k)
    out = out - out.mean()
    std = float(out.std())
    return out / std if std > 0 else out


def _one_image(rng: np.random.Generator, h: int, w: int, diseased: bool) -> tuple[_F64, NDArray[np.bool_]]:
    """Render one image in [0, 1] floats and its boolean organ mask."""
    unit = float(min(h, w))  # all lengths below are in units of the shorter side
    y = (np.arange(h, dtype=np.float64)[:, None] + 0.5) / unit
    x = (np.arange(w, dtype=np.float64)[None, :] + 0.5) / unit
    cy = h / unit / 2 + rng.normal(0.0, 0.03)
    cx = w / unit / 2 + rng.normal(0.0, 0.03)

    # --- organ: rotated ellipse whose radius is perturbed by a few low Fourier modes -------------------
    a = rng.uniform(0.30, 0.38)
    b = rng.uniform(0.24, 0.31)
    # the organ lies obliquely, as a stomach does on a frontal radiograph (long axis ~45 deg +- 20 deg)
    rot = np.pi / 4 + rng.uniform(-0.35, 0.35)
    dx, dy = x - cx, y - cy
    xr = (dx * np.cos(rot) + dy * np.sin(rot)) / a
    yr = (-dx * np.sin(rot) + dy * np.cos(rot)) / b
    rho = np.sqrt(xr * xr + yr * yr)
    # the boundary radius depends on the angle only: evaluate the Fourier modes on a 1-D table of angles
    # and interpolate (one pass over the image instead of seven cosines)
    angles = np.linspace(-np.pi, np.pi, 2049)
    table = np.ones_like(angles)
    for k in range(2, 9):
        amp = rng.uniform(0.0, 0.10 / k) if k < 6 else rng.uniform(0.0, 0.012)
        table += amp * np.cos(k * angles + rng.uniform(0.0, 2 * np.pi))
    radius = np.interp(np.arctan2(yr, xr), angles, table)
    mask = rho < radius
    # a soft edge (about 1% of the image) in intensity so the organ does not look cut out
    alpha = 1.0 / (1.0 + np.exp(-(radius - rho) * min(a, b) / 0.006))

    # --- background: soft tissue with slow variation and a darker periphery ---------------------------
    r2 = ((x - w / unit / 2) ** 2 + (y - h / unit / 2) ** 2) / 0.5
    background = (0.30 + 0.06 * _smooth_noise(rng, h, w, 0.12 * unit) - 0.12 * r2)

    # --- folds -----------------------------------------------------------------------------------------
    # folds run roughly along the organ's long axis (the stripe coordinate u is across it)
    direction = rot + np.pi / 2 + rng.uniform(-0.4, 0.4)
    period = rng.uniform(0.032, 0.042)
    u = x * np.cos(direction) + y * np.sin(direction)
    v = -x * np.sin(direction) + y * np.cos(direction)
    # even healthy folds drift a little over the whole organ; locally (one patch) they stay straight
    drift = 0.25 * period * _smooth_noise(rng, h, w, 0.25 * unit)
    if not diseased:
        phase = 2 * np.pi * (u + drift) / period + rng.uniform(0.0, 2 * np.pi)
        thickness = np.ones_like(u)
        tex_sigma, tex_amp = 0.0025 * unit, 0.035
    else:
        if rng.random() < 0.5:
            # wavy, tortuous folds: the stripe coordinate is displaced along the fold
            wavelength = rng.uniform(0.08, 0.13)
            amp = rng.uniform(0.25, 0.45) * period
            wobble = 0.5 * period * _smooth_noise(rng, h, w, 0.02 * unit)
            disp = amp * np.sin(2 * np.pi * v / wavelength + rng.uniform(0.0, 2 * np.pi)) + wobble
            phase = 2 * np.pi * (u + drift + disp) / period + rng.uniform(0.0, 2 * np.pi)
        else:
            # converging folds: stripes radiate from a point inside the organ (as around an ulcer scar)
            py = cy + rng.normal(0.0, 0.08)
            px = cx + rng.normal(0.0, 0.08)
            n_folds = np.round(2 * np.pi * 0.18 / period)
            wobble = 0.15 * _smooth_noise(rng, h, w, 0.03 * unit)
            phase = n_folds * np.arctan2(y - py, x - px) + wobble + rng.uniform(0.0, 2 * np.pi)
        # irregular thickness / interrupted folds
        thickness = np.clip(1.0 + 0.35 * _smooth_noise(rng, h, w, 0.025 * unit), 0.2, 2.0)
        tex_sigma, tex_amp = 0.010 * unit, 0.055
    folds = thickness * (2.0 * (0.5 + 0.5 * np.cos(phase)) ** 2 - 0.75)
    texture = tex_amp * _smooth_noise(rng, h, w, tex_sigma)
    organ = 0.58 + rng.uniform(0.09, 0.13) * folds + texture

    img = background * (1.0 - alpha) + organ * alpha
    # per-image exposure, then quantum noise everywhere
    img = (img - 0.45) * rng.uniform(0.85, 1.15) + 0.45 + rng.normal(0.0, 0.03)
    img = img + 0.02 * rng.standard_normal((h, w))
    return img, mask


def make_phantom(
    n_images: int,
    size: int | tuple[int, int] = 256,
    seed: int = 0,
    p_diseased: float = 0.5,
) -> PhantomSet:
    """Generate a deterministic phantom data set.

    Exactly ``round(n_images * p_diseased)`` images are diseased (placed at seeded random positions), so
    small sets stay balanced. Image ``i`` is drawn from its own random stream ``(seed, i)``.

    Args:
        n_images: number of images (>= 1).
        size: image side in pixels (square) or ``(height, width)``; each side >= 16.
        seed: non-negative integer seed.
        p_diseased: fraction of diseased images in [0, 1].

    Returns:
        A :class:`PhantomSet` with uint8 images, {0,1} masks and uint8 labels.

    Raises:
        UsageError: for a non-positive count, a too small size, a negative seed or ``p_diseased``
            outside [0, 1].
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise UsageError(f"n_images must be a positive integer, got {n_images!r}")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 16 or w < 16:
        raise UsageError(f"phantom size must be at least 16 px per side, got {h}x{w}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise UsageError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= p_diseased <= 1.0:
        raise UsageError(f"p_diseased must be in [0, 1], got {p_diseased!r}")

    # the images and masks (uint8) and one image's float64 working copies, before any is allocated
    check_allocation(2 * n_images * h * w + 4 * 8 * h * w,
                     f"a phantom of {n_images} images of {h}x{w} px (--phantom, --phantom-size)")
    n_pos = int(np.floor(n_images * p_diseased + 0.5))
    labels = np.zeros(n_images, dtype=np.uint8)
    labels[:n_pos] = 1
    labels = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(labels)

    images = np.empty((n_images, h, w), dtype=np.uint8)
    masks = np.empty((n_images, h, w), dtype=np.uint8)
    for i in range(n_images):
        rng = np.random.default_rng(np.random.SeedSequence([seed, i]))
        img, mask = _one_image(rng, h, w, bool(labels[i]))
        images[i] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
        masks[i] = mask
    return PhantomSet(images=images, masks=masks, labels=labels)
