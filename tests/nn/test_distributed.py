"""Data-parallel distillation: 2 gloo processes on 127.0.0.1 give the 1-process file (within float tolerance).

The processes are real subprocesses started by ``sldp distill --nproc 2`` (env rendezvous on 127.0.0.1, a
free port), each bounded by a timeout, so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sldpack
from sldpack.errors import UsageError
from sldpack.nn.distributed import DistContext, shard_bounds

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 90
# The 2-process hypergradient is the sum of two half-batch gradients instead of one full-batch one: the
# same math in another summation order. Measured after 4 Adam steps: max |deviation| 2.4e-7 (images,
# |x| <= 2.4), 1.5e-8 (labels), 0 (lrs). Adam divides by sqrt(v) and so amplifies last-bit differences of
# small gradients; 1e-5 absolute (data are O(1)) leaves room for other BLAS builds.
ATOL = 1e-5


def sldp(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-m", "sldpack.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S, cwd=REPO)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory, toy_images: tuple[np.ndarray, np.ndarray]) -> Path:
    x, y = toy_images
    p = tmp_path_factory.mktemp("data") / "toy.npz"
    np.savez(p, train_images=x, train_labels=y)
    return p


# no batch norm: with BN each rank's outer forward uses its share's statistics (documented), so only
# BN-free architectures give the 1-process gradient exactly (to rounding)
ARGS = ["--arch-option", "depth=2", "--arch-option", "width=8", "--steps", "2", "--epochs", "2",
        "-K", "10", "--device", "cpu", "--threads", "1", "--checkpoint-every", "2", "--lr", "0.05",
        "--select", "last", "-q"]


def tensors(path: Path) -> dict[str, np.ndarray]:
    with sldpack.open(path) as f:
        return f.arrays()


@pytest.fixture(scope="module")
def reference(npz: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 1-process run every multi-process run is compared with."""
    one = tmp_path_factory.mktemp("one") / "run"
    r = sldp("distill", "--data", str(npz), "--iterations", "4", "--out", str(one), *ARGS)
    assert r.returncode == 0, r.stderr
    return one


def assert_close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], what: str) -> None:
    assert a.keys() == b.keys()
    for n in a:
        assert a[n].shape == b[n].shape
        dev = np.abs(a[n] - b[n]).max()
        assert dev <= ATOL, f"{what} {n}: max deviation {dev:.3g}"


def test_two_gloo_processes_equal_one_process(npz: Path, reference: Path, tmp_path: Path) -> None:
    one, two = reference, tmp_path / "two"
    r2 = sldp("distill", "--data", str(npz), "--iterations", "4", "--out", str(two), "--nproc", "2", *ARGS)
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout.count("wrote ") == 1, "only rank 0 reports"
    v = sldp("verify", "--replay", str(two / "distilled.sldp"))
    assert v.returncode == 0, v.stdout + v.stderr
    assert_close(tensors(one / "distilled.sldp"), tensors(two / "distilled.sldp"), "2 processes")
    with sldpack.open(one / "distilled.sldp") as f1, sldpack.open(two / "distilled.sldp") as f2:
        o1 = dict(f1.manifest.distill.options)  # type: ignore[union-attr]
        o2 = dict(f2.manifest.distill.options)  # type: ignore[union-attr]
        assert o1 == o2, "the manifest must not record the world size or anything machine-specific"
    log1 = (one / "log.jsonl").read_text().splitlines()
    log2 = (two / "log.jsonl").read_text().splitlines()
    assert sum('"loss"' in x for x in log1) == sum('"loss"' in x for x in log2) == 4, "one log, from rank 0"


