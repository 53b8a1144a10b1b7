"""CLI tests for inspect, verify and conformance (click's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import sldpack
from sldpack.cli.main import cli

CORPUS = Path(__file__).resolve().parents[2] / "spec" / "conformance"


@pytest.fixture
def sldp_file(tmp_path: Path) -> Path:
    m = sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 3, (4, 4)), init=sldpack.InitSpec(seed=3),
                         provenance=sldpack.Provenance("test", "2026-11-27T00:00:00Z"),
                         labels=sldpack.LabelSpec(("I", "N", "P")))
    p = tmp_path / "x.sldp"
    sldpack.write(p, m, {"images": sldpack.Tensor("images", np.zeros((1, 1, 4, 4), np.float32)),
                         "lrs": sldpack.Tensor("lrs", np.array([0.1], np.float32))})
    return p


def test_inspect_human_and_json(sldp_file: Path) -> None:
    r = CliRunner().invoke(cli, ["inspect", str(sldp_file)])
    assert r.exit_code == 0, r.output
    assert "convnet@1" in r.output
    assert "I, N, P" in r.output
    assert "images" in r.output
    r = CliRunner().invoke(cli, ["inspect", "--json", str(sldp_file)])
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["manifest"]["arch"]["id"] == "convnet@1"
    assert doc["file_size"] == sldp_file.stat().st_size
    assert doc["layout"]["tensor_bytes"] == {"images": 64, "lrs": 4}


def test_verify_ok_then_damaged(sldp_file: Path) -> None:
    r = CliRunner().invoke(cli, ["verify", str(sldp_file)])
    assert r.exit_code == 0, r.output
    assert "verified" in r.output
    data = bytearray(sldp_file.read_bytes())
    data[-1] ^= 1
    sldp_file.write_bytes(bytes(data))
    r = CliRunner().invoke(cli, ["verify", "--json", str(sldp_file)])
    assert r.exit_code == 1  # digest mismatch = verification failed
    doc = json.loads(r.output)
    assert doc["error"]["code"] == "E_TENSOR_DIGEST"
    assert doc["error"]["offset"] == sldp_file.stat().st_size - 4  # first byte of the damaged "lrs" tensor


def test_bad_input_exit_code_2(tmp_path: Path) -> None:
    p = tmp_path / "not.sldp"
    p.write_bytes(b"hello world, not an sldp file at all, long enough for a header.......")
    r = CliRunner().invoke(cli, ["inspect", str(p)])
    assert r.exit_code == 2
    assert "E_MAGIC" in r.output
    r = CliRunner().invoke(cli, ["verify", str(tmp_path / "missing.sldp")])
    assert r.exit_code == 2
    assert "E_IO" in r.output


def test_inspect_does_not_touch_payload(sldp_file: Path) -> None:
    data = bytearray(sldp_file.read_bytes())
    data[-1] ^= 1  # damaged payload: inspect still works, verify does not
    sldp_file.write_bytes(bytes(data))
    assert CliRunner().invoke(cli, ["inspect", str(sldp_file)]).exit_code == 0


def test_conformance_command() -> None:
    r = CliRunner().invoke(cli, ["conformance", str(CORPUS)])
    assert r.exit_code == 0, r.output[-2000:]
    assert "0 failed" in r.output
    r = CliRunner().invoke(cli, ["conformance", "--json", str(CORPUS)])
    doc = json.loads(r.output)
    assert doc["failed"] == 0
    assert doc["passed"] == len(json.loads((CORPUS / "index.json").read_text())["cases"])


def test_conformance_on_non_corpus(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["conformance", str(tmp_path)])
    assert r.exit_code == 2


def test_help_lists_commands_without_importing_them() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    for name in ("inspect", "verify", "distill", "replay", "demo", "report", "audit", "conformance"):
        assert name in r.output
