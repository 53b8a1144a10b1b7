"""Evaluation metrics: image-level sensitivity/specificity/HM/accuracy/ROC AUC, patch-level accuracy/recall.

Conventions: label 1 is positive (diseased). Sensitivity = TP / (TP + FN), specificity = TN / (TN + FP),
HM = their harmonic mean 2·Se·Sp / (Se + Sp) (the seed paper's summary number). A ratio whose denominator is
zero (no positive images for sensitivity, ...) is NaN, and so is anything computed from it; HM is 0 when
Se + Sp = 0. ROC AUC uses the Mann–Whitney rank formula with mid-ranks for ties (a tie between a positive
and a negative counts 1/2) and is NaN when one class is absent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sldpack.errors import UsageError

__all__ = [
    "BinaryMetrics",
    "PatchMetrics",
    "binary_metrics",
    "confusion_matrix",
    "harmonic_mean",
    "midranks",
    "patch_metrics",
    "roc_auc",
    "safe_ratio",
]

ArrayLike = Sequence[int] | Sequence[float] | NDArray[Any]


def _as_int_labels(values: ArrayLike, what: str) -> NDArray[np.int64]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise UsageError(f"{what} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        raise UsageError(f"{what} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def safe_ratio(num: float, den: float) -> float:
    """``num / den``, NaN when ``den`` is 0."""
    return float(num) / float(den) if den else math.nan


def harmonic_mean(a: float, b: float) -> float:
    """``2ab / (a + b)``; NaN if either is NaN; 0 when ``a + b == 0``."""
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int | None = None) -> NDArray[np.int64]:
    """Counts ``C[t, p]`` of samples with true class ``t`` predicted as ``p`` (rows true, columns predicted).

    Args:
        y_true, y_pred: 1-D integer class ids >= 0 of equal length.
        n_classes: matrix size (default: 1 + the largest id seen, at least 2).

    Raises:
        UsageError: length mismatch, negative ids, ids >= ``n_classes``.
    """
    t = _as_int_labels(y_true, "y_true")
    p = _as_int_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise UsageError(f"y_true has {t.size} entries, y_pred {p.size}")
    top = int(max(t.max(initial=0), p.max(initial=0))) + 1
    k = max(top, 2) if n_classes is None else n_classes
    if (t.size and (t.min() < 0 or p.min() < 0)) or top > k:
        raise UsageError(f"class ids must be in 0..{k - 1}")
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def midranks(values: ArrayLike) -> NDArray[np.float64]:
    """1-based ranks of ``values`` with tied values given the mean of the ranks they span."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    uniq, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    del uniq
    # ranks of a tie block starting after `before` smaller values: before+1 .. before+count -> mean
    before = np.concatenate(([0], np.cumsum(counts)[:-1]))
    block_rank = before + (counts + 1) / 2.0
    out: NDArray[np.float64] = block_rank[inverse.reshape(-1)]
    return out


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve of ``scores`` for binary ``y_true`` (1 positive).

    Mann–Whitney: ``(sum of positive ranks - n1 (n1 + 1) / 2) / (n1 n0)`` with mid-ranks, i.e. the
    probability that a random positive scores above a random negative, ties counting 1/2.

    Returns:
        The AUC in [0, 1], or NaN when there is no positive or no negative sample.

    Raises:
        UsageError: length mismatch, labels other than 0/1, non-finite scores.
    """
    t = _as_int_labels(y_true, "y_true")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if t.shape != s.shape:
        raise UsageError(f"y_true has {t.size} entries, scores {s.size}")
    if np.setdiff1d(t, [0, 1]).size:
        raise UsageError("roc_auc needs labels 0/1")
    if not np.all(np.isfinite(s)):
        raise UsageError("scores must be finite")
    n1 = int(t.sum())
    n0 = int(t.size - n1)
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = midranks(s)
    return float((ranks[t == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


@dataclass(frozen=True)
class BinaryMetrics:
    """Image-level metrics (positive = 1). Undefined ratios are NaN (see module docs).

    Attributes:
        tp, fn, tn, fp: confusion counts.
        sensitivity, specificity, hm, accuracy: rates in [0, 1] or NaN.
        auc: ROC AUC of the scores, NaN when no scores were given or one class is absent.
    """

    tp: int
    fn: int
    tn: int
    fp: int
    sensitivity: float
    specificity: float
    hm: float
    accuracy: float
    auc: float

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.tp + self.fn + self.tn + self.fp

    def confusion(self) -> NDArray[np.int64]:
        """``[[TN, FP], [FN, TP]]`` (rows true 0/1, columns predicted 0/1)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; NaN becomes ``None`` so the result is valid JSON."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def binary_metrics(y_true: ArrayLike, y_pred: ArrayLike, scores: ArrayLike | None = None) -> BinaryMetrics:
    """Sensitivity, specificity, HM, accuracy (and AUC of ``scores``) for binary labels/predictions.

    Raises:
        UsageError: length mismatch or labels other than 0/1.
    """
    t = _as_int_labels(y_true, "y_true")
    p = _as_int_labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise UsageError(f"y_true has {t.size} entries, y_pred {p.size}")
    if np.setdiff1d(np.concatenate([t, p]), [0, 1]).size:
        raise UsageError("binary metrics need labels and predictions 0/1")
    tp = int(np.sum((t == 1) & (p == 1)))
    fn = int(np.sum((t == 1) & (p == 0)))
    tn = int(np.sum((t == 0) & (p == 0)))
    fp = int(np.sum((t == 0) & (p == 1)))
    se = safe_ratio(tp, tp + fn)
    sp = safe_ratio(tn, tn + fp)
    return BinaryMetrics(
        tp=tp,
        fn=fn,
        tn=tn,
        fp=fp,
        sensitivity=se,
        specificity=sp,
        hm=harmonic_mean(se, sp),
        accuracy=safe_ratio(tp + tn, t.size),
        auc=math.nan if scores is None else roc_auc(t, scores),
    )


