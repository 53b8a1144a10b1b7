#!/usr/bin/env python3
"""Portable-init benchmark (not a test): values per second, side by side in one run.

For the weight tensors (rank >= 2, what the scheme applies to) of ResNet18 and VGG16 with 1 input
channel and 3 classes (224 x 224), it times, on identical shape lists:

* ``torch``  : ``torch.nn.init.xavier_normal_`` (or ``xavier_uniform_``) on each preallocated tensor,
  PyTorch's native, non-portable init (``--threads`` torch threads);
* ``numpy``  : ``sldpack.init.generate(..., backend="numpy")`` per tensor, the reference, one thread;
* ``c``      : ``sldpack.init.generate(..., backend="c")`` per tensor, the compiled kernel, one thread
  (same bits; skipped with a note when the extension is not built);
* ``path``   : ``sldpack.nn.init.theta0_arrays`` (default backend) with ``--threads`` workers, writing
  into the same preallocated torch tensors in place: what ``init_module_`` does, minus the digests.

and prints values/s and the ratio ``time / torch time`` (the issue's target: ratio <= 2), by wall clock
and, for the single-threaded numpy and C runs, by process CPU time too (steadier on a shared machine).
All are interleaved and the best of ``--repeat`` runs is kept; on a shared machine, run it twice.

Usage: python benchmarks/bench_init.py [--arch resnet18,vgg16] [--scheme xavier_normal,xavier_uniform]
                                       [--repeat 3] [--threads N] [--no-numpy]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from sldpack.init import c_kernel_available, default_backend, generate
from sldpack.nn.init import theta0_arrays

Shape = tuple[int, ...]


def _fallback_shapes(arch: str) -> list[tuple[str, Shape]]:
    """Classic definitions (1 input channel, 3 classes), used only if the zoo is unavailable."""
    if arch == "vgg16":
        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        out: list[tuple[str, Shape]] = []
        cin, i = 1, 0
        for v in cfg:
            if v == "M":
                i += 1
                continue
            assert isinstance(v, int)
            out.append((f"features.{i}.weight", (v, cin, 3, 3)))
            cin, i = v, i + 2
        return [*out, ("classifier.0.weight", (4096, 25088)), ("classifier.3.weight", (4096, 4096)),
                ("classifier.6.weight", (3, 4096))]
    out = [("conv1.weight", (64, 1, 7, 7))]
    cin = 64
    for li, (c, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for b in range(2):
            out.append((f"layer{li}.{b}.conv1.weight", (c, cin, 3, 3)))
            out.append((f"layer{li}.{b}.conv2.weight", (c, c, 3, 3)))
            if b == 0 and (stride != 1 or cin != c):
                out.append((f"layer{li}.{b}.downsample.0.weight", (c, cin, 1, 1)))
            cin = c
    return [*out, ("fc.weight", (3, 512))]


def weight_shapes(arch: str) -> tuple[list[tuple[str, Shape]], str]:
    """Rank >= 2 weights of ``arch`` from the zoo (or the hard-coded fallback) and where they came from."""
    try:
        from sldpack.nn.zoo import param_shapes

        ps = param_shapes(f"{arch}@1", in_channels=1, num_classes=3, image_size=(224, 224))
        return [(n, s) for n, s in ps if n.endswith(".weight") and len(s) >= 2], f"sldpack.nn.zoo {arch}@1"
    except ImportError:
        return _fallback_shapes(arch), "hard-coded classic shapes"


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def measure(
    shapes: list[tuple[str, Shape]], scheme: str, threads: int, repeat: int, kinds: list[str]
) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of each of ``kinds`` (torch, numpy, c, path) on the same shapes.

    They are interleaved within each repeat, so a load change on a shared machine hits all of them.
    """
    tensors = [torch.empty(s) for _, s in shapes]
    native = getattr(torch.nn.init, f"{scheme}_")

    def run_torch() -> None:
        for t in tensors:
            native(t)

    def run_numpy() -> None:
        for name, s in shapes:
            generate(1, name, s, scheme, backend="numpy")

    def run_c() -> None:
        for name, s in shapes:
            generate(1, name, s, scheme, backend="c")

    views = {name: t.numpy() for t, (name, _) in zip(tensors, shapes, strict=True)}

    def run_path() -> None:
        theta0_arrays(shapes, 1, scheme, workers=threads, out=views)

    fns = {"torch": run_torch, "numpy": run_numpy, "c": run_c, "path": run_path}
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        for key in kinds:
            w, c = timed(fns[key])
            old = best.get(key, (float("inf"), float("inf")))
            best[key] = (min(old[0], w), min(old[1], c))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18,vgg16")
    ap.add_argument("--scheme", default="xavier_normal,xavier_uniform")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--no-numpy", action="store_true", help="skip the (slow) numpy reference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kinds = ["torch", *([] if args.no_numpy else ["numpy"]), *(["c"] if c_kernel_available() else []), "path"]
    variant = ""
    if c_kernel_available():
        from sldpack.init import _kernels

        variant = f" (kernel variant {_kernels.variant()})"
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, path workers {args.threads}, "
          f"path backend {default_backend()}{variant}; best of {args.repeat} interleaved runs; "
          f"os.getloadavg() = {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not c_kernel_available():
        print("(the C kernel is not built: no 'c' column; `pip install -e .` with a C compiler builds it)")
    print("M/s = million values per second (wall clock); x = time / torch time (wall; cpu = process CPU time)")
    head = f"{'arch':9s} {'scheme':15s} {'values':>11s} {'torch M/s':>10s}"
    for k in kinds[1:]:
        head += f" {k + ' M/s':>10s} {'x':>5s}" + (f" {'cpu':>5s}" if k in ("numpy", "c") else "")
    print(head)
    for arch in args.arch.split(","):
        shapes, source = weight_shapes(arch)
        n = sum(int(torch.Size(s).numel()) for _, s in shapes)
        for scheme in args.scheme.split(","):
            b = measure(shapes, scheme, args.threads, args.repeat, kinds)
            tw, tc = b["torch"]
            line = f"{arch:9s} {scheme:15s} {n:11,d} {n / tw / 1e6:10.1f}"
            for k in kinds[1:]:
                w, c = b[k]
                line += f" {n / w / 1e6:10.1f} {w / tw:5.2f}" + (f" {c / tc:5.2f}" if k in ("numpy", "c") else "")
            print(line, flush=True)
        print(f"  ({arch}: {len(shapes)} weight tensors from {source})")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
