"""Eq. (9) on constructed cases, per-image results and their CSV/JSON export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sldpack.errors import DataError, UsageError
from sldpack.medical.detection import (
    CSV_COLUMNS,
    DEFAULT_DELTA,
    DetectionResults,
    count_patch_classes,
    decide,
    detect_images,
    image_scores,
)
from sldpack.medical.metrics import binary_metrics


def test_eq9_constructed_cases() -> None:
    counts = np.array(
        [
            [5, 6, 4],  # 4 / 10 = 0.4 -> positive: the threshold is inclusive
            [0, 6, 3],  # 1/3 < 0.4 -> normal
            [100, 0, 0],  # no N/P patch: score 0 by definition -> normal
            [0, 0, 1],  # 1.0 -> positive
            [1000, 6, 4],  # I patches are ignored: same as row 0
            [0, 3, 2],  # 0.4 again
            [7, 61, 39],  # 0.39 -> normal
        ]
    )
    scores = image_scores(counts)
    assert scores.tolist() == pytest.approx([0.4, 1 / 3, 0.0, 1.0, 0.4, 0.4, 0.39])
    assert decide(scores).tolist() == [1, 0, 0, 1, 1, 1, 0]
    assert DEFAULT_DELTA == 0.4
    assert decide(scores, delta=1.0).tolist() == [0, 0, 0, 1, 0, 0, 0]
    assert decide(scores, delta=0.3).tolist() == [1, 1, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("delta", [0.0, -0.1, 1.5])
def test_delta_range(delta: float) -> None:
    with pytest.raises(UsageError, match="delta"):
        decide(np.array([0.5]), delta)


def test_count_patch_classes() -> None:
    counts = count_patch_classes([0, 0, 0, 2, 2], [0, 2, 2, 1, 2], n_images=3)
    assert counts.tolist() == [[1, 0, 2], [0, 0, 0], [0, 1, 1]]
    with pytest.raises(UsageError):
        count_patch_classes([0, 5], [0, 1], n_images=3)
    with pytest.raises(UsageError):
        count_patch_classes([0], [3], n_images=3)
    with pytest.raises(UsageError):
        image_scores(np.zeros((2, 2)))


def _results() -> DetectionResults:
    counts = np.array([[3, 6, 4], [2, 9, 1], [5, 0, 0], [0, 1, 3]])
    return detect_images(counts, names=["a", "b", "c", "d"], true_labels=[1, 0, 1, 0])


def test_results_and_metrics() -> None:
    r = _results()
    assert len(r) == 4 and r.delta == 0.4
    assert r.decisions.tolist() == [1, 0, 0, 1]
    first = r.images[0]
    assert (first.name, first.true_label, first.num_i, first.num_n, first.num_p) == ("a", 1, 3, 6, 4)
    m = r.metrics()
    assert m == binary_metrics([1, 0, 1, 0], [1, 0, 0, 1], [0.4, 0.1, 0.0, 0.75])
    assert (m.tp, m.fn, m.tn, m.fp) == (1, 1, 1, 1)
    unknown = detect_images(np.array([[1, 1, 1]]))
    assert unknown.images[0].true_label == -1 and unknown.images[0].name == "image_00000"
    with pytest.raises(DataError, match="known label"):
        unknown.metrics()
    with pytest.raises(UsageError, match="lengths"):
        detect_images(np.array([[1, 1, 1]]), names=["a", "b"])


def test_csv_and_json_export(tmp_path: Path) -> None:
    r = _results()
    csv_path = r.write_csv(tmp_path / "out" / "images.csv")
    lines = csv_path.read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS)
    assert lines[1] == "a,1,3,6,4,0.4,1"
    back = DetectionResults.read_csv(csv_path, delta=0.4)
    assert back == r
    obj = json.loads(r.write_json(tmp_path / "images.json").read_text())
    assert obj["delta"] == 0.4 and "score 0" in obj["rule"]
    assert obj["images"][3] == {"name": "d", "true_label": 0, "num_I": 0, "num_N": 1, "num_P": 3,
                                "score": 0.75, "decision": 1}
    assert obj["metrics"]["sensitivity"] == 0.5
    # NaN metrics (no positive image) are written as null, keeping the file valid JSON
    neg = detect_images(np.array([[0, 5, 1]]), true_labels=[0])
    assert json.loads(neg.write_json(tmp_path / "n.json").read_text())["metrics"]["sensitivity"] is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    (tmp_path / "bad.csv").write_text("name,score\nx,1\n")
    with pytest.raises(DataError, match="header"):
        DetectionResults.read_csv(tmp_path / "bad.csv")
