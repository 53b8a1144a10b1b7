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


# --- calibrate_delta --------------------------------------------------------------------------------------

def test_calibrate_delta_finds_the_known_optimum() -> None:
    from sldpack.medical.detection import calibrate_delta

    # negatives score 0.05..0.25, positives 0.30..0.60: every delta in (0.25, 0.30] separates them perfectly,
    # and the midpoint 0.275 is the one chosen (the paper's 0.4 would miss the positives below 0.4)
    neg = np.linspace(0.05, 0.25, 9)
    pos = np.linspace(0.30, 0.60, 7)
    scores = np.concatenate([pos, neg])
    labels = np.array([1] * 7 + [0] * 9)
    cal = calibrate_delta(scores, labels)
    assert cal.delta == pytest.approx(0.275)
    assert (cal.hm, cal.sensitivity, cal.specificity, cal.images, cal.reached) == (1.0, 1.0, 1.0, 16, True)
    assert binary_metrics(labels, decide(scores, 0.4)).hm < 1.0
    # the order of the images does not matter
    perm = np.random.default_rng(0).permutation(16)
    assert calibrate_delta(scores[perm], labels[perm]) == cal


def test_calibrate_delta_matches_brute_force_on_random_scores() -> None:
    from sldpack.medical.detection import calibrate_delta

    rng = np.random.default_rng(7)
    for _ in range(20):
        labels = rng.integers(0, 2, 40)
        labels[:2] = [0, 1]
        scores = np.clip(rng.normal(0.3 + 0.2 * labels, 0.15), 0, 1).round(2)  # ties on purpose
        cal = calibrate_delta(scores, labels)
        grid = np.linspace(0.001, 1.0, 1000)
        best = max(binary_metrics(labels, decide(scores, d)).hm for d in grid)
        assert cal.hm == pytest.approx(best, abs=1e-12)
        assert binary_metrics(labels, decide(scores, cal.delta)).hm == pytest.approx(cal.hm, abs=1e-12)


def test_calibrate_delta_ties_go_to_the_paper_delta_then_the_smaller() -> None:
    from sldpack.medical.detection import calibrate_delta

    # negatives 0.1, 0.5; positives 0.3, 0.9. Candidates (midpoints): 0.05 HM 0, 0.2 (sen 1, spe .5) HM 2/3,
    # 0.4 (sen .5, spe .5) HM .5, 0.7 (sen .5, spe 1) HM 2/3, 0.95 HM 0: 0.2 and 0.7 tie
    scores = np.array([0.1, 0.5, 0.3, 0.9])
    labels = np.array([0, 0, 1, 1])
    assert calibrate_delta(scores, labels).delta == pytest.approx(0.2)  # nearer the paper's 0.4
    assert calibrate_delta(scores, labels).hm == pytest.approx(2 / 3)
    assert calibrate_delta(scores, labels, prefer=0.9).delta == pytest.approx(0.7)
    assert calibrate_delta(scores, labels, prefer=0.45).delta == pytest.approx(0.2)  # equidistant: the smaller


def test_calibrate_delta_target_sensitivity() -> None:
    from sldpack.medical.detection import calibrate_delta

    scores = np.array([0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.7, 0.8])
    labels = np.array([0, 0, 1, 0, 1, 0, 1, 1])
    cal = calibrate_delta(scores, labels, target="sensitivity>=1")
    assert cal.sensitivity == 1.0 and cal.reached
    assert cal.delta == pytest.approx(0.25)  # the most specific delta that still calls every positive
    assert cal.specificity == pytest.approx(0.5)
    half = calibrate_delta(scores, labels, target="sensitivity>=0.5")
    assert half.sensitivity >= 0.5 and half.specificity == 1.0 and half.delta == pytest.approx(0.65)
    # a positive scoring 0 can never be called: the most sensitive delta, flagged as not reached
    unreachable = calibrate_delta([0.0, 0.5, 0.1], [1, 1, 0], target="sensitivity>=1")
    assert not unreachable.reached and unreachable.sensitivity == 0.5


@pytest.mark.parametrize(("scores", "labels", "target", "exc", "match"), [
    ([0.1, 0.2], [1, 1], "max_hm", DataError, "positive and negative"),
    ([0.1, 1.2], [0, 1], "max_hm", UsageError, r"\[0, 1\]"),
    ([0.1], [0, 1], "max_hm", UsageError, "1 scores for 2 labels"),
    ([0.1, 0.2], [0, 1], "sensitivity>=2", UsageError, "calibration target"),
])
def test_calibrate_delta_bad_input(scores: list[float], labels: list[int], target: str,
                                   exc: type[Exception], match: str) -> None:
    from sldpack.medical.detection import calibrate_delta

    with pytest.raises(exc, match=match):
        calibrate_delta(scores, labels, target=target)


def test_calibration_record_round_trips_through_a_file() -> None:
    import sldpack
    from sldpack.medical.detection import calibrate_delta

    cal = calibrate_delta([0.1, 0.2, 0.3, 0.6], [0, 0, 1, 1])
    rule = sldpack.DecisionRule(rule="eq9", positive="P", negative="N", ignored=("I",), delta=cal.delta,
                                delta_source="calibrated", calibration=cal.as_calibration(iteration=40))
    m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 3, (8, 8)), init=sldpack.InitSpec(seed=1),
                         provenance=sldpack.Provenance("test", "2026-12-03T00:00:00Z"), decision=rule)
    f = sldpack.read(sldpack.encode(m, {}))
    assert f.manifest.decision == rule
    assert f.header.version_minor == 1
