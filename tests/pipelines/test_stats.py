"""Seed-aware paired intervals: coverage on synthetic cells with known variance, and the issue-19 case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from sldpack.errors import DataError
from sldpack.pipelines.stats import (
    hm_of,
    image_bootstrap,
    seed_aware_from_summary,
    seed_aware_interval,
    t_quantile,
)


def _cells(rng: np.random.Generator, n: int, seeds: int, sd_seed: float, sd_image: float, sd_noise: float
           ) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Two exchangeable rows (true ΔHM = 0): per seed an ability shift (sd_seed), per image a difficulty
    shared by every seed and both rows (sd_image), per seed and image its own noise (sd_noise)."""
    true = (np.arange(n) % 2).astype(np.int64)
    difficulty = sd_image * rng.standard_normal(n)

    def row() -> NDArray[np.int64]:
        ability = 0.5 + sd_seed * rng.standard_normal((seeds, 1))
        correct = ability + difficulty + sd_noise * rng.standard_normal((seeds, n)) > 0
        return np.where(correct, true, 1 - true)

    return true, row(), row()


@pytest.mark.parametrize(("seeds", "sd_seed"), [(5, 0.3), (3, 1.0)])
def test_seed_aware_interval_covers_about_95_percent(seeds: int, sd_seed: float) -> None:
    # 200 repeats: a binomial standard error of 1.5 points at 95 %; the accepted band [0.88, 0.995] is
    # about 4.5 standard errors below and what the method's stated conservatism allows above. The
    # image-level interval, blind to seed variance, must cover clearly less in the same cells.
    rng = np.random.default_rng(20261203)
    repeats = 200
    seed_hits = image_hits = 0
    for _ in range(repeats):
        true, a, b = _cells(rng, 60, seeds, sd_seed, 1.0, 1.0 if sd_seed < 1 else 0.5)
        pi = seed_aware_interval(true, a, b, resamples=200, seed=int(rng.integers(1 << 31)))
        assert pi.seed_ci is not None
        seed_hits += pi.seed_ci[0] <= 0.0 <= pi.seed_ci[1]
        image_hits += pi.image_ci[0] <= 0.0 <= pi.image_ci[1]
    assert 0.88 <= seed_hits / repeats <= 0.995, seed_hits / repeats
    assert image_hits / repeats < seed_hits / repeats - 0.1, (image_hits, seed_hits)


def test_without_seed_spread_the_interval_is_the_image_level_one() -> None:
    rng = np.random.default_rng(3)
    true = (np.arange(80) % 2).astype(np.int64)
    a1 = np.where(rng.random(80) < 0.85, true, 1 - true)
    b1 = np.where(rng.random(80) < 0.75, true, 1 - true)
    a, b = np.stack([a1] * 3), np.stack([b1] * 3)  # three seeds that agree exactly
    pi = seed_aware_interval(true, a, b, resamples=500, seed=1)
    assert pi.seed_var == 0.0
    assert math.isinf(pi.df)
    assert pi.seed_ci is not None
    # normal form of the same bootstrap: within 20 % of the percentile interval's width
    w_seed, w_img = pi.seed_ci[1] - pi.seed_ci[0], pi.image_ci[1] - pi.image_ci[0]
    assert abs(w_seed - w_img) < 0.2 * w_img


def test_one_collapsed_seed_no_longer_decides_the_verdict() -> None:
    """Issue 19: "SLDD > DD, +0.168 [+0.124, +0.213]" rested on one collapsed DD seed (per seed +0.071,
    +0.019, +0.413). The image-level CI excludes 0; the seed-aware one does not."""
    rng = np.random.default_rng(19)
    n = 170
    true = (np.arange(n) < 85).astype(np.int64)

    def calls(sen: float, spe: float) -> NDArray[np.int64]:
        u = rng.random(n)
        return np.where(true == 1, u < sen, u >= spe).astype(np.int64)  # wrong on 1 - spe of negatives

    sldd = np.stack([calls(0.80, 0.78), calls(0.78, 0.80), calls(0.79, 0.79)])
    dd = np.stack([calls(0.72, 0.72), calls(0.78, 0.78), calls(0.98, 0.22)])  # the third seed collapsed
    per_seed = hm_of(true, sldd) - hm_of(true, dd)
    assert per_seed[2] > 0.3 and per_seed[:2].max() < 0.15  # the shape of the numbers
    pi = seed_aware_interval(true, sldd, dd, resamples=2000, seed=0)
    assert pi.image_ci[0] > 0  # the old verdict: SLDD > DD
    assert pi.verdict("SLDD", "DD") == "no clear difference"
    assert pi.seed_ci is not None and pi.seed_ci[0] < 0 < pi.seed_ci[1]
    assert pi.verdict_basis == "seed-aware"
    assert pi.df == pytest.approx(2.0, abs=0.5)  # the seeds dominate: about S - 1 degrees of freedom


def test_one_seed_falls_back_to_the_image_level_interval_and_says_so() -> None:
    true = np.array([0, 1] * 20)
    a = np.array([true])
    b = np.array([np.ones(40, dtype=np.int64)])  # always positive: HM 0
    pi = seed_aware_interval(true, a, b, resamples=300, seed=0)
    assert pi.seed_ci is None
    assert pi.verdict_ci == pi.image_ci
    assert "1 seed" in pi.verdict_basis
    assert pi.verdict("A", "B") == "A > B"
    assert image_bootstrap(true, a, b, resamples=300, seed=0) == (pi.diff, *pi.image_ci)


def test_t_quantile_known_values() -> None:
    # Student's t 97.5 % points from the tables
    for df, q in ((1, 12.7062), (2, 4.3027), (3, 3.1824), (10, 2.2281), (30, 2.0423)):
        assert t_quantile(0.975, df) == pytest.approx(q, abs=2e-4)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.95996, abs=1e-5)
    with pytest.raises(ValueError, match="df > 0"):
        t_quantile(0.975, 0)


def test_shapes_must_pair() -> None:
    with pytest.raises(DataError, match="equal shapes"):
        seed_aware_interval(np.zeros(4), np.zeros((2, 4)), np.zeros((3, 4)))


def test_interval_rebuilt_from_a_table_matches_the_full_method() -> None:
    rng = np.random.default_rng(11)
    for _ in range(3):
        true, a, b = _cells(rng, 120, 3, 0.4, 1.0, 1.0)
        full = seed_aware_interval(true, a, b, resamples=1000, seed=0)
        per_seed = [float(v) for v in hm_of(true, a) - hm_of(true, b)]
        rebuilt = seed_aware_from_summary(full.diff, full.image_ci, per_seed)
        assert full.seed_ci is not None and rebuilt.seed_ci is not None
        width = full.seed_ci[1] - full.seed_ci[0]
        # the percentile CI's width stands in for the bootstrap's variance: within 5 % of the width
        assert abs(rebuilt.seed_ci[0] - full.seed_ci[0]) < 0.05 * width
        assert abs(rebuilt.seed_ci[1] - full.seed_ci[1]) < 0.05 * width
    one = seed_aware_from_summary(0.1, (0.05, 0.15), [0.1])
    assert one.seed_ci is None and one.verdict("A", "B") == "A > B"
