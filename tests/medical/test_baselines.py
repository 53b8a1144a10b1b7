"""The trivial baseline: mean intensity inside the organ, thresholded on the training split."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from sldpack.errors import DataError, UsageError
from sldpack.medical.baselines import fit_threshold, mean_intensity, trivial_baseline
from sldpack.medical.imageset import ImageSet
from sldpack.medical.metrics import binary_metrics


def _set(organ: NDArray[np.float64], outside: NDArray[np.float64], labels: NDArray[np.int64], *,
         masks: bool = True) -> ImageSet:
    """8x8 images: the left half is the organ (value ``organ[i]``), the right half ``outside[i]``."""
    n = organ.size
    img = np.empty((n, 8, 8), dtype=np.uint8)
    img[:, :, :4] = organ[:, None, None].astype(np.uint8)
    img[:, :, 4:] = outside[:, None, None].astype(np.uint8)
    m = np.zeros((n, 8, 8), dtype=np.uint8)
    m[:, :, :4] = 1
    return ImageSet(img, m if masks else None, labels.astype(np.int64), tuple(f"im{i}" for i in range(n)))


def test_mean_intensity_is_taken_inside_the_mask() -> None:
    data = _set(np.array([10.0, 200.0]), np.array([250.0, 0.0]), np.array([0, 1]))
    assert mean_intensity(data).tolist() == [10.0, 200.0]
    assert mean_intensity(_set(np.array([10.0, 200.0]), np.array([250.0, 0.0]), np.array([0, 1]),
                               masks=False)).tolist() == [130.0, 100.0]
    empty = ImageSet(data.images, np.zeros_like(data.masks), data.labels, data.names)  # type: ignore[arg-type]
    assert mean_intensity(empty).tolist() == [130.0, 100.0]  # an empty mask falls back to the whole image
    assert mean_intensity(data, chunk=1).tolist() == [10.0, 200.0]


def test_fit_threshold_known_optimum_and_direction() -> None:
    # positives are darker (60..100) than negatives (110..150): "low is positive" at the midpoint 105
    feat = np.array([60, 70, 80, 90, 100, 110, 120, 130, 140, 150], dtype=np.float64)
    labels = np.array([1] * 5 + [0] * 5)
    rule = fit_threshold(feat, labels)
    assert (rule.threshold, rule.direction, rule.train_hm, rule.train_images) == (105.0, -1, 1.0, 10)
    assert rule.predict(feat).tolist() == labels.tolist()
    flipped = fit_threshold(-feat, labels)
    assert (flipped.threshold, flipped.direction) == (-105.0, 1)
    perm = np.random.default_rng(0).permutation(10)
    assert fit_threshold(feat[perm], labels[perm]) == rule


def test_fit_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        labels = rng.integers(0, 2, 50)
        labels[:2] = [0, 1]
        feat = rng.normal(100 + 8 * labels, 10).round()
        rule = fit_threshold(feat, labels)
        best = max(binary_metrics(labels, (d * feat >= d * t).astype(int)).hm
                   for d in (1, -1) for t in np.arange(feat.min() - 1, feat.max() + 1.5, 0.5))
        assert rule.train_hm == pytest.approx(best, abs=1e-12)
        assert binary_metrics(labels, rule.predict(feat)).hm == pytest.approx(rule.train_hm, abs=1e-12)


def test_trivial_baseline_fits_on_train_and_evaluates_on_test() -> None:
    rng = np.random.default_rng(1)

    def split(n: int) -> ImageSet:
        labels = np.arange(n) % 2
        organ = np.clip(rng.normal(120 - 30 * labels, 12), 0, 255)  # diseased organs darker
        outside = rng.uniform(0, 255, n)  # the background says nothing
        return _set(organ, outside, labels)

    train, test = split(80), split(40)
    res = trivial_baseline(train, test)
    assert res.rule.direction == -1 and 90 < res.rule.threshold < 120
    assert res.metrics.hm > 0.8 and res.metrics.auc > 0.9
    assert res.names == test.names and res.pred.shape == (40,)
    expected = binary_metrics(test.labels, res.pred, -mean_intensity(test))
    assert res.metrics.hm == expected.hm and res.metrics.auc == expected.auc
    # the same without masks: the random background drowns the organ's signal
    no_mask = trivial_baseline(ImageSet(train.images, None, train.labels, train.names),
                               ImageSet(test.images, None, test.labels, test.names))
    assert no_mask.metrics.auc < res.metrics.auc


def test_bad_input() -> None:
    with pytest.raises(DataError, match="positive and negative"):
        fit_threshold([1.0, 2.0], [1, 1])
    with pytest.raises(UsageError, match="2 feature values for 3 labels"):
        fit_threshold([1.0, 2.0], [0, 1, 1])
    with pytest.raises(UsageError, match="finite"):
        fit_threshold([1.0, np.nan], [0, 1])