def test_sharded_images_and_resume_with_another_world_size(npz: Path, reference: Path, tmp_path: Path) -> None:
    a = tensors(reference / "distilled.sldp")
    # each inner step's images split across the 2 processes as well (recompute unroll, no batch norm)
    sh = tmp_path / "sharded"
    r = sldp("distill", "--data", str(npz), "--iterations", "4", "--out", str(sh), "--nproc", "2", "--unroll",
             "recompute", "--shard-images", *ARGS)
    assert r.returncode == 0, r.stderr
    assert_close(a, tensors(sh / "distilled.sldp"), "sharded")
    # resume a 1-process run with 2 processes: the checkpoint does not depend on the world size
    half = tmp_path / "half"
    r = sldp("distill", "--data", str(npz), "--iterations", "2", "--out", str(half), *ARGS)
    assert r.returncode == 0, r.stderr
    r = sldp("distill", "--data", str(npz), "--iterations", "4", "--out", str(half), "--resume", "--nproc", "2",
             "-q", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert_close(a, tensors(half / "distilled.sldp"), "resumed")


def test_images_moved_in_the_reference_run(npz: Path, tmp_path: Path) -> None:
    # guards the equality test against a run where nothing is learned (then any two runs would agree)
    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.pipelines.sources import load_npz

    src = load_npz(npz, "train")
    cfg = DistillConfig(arch_options={"depth": 2, "width": 8}, steps=2, epochs=2, batch_real=10, device="cpu",
                        iterations=2, lr=0.05, select="last")
    start = distill(src, DistillConfig(**{**cfg.to_obj(), "iterations": 0}))
    res = distill(src, cfg)
    moved = np.abs(np.asarray(res.tensors["images"].array) - np.asarray(start.tensors["images"].array)).max()
    assert moved > 10 * ATOL


def test_shard_bounds_partition_the_batch() -> None:
    for n in (2, 7, 10, 33):
        for w in (1, 2, 3):
            if n < w:
                continue
            parts = [shard_bounds(n, r, w) for r in range(w)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(parts[i][1] == parts[i + 1][0] for i in range(w - 1))
            sizes = [hi - lo for lo, hi in parts]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(UsageError, match="at least one image per process"):
        shard_bounds(1, 0, 2)


def test_one_process_context_is_identity() -> None:
    import torch

    ctx = DistContext()
    t = torch.arange(3.0)
    assert ctx.is_main and not ctx.active
    assert ctx.all_reduce_sum([t])[0] is t
    assert ctx.broadcast_object({"a": 1}) == {"a": 1}


def test_nproc_bad_input_is_refused_in_the_parent_under_load(npz: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 24, 8: the parent validates everything before any worker starts, so no worker can crash in a
    collective while another refuses. 20 tries under a CPU hog (time-bounded): never a launch, one line."""
    import time

    import sldpack.nn.distributed as distributed
    from sldpack.cli.main import main

    def no_launch(*_a: object, **_k: object) -> int:
        raise AssertionError("workers were started for bad input")

    monkeypatch.setattr(distributed, "launch", no_launch)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        deadline = time.monotonic() + 60
        tries = 0
        while tries < 20 and time.monotonic() < deadline:
            capsys.readouterr()
            with pytest.raises(SystemExit) as info:
                main(["distill", "--data", str(npz), "--out", str(tmp_path / f"b{tries}"), "--nproc", "2", "-K",
                      "1", "--no-balanced", "--device", "cpu", "-q", "--iterations", "1"])
            err = capsys.readouterr().err
            assert info.value.code == 2, err
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert len(lines) == 1 and "at least one image per process" in lines[0], err  # said once
            assert not (tmp_path / f"b{tries}").exists()
            tries += 1
    finally:
        hog.kill()
        hog.wait()
    assert tries >= 5  # enough tries ran inside the time bound to mean something


def test_nproc_bad_input_is_a_clear_usage_error(npz: Path, tmp_path: Path) -> None:
    r = sldp("distill", "--data", str(npz), "--out", str(tmp_path / "a"), "--nproc", "0", "-q")
    # the one numeric-option check of every command (sldpack.cli.options.COUNT): one line naming the option
    assert r.returncode == 2 and "'--nproc': 0 is not in the range x>=1" in r.stderr, r.stderr
    # 2 processes but 1 real image per iteration: every worker refuses before any collective, exit code 2
    r = sldp("distill", "--data", str(npz), "--out", str(tmp_path / "b"), "--nproc", "2", "-K", "1",
             "--no-balanced", "--device", "cpu", "-q", "--iterations", "1")
    assert r.returncode == 2, r.stderr
    assert "at least one image per process" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "b" / "distilled.sldp").exists()
