"""Distillation at the seed paper's scale (not a test): s/it and peak memory, graph vs recompute, 1 vs N processes.

Settings (issue 12): ResNet18 + BN and VGG16 at 224 and 299 px, 1 channel, 3 classes, M = 3 images per
class (9), every inner step uses all 9, T = 9, K = 12 real images per outer iteration, CPU. Every
configuration runs in a fresh process (``--nproc 2``: two processes joined by gloo on 127.0.0.1), so its
peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, the whole process: torch, data, model, unroll) is
its own. Iterations are stopped by a callback right after the last timed one, so the final phases (theta_bn,
fingerprint; reported by ``sldp distill`` itself) are not part of the figures. With more than one iteration
the first is a warm-up and is not timed.

Printed per configuration: s/it, peak RSS (GiB; with 2 processes per process and summed), and for each
(arch, size, nproc) the recompute/graph ratios of memory and time next to the issue's goals (ResNet18+BN
224 px: recompute peak <= 2.2 GiB, <= 0.4x graph, time <= 1.3x graph), plus the extrapolated wall time of a
300-iteration run (outer iterations only).

    python benchmarks/bench_paper_scale.py --archs resnet18 --sizes 224 --iters 1 --nproc 1   # the key pair
    python benchmarks/bench_paper_scale.py --archs convnet --sizes 64 --iters 3 --nproc 1,2    # 1 vs 2 procs
    python benchmarks/bench_paper_scale.py --archs resnet18 --sizes 64 --nproc 1 --unroll graph,recompute,recompute:3
    python benchmarks/bench_paper_scale.py --archs convnet-nobn --sizes 64 --nproc 1,2 \
        --unroll graph,recompute,recompute+shard
    python benchmarks/bench_paper_scale.py                                                      # everything

ResNet18 at 224 px takes ~40 s per iteration on one core: the full grid takes hours on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GIB = 1024.0**3

ARCHS: dict[str, dict[str, Any]] = {
    "resnet18": {"arch": "resnet18@1", "batchnorm": True},
    "vgg16": {"arch": "vgg16@1", "batchnorm": False},
    # a small stand-in for quick runs (e.g. the 1 vs 2 process comparison on a shared CPU)
    "convnet": {"arch": "convnet@1", "batchnorm": True, "arch_options": {"depth": 3, "width": 64}},
    "convnet-nobn": {"arch": "convnet@1", "batchnorm": False, "arch_options": {"depth": 3, "width": 64}},
}


class _StopRunError(Exception):
    """Raised by the iteration callback after the last timed iteration (skips the final phases)."""


def _unroll_fields(text: str) -> dict[str, Any]:
    """``graph``, ``recompute``, ``recompute:K`` (theta checkpoint every K), ``+shard`` (shard step images)."""
    shard = text.endswith("+shard")
    mode, _, k = text.removesuffix("+shard").partition(":")
    return {"unroll": mode, "unroll_checkpoint": int(k) if k else 1, "shard_images": shard}


def child(spec: dict[str, Any], out: Path) -> None:
    """One configuration in this (fresh) process; with torch.distributed env, one rank of it."""
    import torch

    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.pipelines.sources import ArraySource

    torch.set_num_threads(int(spec["threads"]))
    size, classes = int(spec["size"]), 3
    rng = np.random.default_rng(0)
    n = 20 * classes
    src = ArraySource(rng.integers(0, 255, (n, size, size)).astype(np.uint8), np.arange(n) % classes)
    a = ARCHS[spec["arch"]]
    iters = int(spec["iters"])
    warm = 1 if iters > 1 else 0
    cfg = DistillConfig(arch=a["arch"], arch_options=a.get("arch_options", {}), batchnorm=a["batchnorm"],
                        images_per_class=3, steps=9, epochs=1, iterations=iters + warm + 1, batch_real=12,
                        device="cpu", checkpoint_every=0, select="last", **_unroll_fields(spec["unroll"]))
    stamps: list[float] = []

    def on_iteration(done: int, loss: float) -> None:
        stamps.append(time.perf_counter())
        if done == iters + warm:
            raise _StopRunError

    t0 = time.perf_counter()
    with contextlib.suppress(_StopRunError):
        distill(src, cfg, on_iteration=on_iteration)
    times = np.diff([t0, *stamps])[warm:]
    rank = os.environ.get("RANK", "0")
    res = {"s_per_it": float(np.mean(times)), "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    (out.parent / f"{out.name}.{rank}").write_text(json.dumps(res))


def run_config(arch: str, size: int, unroll: str, nproc: int, iters: int, threads: int,
               timeout_s: float) -> dict[str, Any]:
    from sldpack.nn.distributed import launch

    spec = {"arch": arch, "size": size, "unroll": unroll, "iters": iters, "threads": threads}
    with tempfile.TemporaryDirectory(prefix="sldp-bench-") as tmp:
        out = Path(tmp) / "res"
        argv = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec), str(out)]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            env.pop(k, None)
        if nproc == 1:
            code = subprocess.run(argv, env=env, timeout=timeout_s, check=False).returncode
        else:
            code = launch(nproc, argv, env=env, timeout_s=timeout_s)
        if code:
            raise SystemExit(f"{arch} {size}px {unroll} nproc={nproc}: child exited {code}")
        ranks = [json.loads((Path(tmp) / f"res.{r}").read_text()) for r in range(nproc)]
    return {"arch": arch, "size": size, "unroll": unroll, "nproc": nproc,
            "s_per_it": max(r["s_per_it"] for r in ranks),
            "peak_gib": max(r["peak_rss"] for r in ranks) / GIB,
            "peak_sum_gib": sum(r["peak_rss"] for r in ranks) / GIB}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="resnet18,vgg16", help="comma list of " + ",".join(ARCHS))
    ap.add_argument("--sizes", default="224,299", help="comma list of image sizes (px)")
    ap.add_argument("--unroll", default="graph,recompute",
                    help="comma list of unroll modes; recompute:K keeps every K-th theta only; a +shard suffix "
                    "also splits each step's images across processes (architectures without batch norm)")
    ap.add_argument("--nproc", default="1,2", help="comma list of process counts")
    ap.add_argument("--iters", type=int, default=2, help="timed outer iterations (plus one warm-up if > 1)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--child", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child[0]), Path(args.child[1]))
        return
    rows: list[dict[str, Any]] = []
    print(f"{'arch':9} {'px':>4} {'unroll':11} {'proc':>4} {'s/it':>8} {'peak GiB/proc':>13} {'sum GiB':>8} "
          f"{'300 it (h)':>10}", flush=True)
    for arch in args.archs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for nproc in (int(p) for p in args.nproc.split(",")):
                for unroll in args.unroll.split(","):
                    r = run_config(arch, size, unroll, nproc, args.iters, args.threads, args.timeout)
                    rows.append(r)
                    print(f"{arch:9} {size:4d} {unroll:11} {nproc:4d} {r['s_per_it']:8.2f} {r['peak_gib']:13.2f} "
                          f"{r['peak_sum_gib']:8.2f} {300 * r['s_per_it'] / 3600:10.2f}", flush=True)
    print("\nratios (recompute / graph, same arch, size and process count):")
    for g in rows:
        if g["unroll"] != "graph":
            continue
        for r in rows:
            if (r["unroll"].startswith("recompute") and r["arch"] == g["arch"] and r["size"] == g["size"]
                    and r["nproc"] == g["nproc"]):
                mem, tim = r["peak_gib"] / g["peak_gib"], r["s_per_it"] / g["s_per_it"]
                line = (f"  {g['arch']} {g['size']} px, {g['nproc']} proc, {r['unroll']}: memory {mem:.2f}x, "
                        f"time {tim:.2f}x, peak {r['peak_gib']:.2f} GiB")
                if g["arch"] == "resnet18" and g["size"] == 224 and r["unroll"] == "recompute":
                    ok = r["peak_gib"] <= 2.2 and mem <= 0.4 and tim <= 1.3
                    line += f"  [goal <= 2.2 GiB, <= 0.40x, <= 1.30x: {'met' if ok else 'NOT met'}]"
                print(line)
    print("\nspeed-up (1 process s/it / N processes s/it, same arch, size and unroll):")
    for one in rows:
        if one["nproc"] != 1 or one["unroll"].endswith("+shard"):  # +shard is a no-op in one process
            continue
        for r in rows:
            same_mode = r["unroll"].removesuffix("+shard") == one["unroll"].removesuffix("+shard")
            if r["nproc"] > 1 and r["arch"] == one["arch"] and r["size"] == one["size"] and same_mode:
                print(f"  {one['arch']} {one['size']} px {one['unroll']} -> {r['unroll']}: {r['nproc']} processes "
                      f"{one['s_per_it'] / r['s_per_it']:.2f}x")
    print("\n(outer iterations only; the final phases are timed by `sldp distill` itself. CPU figures on a shared "
          "machine move with its load.)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
