"""Distiller and replay benchmark (not a test): prints figures and ratios measured side by side in one run.

1. Outer iterations per second and peak memory of the distiller for T in {1, 3, 9, 27} on the CPU
   (ConvNet depth 3 width 128, 28 x 28 x 1, 2 classes, M = 2 images used by every step, K real images).
   Each T runs in its own process; the first outer iteration is a warm-up; then the kernel's peak-RSS
   counter is reset (/proc/self/clear_refs), so "peak MiB" is the peak RSS of the timed outer iterations
   only, read when the last one ends (before the run's final phases). CPU seconds are printed beside wall
   seconds, and the load average. The memory one more inner step costs is the least-squares slope of peak
   over T (a difference against a baseline RSS would depend on what the allocator kept from earlier work).
2. Replay wall time of ResNet18 (batch norm, 1 x 227 x 227, 3 classes, one distilled image, T = 9) next to
   the time to load the equivalent full checkpoint (theta_opt + theta_bn, safetensors and torch.save)
   from disk (warm page cache) and to move it, or the .sldp, over a 100 Mbit/s link (bytes x 8 / 1e8).

    python benchmarks/bench_distill.py                 # everything (about 5-10 min on 2 busy cores)
    python benchmarks/bench_distill.py --only memory   # part 1
    python benchmarks/bench_distill.py --only replay   # part 2
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import MIB, Window, load_text, slope  # noqa: E402

LINK_BPS = 100e6  # 100 Mbit/s


def one_t(t: int, iters: int, k: int, threads: int) -> dict[str, float]:
    """Child: ``iters`` timed outer iterations at T = t after one warm-up; their peak RSS."""
    import torch

    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.pipelines.sources import ArraySource

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    src = ArraySource(rng.integers(0, 255, (256, 28, 28)).astype(np.uint8), rng.integers(0, 2, 256))
    cfg = DistillConfig(steps=t, epochs=1, iterations=2 + iters, batch_real=k, device="cpu", checkpoint_every=0,
                        probe_count=1, select="last")
    win = Window()

    def on_iter(done: int, loss: float) -> None:
        if done == 1:  # the warm-up ends: the measured window opens
            win.open()
            return
        win.lap()
        if done == 1 + iters:
            raise _StopRunError

    with contextlib.suppress(_StopRunError):
        distill(src, cfg, on_iteration=on_iter)
    res = win.close()
    return {"T": t, "s_per_it": float(res["wall_s"]), "cpu_s_per_it": float(res["cpu_s"]),  # type: ignore[arg-type]
            "peak_mib": float(res["peak_bytes"]) / MIB, "rss_open_mib": float(res["rss_open_bytes"]) / MIB,  # type: ignore[arg-type]
            "peak_is_window": bool(res["peak_is_window"]), "load": float(res["load_open"][0])}  # type: ignore[index]


class _StopRunError(Exception):
    """Stops a distill run right after the last timed iteration (the final phases are not measured)."""


def part_memory(ts: list[int], iters: int, k: int, threads: int) -> None:
    print(f"== distiller on CPU: ConvNet(depth 3, width 128), 28x28x1, M=2, K={k}, {threads} thread(s), "
          f"one warm-up + {iters} timed iterations per T; {load_text()} ==")
    rows = []
    for t in ts:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, __file__, "--child-t", str(t), "--iters", str(iters), "--k", str(k),
                              "--threads", str(threads)], capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'T':>4} {'CPU s/it':>9} {'wall s/it':>9} {'it/s (CPU)':>10} {'peak MiB':>9} {'RSS at start':>12} "
          f"{'load':>5}")
    for r in rows:
        print(f"{r['T']:>4} {r['cpu_s_per_it']:>9.3f} {r['s_per_it']:>9.3f} {1 / r['cpu_s_per_it']:>10.3f} "
              f"{r['peak_mib']:>9.1f} {r['rss_open_mib']:>12.1f} {r['load']:>5.2f}"
              + ("" if r["peak_is_window"] else "  (whole-process peak: clear_refs unavailable)"))
    ts_f = [float(r["T"]) for r in rows]
    per_step = slope(ts_f, [r["peak_mib"] for r in rows])
    base = sum(r["peak_mib"] for r in rows) / len(rows) - per_step * sum(ts_f) / len(ts_f)
    worst = max(abs(r["peak_mib"] - (base + per_step * r["T"])) for r in rows)
    print(f"extra MiB per inner step (least-squares slope of peak over T): {per_step:.2f}; intercept {base:.1f} MiB; "
          f"largest deviation from the line {worst:.1f} MiB")
    first, last = rows[0], rows[-1]
    print(f"ratio CPU s/it T={last['T']} / T={first['T']}: {last['cpu_s_per_it'] / first['cpu_s_per_it']:.2f} "
          f"(T ratio {last['T'] / first['T']:.0f})")
    linear = worst <= max(0.10 * (last["peak_mib"] - first["peak_mib"]), 8.0)
    print(f"memory grows linearly in T (deviation <= 10 % of the growth or 8 MiB): {'yes' if linear else 'NO'}; "
          f"after: {load_text()}")


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def part_replay(threads: int, repeats: int) -> None:
    import torch
    from safetensors.torch import load_file

    import sldpack
    from sldpack.nn.network import build_module, save_safetensors
    from sldpack.nn.replay import replay
    from sldpack.nn.zoo import build_from_spec

    torch.set_num_threads(threads)
    arch = sldpack.ArchSpec("resnet18@1", 1, 3, (227, 227), True, {})
    init = sldpack.InitSpec(seed=0)
    module, digests = build_module(arch, init)
    rng = np.random.default_rng(0)
    t_steps = 9
    tensors = {"images": sldpack.Tensor("images", rng.standard_normal((1, 1, 227, 227)).astype(np.float32)),
               "labels": sldpack.Tensor("labels", rng.standard_normal((1, 3)).astype(np.float32)),
               "lrs": sldpack.Tensor("lrs", np.full(t_steps, 0.01, np.float32))}
    for n, b in module.named_buffers():
        if b.is_floating_point():
            tensors[f"bn.{n}"] = sldpack.Tensor("bn_stats", b.detach().numpy().copy())
    manifest = sldpack.Manifest(
        arch=arch, init=sldpack.InitSpec(seed=0, theta0_sha256=digests),
        provenance=sldpack.Provenance("bench_distill", "2026-01-01T00:00:00Z"),
        distill=sldpack.DistillSpec("sldd", t_steps, 1, tuple((0,) for _ in range(t_steps))),
        labels=sldpack.LabelSpec(("I", "N", "P")))
    with tempfile.TemporaryDirectory() as d:
        sldp_path = Path(d) / "r18.sldp"
        sldpack.write(sldp_path, manifest, tensors)
        sldp_bytes = sldp_path.stat().st_size
        rep = replay(sldp_path)  # warm-up (imports, allocator, kernels)
        state = rep.module.state_dict()
        st_path, pt_path = Path(d) / "full.safetensors", Path(d) / "full.pt"
        st_bytes = save_safetensors(st_path, state)
        buf = io.BytesIO()
        torch.save(state, buf)
        pt_path.write_bytes(buf.getvalue())
        pt_bytes = pt_path.stat().st_size
        t_replay: list[tuple[float, float]] = []
        t_st: list[tuple[float, float]] = []
        t_pt: list[tuple[float, float]] = []

        def load_st() -> None:
            fresh = build_from_spec(arch)  # a checkpoint consumer builds the network, then loads
            fresh.load_state_dict(load_file(str(st_path)))

        def load_pt() -> None:
            fresh = build_from_spec(arch)
            fresh.load_state_dict(torch.load(pt_path, weights_only=True))

        for _ in range(repeats):
            t_replay.append(_timed(lambda: replay(sldp_path)))
            t_st.append(_timed(load_st))
            t_pt.append(_timed(load_pt))
    (r, r_cpu), (s, s_cpu), (p, p_cpu) = min(t_replay), min(t_st), min(t_pt)
    link_full, link_sldp = st_bytes * 8 / LINK_BPS, sldp_bytes * 8 / LINK_BPS
    print(f"== ResNet18 (BN) 1x227x227, 3 classes, M=1, T={t_steps}, CPU {threads} thread(s), best of {repeats} "
          f"(wall s, CPU s); {load_text()} ==")
    print(f"replay from .sldp ({sldp_bytes} bytes): {r:8.3f} s, CPU {r_cpu:8.3f} s (build + portable init + "
          f"{t_steps} SGD steps)")
    print(f"load full checkpoint, safetensors ({st_bytes} bytes): {s:8.3f} s, CPU {s_cpu:8.3f} s (build + "
          "load_state_dict, warm cache)")
    print(f"load full checkpoint, torch.save ({pt_bytes} bytes): {p:8.3f} s, CPU {p_cpu:8.3f} s")
    print(f"move full checkpoint over 100 Mbit/s: {link_full:8.3f} s; move the .sldp: {link_sldp:8.4f} s")
    print(f"ratio replay / load(safetensors): {r / s:.2f}")
    print(f"ratio replay / transfer(full @100Mbit/s): {r / link_full:.2f}")
    print(f"ratio (transfer .sldp + replay) / (transfer full + load): {(link_sldp + r) / (link_full + s):.2f}")
    print(f"ratio bytes full / .sldp: {st_bytes / sldp_bytes:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["memory", "replay"], default=None)
    ap.add_argument("--ts", default="1,3,9,27")
    ap.add_argument("--iters", type=int, default=3, help="timed outer iterations per T (>= 2, after one warm-up)")
    ap.add_argument("--k", type=int, default=32, help="real images per outer iteration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child-t", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.iters < 2:
        raise SystemExit("--iters must be >= 2 (timed iterations after the warm-up)")
    if a.child_t is not None:
        print(json.dumps(one_t(a.child_t, a.iters, a.k, a.threads)))
        return
    if a.only in (None, "memory"):
        part_memory([int(t) for t in a.ts.split(",")], a.iters, a.k, a.threads)
    if a.only in (None, "replay"):
        part_replay(a.threads, a.repeats)


if __name__ == "__main__":
    main()
