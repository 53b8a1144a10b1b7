"""How far the distiller's outer iteration is from this machine's limit (not a test): a roofline, one thread.

1. Achievable float32 FLOP/s on this CPU with one thread: a large GEMM (2048 x 2048 x 2048) and the convolutions
   of the benchmark's shapes (ResNet18's 64 -> 64 3x3 layer on a batch of 9 at the input size's 1/4 resolution;
   ConvNet's 64 -> 64 3x3 layer at full resolution), forward and backward (``convolution_backward``, input and
   weight gradients), best of a few repeats.
2. FLOPs of one outer iteration (M = 9 distilled images, every inner step uses all 9, T = 9, K = 12 real
   images, 3 classes, batch norm), counted with ``torch.utils.flop_counter``'s formulas (its
   ``flop_registry``, in a dispatch mode) around :func:`sldpack.nn.hypergrad.hypergradient`: forward,
   backward, the double backward (graph) or Hessian-vector products (recompute) of every inner step, and the
   outer loss. The counter sees matrix products and
   convolutions (forward and backward) only: batch norm, ReLU, pooling and the element-wise updates are not
   counted, so the achieved fraction is a lower bound of the machine's use. Also printed, to read the total
   against: the FLOPs of one forward pass of the step batch (F) and the iteration as a multiple of F.
3. Achieved FLOP/s = counted FLOPs / CPU seconds of the same call (best of ``--iter-repeats`` timed calls after
   a warm-up call), and that as a
   fraction of the GEMM and of the convolution figure.

    python benchmarks/bench_roofline.py                 # ConvNet 28 px, ResNet18 64 px
    python benchmarks/bench_roofline.py --big           # also ResNet18 224 px (about 5 CPU minutes per mode)
    python benchmarks/bench_roofline.py --configs resnet18:64 --modes graph
    python benchmarks/bench_roofline.py --compare-conv  # + FastConvGrad vs PyTorch's conv double backward
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import load_text  # noqa: E402

CONFIGS: dict[str, dict[str, Any]] = {
    "convnet": {"arch": "convnet@1", "options": {"depth": 3, "width": 64}, "probe": (64, 1)},
    "resnet18": {"arch": "resnet18@1", "options": {}, "probe": (64, 4)},
}
M, STEPS, K, CLASSES = 9, 9, 12, 3


def _best_cpu(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def achievable(size: int, arch: str, repeats: int) -> dict[str, float]:
    """GEMM and convolution FLOP/s (float32, this thread count) at the benchmark's shapes."""
    import torch
    import torch.nn.functional as F

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    gemm = 2 * n**3 / _best_cpu(lambda: a @ b, repeats)
    ch, down = CONFIGS[arch]["probe"]
    hw = max(size // down, 1)
    x = torch.randn(M, ch, hw, hw)
    w = torch.randn(ch, ch, 3, 3)
    flops = 2 * M * ch * ch * 9 * hw * hw
    fwd = flops / _best_cpu(lambda: F.conv2d(x, w, padding=1), repeats)
    go = torch.randn(M, ch, hw, hw)
    bwd = 2 * flops / _best_cpu(lambda: torch.ops.aten.convolution_backward(
        go, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False]), repeats)
    return {"gemm": gemm, "conv_fwd": fwd, "conv_bwd": bwd, "conv": max(fwd, bwd), "conv_hw": float(hw),
            "conv_ch": float(ch)}


