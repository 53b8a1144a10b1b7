"""Distillation at the seed paper's scale (not a test): CPU and wall s/it and peak memory, sldpack vs a peer.

Settings (issue 12): ResNet18 + BN and VGG16 at 224 and 299 px, 1 channel, 3 classes, M = 3 images per
class (9), every inner step uses all 9, T = 9, K = 12 real images per outer iteration, CPU, one thread.

How it measures (issue 25):
- every configuration runs in a fresh process (``--nproc 2``: two processes joined by gloo on 127.0.0.1);
- the first outer iteration is a warm-up and is not timed (``--iters`` >= 2 timed iterations follow it);
- time is reported as CPU seconds (user + system of the process) beside wall seconds per outer iteration: on a
  shared machine wall time moves with the load, CPU time much less; the load average is printed per row;
- peak memory is the peak RSS of the timed outer iterations only: the kernel's peak counter is reset when the
  warm-up ends (``/proc/self/clear_refs``), so imports, build, init and warm-up are outside it, and it is read
  when the last timed iteration ends, before the run's final phases (theta_bn, fingerprint: timed by
  ``sldp distill`` itself).

``--peer`` adds, for every configuration, the same outer iterations computed by a small independent peer
written below from the seed paper's Algorithm 1 with plain autograd: ``graph`` (back-propagate through the
kept graph of all T steps) and ``recompute`` (Wang et al. 2018 / ssnl's reference code: store theta_t, walk
back rebuilding one step's graph at a time and pulling the adjoint through it as a vector-Jacobian product).
The peer uses the same zoo network, data sizes, learning rates and Adam groups. Project and peer runs are
interleaved (project graph, peer graph, project recompute, peer recompute, ...) and project / peer ratios of
CPU time, wall time and peak memory are printed from this one run.

    python benchmarks/bench_paper_scale.py --archs resnet18 --sizes 224 --iters 2 --nproc 1          # project
    python benchmarks/bench_paper_scale.py --archs resnet18 --sizes 224 --iters 2 --nproc 1 --peer   # + ratios
    python benchmarks/bench_paper_scale.py --archs convnet --sizes 28 --iters 3 --nproc 1 --peer
    python benchmarks/bench_paper_scale.py --archs resnet18 --sizes 64 --nproc 1 --unroll graph,recompute,recompute:3
    python benchmarks/bench_paper_scale.py --archs convnet-nobn --sizes 64 --nproc 1,2 \
        --unroll graph,recompute,recompute+shard
    python benchmarks/bench_paper_scale.py                                                      # everything

ResNet18 + BN at 224 px takes about 60-90 CPU seconds per outer iteration on one core: a project + peer pair
of modes there takes 15-30 minutes, the full grid hours.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import GIB, Window, load_text  # noqa: E402

ARCHS: dict[str, dict[str, Any]] = {
    "resnet18": {"arch": "resnet18@1", "batchnorm": True},
    "vgg16": {"arch": "vgg16@1", "batchnorm": False},
    # a small stand-in for quick runs (e.g. the 1 vs 2 process comparison on a shared CPU)
    "convnet": {"arch": "convnet@1", "batchnorm": True, "arch_options": {"depth": 3, "width": 64}},
    "convnet-nobn": {"arch": "convnet@1", "batchnorm": False, "arch_options": {"depth": 3, "width": 64}},
    # seconds per configuration: the CPU test of this script
    "tiny": {"arch": "convnet@1", "batchnorm": True, "arch_options": {"depth": 2, "width": 8}},
}
CLASSES, PER_CLASS, STEPS, BATCH_REAL, INNER_LR, LR = 3, 3, 9, 12, 0.1, 0.01


class _StopRunError(Exception):
    """Raised by the iteration callback after the last timed iteration (skips the final phases)."""


def _unroll_fields(text: str) -> dict[str, Any]:
    """``graph``, ``recompute``, ``recompute:K`` (theta checkpoint every K), ``+shard`` (shard step images)."""
    shard = text.endswith("+shard")
    mode, _, k = text.removesuffix("+shard").partition(":")
    return {"unroll": mode, "unroll_checkpoint": int(k) if k else 1, "shard_images": shard}


def _data(size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 20 * CLASSES
    return rng.integers(0, 255, (n, size, size)).astype(np.uint8), np.arange(n) % CLASSES


# --- the peer: Algorithm 1 of the seed paper, plain autograd, independent of sldpack's unroll ----------------

def peer_hypergradient(net: Any, theta0: Sequence[Any], x: Any, y: Any, lrs: Any, xr: Any, yr: Any,
                       mode: str) -> tuple[Any, Any, Any, Any]:
    """Outer loss and its gradients w.r.t. images ``x``, label logits ``y`` (softmax targets) and ``lrs``.

    ``net`` only lends its structure (``functional_call``); it must be in train mode (batch statistics).
    ``graph``: T steps ``w <- w - lr_i * grad`` with ``create_graph``, one backward from the outer loss.
    ``recompute``: the forward walk keeps only w_t; the backward walk rebuilds step i's gradient
    ``gw = lr_i * grad L_i(w_i)`` with ``create_graph`` and pulls the adjoint ``dw`` through
    ``w_{i+1} = w_i - gw`` as one vector-Jacobian product w.r.t. (w_i, x, y, lr_i), as ssnl's code does.
    """
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    names = [n for n, _ in net.named_parameters()]
    bufs = {n: b.detach().clone() for n, b in net.named_buffers()}
    x, y, a = (t.detach().requires_grad_(True) for t in (x, y, lrs))

    def f(w: Sequence[Any], inp: Any) -> Any:
        return functional_call(net, ({**dict(zip(names, w, strict=True)), **bufs}), (inp,))

    def inner_loss(w: Sequence[Any], xx: Any, yy: Any) -> Any:
        return -(torch.softmax(yy, -1) * F.log_softmax(f(w, xx), -1)).sum(-1).mean()

    steps = int(a.shape[0])
    if mode == "graph":
        w = [t.detach().requires_grad_(True) for t in theta0]
        for i in range(steps):
            g = torch.autograd.grad(inner_loss(w, x, y), w, create_graph=True)
            w = [wi - a[i] * gi for wi, gi in zip(w, g, strict=True)]
        loss = F.cross_entropy(f(w, xr), yr)
        gx, gy, ga = torch.autograd.grad(loss, [x, y, a])
        return loss.detach(), gx, gy, ga
    ws: list[list[Any]] = []
    w = [t.detach() for t in theta0]
    for i in range(steps):
        ws.append(w)
        wg = [t.detach().requires_grad_(True) for t in w]
        g = torch.autograd.grad(inner_loss(wg, x.detach(), y.detach()), wg)
        with torch.no_grad():
            w = [wi - a[i] * gi for wi, gi in zip(wg, g, strict=True)]
    wt = [t.detach().requires_grad_(True) for t in w]
    loss = F.cross_entropy(f(wt, xr), yr)
    dw = list(torch.autograd.grad(loss, wt))
    gx, gy, ga = torch.zeros_like(x), torch.zeros_like(y), torch.zeros_like(a)
    for i in reversed(range(steps)):
        wi = [t.detach().requires_grad_(True) for t in ws[i]]
        gw = torch.autograd.grad(inner_loss(wi, x, y), wi, grad_outputs=a[i], create_graph=True)
        hv = torch.autograd.grad(gw, [*wi, x, y, a], grad_outputs=[-d for d in dw])
        with torch.no_grad():
            dw = [d + h for d, h in zip(dw, hv[:len(wi)], strict=True)]
            gx += hv[-3]
            gy += hv[-2]
            ga += hv[-1]
    return loss.detach(), gx, gy, ga


def peer_run(spec: dict[str, Any], on_iteration: Callable[[int], None]) -> None:
    """The peer's outer loop: real batch, hypergradient, Adam step (images lr, lrs lr / 10, labels lr)."""
    import torch

    from sldpack.nn.zoo import build

    a = ARCHS[spec["arch"]]
    size = int(spec["size"])
    net = build(a["arch"], in_channels=1, num_classes=CLASSES, image_size=(size, size), batchnorm=a["batchnorm"],
                options=a.get("arch_options", {}))
    net.train()
    theta0 = [p.detach().clone() for p in net.parameters()]
    xs, ys = _data(size)
    rng = np.random.default_rng(1)
    pool = [np.flatnonzero(ys == c) for c in range(CLASSES)]

    def real(k: int) -> tuple[Any, Any]:
        idx = np.concatenate([rng.choice(pool[c], k // CLASSES, replace=False) for c in range(CLASSES)])
        return (torch.from_numpy(xs[idx, None].astype(np.float32) / 127.5 - 1.0),
                torch.from_numpy(ys[idx].astype(np.int64)))

    x = real(CLASSES * PER_CLASS)[0].clone().requires_grad_(True)
    y = torch.zeros(CLASSES * PER_CLASS, CLASSES)
    y[torch.arange(y.shape[0]), torch.arange(y.shape[0]) % CLASSES] = 2.0
    y.requires_grad_(True)
    lrs = torch.full((STEPS,), INNER_LR, requires_grad=True)
    opt = torch.optim.Adam([{"params": [x], "lr": LR}, {"params": [lrs], "lr": LR / 10},
                            {"params": [y], "lr": LR}])
    for it in range(int(spec["iters"]) + 1):
        xr, yr = real(BATCH_REAL)
        _loss, gx, gy, ga = peer_hypergradient(net, theta0, x, y, lrs, xr, yr, spec["unroll"])
        x.grad, y.grad, lrs.grad = gx, gy, ga
        opt.step()
        opt.zero_grad(set_to_none=True)
        on_iteration(it + 1)


# --- one configuration per process ---------------------------------------------------------------------

def child(spec: dict[str, Any], out: Path) -> None:
    """One configuration in this (fresh) process; with torch.distributed env, one rank of it."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    iters = int(spec["iters"])
    win = Window()

    def on_iteration(done: int, *_: Any) -> None:
        if done == 1:  # the warm-up iteration ends: the measured window opens
            win.open()
            return
        win.lap()
        if done == iters + 1:
            raise _StopRunError

    with contextlib.suppress(_StopRunError):
        if spec["impl"] == "peer":
            peer_run(spec, on_iteration)
        else:
            from sldpack.nn.distill import DistillConfig, distill
            from sldpack.pipelines.sources import ArraySource

            a = ARCHS[spec["arch"]]
            cfg = DistillConfig(arch=a["arch"], arch_options=a.get("arch_options", {}), batchnorm=a["batchnorm"],
                                images_per_class=PER_CLASS, steps=STEPS, epochs=1, iterations=iters + 2,
                                batch_real=BATCH_REAL, inner_lr=INNER_LR, lr=LR, device="cpu", checkpoint_every=0,
                                select="last", **_unroll_fields(spec["unroll"]))
            distill(ArraySource(*_data(int(spec["size"]))), cfg, on_iteration=on_iteration)
    res = win.close()
    rank = os.environ.get("RANK", "0")
    (out.parent / f"{out.name}.{rank}").write_text(json.dumps(res))


def run_config(impl: str, arch: str, size: int, unroll: str, nproc: int, iters: int, threads: int,
               timeout_s: float) -> dict[str, Any]:
    from sldpack.nn.distributed import launch

    spec = {"impl": impl, "arch": arch, "size": size, "unroll": unroll, "iters": iters, "threads": threads}
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
            raise SystemExit(f"{impl} {arch} {size}px {unroll} nproc={nproc}: child exited {code}")
        ranks = [json.loads((Path(tmp) / f"res.{r}").read_text()) for r in range(nproc)]
    return {"impl": impl, "arch": arch, "size": size, "unroll": unroll, "nproc": nproc,
            "cpu_s": max(r["cpu_s"] for r in ranks), "wall_s": max(r["wall_s"] for r in ranks),
            "peak_gib": max(r["peak_bytes"] for r in ranks) / GIB,
            "peak_sum_gib": sum(r["peak_bytes"] for r in ranks) / GIB,
            "peak_is_window": all(r["peak_is_window"] for r in ranks),
            "load": ranks[0]["load_open"][0], "load_end": ranks[0]["load_close"][0],
            "cpu_laps": ranks[0]["cpu_laps"], "wall_laps": ranks[0]["wall_laps"]}


def _plan(args: argparse.Namespace) -> list[tuple[str, str, int, str, int]]:
    plan = []
    for arch in args.archs.split(","):
        if arch not in ARCHS:
            raise SystemExit(f"unknown architecture {arch!r}; one of {', '.join(ARCHS)}")
        for size in (int(s) for s in args.sizes.split(",")):
            for nproc in (int(p) for p in args.nproc.split(",")):
                for unroll in args.unroll.split(","):
                    if unroll.endswith("+shard") and nproc == 1:
                        continue  # one process has nothing to shard: the row would repeat plain recompute
                    plan.append(("sldpack", arch, size, unroll, nproc))
                    if args.peer and nproc == 1 and unroll in ("graph", "recompute"):
                        plan.append(("peer", arch, size, unroll, nproc))
    return plan


def _ratio_lines(rows: list[dict[str, Any]]) -> list[str]:
    out = ["", "sldpack / peer (same arch, size and mode; < 1: sldpack is faster or smaller):"]
    for r in rows:
        if r["impl"] != "sldpack":
            continue
        for p in rows:
            if p["impl"] == "peer" and all(p[k] == r[k] for k in ("arch", "size", "unroll", "nproc")):
                out.append(f"  {r['arch']} {r['size']} px {r['unroll']:9}: CPU time {r['cpu_s'] / p['cpu_s']:.2f}x, "
                           f"wall time {r['wall_s'] / p['wall_s']:.2f}x, peak memory "
                           f"{r['peak_gib'] / p['peak_gib']:.2f}x  ({r['cpu_s']:.2f} vs {p['cpu_s']:.2f} CPU s/it, "
                           f"{r['peak_gib']:.3f} vs {p['peak_gib']:.3f} GiB)")
    return out if len(out) > 2 else []


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", default="resnet18,vgg16", help="comma list of " + ",".join(ARCHS))
    ap.add_argument("--sizes", default="224,299", help="comma list of image sizes (px)")
    ap.add_argument("--unroll", default="graph,recompute",
                    help="comma list of unroll modes; recompute:K keeps every K-th theta only; a +shard suffix "
                    "also splits each step's images across processes (nproc > 1, architectures without BN)")
    ap.add_argument("--nproc", default="1,2", help="comma list of process counts")
    ap.add_argument("--iters", type=int, default=2, help="timed outer iterations (>= 2), after one warm-up")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--peer", action="store_true",
                    help="also run the peer (Algorithm 1, plain autograd) interleaved, and print sldpack / peer ratios")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per configuration")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--child", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(json.loads(args.child[0]), Path(args.child[1]))
        return
    if args.iters < 2:
        raise SystemExit("--iters must be >= 2 (timed iterations after the warm-up)")
    rows: list[dict[str, Any]] = []
    print(f"one warm-up + {args.iters} timed outer iterations per row, {args.threads} thread(s); before: "
          f"{load_text()}", flush=True)
    print(f"{'impl':7} {'arch':9} {'px':>4} {'unroll':11} {'proc':>4} {'CPU s/it':>8} {'wall s/it':>9} "
          f"{'peak GiB':>8} {'sum GiB':>8} {'load':>5} {'300 it CPU h':>12}", flush=True)
    for impl, arch, size, unroll, nproc in _plan(args):
        r = run_config(impl, arch, size, unroll, nproc, args.iters, args.threads, args.timeout)
        rows.append(r)
        print(f"{impl:7} {arch:9} {size:4d} {unroll:11} {nproc:4d} {r['cpu_s']:8.2f} {r['wall_s']:9.2f} "
              f"{r['peak_gib']:8.3f} {r['peak_sum_gib']:8.3f} {r['load']:5.2f} {300 * r['cpu_s'] / 3600:12.2f}"
              + ("" if r["peak_is_window"] else "  (peak: whole process, /proc/self/clear_refs unavailable)"),
              flush=True)
    print("\nrecompute / graph (same implementation, arch, size and process count):")
    for g in rows:
        for r in rows:
            if (g["unroll"] == "graph" and r["unroll"].startswith("recompute")
                    and all(r[k] == g[k] for k in ("impl", "arch", "size", "nproc"))):
                mem, tim = r["peak_gib"] / g["peak_gib"], r["cpu_s"] / g["cpu_s"]
                line = (f"  {g['impl']} {g['arch']} {g['size']} px, {g['nproc']} proc, {r['unroll']}: memory "
                        f"{mem:.2f}x, CPU time {tim:.2f}x, peak {r['peak_gib']:.3f} GiB")
                if (g["impl"] == "sldpack" and g["arch"] == "resnet18" and g["size"] == 224
                        and r["unroll"] == "recompute"):
                    ok = r["peak_gib"] <= 2.2 and mem <= 0.4 and tim <= 1.2
                    line += f"  [goal <= 2.2 GiB, <= 0.40x, <= 1.20x: {'met' if ok else 'NOT met'}]"
                print(line)
    for line in _ratio_lines(rows):
        print(line)
    multi = [(one, r) for one in rows for r in rows
             if one["nproc"] == 1 and r["nproc"] > 1 and one["impl"] == r["impl"] == "sldpack"
             and r["arch"] == one["arch"] and r["size"] == one["size"]
             and r["unroll"].removesuffix("+shard") == one["unroll"]]
    if multi:
        print("\nspeed-up (1 process wall s/it / N processes wall s/it, same arch, size and unroll):")
        for one, r in multi:
            print(f"  {one['arch']} {one['size']} px {one['unroll']} -> {r['unroll']}: {r['nproc']} processes "
                  f"{one['wall_s'] / r['wall_s']:.2f}x")
    print(f"\nafter: {load_text()}. Outer iterations only (final phases are timed by `sldp distill` itself); "
          "peak = peak RSS of the timed iterations. 300 it CPU h extrapolates CPU s/it.")
    if not all(math.isfinite(r["cpu_s"]) for r in rows):
        raise SystemExit("a configuration timed nothing")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
