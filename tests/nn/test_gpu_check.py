"""benchmarks/gpu_check.py keeps working on a CPU-only machine (tiny mode): CPU parts run, CUDA parts say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "gc.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--json", str(out)],
                       env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    assert [row["arch"] for row in doc["replay"]] == ["convnet@1", "lenet@1", "resnet18@1", "googlenet@1"]
    assert all(row["cpu_status"] == "exact" for row in doc["replay"])
    assert {s["unroll"] for s in doc["speed"]} == {"graph", "recompute"}
    assert all(s["s_per_it"] > 0 for s in doc["speed"])
    paths = {(h["arch"], h["device"], h["mode"], h["fast_conv"]) for h in doc["hypergrad"]}
    assert {(a, "cpu", m, f) for a in ("convnet@1", "resnet18@1") for m in ("graph", "recompute")
            for f in (True, False)} <= paths
    assert all(h["ok"] and h["max_rel_dev"] > 0 for h in doc["hypergrad"])  # float32 vs float64: never exactly 0
    if not torch.cuda.is_available():
        assert "CUDA not available: skipped CUDA replays" in r.stdout
        assert "CUDA not available: skipped 1 vs N GPUs" in r.stdout
        assert doc["skipped"]