def _flop_count_mode() -> Any:
    """A dispatch mode that adds up torch.utils.flop_counter's FLOP formulas of every aten op it sees.

    FlopCounterMode itself is not used: its module hooks do not support ``torch.autograd.grad``, which the
    unroll calls; the formulas (matmul, convolution, convolution_backward, ...) are the same registry.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class FlopCount(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            count = flop_registry.get(func._overloadpacket)
            if count is not None:
                self.total += int(count(*args, **kwargs, out_val=out))
            return out

    return FlopCount


def iteration(arch: str, size: int, mode: str, fast_conv: bool = True, repeats: int = 1) -> dict[str, float]:
    """FLOPs (counted) and CPU seconds (best of ``repeats`` calls after a warm-up) of one hypergradient (= the
    compute of one outer iteration)."""
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call

    from sldpack.nn.hypergrad import hypergradient
    from sldpack.nn.unroll import make_schedule, scratch_buffers, set_inner_mode
    from sldpack.nn.zoo import build

    FlopCount = _flop_count_mode()
    c = CONFIGS[arch]
    net = build(c["arch"], in_channels=1, num_classes=CLASSES, image_size=(size, size), batchnorm=True,
                options=c["options"])
    set_inner_mode(net)
    g = torch.Generator().manual_seed(0)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.randn(M, 1, size, size, generator=g)
    p = torch.softmax(torch.randn(M, CLASSES, generator=g), -1)
    a = torch.full((STEPS,), 0.01)
    xr, yr = torch.randn(K, 1, size, size, generator=g), torch.arange(K) % CLASSES
    sched = make_schedule("all", num_images=M, steps=STEPS, epochs=1)

    def outer(theta: Any) -> Any:
        return F.cross_entropy(functional_call(net, (dict(theta), scratch_buffers(net)), (xr,)), yr)

    def call() -> Any:
        return hypergradient(net, theta0, scratch_buffers(net), x, p, a, sched, outer,  # type: ignore[arg-type]
                             mode=mode, fast_conv=fast_conv)

    with FlopCount() as fc:  # also the warm-up call
        call()
    total = float(fc.total)
    with FlopCount() as ff, torch.no_grad():
        functional_call(net, (theta0, scratch_buffers(net)), (x,))
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        call()
        best = min(best, time.process_time() - t)
    return {"flops": total, "forward_flops": float(ff.total), "cpu_s": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="convnet:28,resnet18:64", help="comma list of arch:size")
    ap.add_argument("--big", action="store_true", help="also resnet18:224")
    ap.add_argument("--modes", default="graph,recompute")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iter-repeats", type=int, default=2, help="timed hypergradient calls per row (best is kept)")
    ap.add_argument("--compare-conv", action="store_true",
                    help="also time each mode with PyTorch's own conv double backward (fast_conv=False), interleaved")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    configs = args.configs.split(",") + (["resnet18:224"] if args.big else [])
    print(f"torch {torch.__version__}, {args.threads} thread(s), float32; M={M}, T={STEPS}, K={K}; {load_text()}",
          flush=True)
    print(f"{'config':14} {'mode':9} {'GFLOP/it':>9} {'x F':>6} {'CPU s/it':>9} {'GFLOP/s':>8} "
          f"{'/GEMM':>6} {'/conv':>6}   achievable GFLOP/s: GEMM, conv fwd, conv bwd (shape)", flush=True)
    for item in configs:
        arch, _, size_s = item.partition(":")
        if arch not in CONFIGS:
            raise SystemExit(f"unknown architecture {arch!r}; one of {', '.join(CONFIGS)}")
        size = int(size_s)
        peak = achievable(size, arch, args.repeats)
        for mode in args.modes.split(","):
            r = iteration(arch, size, mode, repeats=args.iter_repeats)
            rate = r["flops"] / r["cpu_s"]
            print(f"{item:14} {mode:9} {r['flops'] / 1e9:9.2f} {r['flops'] / r['forward_flops']:6.1f} "
                  f"{r['cpu_s']:9.2f} {rate / 1e9:8.2f} {rate / peak['gemm']:6.2f} {rate / peak['conv']:6.2f}   "
                  f"{peak['gemm'] / 1e9:.1f}, {peak['conv_fwd'] / 1e9:.1f}, {peak['conv_bwd'] / 1e9:.1f} "
                  f"({M}x{int(peak['conv_ch'])}x{int(peak['conv_hw'])}^2, 3x3)", flush=True)
            if args.compare_conv:
                ref = iteration(arch, size, mode, fast_conv=False, repeats=args.iter_repeats)
                again = iteration(arch, size, mode, repeats=args.iter_repeats)
                fast_s = min(r["cpu_s"], again["cpu_s"])
                print(f"{'':14} {mode:9} PyTorch's conv double backward: {ref['cpu_s']:.2f} CPU s/it; FastConvGrad "
                      f"(runs before and after it) {fast_s:.2f}: {fast_s / ref['cpu_s']:.2f}x", flush=True)
    print(f"after: {load_text()}. CPU seconds (process time), one call after a warm-up; FLOPs counted by "
          "torch.utils.flop_counter formulas (matmul and convolution only); x F = iteration FLOPs / one forward "
          "of the M images. "
          f"pid {os.getpid()}")


if __name__ == "__main__":
    main()
