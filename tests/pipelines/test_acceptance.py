"""Acceptance record helpers: Wilson intervals, bootstrap CIs, delta calibration, data checks (torch-free)."""

from __future__ import annotations

import numpy as np
import pytest

from sldpack.errors import DataError
from sldpack.format.manifest import ArchSpec
from sldpack.medical.imageset import ImageSet
from sldpack.pipelines.acceptance import binary_metrics_with_ci, calibrate_delta, check_data_fits, wilson_interval


def test_wilson_interval_known_values() -> None:
    # 8 of 10: Wilson 95 % interval (0.4902, 0.9433) (Newcombe 1998, method 3)
    lo, hi = wilson_interval(8, 10)  # type: ignore[misc]
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    lo, hi = wilson_interval(0, 15)  # type: ignore[misc]
    assert lo == 0.0 and hi == pytest.approx(0.2039, abs=1e-4)  # never a [0, 0] interval from 0 events
    assert wilson_interval(0, 0) is None


def test_metrics_with_ci_bracket_the_point_values() -> None:
    rng = np.random.default_rng(0)
    t = np.repeat([0, 1], 40)
    s = np.clip(t * 0.3 + rng.uniform(0, 0.7, t.size), 0, 1)
    d = (s >= 0.5).astype(np.int64)
    m = binary_metrics_with_ci(t, d, s, resamples=500)
    assert m["n"] == 80 and m["positives"] == 40
    for key in ("sensitivity", "specificity", "accuracy", "hm", "auc"):
        v, (lo, hi) = m[key]["value"], m[key]["ci95"]
        assert lo <= v <= hi, key
        assert 0.0 < hi - lo < 0.5, key
    assert m["hm"]["method"].startswith("percentile bootstrap")
    assert binary_metrics_with_ci(t, d, s, resamples=500) == m  # seeded: the same record twice
    one_class = binary_metrics_with_ci(np.ones(5, dtype=np.int64), np.ones(5, dtype=np.int64), None)
    assert one_class["specificity"]["value"] is None and one_class["hm"]["ci95"] is None


def test_calibrate_delta_maximises_hm_and_keeps_the_default_on_ties() -> None:
    t = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.5, 0.6, 0.7, 0.9])
    # any delta in (0.5, 0.6] separates the classes; of the candidates only 0.6 does
    assert calibrate_delta(s, t, default=0.4) == pytest.approx(0.6)
    sep = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    assert calibrate_delta(sep, t, default=0.4) == pytest.approx(0.4)  # 0.4 is as good: the sender's choice stays
    with pytest.raises(DataError, match="positive and negative"):
        calibrate_delta(s, np.ones(6), default=0.4)


def _manifest_like(arch: ArchSpec) -> object:
    class M:
        pass

    m = M()
    m.arch = arch  # type: ignore[attr-defined]
    return m


def test_data_that_does_not_fit_is_refused_naming_both_sides() -> None:
    imgs = np.zeros((2, 10, 12), dtype=np.uint8)
    data = ImageSet(imgs, None, np.array([0, 1]), ("a", "b"))
    whole = _manifest_like(ArchSpec(id="convnet@1", in_channels=1, num_classes=2, image_size=(28, 28)))
    with pytest.raises(DataError, match=r"10x12 px, the network takes 28x28"):
        check_data_fits(whole, data, patch_size=None, source="local.npz")  # type: ignore[arg-type]
    with pytest.raises(DataError, match=r"smaller than this file's 16 px patches"):
        check_data_fits(whole, data, patch_size=16, source="local.npz")  # type: ignore[arg-type]
    rgb = _manifest_like(ArchSpec(id="convnet@1", in_channels=3, num_classes=2, image_size=(10, 12)))
    with pytest.raises(DataError, match="takes 3 channels"):
        check_data_fits(rgb, data, patch_size=None, source="local.npz")  # type: ignore[arg-type]
    fits = _manifest_like(ArchSpec(id="convnet@1", in_channels=1, num_classes=2, image_size=(10, 12)))
    check_data_fits(fits, data, patch_size=None, source="local.npz")  # type: ignore[arg-type]
