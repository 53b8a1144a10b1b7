"""``sldpack.pipelines.study`` / ``study_report``: the grid, resumable cells, paired bootstrap, min-images."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sldpack.errors import UsageError
from sldpack.medical.metrics import binary_metrics
from sldpack.pipelines.inputs import DataSpec, RuntimeSpec
from sldpack.pipelines.stats import hm_of
from sldpack.pipelines.stats import image_bootstrap as paired_bootstrap_hm
from sldpack.pipelines.study import Cell, CellProgress, Row, StudyGrid, execute_cell, plan_cells, plan_rows
from sldpack.pipelines.study_report import RowSummary, min_images
from sldpack.pipelines.study_scheduler import run_study

SPEC = DataSpec(phantom=12, phantom_size=64, patch_size=16, stride=8)
RT = RuntimeSpec(device="cpu", threads=1)
TINY = StudyGrid(seeds=(0, 1), images_per_class=(1,), methods=("sldd",), normal=("all",),
                 arch_options={"depth": 2, "width": 8},
                 distill={"steps": 2, "iterations": 3, "batch_real": 12, "checkpoint_every": 1, "bn_batches": 2,
                          "bn_batch_size": 32},
                 train={"steps": 4, "batch_size": 16}, bootstrap=200, baselines=())


def in_process(calls: list[str], kill_at: int | None = None) -> Any:
    """A launcher running cells in this process; raises KeyboardInterrupt (a kill) at call ``kill_at``."""
    def launch(cfg: Path, res: Path, log: Path) -> int:
        calls.append(cfg.parent.name)
        if kill_at is not None and len(calls) == kill_at:
            raise KeyboardInterrupt
        execute_cell(cfg, res)
        return 0
    return launch


# --- statistics ---------------------------------------------------------------------------------------

def test_hm_of_matches_binary_metrics() -> None:
    rng = np.random.default_rng(0)
    t = rng.integers(0, 2, 50)
    p = rng.integers(0, 2, 50)
    assert hm_of(t, p) == pytest.approx(binary_metrics(t, p).hm, abs=1e-12)
    assert np.isnan(hm_of(np.ones(5), np.ones(5)))  # no negatives: HM undefined


def test_paired_bootstrap_known_answers() -> None:
    true = np.array([0] * 20 + [1] * 20)
    perfect = np.stack([true, true])
    all_pos = np.ones((2, 40), dtype=np.int64)
    # A perfect, B calls everything positive (Spe 0, HM 0): HM(A) - HM(B) = 1 in every resample
    d, lo, hi = paired_bootstrap_hm(true, perfect, all_pos, resamples=500, seed=1)
    assert (d, lo, hi) == (1.0, 1.0, 1.0)
    d, lo, hi = paired_bootstrap_hm(true, perfect, perfect, resamples=500, seed=1)
    assert (d, lo, hi) == (0.0, 0.0, 0.0)
    # B misses half the positives: HM(B) = 2*0.5*1/1.5 = 2/3 on the full set
    half = perfect.copy()
    half[:, 20:30] = 0
    d, lo, hi = paired_bootstrap_hm(true, perfect, half, resamples=2000, seed=3)
    assert d == pytest.approx(1 / 3)
    assert 0.0 < lo < d < hi < 1.0
    # seeded: the same call gives the same interval
    assert paired_bootstrap_hm(true, perfect, half, resamples=2000, seed=3) == (d, lo, hi)


def test_paired_bootstrap_ci_narrows_with_more_images() -> None:
    rng = np.random.default_rng(5)
    widths = []
    for n in (40, 400):
        t = np.repeat([0, 1], n // 2)
        a = np.where(rng.random(n) < 0.85, t, 1 - t)[None]
        b = np.where(rng.random(n) < 0.75, t, 1 - t)[None]
        _, lo, hi = paired_bootstrap_hm(t, a, b, resamples=1000, seed=0)
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def _summary(method: str, k: int, hms: list[float], params: int = 1000) -> RowSummary:
    runs = [{"config": {"seed": s}, "metrics": {"hm": v}, "n_params": params, "bytes": 10, "wall_seconds": 1.0}
            for s, v in enumerate(hms)]
    return RowSummary((method, k, "convnet@1", False, ""), f"{method}({k})", runs)


def test_min_images_picks_the_smallest_k_reaching_the_target() -> None:
    rows = [_summary("sldd", 4, [0.9, 0.92]), _summary("sldd", 1, [0.6, 0.7]), _summary("sldd", 2, [0.79, 0.83]),
            _summary("dd", 1, [0.5, 0.5]), _summary("dd", 2, [0.6, 0.7])]
    out = {m["method"]: m for m in min_images(rows, 0.8)}
    assert out["sldd"]["min_k"] == 2  # mean 0.81 >= 0.8; k=1 (0.65) does not reach it; k=4 is larger
    assert out["sldd"]["hm_at_min_k"] == pytest.approx(0.81)
    assert out["sldd"]["n_params"] == 1000
    assert out["dd"]["min_k"] is None


# --- the grid -----------------------------------------------------------------------------------------

def test_rows_of_each_kind() -> None:
    t1 = StudyGrid(images_per_class=(2, 1), normal=("all", 50))
    labels = [r.label() for r in plan_rows(t1)]
    assert labels == ["SLDD(1/class)", "SLDD(2/class)", "DD(1/class)", "DD(2/class)", "random(1/class)",
                      "random(2/class)", "normal(all)", "normal(50/class)", "trivial (mean intensity)"]
    assert [r.label() for r in plan_rows(StudyGrid(normal=(), baselines=("trivial",)))] == [
        "SLDD(1/class)", "DD(1/class)", "trivial (mean intensity)"]
    with pytest.raises(UsageError, match="baselines must be among"):
        StudyGrid(baselines=("nearest",)).validate()
    bn = plan_rows(StudyGrid(kind="batchnorm", methods=("sldd",), normal=()))
    assert [(r.method, r.batchnorm) for r in bn] == [("sldd", False), ("sldd", True)]
    mi = plan_rows(StudyGrid(kind="min-images", archs=("convnet@1", "lenet@1"), images_per_class=(1, 2), normal=()))
    assert len(mi) == 8 + 4 + 1 and {r.arch for r in mi} == {"convnet@1", "lenet@1"}  # + random(k) + trivial
    cells = plan_cells(StudyGrid(seeds=(3, 4), baselines=()))
    assert [c.seed for c in cells] == [3, 3, 3, 4, 4, 4]
    assert Cell(Row("sldd", 2, "convnet@1", True), 1).id == "sldd-2-convnetv1-bn-s1"


def test_grid_from_toml_and_its_errors(tmp_path: Path) -> None:
    p = tmp_path / "g.toml"
    p.write_text('kind = "min-images"\nseeds = [0, 1]\nimages_per_class = [1, 2]\nnormal = []\n'
                 'target_hm = 0.7\n[distill]\niterations = 5\nselect = "val-hm"\n[arch_options."convnet@1"]\n'
                 'width = 8\n')
    g = StudyGrid.from_toml(p)
    g.validate()
    assert g.kind == "min-images" and g.seeds == (0, 1) and g.options_for("convnet@1") == {"width": 8}
    assert g.options_for("lenet@1") == {}
    p.write_text("kind = 'table1'\ncolour = 3\n")
    with pytest.raises(UsageError, match="unknown keys"):
        StudyGrid.from_toml(p)
    p.write_text("kind = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        StudyGrid.from_toml(p)
    with pytest.raises(UsageError, match="unknown settings"):
        StudyGrid(distill={"iteratoins": 3}).validate()
    with pytest.raises(UsageError, match="may not set"):
        StudyGrid(distill={"mode": "dd"}).validate()
    with pytest.raises(UsageError, match="kind"):
        StudyGrid(kind="table9").validate()


def test_grid_reader_falls_back_to_tomli_without_tomllib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Python 3.10 has no tomllib: the reader must use tomli (a test double here, so tomli need not be installed)
    import tomllib

    calls: list[str] = []
    fake = types.ModuleType("tomli")

    def loads(text: str) -> dict[str, Any]:
        calls.append(text)
        return tomllib.loads(text)

    fake.loads = loads  # type: ignore[attr-defined]
    fake.TOMLDecodeError = tomllib.TOMLDecodeError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` now raises ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "tomli", fake)
    p = tmp_path / "g.toml"
    p.write_text('kind = "table1"\nseeds = [3]\n')
    g = StudyGrid.from_toml(p)
    assert g.kind == "table1" and g.seeds == (3,) and len(calls) == 1
    p.write_text("kind = \n")
    with pytest.raises(UsageError, match="not valid TOML"):
        StudyGrid.from_toml(p)
    monkeypatch.setitem(sys.modules, "tomli", None)  # 3.10 without the dependency: a clear error, not a crash
    with pytest.raises(UsageError, match="needs tomli"):
        StudyGrid.from_toml(p)


def test_ablation_rows_cells_and_validation() -> None:
    from sldpack.pipelines.study import cell_config

    g = StudyGrid(kind="ablation", methods=("sldd",), normal=("all",), arch_options={"width": 8},
                  distill={"iterations": 5, "lr": 0.01},
                  variants={"lr-0.03": {"lr": 0.03}, "wide": {"arch_options": {"width": 16}}})
    g.validate()
    rows = plan_rows(g)
    assert [r.label() for r in rows] == ["SLDD(1/class)", "SLDD(1/class) [lr-0.03]", "SLDD(1/class) [wide]",
                                         "normal(all)"]
    assert [r.slug for r in rows][:3] == ["sldd-1-convnetv1", "sldd-1-convnetv1-v-lr-0.03",
                                          "sldd-1-convnetv1-v-wide"]
    base, lr, wide, normal = (cell_config(g, Cell(r, 0), SPEC, RT) for r in rows)
    assert base["distill"] == {"iterations": 5, "lr": 0.01} and "variant" not in base  # identity kept
    assert lr["distill"] == {"iterations": 5, "lr": 0.03} and lr["variant"] == "lr-0.03"
    assert wide["arch_options"] == {"width": 16} and wide["distill"] == base["distill"]
    assert "variant" not in normal and normal["arch_options"] == {"width": 8}
    assert StudyGrid.from_obj(g.to_obj()) == g
    assert "variants" not in StudyGrid().to_obj()  # older study.json files stay as they were
    for bad, match in (({"kind": "ablation"}, "needs \\[variants"),
                       ({"variants": {"a": {"lr": 0.1}}}, "belong to kind"),
                       ({"kind": "ablation", "variants": {"Bad Name": {"lr": 0.1}}}, "variant name"),
                       ({"kind": "ablation", "variants": {"baseline": {"lr": 0.1}}}, "variant name"),
                       ({"kind": "ablation", "variants": {"a": {}}}, "at least one setting"),
                       ({"kind": "ablation", "variants": {"a": {"lrr": 0.1}}}, "unknown settings"),
                       ({"kind": "ablation", "variants": {"lr-0": {"03": {"lr": 0.03}}}}, "must be quoted"),
                       ({"kind": "ablation", "variants": {"a": {"mode": "dd"}}}, "may not set"),
                       ({"kind": "ablation", "variants": {"a": {"lr": -1.0}}}, r"variants\.a.*lr"),
                       ({"kind": "ablation", "methods": (), "variants": {"a": {"lr": 0.1}}}, "method")):
        with pytest.raises(UsageError, match=match):
            StudyGrid(**bad).validate()


def test_tiny_ablation_study_compares_each_variant_with_the_baseline(tmp_path: Path) -> None:
    grid = StudyGrid(**{**TINY.__dict__, "kind": "ablation", "normal": (),
                        "variants": {"noise": {"image_init": "noise"}}})
    out = run_study(tmp_path, grid, SPEC, RT, launcher=in_process([]))
    assert len(out.ran) == 4 and not out.failed
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["row"] for r in doc["rows"]] == ["SLDD(1/class) [baseline]", "SLDD(1/class) [noise]"]
    assert [(c["a"], c["b"]) for c in doc["comparisons"]] == [("SLDD(1/class) [noise]", "SLDD(1/class) [baseline]")]
    assert doc["comparisons"][0]["seeds"] == [0, 1]
    md = (tmp_path / "table.md").read_text()
    assert '| noise | `{"image_init": "noise"}` |' in md
    # every effective setting, the distiller defaults included, and where the rows differ
    from sldpack.nn.config import DistillConfig

    dist = doc["settings"]["groups"]["distill"]
    assert dist["common"]["inner_lr"] == DistillConfig().inner_lr and dist["common"]["iterations"] == 3
    assert dist["common"]["val_fraction"] == 0.2 and dist["common"]["arch_options"] == {"depth": 2, "width": 8}
    assert dist["by_row"] == {"SLDD(1/class) [baseline]": {"image_init": "real"},
                              "SLDD(1/class) [noise]": {"image_init": "noise"}}
    assert f"| inner_lr | `{DistillConfig().inner_lr}` |" in md and '| delta | `"file"` |' in md
    cells = doc["settings"]["cells"]
    assert len(cells) == 4 and all(1 <= c["selected_iteration"] <= 3 and c["iterations"] == 3 for c in cells)
    assert "| SLDD(1/class) [noise] | " in md.split("Selected iteration per cell")[1]
    # the distilled images of the four cells in one figure: 2 rows x 2 seeds
    with Image.open(tmp_path / "montages.png") as im:
        one = Image.open(tmp_path / "cells" / "sldd-1-convnetv1-s0" / "run" / "montage.png")
        assert im.width > 2 * one.width and im.height > 2 * one.height
    with (tmp_path / "runs.csv").open() as fh:
        assert sorted(r["variant"] for r in csv.DictReader(fh)) == ["", "", "noise", "noise"]


# --- running ------------------------------------------------------------------------------------------

def _rows_without_time(root: Path) -> list[dict[str, Any]]:
    doc = json.loads((root / "results.json").read_text())
    for r in doc["rows"]:
        r.pop("wall_seconds")
    return list(doc["rows"])


def test_tiny_phantom_study_writes_every_output_and_resumes_after_a_kill(tmp_path: Path) -> None:
    clean = tmp_path / "clean"
    calls: list[str] = []
    out = run_study(clean, TINY, SPEC, RT, launcher=in_process(calls))
    assert len(out.ran) == 4 and not out.failed and len(calls) == 4
    for name in ("table.md", "rows.csv", "runs.csv", "comparisons.csv", "results.json", "hm_vs_bytes.png",
                 "comparisons.png"):
        assert (clean / name).is_file(), name
    with Image.open(clean / "hm_vs_bytes.png") as im:
        assert im.size == (900, 560)
    with (clean / "rows.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["row"] for r in rows] == ["SLDD(1/class)", "normal(all)"]
    assert all(r["runs"] == "2" for r in rows)
    with (clean / "runs.csv").open() as fh:
        runs = list(csv.DictReader(fh))
    assert len(runs) == 4 and all(0.0 <= float(r["hm"]) <= 1.0 for r in runs)
    sldd = [r for r in runs if r["method"] == "sldd"]
    assert all(int(r["bytes"]) > 1000 for r in sldd)  # the .sldp file size
    doc = json.loads((clean / "results.json").read_text())
    assert [(c["a"], c["b"]) for c in doc["comparisons"]] == [("SLDD(1/class)", "normal(all)")]
    assert "SLDD(1/class)" in (clean / "table.md").read_text()
    normal = json.loads((clean / "cells" / "normal-all-convnetv1-s0.json").read_text())
    assert normal["resumed_from_step"] is None  # trained from the start ...
    assert not (clean / "cells" / "normal-all-convnetv1-s0" / "train_checkpoint.pt").exists()  # ... and tidied

    # killed at the third cell: two results exist; the rerun skips them and gives the same table
    killed = tmp_path / "killed"
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_study(killed, TINY, SPEC, RT, launcher=in_process(calls, kill_at=3))
    assert len(list((killed / "cells").glob("*.json"))) == 2
    calls = []
    out = run_study(killed, TINY, SPEC, RT, launcher=in_process(calls))
    assert len(out.skipped) == 2 and len(out.ran) == 2 and len(calls) == 2
    assert _rows_without_time(killed) == _rows_without_time(clean)
    # nothing left to do: everything skipped
    calls = []
    out = run_study(killed, TINY, SPEC, RT, launcher=in_process(calls))
    assert len(out.skipped) == 4 and calls == []
    # a finished cell made with other distiller defaults (another version) is refused too
    cell = killed / "cells" / "sldd-1-convnetv1-s0.json"
    doc = json.loads(cell.read_text())
    doc["config"]["distill_defaults"]["lr_lrs"] = 0.001
    cell.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="other settings"):
        run_study(killed, TINY, SPEC, RT, launcher=in_process([]))
    # other settings in the same folder are refused, not mixed into the table, and study.json (what
    # --report-only reports) is left as it was: validated, then written
    recorded = (killed / "study.json").read_bytes()
    with pytest.raises(UsageError, match="other settings"):
        run_study(killed, StudyGrid(**{**TINY.__dict__, "train": {"steps": 5, "batch_size": 16}}), SPEC, RT,
                  launcher=in_process([]))
    assert (killed / "study.json").read_bytes() == recorded


def test_a_killed_distillation_cell_resumes_its_run_directory(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from sldpack.pipelines.study import cell_config

    grid = StudyGrid(**{**TINY.__dict__, "seeds": (0,), "normal": ()})
    cell = plan_cells(grid)[0]
    cfg = cell_config(grid, cell, SPEC, RT)
    d = tmp_path / "cells" / cell.id
    d.mkdir(parents=True)
    (d / "cell.json").write_text(json.dumps(cfg))
    # a first attempt stopped after iteration 2 of 3 (checkpoint every iteration)
    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.pipelines.selection import open_for_selection

    class KilledError(Exception):
        pass

    def stop(done: int, _loss: float) -> None:
        if done == 2:
            raise KilledError

    dcfg = DistillConfig(arch_options={"depth": 2, "width": 8}, mode="sldd", images_per_class=1, seed=0,
                         device="cpu", **grid.distill)
    chosen = open_for_selection(SPEC, dcfg.select)  # as the cell does: the default auto holds out images
    assert chosen.scorer is not None
    with pytest.raises(KilledError):
        distill(chosen.opened.source, dcfg, run_dir=d / "run", on_iteration=stop, scorer=chosen.scorer)
    capsys.readouterr()
    lines: list[str] = []
    run_study(tmp_path, grid, SPEC, RT, launcher=in_process([]), log=lines.append)
    res = json.loads((tmp_path / "cells" / f"{cell.id}.json").read_text())
    assert res["resumed_from"] == 2
    assert "resumed from iteration 2 of 3" in capsys.readouterr().out  # the cell's own line (its job.log)
    assert any(ln.startswith("[1/1] SLDD(1/class) seed 0") and "resumed from iteration 2" in ln for ln in lines)
    assert "; resumed from 2" in (tmp_path / "table.md").read_text()
    execute_cell_fresh = tmp_path / "fresh"
    (execute_cell_fresh).mkdir()
    (execute_cell_fresh / "cell.json").write_text(json.dumps(cfg))
    execute_cell(execute_cell_fresh / "cell.json", tmp_path / "fresh.json")
    fresh = json.loads((tmp_path / "fresh.json").read_text())
    assert fresh["theta_opt_sha256"] == res["theta_opt_sha256"]  # resuming changed nothing
    assert fresh["metrics"] == res["metrics"]


def test_study_refuses_bad_options(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--split"):
        run_study(tmp_path / "s", TINY, DataSpec(phantom=12, split="train"), RT, launcher=in_process([]))
    with pytest.raises(UsageError, match="jobs"):
        run_study(tmp_path / "s", TINY, SPEC, RT, jobs=0, launcher=in_process([]))
    with pytest.raises(UsageError, match="exactly one data source"):
        run_study(tmp_path / "s", TINY, DataSpec(), RT, launcher=in_process([]))


def test_a_cell_with_validation_selection_records_the_rule(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from sldpack.pipelines.study import cell_config

    grid = StudyGrid(**{**TINY.__dict__, "seeds": (0,), "normal": (),
                        "distill": {**TINY.distill, "select": "val-acc", "select_every": 1, "val_fraction": 0.25}})
    grid.validate()
    cell = plan_cells(grid)[0]
    d = tmp_path / cell.id
    d.mkdir()
    (d / "cell.json").write_text(json.dumps(cell_config(grid, cell, SPEC, RT)))
    import sys

    import sldpack

    command = ["sldp", "study", "--grid", "g.toml", "--out", "s"]
    argv_before = list(sys.argv)
    execute_cell(d / "cell.json", tmp_path / "r.json", command=command)
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["selection"]["rule"] == "val-acc" and "held out by image" in res["selection"]["held_out"]
    # the user's command is the file's command line (and this process's own is left as it was)
    assert sldpack.open(d / "run" / "distilled.sldp").manifest.provenance.command_line == tuple(command)
    assert sys.argv == argv_before
    # its progress lines carry the held-out score of every scored iteration (select_every 1)
    out = capsys.readouterr().out
    progress = [p for p in map(CellProgress.parse, out.splitlines()) if p is not None]
    assert [p.done for p in progress] == [1, 2, 3] and all(p.unit == "iteration" for p in progress)
    assert [p.held_out[0] for p in progress if p.held_out] == ["val-acc"] * 3
    assert [p.held_out[2] for p in progress if p.held_out] == [1, 2, 3]
    assert 1 <= res["selected_iteration"] <= 3
    # the test images are the test split, never the held-out part of the training images
    assert res["test"]["split"] == "test" and res["test"]["images"] == len(SPEC.select("test").data)


def test_settings_of_a_study_without_finished_cells_add_no_empty_tables() -> None:
    from sldpack.pipelines.study_report import _settings_markdown, effective_settings

    settings = effective_settings({"rows": []}, [])
    assert settings == {"groups": {}, "eval": {"common": {}, "by_row": {}}, "cells": []}
    assert _settings_markdown(settings) == []


# --- watching a study ---------------------------------------------------------------------------------

def test_progress_lines_round_trip() -> None:
    p = CellProgress("iteration", 120, 300, 0.41234, 75.0, 3725.0, ("val-hm", 0.7312, 100))
    assert p.line() == ("progress: iteration 120/300, loss 0.4123, held-out val-hm 0.7312 at 100, "
                        "elapsed 0:01:15, ETA 1:02:05")
    back = CellProgress.parse(p.line())
    assert back is not None and (back.done, back.total, back.eta, back.held_out) == (120, 300, 3725.0,
                                                                                     ("val-hm", 0.7312, 100))
    first = CellProgress("step", 1, 500, 1.0, 2.0, None)
    assert CellProgress.parse(first.line()) == first
    assert CellProgress.parse("cell x: sldd k=1 seed 0") is None


def test_baseline_rows_trivial_and_random_k(tmp_path: Path) -> None:
    """random(k): k real training images per class (drawn with the cell's seed), hard labels, only the step
    sizes learned, a .sldp that replays; trivial: a threshold fitted on the training split. Both are
    compared with the distilled row, seed-aware."""
    import sldpack
    from sldpack.nn.verify import verify_replay
    from sldpack.pipelines.selection import open_for_selection

    grid = StudyGrid(**{**TINY.__dict__, "seeds": (0, 1), "normal": (), "baselines": None})
    out = run_study(tmp_path, grid, SPEC, RT, launcher=in_process([]))
    assert not out.failed and len(out.ran) == 6  # (SLDD, random, trivial) x 2 seeds
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["row"] for r in doc["rows"]] == ["SLDD(1/class)", "random(1/class)", "trivial (mean intensity)"]
    pairs = [(c["a"], c["b"]) for c in doc["comparisons"]]
    assert ("SLDD(1/class)", "random(1/class)") in pairs and ("SLDD(1/class)", "trivial (mean intensity)") in pairs
    for seed in (0, 1):
        path = tmp_path / "cells" / f"random-1-convnetv1-s{seed}" / "run" / "distilled.sldp"
        f = sldpack.open(path)
        m = f.manifest
        assert m.distill is not None and m.distill.method == "dd" and m.distill.options["train_images"] is False
        stored = f.tensor("images")
        # the images are the real training patches the engine drew with the cell's seed, byte for byte: the
        # source the cell distilled from (auto selection holds images out), sampled as documented
        source = open_for_selection(SPEC, "auto").opened.source
        x, y = source.sample(source.num_classes, np.random.default_rng([seed, 2]), balanced=True)
        real = np.stack([x[y == c][0] for c in range(source.num_classes)]).astype(np.float32)
        assert stored.tobytes() == real.tobytes()
        assert not np.array_equal(f.tensor("lrs"), np.full_like(f.tensor("lrs"), 0.1))  # the step sizes learned
        assert verify_replay(path).ok  # packed and replayable like any other row
        f.close()
    trivial = json.loads((tmp_path / "cells" / "trivial-all-convnetv1-s0.json").read_text())
    assert trivial["trivial_rule"]["train_images"] > 0 and trivial["bytes"] is None
    assert trivial["metrics"]["auc"] is not None
