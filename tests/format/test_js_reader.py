"""The second implementation: sldp-js (js/) through ``sldp conformance --reader``, and its signature check.

Runs exactly what CI and the README promise: ``sldp conformance spec/conformance --reader 'node
js/bin/sldp-read.mjs {file}'`` must pass every case with offsets compared, and the signing corpus must
give the same verdict and reason as its index. Skips (with the reason) where ``node`` is not installed.
"""

from __future__ import annotations

import collections
import hashlib
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

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


# --- differential: the two readers on mutated files --------------------------------------------------

def _assemble(header: bytes, mbytes: bytes, payload: bytes) -> bytes:
    """Header (lengths and digest recomputed) + manifest + payload: a defect that passes the manifest digest."""
    prefix = bytearray(header[:32])
    prefix[16:24] = len(mbytes).to_bytes(8, "little")
    prefix[24:32] = len(payload).to_bytes(8, "little")
    h = hashlib.sha256(bytes(prefix))
    h.update(mbytes)
    return bytes(prefix) + h.digest() + mbytes + payload


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(10)
    if pick == 0:
        return rng.choice([None, True, False, b"\x01"])
    if pick == 1:
        return rng.choice([0, 1, 3, 65536, 65537, 2**20 + 1, 2**31, 2**53, 2**63, 2**64 - 1, -1, -(2**40)])
    if pick == 2:
        return rng.choice([0.0, -1.5, 1e-3, 2.5, 1e300])
    if pick == 3:
        return rng.choice(["", "x", "convnet@1", "a" * 64, "none", "zstd", "F32", "images", "softmax", "sldd", "Ünï"])
    if pick == 4 and depth < 2:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick == 5 and depth < 2:
        return {rng.choice(["a", "b", "id", "x"]): _random_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return rng.randrange(0, 100)


def _mutate_manifest(rng: random.Random, obj: Any) -> None:
    """Replace, delete or add one value somewhere in the decoded manifest."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            paths.append((node, k))
            walk(v)

    walk(obj)
    parent, key = rng.choice(paths)
    op = rng.randrange(3)
    if op == 1 and isinstance(parent, dict):
        del parent[key]
    elif op == 2 and isinstance(parent, dict):
        parent[rng.choice(["zz", f"{key}x"])] = _random_value(rng)
    else:
        parent[key] = _random_value(rng)


def _mutants(out: Path, per_file: int, seed: int) -> list[Path]:
    from sldpack.errors import UsageError
    from sldpack.format import canonical_msgpack

    rng = random.Random(seed)
    files = []
    for src in sorted((CORPUS / "valid").glob("*.sldp")):
        data = src.read_bytes()
        mlen = int.from_bytes(data[16:24], "little")
        mbytes, payload = data[64:64 + mlen], data[64 + mlen:]
        for k in range(per_file):
            kind = rng.choice(["schema", "schema", "msgpack", "payload_header", "raw"])
            if kind == "schema":  # a schema defect (or none) in a canonical, digest-correct manifest
                obj = canonical_msgpack.decode(mbytes)[0]
                _mutate_manifest(rng, obj)
                try:
                    blob = _assemble(data, canonical_msgpack.encode(obj), payload)
                except UsageError:  # a value nested past the depth limit in a file already at it: no writer makes it
                    continue
            elif kind == "msgpack":  # a byte of the manifest changed, inserted or deleted; digest correct
                mb = bytearray(mbytes)
                i = rng.randrange(len(mb))
                op = rng.randrange(3)
                if op == 0:
                    mb[i] ^= 1 << rng.randrange(8)
                elif op == 1:
                    mb.insert(i, rng.randrange(256))
                else:
                    del mb[i]
                blob = _assemble(data, bytes(mb), payload)
            elif kind == "payload_header" and not src.stem.endswith("zstd"):  # the safetensors JSON
                pb = bytearray(payload)
                i = rng.randrange(min(len(pb), 8 + int.from_bytes(pb[:8], "little")))
                pb[i] = rng.choice([rng.randrange(256), 0x20, 0x22, 0x2C, 0x31, 0x7B, 0x7D])
                blob = _assemble(data, mbytes, bytes(pb))
            else:  # any byte of the file, nothing recomputed
                b = bytearray(data)
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
                blob = bytes(b) if rng.random() < 0.8 else bytes(b[:i])
            path = out / f"{src.stem}_{k:03d}_{kind}.sldp"
            path.write_bytes(blob)
            files.append(path)
    return files


def test_js_and_python_readers_agree_on_mutated_files(tmp_path: Path) -> None:
    """Same verdict, code and offset from both readers on random defects (schema, msgpack, payload header,
    flipped bits). Not included: a corrupt zstd frame with a matching stored digest (only a hostile writer
    makes one), where decoders legitimately differ (spec 6.1)."""
    from sldpack.format.conformance import verdict

    files = _mutants(tmp_path, per_file=60, seed=20261203)
    proc = subprocess.run([NODE or "node", str(READER), "--many", *map(str, files)], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    js = {Path(r["file"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    codes = collections.Counter()
    disagree = []
    for f in files:
        py = verdict(f)
        mine = {k: v for k, v in js[f.name].items() if k != "file"}
        want = {"valid": True} if py["valid"] else {k: py[k] for k in ("valid", "code", "offset")}
        codes[want.get("code", "valid")] += 1
        if mine != want:
            disagree.append((f.name, want, mine))
    assert disagree == []
    # the mutations reach the schema, the msgpack decoder and the payload header, not only the digests
    assert codes["E_SCHEMA"] >= 50 and codes["E_ST_HEADER"] >= 10 and codes["E_MSGPACK"] >= 5, codes
