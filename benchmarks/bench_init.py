#!/usr/bin/env python3
"""Portable-init benchmark (not a test): values per second, side by side in one run.

For the weight tensors (rank >= 2, what the scheme applies to) of ResNet18 and VGG16 with 1 input
channel and 3 classes (224 x 224), it times, on identical shape lists:

* ``torch``  : ``torch.nn.init.xavier_normal_`` (or ``xavier_uniform_``) on each preallocated tensor,
  PyTorch's native, non-portable init;
* ``numpy``  : ``sldpack.init.generate`` per tensor, the numpy reference, one thread;
* ``path``   : ``sldpack.nn.init.theta0_arrays`` with ``--threads`` workers plus the copy into the
  same torch tensors: what ``init_module_`` does, minus the digests.

and prints values/s and the ratio ``time / torch time`` (the issue's target: ratio <= 2), by wall clock
and, for the single-threaded numpy reference, by process CPU time (steadier on a shared machine). The
three are interleaved and the best of ``--repeat`` runs is kept; on a shared machine, run it twice.

Usage: python benchmarks/bench_init.py [--arch resnet18,vgg16] [--scheme xavier_normal,xavier_uniform]
                                       [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from sldpack.init import generate
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


def measure(shapes: list[tuple[str, Shape]], scheme: str, threads: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of torch native, numpy reference and torch path on the same shapes.

    The three are interleaved within each repeat, so a load change on a shared machine hits all three.
    """
    tensors = [torch.empty(s) for _, s in shapes]
    native = getattr(torch.nn.init, f"{scheme}_")

    def run_torch() -> None:
        for t in tensors:
            native(t)

    def run_numpy() -> None:
        for name, s in shapes:
            generate(1, name, s, scheme)

    def run_path() -> None:
        values = theta0_arrays(shapes, 1, scheme, workers=threads)
        with torch.no_grad():
            for t, (name, _) in zip(tensors, shapes, strict=True):
                t.copy_(torch.from_numpy(values[name]))

    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        for key, fn in (("torch", run_torch), ("numpy", run_numpy), ("path", run_path)):
            w, c = timed(fn)
            old = best.get(key, (float("inf"), float("inf")))
            best[key] = (min(old[0], w), min(old[1], c))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18,vgg16")
    ap.add_argument("--scheme", default="xavier_normal,xavier_uniform")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, path workers {args.threads}; "
          f"best of {args.repeat} interleaved runs; os.getloadavg() = {os.getloadavg()[0]:.1f}")
    print("M/s = million values per second (wall clock); ratio = time / torch time (wall; cpu = process CPU time)")
    print(f"{'arch':9s} {'scheme':15s} {'values':>11s} {'torch M/s':>10s} {'numpy M/s':>10s} {'ratio':>6s} "
          f"{'cpu':>5s} {'path M/s':>9s} {'ratio':>6s}")
    for arch in args.arch.split(","):
        shapes, source = weight_shapes(arch)
        n = sum(int(torch.Size(s).numel()) for _, s in shapes)
        for scheme in args.scheme.split(","):
            b = measure(shapes, scheme, args.threads, args.repeat)
            (tw, tc), (nw, nc), (pw, _) = b["torch"], b["numpy"], b["path"]
            print(f"{arch:9s} {scheme:15s} {n:11,d} {n / tw / 1e6:10.1f} {n / nw / 1e6:10.1f} {nw / tw:6.2f} "
                  f"{nc / tc:5.2f} {n / pw / 1e6:9.1f} {pw / tw:6.2f}")
        print(f"  ({arch}: {len(shapes)} weight tensors from {source})")


if __name__ == "__main__":
    main()
