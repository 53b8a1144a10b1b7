"""The ``trivial`` baseline: one number per image, thresholded.

Issue 19 found that on chest X-rays the mean pixel value inside the lung mask, thresholded on the training
split, reached test HM 0.770, close to every network. A table that cannot tell a distilled file from a
brightness threshold proves little, so studies carry this row: the feature is the organ's mean intensity
(the mean over the mask's pixels; the whole image's mean for data without masks, or for an image whose
mask is empty), and the rule -- a threshold and a direction -- is chosen on the training split alone by the
highest HM there, then applied unchanged to the test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import DataError, UsageError
from sldpack.medical.imageset import ImageSet
from sldpack.medical.metrics import BinaryMetrics, binary_metrics

__all__ = ["ThresholdRule", "TrivialResult", "fit_threshold", "mean_intensity", "trivial_baseline"]

FEATURE = "mean intensity inside the organ mask (whole image without a mask)"


def mean_intensity(data: ImageSet, *, chunk: int = 256) -> NDArray[np.float64]:
    """Per image: the mean pixel value (0..255) inside its mask, or over the whole image without one.

    Reads ``chunk`` images at a time, so memory-mapped sets are not loaded whole.
    """
    n = len(data)
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, chunk):
        img = np.asarray(data.images[s:s + chunk], dtype=np.float64)
        flat = img.reshape(img.shape[0], -1)
        whole = flat.mean(axis=1)
        if data.masks is None:
            out[s:s + chunk] = whole
            continue
        m = np.asarray(data.masks[s:s + chunk]).reshape(img.shape[0], -1) > 0
        area = m.sum(axis=1)
        inside = np.where(m, flat, 0.0).sum(axis=1) / np.maximum(area, 1)
        out[s:s + chunk] = np.where(area > 0, inside, whole)  # an empty mask: the whole image
    return out


@dataclass(frozen=True)
class ThresholdRule:
    """Positive when ``direction * (feature - threshold) >= 0``: direction +1 calls high values positive,
    -1 low ones. ``train_hm`` is the HM it reached on the images it was chosen on."""

    threshold: float
    direction: int
    train_hm: float
    train_images: int

    def scores(self, feature: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """Oriented scores (higher = more positive), for ROC AUC."""
        return self.direction * np.asarray(feature, dtype=np.float64)

    def predict(self, feature: NDArray[np.floating[Any]]) -> NDArray[np.uint8]:
        """0/1 decisions."""
        return (self.scores(feature) >= self.direction * self.threshold).astype(np.uint8)

    def to_obj(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"feature": FEATURE, "threshold": self.threshold, "direction": "high is positive"
                if self.direction > 0 else "low is positive", "train_hm": self.train_hm,
                "train_images": self.train_images}


def _split_hms(values: NDArray[np.float64], labels: NDArray[np.int64]
               ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """For every cut "value >= t is positive" between neighbouring distinct values (and below/above all of
    them): the threshold t (midpoints; the ends at min - 1 and max + 1) and the HM there. O(n log n)."""
    v, inv = np.unique(values, return_inverse=True)
    pos = np.bincount(inv, weights=(labels == 1), minlength=v.size)
    neg = np.bincount(inv, weights=(labels == 0), minlength=v.size)
    n_pos, n_neg = pos.sum(), neg.sum()
    # cut j (0..len(v)): values v[j:] are positive
    tp = np.concatenate([np.cumsum(pos[::-1])[::-1], [0.0]])
    fp = np.concatenate([np.cumsum(neg[::-1])[::-1], [0.0]])
    sen, spe = tp / n_pos, (n_neg - fp) / n_neg
    hm = np.where(sen + spe > 0, 2 * sen * spe / np.maximum(sen + spe, 1e-300), 0.0)
    thr = np.concatenate([[v[0] - 1.0], (v[:-1] + v[1:]) / 2, [v[-1] + 1.0]])
    return thr, hm


def fit_threshold(feature: Sequence[float] | NDArray[np.floating[Any]],
                  labels: Sequence[int] | NDArray[np.integer[Any]]) -> ThresholdRule:
    """The threshold and direction with the highest HM on these (training) images.

    Candidates are the midpoints between neighbouring distinct feature values, in both directions. Ties go
    to direction +1, then to the threshold nearest the median feature (the least extreme rule), then to the
    smaller threshold: deterministic, independent of the images' order.

    Raises:
        UsageError: lengths differ or a value is not finite.
        DataError: the images lack a positive or a negative (HM undefined).
    """
    f = np.asarray(feature, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1)
    if f.shape != lab.shape:
        raise UsageError(f"{f.size} feature values for {lab.size} labels")
    if not np.isfinite(f).all():
        raise UsageError("feature values must be finite")
    keep = (lab == 0) | (lab == 1)  # unknown labels (-1) take no part
    f, lab = f[keep], lab[keep]
    n_pos, n_neg = int((lab == 1).sum()), int((lab == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"fitting a threshold needs positive and negative images, got {n_pos} positive and "
                        f"{n_neg} negative")
    best: tuple[float, float, float, int] | None = None  # (-hm, distance to median, threshold, -direction)
    median = float(np.median(f))
    for direction in (1, -1):
        thr, hm = _split_hms(direction * f, lab)
        for t, h in zip(direction * thr, hm, strict=True):
            key = (-round(float(h), 12), round(abs(float(t) - median), 12), float(t), -direction)
            if best is None or key < best:
                best = key
    assert best is not None
    return ThresholdRule(threshold=best[2], direction=-best[3], train_hm=-best[0], train_images=int(f.size))


@dataclass(frozen=True)
class TrivialResult:
    """The trivial row evaluated on the test images."""

    rule: ThresholdRule
    names: tuple[str, ...]
    true: NDArray[np.int64]
    feature: NDArray[np.float64]
    pred: NDArray[np.uint8]
    metrics: BinaryMetrics


def trivial_baseline(train: ImageSet, test: ImageSet) -> TrivialResult:
    """Fit :func:`fit_threshold` on ``train``'s mean intensities and evaluate it on ``test`` (Sen, Spe, HM,
    and ROC AUC of the oriented feature), over test images with a 0/1 label.

    Raises:
        DataError: the training images lack a class, or no test image has a 0/1 label.
    """
    rule = fit_threshold(mean_intensity(train), train.labels)
    feat = mean_intensity(test)
    true = np.asarray(test.labels, dtype=np.int64)
    known = (true == 0) | (true == 1)
    if not known.any():
        raise DataError("no test image has a 0/1 label: the trivial row needs labelled test images")
    pred = rule.predict(feat)
    metrics = binary_metrics(true[known], pred[known], rule.scores(feat)[known])
    return TrivialResult(rule, tuple(test.names), true, feat, pred, metrics)
