"""``sldpack.pipelines.study_scheduler``: the study's ETA from measured cell times."""

from __future__ import annotations

import pytest

from sldpack.pipelines.study import Row
from sldpack.pipelines.study_scheduler import estimate_eta


def test_eta_from_measured_cell_times() -> None:
    a, b = Row("sldd", 1, "convnet@1", False), Row("normal", None, "convnet@1", False)
    # 2 slots, two cells of 10 s running for 9 s, two more queued: 1 + 10 s left (the old mean x cells left /
    # jobs said 20 s: it counted the running cells as not started)
    assert estimate_eta([(a, 9.0, None), (a, 9.0, None)], [a, a], {a: [10.0, 10.0]}, 2) == pytest.approx(11.0)
    # rows of different cost: each queued cell costs what its row measured
    assert estimate_eta([], [a, b], {a: [100.0], b: [1.0]}, 1) == pytest.approx(101.0)
    # nothing finished yet: a running cell's own progress projects its row (5 s elapsed + 15 s to go)
    assert estimate_eta([(a, 5.0, 15.0)], [a], {}, 1) == pytest.approx(35.0)
    # a running cell that reports more than its row's mean still needs it
    assert estimate_eta([(a, 5.0, 30.0)], [], {a: [10.0]}, 1) == pytest.approx(30.0)
    # an unmeasured row borrows its method's, then any, cell time; with nothing measured there is no ETA
    assert estimate_eta([], [Row("sldd", 2, "convnet@1", False)], {a: [8.0], b: [2.0]}, 1) == pytest.approx(8.0)
    assert estimate_eta([], [Row("dd", 1, "convnet@1", False)], {a: [8.0], b: [2.0]}, 1) == pytest.approx(5.0)
    assert estimate_eta([(a, 1.0, None)], [a], {}, 2) is None
    assert estimate_eta([], [], {}, 1) == 0.0
