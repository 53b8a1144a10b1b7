#!/usr/bin/env python3
"""Replay benchmark (not a test): first-build start-up in fresh processes, and replay time next to its floor.

Part 1, start-up. Each figure is one fresh Python process (``--fresh`` of them, median printed) that imports
torch and sldpack first and then times only the call named:

* ``build (direct)``   : ``zoo.build`` as shipped: meta module, then zero tensors allocated directly;
* ``build (to_empty)`` : the previous path, ``module.to_empty(device="cpu")`` then zeroing and BN reset,
  whose ``torch._refs.empty_like`` imports ``torch.fx.experimental.symbolic_shapes`` and sympy;
* ``import sympy path``: just ``import torch.fx.experimental.symbolic_shapes`` (the cost the old path paid);
* ``import inductor cfg``: just ``import torch._inductor.config`` (what ``torch.use_deterministic_algorithms``
  imports on its first call; replay now calls it only when it changes the setting, i.e. on CUDA);
* ``load_model``       : ``sldpack.nn.replay.load_model`` on a small file of the same network (build + init +
  unroll + theta_bn), with ``sympy`` / ``torch._inductor`` in ``sys.modules`` afterwards reported.

Part 2, replay vs floor (in this process, ``--threads`` torch threads, best of ``--repeat``, interleaved):
``replay`` is ``replay_arrays`` on a file of M random images, T = steps x epochs learning rates, every step
using all M images; ``floor`` is T plain forward + backward passes + in-place SGD updates of the same
module on the same [M, C, H, W] batch (``loss.backward()``, soft cross-entropy), i.e. what T training steps
cost with no replay machinery; ``build+init`` is ``build_module`` alone. The ratio replay / floor is
the replay's overhead over the unavoidable work (build+init is part of the replay figure).

Usage: python benchmarks/bench_replay.py [--fresh 3] [--repeat 3] [--threads 1] [--resnet-size 64]
                                         [--convnet-size 28] [--m 9] [--steps 3] [--epochs 3] [--skip-startup]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, sys, time
import torch
from torch import nn
import sldpack
from sldpack.nn import zoo
from sldpack.nn.replay import load_model
mode, arch, bn, side, path = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), sys.argv[5]
t0 = time.perf_counter()
if mode == "direct":
    zoo.build(arch, in_channels=1, num_classes=3, image_size=(side, side), batchnorm=bn)
elif mode == "to_empty":
    m = zoo._build_meta(arch, 1, 3, (side, side), bn, None).to_empty(device="cpu")
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.reset_running_stats()
elif mode == "sympy":
    import torch.fx.experimental.symbolic_shapes  # noqa: F401
elif mode == "inductor":
    import torch._inductor.config  # noqa: F401
elif mode == "load_model":
    load_model(path)
dt = time.perf_counter() - t0
print(json.dumps({"s": dt, "sympy": "sympy" in sys.modules, "inductor": "torch._inductor.config" in sys.modules}))
"""


def _write_file(path: Path, arch: str, options: dict[str, int], bn: bool, side: int, m: int, steps: int,
                epochs: int) -> None:
    import sldpack
    from sldpack import ArchSpec, DistillSpec, InitSpec, LabelSpec, Manifest, Preprocessing, Provenance, Tensor

    rng = np.random.default_rng(0)
    man = Manifest(arch=ArchSpec(arch, 1, 3, (side, side), batchnorm=bn, options=options),
                   init=InitSpec(seed=1), provenance=Provenance("bench_replay", "2026-01-01T00:00:00Z"),
                   distill=DistillSpec("sldd", steps, epochs, tuple(tuple(range(m)) for _ in range(steps))),
                   labels=LabelSpec(("I", "N", "P")), preprocessing=Preprocessing((0.5,), (0.25,), (side, side), 1))
    sldpack.write(path, man, {
        "images": Tensor("images", rng.standard_normal((m, 1, side, side)).astype(np.float32)),
        "labels": Tensor("labels", rng.standard_normal((m, 3)).astype(np.float32)),
        "lrs": Tensor("lrs", rng.uniform(0.005, 0.02, steps * epochs).astype(np.float32)),
    })


def _fresh(mode: str, arch: str, bn: bool, side: int, path: Path, n: int) -> tuple[float, bool, bool]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]), OMP_NUM_THREADS="1")
    times, sym, ind = [], False, False
    for _ in range(n):
        out = subprocess.run([sys.executable, "-c", _CHILD, mode, arch, "1" if bn else "0", str(side), str(path)],
                             capture_output=True, text=True, env=env, timeout=600, check=True)
        d = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(float(d["s"]))
        sym, ind = sym or bool(d["sympy"]), ind or bool(d["inductor"])
    return statistics.median(times), sym, ind


