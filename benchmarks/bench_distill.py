"""Distiller and replay benchmark (not a test): prints figures and ratios measured side by side in one run.

1. Outer iterations per second and peak memory of the distiller for T in {1, 3, 9, 27} on the CPU
   (ConvNet depth 3 width 128, 28 x 28 x 1, 2 classes, M = 2 images used by every step, K real images).
   Each T runs in its own process so the peak RSS is that T's alone; "graph MiB" is the peak RSS during
   the outer iterations minus the RSS just before the first one. Memory must grow no worse than
   linearly in T: the script prints graph MiB / T.
2. Replay wall time of ResNet18 (batch norm, 1 x 227 x 227, 3 classes, one distilled image, T = 9) next to
   the time to load the equivalent full checkpoint (theta_opt + theta_bn, safetensors and torch.save)
   from disk (warm page cache) and to move it, or the .sldp, over a 100 Mbit/s link (bytes x 8 / 1e8).

    python benchmarks/bench_distill.py                 # everything (about 5-10 min on 2 busy cores)
    python benchmarks/bench_distill.py --only memory   # part 1
    python benchmarks/bench_distill.py --only replay   # part 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LINK_BPS = 100e6  # 100 Mbit/s


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one_t(t: int, iters: int, k: int, threads: int) -> dict[str, float]:
    """Child: time ``iters`` outer iterations at T = t (after one warm-up) and measure peak memory."""
    import torch

    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.pipelines.sources import ArraySource

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    src = ArraySource(rng.integers(0, 255, (256, 28, 28)).astype(np.uint8), rng.integers(0, 2, 256))
    cfg = DistillConfig(steps=t, epochs=1, iterations=1 + iters, batch_real=k, device="cpu", checkpoint_every=0,
                        probe_count=1)
    stamps: list[float] = []

    def on_iter(done: int, loss: float) -> None:
        stamps.append(time.perf_counter())

    # a zero-iteration run first (imports, module build, init, fingerprint replay), so the RSS taken
    # after it is the baseline the outer iterations add their graph to
    distill(src, DistillConfig(**{**cfg.to_obj(), "iterations": 0}))
    rss_before = _rss_mib()
    distill(src, cfg, on_iteration=on_iter)
    per_it = (stamps[-1] - stamps[0]) / (len(stamps) - 1)  # the first iteration is the warm-up
    return {"T": t, "it_per_s": 1.0 / per_it, "s_per_it": per_it, "rss_before_mib": rss_before,
            "peak_mib": _peak_mib(), "graph_mib": _peak_mib() - rss_before}


def part_memory(ts: list[int], iters: int, k: int, threads: int) -> None:
    print(f"== distiller on CPU: ConvNet(depth 3, width 128), 28x28x1, M=2, K={k}, {threads} thread(s) ==")
    rows = []
    for t in ts:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, __file__, "--child-t", str(t), "--iters", str(iters), "--k", str(k),
                              "--threads", str(threads)], capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'T':>4} {'it/s':>8} {'s/it':>8} {'peak RSS MiB':>13} {'graph MiB':>10} {'graph MiB/T':>12}")
    for r in rows:
        print(f"{r['T']:>4} {r['it_per_s']:>8.3f} {r['s_per_it']:>8.3f} {r['peak_mib']:>13.1f} "
              f"{r['graph_mib']:>10.1f} {r['graph_mib'] / r['T']:>12.2f}")
    first, last = rows[0], rows[-1]
    growth = (last["graph_mib"] - first["graph_mib"]) / max(last["T"] - first["T"], 1)
    print(f"ratio graph MiB T={last['T']} / T={first['T']}: {last['graph_mib'] / max(first['graph_mib'], 1e-9):.2f} "
          f"(T ratio {last['T'] / first['T']:.0f}); marginal MiB per extra step {growth:.2f}")
    print(f"ratio s/it T={last['T']} / T={first['T']}: {last['s_per_it'] / first['s_per_it']:.2f}")
    linear = all(r["graph_mib"] <= first["graph_mib"] * r["T"] / first["T"] * 1.10 + 1.0 for r in rows)
    print(f"memory grows no worse than linearly in T: {'yes' if linear else 'NO'}")


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
        t_replay, t_st, t_pt = [], [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            replay(sldp_path)
            t_replay.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fresh = build_from_spec(arch)  # a checkpoint consumer builds the network, then loads
            fresh.load_state_dict(load_file(str(st_path)))
            t_st.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            fresh = build_from_spec(arch)
            fresh.load_state_dict(torch.load(pt_path, weights_only=True))
            t_pt.append(time.perf_counter() - t0)
    r, s, p = min(t_replay), min(t_st), min(t_pt)
    link_full, link_sldp = st_bytes * 8 / LINK_BPS, sldp_bytes * 8 / LINK_BPS
    print(f"== ResNet18 (BN) 1x227x227, 3 classes, M=1, T={t_steps}, CPU {threads} thread(s), best of {repeats} ==")
    print(f"replay from .sldp ({sldp_bytes} bytes): {r:8.3f} s (build + portable init + {t_steps} SGD steps)")
    print(f"load full checkpoint, safetensors ({st_bytes} bytes): {s:8.3f} s (build + load_state_dict, warm cache)")
    print(f"load full checkpoint, torch.save ({pt_bytes} bytes): {p:8.3f} s")
    print(f"move full checkpoint over 100 Mbit/s: {link_full:8.3f} s; move the .sldp: {link_sldp:8.4f} s")
    print(f"ratio replay / load(safetensors): {r / s:.2f}")
    print(f"ratio replay / transfer(full @100Mbit/s): {r / link_full:.2f}")
    print(f"ratio (transfer .sldp + replay) / (transfer full + load): {(link_sldp + r) / (link_full + s):.2f}")
    print(f"ratio bytes full / .sldp: {st_bytes / sldp_bytes:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["memory", "replay"], default=None)
    ap.add_argument("--ts", default="1,3,9,27")
    ap.add_argument("--iters", type=int, default=3, help="timed outer iterations per T (after one warm-up)")
    ap.add_argument("--k", type=int, default=32, help="real images per outer iteration")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child-t", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_t is not None:
        print(json.dumps(one_t(a.child_t, a.iters, a.k, a.threads)))
        return
    if a.only in (None, "memory"):
        part_memory([int(t) for t in a.ts.split(",")], a.iters, a.k, a.threads)
    if a.only in (None, "replay"):
        part_replay(a.threads, a.repeats)


if __name__ == "__main__":
    main()
