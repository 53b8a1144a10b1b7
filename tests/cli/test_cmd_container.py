"""CLI tests for inspect, verify and conformance (click's CliRunner)."""

from __future__ import annotations

import json
import sys
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


# --- inspect --stored ----------------------------------------------------------------------------------

def test_inspect_stored_shows_only_what_the_file_stores(tmp_path: Path) -> None:
    import sldpack.format.canonical_msgpack as cm
    from sldpack.format.constants import HEADER_SIZE

    src = CORPUS / "valid" / "minimal.sldp"
    r = CliRunner().invoke(cli, ["inspect", "--json", "--stored", str(src)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    data = src.read_bytes()
    stored, _ = cm.decode(data[HEADER_SIZE:HEADER_SIZE + doc["header"]["manifest_length"]])
    assert doc["manifest"] == stored
    assert doc["manifest_view"] == "stored"
    # the typed view fills in defaults the file never stored; the stored view does not
    typed = json.loads(CliRunner().invoke(cli, ["inspect", "--json", str(src)]).output)["manifest"]
    assert "distill" not in doc["manifest"]
    assert set(doc["manifest"]) <= set(typed)
    r = CliRunner().invoke(cli, ["inspect", "--stored", str(src)])
    assert json.loads(r.output) == stored


# --- conformance --reader ----------------------------------------------------------------------------

MINIMAL = CORPUS / "tools" / "minimal_reader.py"
MINIMAL_CODES = "E_TRUNCATED,E_MAGIC,E_TEXT_MODE,E_VERSION_MAJOR,E_RESERVED,E_TRAILING,E_MANIFEST_DIGEST"


def _reader(tmp_path: Path, body: str) -> str:
    p = tmp_path / "reader.py"
    p.write_text("import json, sys, time\n" + body + "\n")
    return f"{sys.executable} {p} {{file}}"


def test_minimal_reader_is_standalone_and_passes_its_codes_strictly() -> None:
    assert "sldpack" not in MINIMAL.read_text().replace("not import sldpack", "")
    r = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--json", "--reader",
                                 f"{sys.executable} {MINIMAL} {{file}}", "--codes", MINIMAL_CODES, "--jobs", "2"])
    assert r.exit_code == 0, r.output[-3000:]
    doc = json.loads(r.output)
    assert doc["failed"] == 0 and doc["offsets"] == "compared"
    assert doc["passed"] >= 20  # 5 valid files + every header-level case


def test_minimal_reader_on_everything_fails_exactly_where_it_does_not_look() -> None:
    r = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--json", "--jobs", "2", "--reader",
                                 f"{sys.executable} {MINIMAL} {{file}}"])
    assert r.exit_code == 1
    doc = json.loads(r.output)
    index = {c["file"]: c for c in json.loads((CORPUS / "index.json").read_text())["cases"]}
    header_codes = set(MINIMAL_CODES.split(","))
    for case in doc["cases"]:
        want = index[case["file"]]
        header_level = want["expect"] == "valid" or want["code"] in header_codes or "length_over_limit" in case["file"]
        if header_level and case["file"] != "invalid/st_header_length_over_limit.sldp":
            assert case["passed"], case
        else:
            assert not case["passed"] and case["got"] == "accepted", case


def test_sldpack_reader_wrapped_as_external_command_passes_strictly() -> None:
    r = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--json", "--jobs", "2", "--reader",
                                 f"{sys.executable} -m sldpack.format.conformance --one {{file}}"])
    assert r.exit_code == 0, r.output[-3000:]
    doc = json.loads(r.output)
    assert doc["failed"] == 0
    assert doc["passed"] == len(json.loads((CORPUS / "index.json").read_text())["cases"])


def test_reader_protocol_failures(tmp_path: Path) -> None:
    one = ["--select", "invalid/bad_magic.sldp", "--select", "valid/minimal.sldp", "--json"]

    def run(body: str, *extra: str) -> dict[str, dict[str, object]]:
        r = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--reader", _reader(tmp_path, body), *one, *extra])
        assert r.exit_code == 1, r.output
        return {c["file"]: c for c in json.loads(r.output)["cases"]}

    crash = run("raise SystemExit(3)")
    assert all(str(c["got"]).startswith("CRASH exit 3") for c in crash.values())
    silent = run("pass")
    assert all(c["got"] == "BAD OUTPUT no output" for c in silent.values())
    slow = run("time.sleep(5)", "--timeout", "0.5")
    assert all(str(c["got"]).startswith("TIMEOUT") for c in slow.values())
    wrong_offset = 'print(json.dumps({"valid": False, "code": "E_MAGIC", "offset": 3}))'
    strict = run(wrong_offset)
    assert not strict["invalid/bad_magic.sldp"]["passed"]
    assert strict["valid/minimal.sldp"]["got"] == "rejected E_MAGIC @ 3"
    lenient = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--reader", _reader(tmp_path, wrong_offset),
                                       "--select", "invalid/bad_magic.sldp", "--codes-only"])
    assert lenient.exit_code == 0, lenient.output
    wrong_manifest = 'print(json.dumps({"valid": True, "manifest": {}}))'
    assert "differs from the sidecar" in str(run(wrong_manifest)["valid/minimal.sldp"]["got"])


def test_reader_usage_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--reader", "echo no-placeholder"])
    assert r.exit_code == 2 and "{file}" in r.output
    r = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--codes-only"])
    assert r.exit_code == 2
    r = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--reader", "cat {file}", "--select", "nothing*"])
    assert r.exit_code == 2
