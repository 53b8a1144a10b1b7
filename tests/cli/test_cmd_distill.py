"""End to end through the CLI: distill -> verify --replay -> replay -> pack, resume, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import sldpack
from sldpack.cli.main import cli, main


@pytest.fixture(autouse=True)
def _restore_threads() -> object:
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory, toy_images: tuple[np.ndarray, np.ndarray]) -> Path:
    x, y = toy_images
    p = tmp_path_factory.mktemp("data") / "toy.npz"
    np.savez(p, train_images=x, train_labels=y, test_images=x[:10], test_labels=y[:10])
    return p


ARGS = ["--arch-option", "depth=2", "--arch-option", "width=8", "--steps", "2", "--epochs", "1",
        "-K", "8", "--device", "cpu", "--threads", "1", "--checkpoint-every", "1", "--bn-batches", "2",
        "--batchnorm", "--lr", "0.05"]


def test_distill_verify_replay_pack_resume(npz: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["distill", "--data", str(npz), "--iterations", "3", "--out", str(run),
                                 "--class-names", "normal,pneumonia", *ARGS])
    assert r.exit_code == 0, r.output
    assert f"wrote {run / 'distilled.sldp'}" in r.output
    assert "iter 3/3" in r.output  # progress lines (not a TTY: periodic lines on stderr)
    sldp = run / "distilled.sldp"
    with sldpack.open(sldp) as f:
        assert f.manifest.labels is not None
        assert f.manifest.labels.names == ("normal", "pneumonia")
    # the lead's `verify --replay` on a second run re-derives theta_opt exactly
    r = CliRunner().invoke(cli, ["verify", "--replay", str(sldp)])
    assert r.exit_code == 0, r.output
    assert "replay exact" in r.output
    r = CliRunner().invoke(cli, ["replay", str(sldp), "--out", str(tmp_path / "m.safetensors"), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["fingerprint"] == "exact"
    assert doc["theta0"] == "match"
    assert (tmp_path / "m.safetensors").stat().st_size == doc["bytes"]
    r = CliRunner().invoke(cli, ["pack", str(run), "-o", str(tmp_path / "p.sldp"), "--compression", "zstd"])
    assert r.exit_code == 0, r.output
    with sldpack.open(sldp) as a, sldpack.open(tmp_path / "p.sldp") as b:
        assert a.manifest.replay == b.manifest.replay
        assert b.manifest.payload is not None
        assert b.manifest.payload.compression == "zstd"
    # a finished run continues for more iterations with --resume (settings come from run.json)
    r = CliRunner().invoke(cli, ["distill", "--data", str(npz), "--iterations", "5", "--out", str(run),
                                 "--resume", "-q", "--threads", "1"])
    assert r.exit_code == 0, r.output
    events = [json.loads(x).get("event") for x in (run / "log.jsonl").read_text().splitlines()]
    assert events.count("resume") == 1
    assert events[-1] == "done"
    losses = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [e["iteration"] for e in losses if "loss" in e] == [1, 2, 3, 4, 5]


def _exit_code(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return int(info.value.code or 0), capsys.readouterr().err


def test_usage_errors_exit_2(npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exit_code(["distill", "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    assert "--data" in err
    code, err = _exit_code(["distill", "--data", str(npz), "--split", "val", "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    assert "split" in err
    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["distill", "--data", str(npz), "--iterations", "1", "--out", str(run), "-q",
                                 *ARGS])
    assert r.exit_code == 0, r.output
    code, err = _exit_code(["distill", "--data", str(npz), "--iterations", "2", "--out", str(run), "--resume",
                            "--inner-lr", "0.5", "-q"], capsys)
    assert code == 2
    # the library names the fields (inner_lr); the command line names the options that set them
    assert "--inner-lr" in err and "--resume with different settings" in err
    assert "--select-every" in err and "inner_lr" not in err
    code, err = _exit_code(["pack", str(tmp_path), "-o", str(tmp_path / "x.sldp")], capsys)
    assert code == 2
    assert "manifest.json" in err
    # pack(tensors=...) is spelled --tensors on the command line
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "manifest.json").write_text("{}")
    code, err = _exit_code(["pack", str(lone / "manifest.json"), "-o", str(tmp_path / "x.sldp")], capsys)
    assert code == 2
    assert "name the tensor file with --tensors" in err