@dataclass(frozen=True)
class PatchMetrics:
    """Patch-level (I/N/P) results.

    Attributes:
        accuracy: share of correct predictions (NaN for no patches).
        recall: per-class recall (NaN for a class without patches), in ``class_names`` order.
        confusion: ``[K, K]`` counts, rows true, columns predicted.
        class_names: names of the classes.
    """

    accuracy: float
    recall: tuple[float, ...]
    confusion: NDArray[np.int64]
    class_names: tuple[str, ...]

    @property
    def balanced_accuracy(self) -> float:
        """Mean recall over the classes that have patches (NaN when none has)."""
        vals = [r for r in self.recall if not math.isnan(r)]
        return float(np.mean(vals)) if vals else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> ``None``)."""

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else v

        return {
            "accuracy": clean(self.accuracy),
            "balanced_accuracy": clean(self.balanced_accuracy),
            "recall": {n: clean(r) for n, r in zip(self.class_names, self.recall, strict=True)},
            "confusion": self.confusion.tolist(),
            "class_names": list(self.class_names),
        }


def patch_metrics(
    y_true: ArrayLike, y_pred: ArrayLike, class_names: Sequence[str] = ("I", "N", "P")
) -> PatchMetrics:
    """Accuracy, per-class recall and confusion matrix of patch predictions (ids index ``class_names``).

    Raises:
        UsageError: length mismatch or ids outside ``0..len(class_names)-1``.
    """
    k = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n_classes=k)
    total = int(cm.sum())
    recall = tuple(safe_ratio(int(cm[c, c]), int(cm[c].sum())) for c in range(k))
    return PatchMetrics(
        accuracy=safe_ratio(int(np.trace(cm)), total),
        recall=recall,
        confusion=cm,
        class_names=tuple(class_names),
    )
