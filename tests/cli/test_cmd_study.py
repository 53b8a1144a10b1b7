"""``sldp study`` end to end (cells in their own processes) and ``sldp distill --select val-hm``."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sldpack.cli.main import cli, main

DATA = ["--phantom", "12", "--phantom-size", "64", "--patch-size", "16", "--stride", "8"]
TINY = ["--arch-option", "depth=2", "--arch-option", "width=8", "--steps", "2", "--iterations", "3",
        "--device", "cpu", "--bootstrap", "200"]


@pytest.fixture(autouse=True)
def _restore_threads() -> object:
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


def _exit_code(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0), capsys.readouterr().err


def test_study_runs_cells_in_parallel_processes_and_skips_them_on_rerun(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import sldpack

    out = tmp_path / "study"
    argv = ["study", *DATA, *TINY, "--methods", "sldd", "--normal", "none", "--baselines", "none", "--seeds", "0,1",
            "--jobs", "2",
            "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/sldp", *argv])  # as typed in a shell
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 0, r.output
    assert "2 cell(s) run, 0 skipped, 0 failed" in r.stdout
    assert "[2/2] SLDD(1/class) seed" in r.stderr and "ETA" in r.stderr
    # each cell's progress on screen, read from its job.log; which iteration the first look finds depends on
    # how fast the cell runs (under load the scheduler may first see iteration 3), so any of 1..3
    for seed in (0, 1):
        assert re.search(rf"  SLDD\(1/class\) seed {seed}: iteration [123]/3, loss ", r.stderr), r.stderr
    assert "study ETA" in r.stderr
    table = (out / "table.md").read_text()
    assert "| SLDD(1/class) | 2 |" in table
    assert table in r.stdout  # the table itself is printed, not only its path
    assert (out / "cells" / "sldd-1-convnetv1-s0" / "run" / "distilled.sldp").is_file()
    assert json.loads((out / "study.json").read_text())["command"] == ["sldp", *argv]
    job_log = (out / "cells" / "sldd-1-convnetv1-s0" / "job.log").read_text()
    assert "progress: iteration 3/3, loss " in job_log and "result: test HM " in job_log
    # the cell's file names the user's command, not the job's `study.py cell.json result.json`
    man = sldpack.open(out / "cells" / "sldd-1-convnetv1-s1" / "run" / "distilled.sldp").manifest
    assert man.provenance.command_line == ("sldp", *argv)
    assert (out / "montages.png").is_file()
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 0 and "0 cell(s) run, 2 skipped" in r.stdout
    r = CliRunner().invoke(cli, ["study", "--out", str(out), "--report-only"])
    assert r.exit_code == 0 and "| SLDD(1/class) | 2 |" in r.stdout


def test_study_bad_input_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text("kind = 'table1'\nsedes = [0]\n")
    code, err = _exit_code(["study", "--grid", str(grid), *DATA, "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "unknown keys ['sedes']" in err and str(grid) in err
    code, err = _exit_code(["study", "--seeds", "0,x", *DATA, "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "--seeds" in err
    code, err = _exit_code(["study", "--data", str(tmp_path / "nope.npz"), "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "nope.npz" in err
    assert not (tmp_path / "s" / "cells").exists()  # nothing started on bad data
    code, err = _exit_code(["study", "--report-only", "--out", str(tmp_path / "none")], capsys)
    assert code == 2 and "not a study folder" in err


def test_distill_select_val_hm_records_how_the_iterate_was_chosen(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["distill", *DATA, "--arch-option", "depth=2", "--arch-option", "width=8",
                                 "--steps", "2", "--iterations", "4", "--batch-real", "12", "--device", "cpu",
                                 "--select", "val-hm", "--select-every", "2", "--val-fraction", "0.25",
                                 "--out", str(run)])
    assert r.exit_code == 0, r.output
    assert "selection: val-hm, image-level HM on" in r.stderr
    manifest = json.loads((run / "final" / "manifest.json").read_text())
    opts = manifest["distill"]["options"]
    assert opts["select"] == "val-hm" and opts["selection"]["rule"] == "val-hm"
    assert opts["selected_iteration"] in (2, 4) and "held out by image" in opts["selection"]["held_out"]
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    cands = [e for e in events if e.get("event") == "candidate"]
    assert [e["iteration"] for e in cands] == [2, 4]
    best = max(cands, key=lambda e: (e["score"], -e["iteration"]))
    assert opts["selected_iteration"] == best["iteration"]


def test_study_folder_is_locked_and_never_someone_elses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl
    import os

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "study.json").write_text("{}")
    fd = os.open(busy / ".sldp.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another `sldp study --out busy` running
        code, err = _exit_code(["study", *DATA, "--out", str(busy)], capsys)
    finally:
        os.close(fd)
    assert code == 2 and "is in use by" in err
    assert not (busy / "cells").exists()  # that study's folder: nothing run into it
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    code, err = _exit_code(["study", *DATA, "--out", str(mine)], capsys)
    assert code == 2 and "holds no study" in err and "notes.txt" in err
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]  # not even a lock file left in it
