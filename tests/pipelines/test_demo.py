"""The demo pipeline: interrupted runs resume from the distiller's checkpoint, same seed -> same file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import sldpack
from sldpack.errors import UsageError
from sldpack.pipelines.demo import DemoConfig, bar_chart, render_summary, run_demo


def test_interrupted_demo_keeps_the_checkpoint_and_resumes(tmp_path: Path) -> None:
    cfg = DemoConfig.tiny(seed=1)
    out = tmp_path / "demo"

    def stop_at_3(p: Any) -> None:
        if p.iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_demo(cfg, out, progress=stop_at_3)
    assert (out / "run" / "checkpoint.pt").is_file()  # saved at iteration 2 (checkpoint_every=2)
    assert not (out / "demo.sldp").exists()
    seen: list[int] = []
    res = run_demo(cfg, out, progress=lambda p: seen.append(p.iteration))
    assert res.summary["distill"]["resumed_from"] == 2
    assert seen == [3, 4, 5]
    assert res.ok
    # the resumed run equals an uninterrupted one with the same seed, bit for bit
    ref = run_demo(cfg, tmp_path / "ref")
    with sldpack.open(out / "demo.sldp") as a, sldpack.open(tmp_path / "ref" / "demo.sldp") as b:
        assert a.manifest.replay is not None
        assert b.manifest.replay is not None
        assert a.manifest.replay.theta_opt_sha256 == b.manifest.replay.theta_opt_sha256
        assert a.arrays().keys() == b.arrays().keys()
        for name in a.manifest.tensors:
            assert (a.tensor(name) == b.tensor(name)).all(), name
    assert ref.summary["eval"]["image"] == res.summary["eval"]["image"]
    text = render_summary(res.summary)
    assert "HM" in text
    assert "sldp eval" in text


def test_demo_rejects_impossible_settings(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="at least 4"):
        run_demo(DemoConfig(n_images=3), tmp_path)
    with pytest.raises(UsageError, match="exceeds"):
        run_demo(DemoConfig(size=16, patch_size=32), tmp_path)


def test_bar_chart_draws_every_row() -> None:
    img = bar_chart([("a", 1000), ("b", 2_000_000)], title="t")
    assert img.size[0] == 760
    assert img.size[1] > 2 * 44
    with pytest.raises(UsageError):
        bar_chart([("zero", 0)], title="t")