def startup(args: argparse.Namespace, tmp: Path) -> None:
    print(f"== first call in a fresh process (median of {args.fresh} processes; torch+sldpack already imported)")
    cases = [("resnet18@1", {}, True, 32), ("convnet@1", {"depth": 3, "width": 128}, False, 28)]
    for arch, opts, bn, side in cases:
        path = tmp / f"start_{arch.split('@')[0]}.sldp"
        _write_file(path, arch, opts, bn, side, 3, 1, 1)
        # convnet's default options are depth 3 width 128, what the child builds
        direct = _fresh("direct", arch, bn, side, path, args.fresh)
        old = _fresh("to_empty", arch, bn, side, path, args.fresh)
        lm = _fresh("load_model", arch, bn, side, path, args.fresh)
        print(f"{arch}{'+BN' if bn else ''} {side}px: build direct {direct[0] * 1e3:8.1f} ms (sympy imported: "
              f"{direct[1]})   build to_empty {old[0] * 1e3:8.1f} ms (sympy: {old[1]})   ratio old/new "
              f"{old[0] / direct[0]:6.1f}x   load_model (T=1) {lm[0] * 1e3:8.1f} ms (sympy: {lm[1]}, "
              f"inductor: {lm[2]})")
    sy = _fresh("sympy", "convnet@1", False, 28, tmp / "none", args.fresh)
    ind = _fresh("inductor", "convnet@1", False, 28, tmp / "none", args.fresh)
    print(f"import torch.fx.experimental.symbolic_shapes alone: {sy[0] * 1e3:.1f} ms; "
          f"import torch._inductor.config alone: {ind[0] * 1e3:.1f} ms")


def _floor(module: Any, x: Any, y: Any, lrs: Any) -> float:
    import torch

    from sldpack.nn.unroll import soft_cross_entropy

    params = list(module.parameters())
    t0 = time.perf_counter()
    for lr in lrs.tolist():
        loss = soft_cross_entropy(module(x), y)
        module.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            for p in params:
                if p.grad is not None:
                    p.sub_(p.grad, alpha=lr)
    return time.perf_counter() - t0


def replay_vs_floor(args: argparse.Namespace, tmp: Path) -> None:
    import torch

    import sldpack
    from sldpack.nn.network import build_module
    from sldpack.nn.replay import replay_arrays
    from sldpack.nn.unroll import apply_label_transform, set_inner_mode

    torch.set_num_threads(args.threads)
    t = args.steps * args.epochs
    print(f"\n== replay vs floor ({args.threads} thread(s), M = {args.m} images per step, T = {args.steps} x "
          f"{args.epochs} = {t}, best of {args.repeat})")
    cases = [("convnet@1", {"depth": 3, "width": 128}, False, args.convnet_size),
             ("resnet18@1", {}, True, args.resnet_size)]
    print(f"{'network':<22}{'build+init':>12}{'replay':>10}{'floor':>10}{'replay/floor':>14}"
          f"{'(replay-build)/floor':>22}{'replay/step':>13}{'floor/step':>12}")
    for arch, opts, bn, side in cases:
        path = tmp / f"rep_{arch.split('@')[0]}.sldp"
        _write_file(path, arch, opts, bn, side, args.m, args.steps, args.epochs)
        with sldpack.open(path) as f:
            man, arrays = f.manifest, f.arrays()
        rep, flo, bld = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            module, _ = build_module(man.arch, man.init)
            bld.append(time.perf_counter() - t0)
            rep.append(replay_arrays(man, arrays, threads=args.threads).seconds)
            set_inner_mode(module)
            x = torch.from_numpy(np.ascontiguousarray(arrays["images"]))
            y = apply_label_transform(torch.from_numpy(np.ascontiguousarray(arrays["labels"])), "softmax")
            flo.append(_floor(module, x, y, torch.from_numpy(np.ascontiguousarray(arrays["lrs"]))))
        r, fl, b = min(rep), min(flo), min(bld)
        name = f"{arch.split('@')[0]}{'+BN' if bn else ''} {side}px"
        print(f"{name:<22}{b:11.3f}s{r:9.3f}s{fl:9.3f}s{r / fl:13.2f}x{(r - b) / fl:21.2f}x"
              f"{(r - b) / t * 1e3:11.1f}ms{fl / t * 1e3:10.1f}ms")
    print("replay includes build+init; replay/step = (replay - build+init) / T; floor = T plain fwd+bwd+SGD "
          "steps on the same module and batch.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fresh", type=int, default=3, help="fresh processes per start-up figure (median)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resnet-size", type=int, default=64)
    ap.add_argument("--convnet-size", type=int, default=28)
    ap.add_argument("--m", type=int, default=9, help="distilled images (all used by every step)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--skip-startup", action="store_true")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, pid {os.getpid()}, cpus {os.cpu_count()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_startup:
            startup(args, tmp)
        replay_vs_floor(args, tmp)


if __name__ == "__main__":
    main()
