"""Seed-aware paired comparisons of two study rows (torch-free, numpy only).

A study row is run once per seed on the same test images, so a difference HM(A) − HM(B) varies for two
reasons: which test images were drawn, and which seeds were run (distillation can collapse on one seed).
Seeds and images are *crossed* (every seed is tested on every image). Two intervals:

- **image-level** (the one studies used to report): the test images are resampled with replacement, the
  same draw for every seed and both rows, the seeds held fixed; percentile 95 % CI of the mean over seeds
  of ΔHM. It answers "would another test set change the conclusion, *for these seeds*?" Its replicates'
  variance is ``V_i``.
- **seed-aware**: ``diff ± t(0.975, ν) · sqrt(V_i + V_s)``, where ``V_s = s² / S`` is the seed part (s² the
  sample variance of the S per-seed differences on the whole test set) and ν the Welch–Satterthwaite degrees
  of freedom ``(V_i + V_s)² / (V_s² / (S − 1))`` (the image part, from many images, counts as infinite).
  With no spread between seeds it is the image-level interval in normal form; when the seeds dominate it
  is the t interval of the per-seed differences with S − 1 degrees of freedom (t = 4.30 for 3 seeds).
  s² also contains the seed × image interaction (each seed errs on its own images), which ``V_i`` counts
  already: counted twice, that errs on the wide side.

Why not the plain hierarchical percentile bootstrap (resample seeds, then images)? A bootstrap over S seeds
sees S values: it underestimates the seed variance by (S − 1)/S and its percentiles are far too narrow for 3
seeds. On synthetic cells with known seed and image variance (``tests/pipelines/test_stats.py``; 300 repeats,
60 images) it covered the true difference 77–100 % of the time with 3 seeds; this interval 92–100 %, and
taking the interaction out of s² (unbiased, but noisier) 86–98 %.

The verdict (A > B, A < B, no clear difference) comes from the seed-aware interval; with one seed the seed
part cannot be estimated, and the verdict falls back to the image-level interval, saying so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError

__all__ = [
    "PairedInterval",
    "hm_of",
    "image_bootstrap",
    "seed_aware_from_summary",
    "seed_aware_interval",
    "t_quantile",
]

_Z975 = 1.959963984540054


def hm_of(true: NDArray[Any], pred: NDArray[Any]) -> NDArray[np.float64]:
    """Image-level HM of Sen and Spe along the last axis (positive = 1); NaN where a class is absent.

    Works on one vector or a batch of resamples ``[..., n]``.
    """
    t = np.asarray(true).astype(bool)
    p = np.asarray(pred).astype(bool)
    npos = t.sum(-1)
    nneg = (~t).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sen = (t & p).sum(-1) / npos
        spe = (~t & ~p).sum(-1) / nneg
        hm = np.where(sen + spe > 0, 2 * sen * spe / (sen + spe), 0.0)
    out: NDArray[np.float64] = np.where((npos == 0) | (nneg == 0), np.nan, hm).astype(np.float64)
    return out


def t_quantile(p: float, df: float) -> float:
    """Quantile of Student's t with ``df`` (> 0, may be fractional or ``inf``) degrees of freedom, p in (0.5, 1).

    Bisection on the CDF, itself a Simpson integral of the density (numpy has no t distribution and the
    core does not depend on scipy); accurate to about 1e-6, plenty for an interval's width.
    """
    if not 0.5 < p < 1.0 or not df > 0:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df > 0, got p={p}, df={df}")
    if math.isinf(df) or df > 1e6:
        return _normal_quantile(p)
    logc = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        u = np.linspace(0.0, x, 2049)
        f = np.exp(logc - (df + 1) / 2 * np.log1p(u * u / df))
        h = x / 2048
        return 0.5 + float(h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:  # the quantile of t(df=1) at 0.975 is 12.7; doubling finds any bracket quickly
        lo, hi = hi, hi * 2
        if hi > 1e7:
            return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _normal_quantile(p: float) -> float:
    if abs(p - 0.975) < 1e-15:
        return _Z975
    lo, hi = 0.0, 40.0
    for _ in range(80):  # bisection on the normal CDF
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2)) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _check(true: NDArray[Any], pred_a: NDArray[Any], pred_b: NDArray[Any]
           ) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any]]:
    t = np.asarray(true)
    a = np.atleast_2d(np.asarray(pred_a))
    b = np.atleast_2d(np.asarray(pred_b))
    if t.ndim != 1 or a.shape != b.shape or a.shape[1] != t.shape[0]:
        raise DataError(f"paired predictions need equal shapes [seeds, {t.shape[0]}], got {a.shape} and {b.shape}")
    return t, a, b


def _replicates(t: NDArray[Any], a: NDArray[Any], b: NDArray[Any], resamples: int,
                rng: np.random.Generator) -> NDArray[np.float64]:
    """``[resamples, seeds]`` bootstrap replicates of the per-seed ΔHM (NaN where a class is missing).

    Each replicate draws the test images with replacement, one draw shared by every seed and both rows.
    """
    n, seeds = t.size, a.shape[0]
    out = np.empty((resamples, seeds), dtype=np.float64)
    step = max(1, 2_000_000 // max(1, n * seeds))  # bound the temporary arrays
    for s in range(0, resamples, step):
        m = min(step, resamples - s)
        idx = rng.integers(0, n, size=(m, n))
        tt = t[idx][:, None, :]                                                  # [m, 1, n]
        sa, sb = a[:, idx].transpose(1, 0, 2), b[:, idx].transpose(1, 0, 2)      # [m, seeds, n]
        out[s:s + m] = hm_of(tt, sa) - hm_of(tt, sb)
    return out


def image_bootstrap(true: NDArray[Any], pred_a: NDArray[Any], pred_b: NDArray[Any], *, resamples: int = 2000,
                    seed: int = 0) -> tuple[float, float, float]:
    """Mean over seeds of HM(A) − HM(B) and its percentile 95 % CI over test images, seeds held fixed.

    Args:
        true: ``[n]`` 0/1 labels of the test images.
        pred_a, pred_b: ``[seeds, n]`` 0/1 decisions of rows A and B (seed s of A paired with seed s of B).
        resamples: bootstrap resamples.
        seed: their seed.

    Returns:
        ``(difference on the test set, CI low, CI high)``.

    Raises:
        DataError: shapes that do not pair up.
    """
    pi = seed_aware_interval(true, pred_a, pred_b, resamples=resamples, seed=seed, seed_level=False)
    return pi.diff, pi.image_ci[0], pi.image_ci[1]


@dataclass(frozen=True)
class PairedInterval:
    """Both intervals of one paired comparison (module docs) and which one decides the verdict."""

    diff: float                      # mean over seeds of ΔHM on the whole test set
    image_ci: tuple[float, float]    # percentile CI over test images, seeds fixed
    seed_ci: tuple[float, float] | None  # seed-aware CI; None with one seed
    seeds: int
    image_var: float                 # V_i
    seed_var: float                  # V_s (0 when the seeds agree exactly; NaN with one seed)
    df: float                        # Welch–Satterthwaite degrees of freedom (inf: image part only)

    @property
    def verdict_ci(self) -> tuple[float, float]:
        """The interval the verdict uses: the seed-aware one, or the image-level one with one seed."""
        return self.seed_ci if self.seed_ci is not None else self.image_ci

    @property
    def verdict_basis(self) -> str:
        """``seed-aware`` or ``image-level (1 seed: seed variance not estimable)``."""
        return "seed-aware" if self.seed_ci is not None else "image-level (1 seed: seed variance not estimable)"

    def verdict(self, a: str, b: str) -> str:
        """``A > B`` / ``A < B`` when :attr:`verdict_ci` excludes 0, else ``no clear difference``."""
        lo, hi = self.verdict_ci
        if math.isnan(lo) or math.isnan(hi):
            return "n/a"
        if lo > 0:
            return f"{a} > {b}"
        if hi < 0:
            return f"{a} < {b}"
        return "no clear difference"


def seed_aware_interval(true: NDArray[Any], pred_a: NDArray[Any], pred_b: NDArray[Any], *,
                        resamples: int = 2000, seed: int = 0, seed_level: bool = True) -> PairedInterval:
    """Image-level and seed-aware 95 % intervals of the paired ΔHM (method: module docs).

    Args:
        true: ``[n]`` 0/1 labels of the test images.
        pred_a, pred_b: ``[seeds, n]`` 0/1 decisions, seed s of A paired with seed s of B.
        resamples: replicates of each bootstrap.
        seed: seed of the bootstrap draws.
        seed_level: False computes the image-level interval only (``seed_ci`` is then None).

    Raises:
        DataError: shapes that do not pair up.
    """
    t, a, b = _check(true, pred_a, pred_b)
    n_seeds = a.shape[0]
    point = float(np.mean(hm_of(t, a) - hm_of(t, b)))
    per = _replicates(t, a, b, resamples, np.random.default_rng(seed))   # [m, seeds], seeds fixed
    per = per[np.isfinite(per).all(axis=1)]  # resamples missing a class have no HM
    img = per.mean(axis=1)
    if img.size < 2:
        return PairedInterval(point, (math.nan, math.nan), None, n_seeds, math.nan, math.nan, math.nan)
    lo, hi = (float(v) for v in np.percentile(img, [2.5, 97.5]))
    v_i = float(np.var(img, ddof=1))
    if n_seeds < 2 or not seed_level:
        return PairedInterval(point, (lo, hi), None, n_seeds, v_i, math.nan, math.inf)
    d = hm_of(t, a) - hm_of(t, b)
    if not np.isfinite(d).all():
        return PairedInterval(point, (lo, hi), (math.nan, math.nan), n_seeds, v_i, math.nan, math.nan)
    v_s = float(np.var(d, ddof=1)) / n_seeds  # the seed part (module docs)
    total = v_i + v_s
    df = math.inf if v_s == 0.0 else total * total / (v_s * v_s / (n_seeds - 1))
    half = t_quantile(0.975, df) * math.sqrt(total)
    return PairedInterval(point, (lo, hi), (point - half, point + half), n_seeds, v_i, v_s, df)


def seed_aware_from_summary(diff: float, image_ci: tuple[float, float], per_seed: list[float]) -> PairedInterval:
    """The seed-aware interval rebuilt from what a study table kept: the mean difference, the image-level
    percentile CI and the per-seed differences (for studies whose per-image decisions are gone).

    ``V_i`` is recovered from the CI's width as ``((hi - lo) / (2 * 1.96))**2`` (the normal form of the
    percentile interval); the rest is :func:`seed_aware_interval`'s formula. An approximation: exact when
    the image bootstrap's distribution is normal, within a few thousandths of the interval's ends on
    ordinary tables (``tests/pipelines/test_stats.py``).
    """
    lo, hi = image_ci
    n = len(per_seed)
    v_i = ((hi - lo) / (2 * _Z975)) ** 2
    if n < 2:
        return PairedInterval(diff, (lo, hi), None, n, v_i, math.nan, math.inf)
    v_s = float(np.var(np.asarray(per_seed, dtype=np.float64), ddof=1)) / n
    total = v_i + v_s
    df = math.inf if v_s == 0.0 else total * total / (v_s * v_s / (n - 1))
    half = t_quantile(0.975, df) * math.sqrt(total)
    return PairedInterval(diff, (lo, hi), (diff - half, diff + half), n, v_i, v_s, df)
