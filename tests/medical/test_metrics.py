"""Metrics on hand-computed confusion matrices; ROC AUC against a brute-force pair count."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sldpack.errors import UsageError
from sldpack.medical.metrics import (
    binary_metrics,
    confusion_matrix,
    harmonic_mean,
    midranks,
    patch_metrics,
    roc_auc,
)


def test_binary_metrics_hand_computed() -> None:
    y_true = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    m = binary_metrics(y_true, y_pred)
    assert (m.tp, m.fn, m.tn, m.fp) == (3, 1, 4, 2)
    assert m.sensitivity == pytest.approx(0.75)
    assert m.specificity == pytest.approx(4 / 6)
    assert m.hm == pytest.approx(2 * 0.75 * (4 / 6) / (0.75 + 4 / 6))  # 0.70588...
    assert m.accuracy == pytest.approx(0.7)
    assert m.n == 10
    assert m.confusion().tolist() == [[4, 2], [1, 3]]
    assert math.isnan(m.auc) and m.to_dict()["auc"] is None


def test_undefined_rates_are_nan() -> None:
    m = binary_metrics([0, 0, 0], [0, 1, 0], scores=[0.1, 0.9, 0.2])
    assert math.isnan(m.sensitivity) and math.isnan(m.hm) and math.isnan(m.auc)
    assert m.specificity == pytest.approx(2 / 3)
    d = m.to_dict()
    assert d["sensitivity"] is None and d["hm"] is None and d["tn"] == 2
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(1.0, 0.5) == pytest.approx(2 / 3)


def test_confusion_matrix_three_classes() -> None:
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], n_classes=3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert confusion_matrix([], [], n_classes=3).sum() == 0
    with pytest.raises(UsageError):
        confusion_matrix([0, 3], [0, 0], n_classes=3)
    with pytest.raises(UsageError):
        confusion_matrix([0, 1], [0])


def test_patch_metrics() -> None:
    pm = patch_metrics([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2])
    assert pm.accuracy == pytest.approx(4 / 6)
    assert pm.recall == pytest.approx((2 / 3, 1 / 2, 1.0))
    assert pm.balanced_accuracy == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    no_p = patch_metrics([0, 1], [0, 0])
    assert math.isnan(no_p.recall[2]) and no_p.to_dict()["recall"]["P"] is None
    assert no_p.to_dict()["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def _auc_pairs(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_pair_count_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.integers(0, 2, size=n)
    y[:2] = [0, 1]
    s = rng.integers(0, 5, size=n).astype(float) / 4  # many ties
    assert roc_auc(y, s) == pytest.approx(_auc_pairs(y, s), abs=1e-12)


def test_auc_special_cases() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5] * 4) == 0.5
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert midranks([3.0, 1.0, 3.0, 2.0]).tolist() == [3.5, 1.0, 3.5, 2.0]
    with pytest.raises(UsageError, match="finite"):
        roc_auc([0, 1], [0.1, math.nan])
    with pytest.raises(UsageError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])


def test_binary_metrics_reject_bad_input() -> None:
    with pytest.raises(UsageError):
        binary_metrics([0, 1], [0])
    with pytest.raises(UsageError, match="0/1"):
        binary_metrics([0, 2], [0, 1])
