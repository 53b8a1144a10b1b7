"""The second implementation: sldp-js (js/) through ``sldp conformance --reader``, and its signature check.

Runs exactly what CI and the README promise: ``sldp conformance spec/conformance --reader 'node
js/bin/sldp-read.mjs {file}'`` must pass every case with offsets compared, and the signing corpus must
give the same verdict and reason as its index. Skips (with the reason) where ``node`` is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sldpack.cli.main import cli
from sldpack.format.conformance import load_index

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "spec" / "conformance"
READER = ROOT / "js" / "bin" / "sldp-read.mjs"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node (>= 18) is not installed: the JS reader cannot run")


def test_js_reader_passes_every_conformance_case_with_offsets() -> None:
    res = CliRunner().invoke(cli, ["conformance", str(CORPUS), "--reader", f"'{NODE}' '{READER}' {{file}}",
                                   "--json", "--jobs", "4", "--timeout", "30"])
    out = json.loads(res.output)
    failed = [c for c in out["cases"] if not c["passed"]]
    assert failed == [], failed
    assert out["offsets"] == "compared"
    assert out["passed"] == len(load_index(CORPUS)) and out["passed"] >= 100
    assert res.exit_code == 0


def test_js_reader_reports_the_manifest_of_a_valid_file() -> None:
    """The verdict's manifest is the sidecar's (the harness compares it; this checks it was given at all)."""
    proc = subprocess.run([NODE or "node", str(READER), str(CORPUS / "valid" / "full_zstd.sldp")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    reply = json.loads(proc.stdout.strip().splitlines()[-1])
    sidecar = json.loads((CORPUS / "valid" / "full_zstd.json").read_text(encoding="utf-8"))
    assert reply["valid"] is True
    assert reply["manifest"] == sidecar["manifest"] and reply["tensors"] == sidecar["tensors"]


def test_js_reader_agrees_with_the_signing_corpus() -> None:
    root = CORPUS / "signing"
    cases = json.loads((root / "index.json").read_text(encoding="utf-8"))["cases"]
    assert len(cases) >= 8
    for case in cases:
        keys = (["--key", str(root / case["public_key"])] if "public_key" in case
                else ["--trusted-keys", str(root / case["trusted_keys"])])
        proc = subprocess.run([NODE or "node", str(READER), "--signature", str(root / case["signature"]), *keys,
                               str(root / case["file"])], capture_output=True, text=True, timeout=60, check=False)
        reply = json.loads(proc.stdout.strip().splitlines()[-1])
        if case["expect"] == "valid":
            assert (proc.returncode, reply["valid"]) == (0, True), (case["name"], proc.stdout, proc.stderr)
            assert len(reply["signature"]["keyId"]) == 64
        else:
            assert (proc.returncode, reply.get("reason")) == (1, case["reason"]), (case["name"], proc.stdout)
