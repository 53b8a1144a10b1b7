"""GPU check, one command (not a test): what a CUDA machine does to replay and distillation.

    python benchmarks/gpu_check.py                 # everything; on a CPU-only machine the CPU parts
    python benchmarks/gpu_check.py --json out.json # also write the figures as JSON
    python benchmarks/gpu_check.py --tiny          # small sizes, small archs: seconds (tests/nn/test_gpu_check.py)

1. **Replay across devices**, for every zoo architecture (batch norm on, 1 x S x S, 2 classes, 2 images,
   T = 2; S = the architecture's minimum size, at least 32): a file is made on the CPU (its fingerprint is
   the CPU reference), then replayed on the CPU (must be exact), and twice on CUDA: status and max |probe
   logit deviation| against the file's tolerance, and whether the two CUDA replays give the same theta_opt
   digest (determinism of the CUDA kernels).
2. **Distillation speed** on CUDA: ResNet18 + BN and VGG16 at 224 and 299 px, M = 9 (3 per class x 3
   classes), T = 9, K = 12, graph vs recompute unroll: s/it (after a warm-up iteration) and peak CUDA memory
   (``torch.cuda.max_memory_allocated``). ``--tiny`` runs this part on the CPU at 32 px with a small ConvNet
   so the code path stays tested on machines without a GPU.
3. **1 vs N GPUs** (N = all visible, if more than one): the same run data-parallel over N processes (NCCL).
4. **Hypergradient paths** on every device (CPU, and CUDA when present): graph and recompute, each with the
   faster convolution second derivative (``FastConvGrad``, the default) and with PyTorch's own, in float32,
   for a ConvNet and a ResNet18 with batch norm at 32 px: max relative deviation of the image, label and
   learning-rate gradients from a float64 CPU reference (must stay below 1e-3). The files of part 1 are
   distilled with the default (fast) path, so their replay figures cover it too.

Parts that need CUDA print "CUDA not available: skipped ..." on a CPU machine.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


class _StopRunError(Exception):
    """Stops a distill run right after the last timed iteration (the final phases are not timed)."""


def _source(size: int, classes: int, channels: int = 1) -> Any:
    from sldpack.pipelines.sources import ArraySource

    rng = np.random.default_rng(0)
    n = 16 * classes
    return ArraySource(rng.integers(0, 255, (n, size, size)).astype(np.uint8), np.arange(n) % classes)


def replay_part(archs: list[str], cuda: bool, work: Path) -> list[dict[str, Any]]:
    """Make one file per architecture on the CPU, replay it on the CPU and (twice) on CUDA."""
    import torch

    from sldpack.nn.distill import DistillConfig, distill
    from sldpack.nn.verify import verify_replay
    from sldpack.nn.zoo import min_image_size

    rows = []
    for arch in archs:
        size = max(32, min_image_size(arch)[0])
        opts = {"depth": 2, "width": 16} if arch == "convnet@1" else {}
        cfg = DistillConfig(arch=arch, arch_options=opts, batchnorm=True, steps=2, iterations=0, batch_real=2,
                            device="cpu", bn_batches=1, bn_batch_size=8, checkpoint_every=0)
        t0 = time.perf_counter()
        res = distill(_source(size, 2), cfg)
        path = work / f"{arch.replace('@', '_')}.sldp"
        res.write(path)
        make_s = time.perf_counter() - t0
        cpu = verify_replay(path, device="cpu")
        row: dict[str, Any] = {"arch": arch, "size": size, "make_s": round(make_s, 2), "cpu_status": cpu.status,
                               "tolerance": cpu.tolerance}
        if cuda:
            a = verify_replay(path, device="cuda")
            b = verify_replay(path, device="cuda")
            row.update(cuda_status=a.status, cuda_max_dev=a.max_abs_deviation,
                       cuda_dev_over_tol=(a.max_abs_deviation or 0.0) / (a.tolerance or float("inf")),
                       cuda_same_digest=a.actual_sha256 == b.actual_sha256,
                       cuda_equals_cpu_digest=a.actual_sha256 == cpu.actual_sha256, cuda_s=round(a.seconds, 2))
        rows.append(row)
        dev_txt = ("" if not cuda else f"  cuda {row['cuda_status']} max dev {row['cuda_max_dev']:.3g} "
                   f"({row['cuda_dev_over_tol']:.2g} x tol {row['tolerance']:.3g}); two CUDA replays same "
                   f"digest: {row['cuda_same_digest']}")
        print(f"  {arch:12} {size:4d} px  cpu {cpu.status}{dev_txt}", flush=True)
        del res
        if cuda:
            torch.cuda.empty_cache()
    return rows


def distill_speed(arch: str, opts: dict[str, Any], bn: bool, size: int, unroll: str, device: str,
                  iters: int) -> dict[str, Any]:
    """s/it (after one warm-up) and peak device memory of the outer iterations."""
    import torch

    from sldpack.nn.distill import DistillConfig, distill

    cfg = DistillConfig(arch=arch, arch_options=opts, batchnorm=bn, images_per_class=3, steps=9, epochs=1,
                        iterations=iters + 2, batch_real=12, device=device, checkpoint_every=0,
                        unroll="recompute" if unroll == "recompute" else "graph")
    stamps: list[float] = []

    def on_iteration(done: int, loss: float) -> None:
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        if done == iters + 1:
            raise _StopRunError

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with contextlib.suppress(_StopRunError):
        distill(_source(size, 3), cfg, on_iteration=on_iteration)
    s_it = float(np.mean(np.diff(stamps)))
    peak = torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else float("nan")
    return {"arch": arch, "size": size, "unroll": unroll, "device": device, "s_per_it": s_it, "it_per_s": 1 / s_it,
            "peak_gib": peak}


def multi_gpu(n: int, size: int, iters: int) -> dict[str, Any]:
    """ResNet18 at ``size`` px, graph unroll, data-parallel over ``n`` processes (NCCL) via the CLI."""
    from sldpack.nn.distributed import launch

    with tempfile.TemporaryDirectory(prefix="sldp-gpucheck-") as tmp:
        npz = Path(tmp) / "d.npz"
        rng = np.random.default_rng(0)
        np.savez(npz, train_images=rng.integers(0, 255, (48, size, size)).astype(np.uint8),
                 train_labels=np.arange(48) % 3)
        out = Path(tmp) / "run"
        argv = [sys.executable, "-m", "sldpack.cli.main", "distill", "--data", str(npz), "--arch", "resnet18@1",
                "--batchnorm", "-M", "3", "--steps", "9", "-K", "12", "--iterations", str(iters + 1),
                "--device", "cuda", "--out", str(out), "-q", "--checkpoint-every", "0"]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        t0 = time.perf_counter()
        if n > 1:
            code = launch(n, argv, env=env, timeout_s=3600)
        else:
            code = subprocess.run(argv, env=env, check=False, timeout=3600).returncode
        wall = time.perf_counter() - t0
        log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()] if code == 0 else []
    el = [e["elapsed_s"] for e in log if "elapsed_s" in e]
    s_it = (el[-1] - el[0]) / (len(el) - 1) if len(el) > 1 else float("nan")
    return {"nproc": n, "exit": code, "s_per_it": s_it, "wall_s": wall}


def _hypergrad_once(base: Any, prob: tuple[Any, ...], device: str, dtype: Any, mode: str, fast: bool) -> Any:
    import torch.nn.functional as F
    from torch.func import functional_call

    from sldpack.nn.hypergrad import hypergradient
    from sldpack.nn.unroll import scratch_buffers, set_inner_mode

    x, y, a, xr, yr, sched = prob
    net = copy.deepcopy(base).to(device, dtype)
    set_inner_mode(net)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    xr_d, yr_d = xr.to(device, dtype), yr.to(device)

    def outer(theta: Any) -> Any:
        return F.cross_entropy(functional_call(net, (dict(theta), scratch_buffers(net)), (xr_d,)), yr_d)

    return hypergradient(net, theta0, scratch_buffers(net), x.to(device, dtype), y.to(device, dtype),
                         a.to(device, dtype), sched, outer, mode=mode, fast_conv=fast)  # type: ignore[arg-type]


def hypergrad_paths(devices: list[str]) -> list[dict[str, Any]]:
    """Every hypergradient path on every device against a float64 CPU reference (see the docstring, part 4)."""
    import torch

    from sldpack.nn.unroll import apply_label_transform, make_schedule
    from sldpack.nn.zoo import build

    rows = []
    for arch, opts in (("convnet@1", {"depth": 2, "width": 16}), ("resnet18@1", {})):
        base = build(arch, in_channels=1, num_classes=3, image_size=(32, 32), batchnorm=True, options=opts)
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():  # off the zoo's init (a zero classifier there zeroes the image gradients)
            for p in base.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        x = torch.randn(6, 1, 32, 32, generator=g)
        y = apply_label_transform(torch.randn(6, 3, generator=g), "softmax")
        a = torch.full((3,), 0.02)
        xr, yr = torch.randn(6, 1, 32, 32, generator=g), torch.arange(6) % 3
        sched = make_schedule("all", num_images=6, steps=3, epochs=1)

        prob = (x, y, a, xr, yr, sched)
        ref = _hypergrad_once(base, prob, "cpu", torch.float64, "graph", False)
        for device in devices:
            for mode in ("graph", "recompute"):
                for fast in (True, False):
                    got = _hypergrad_once(base, prob, device, torch.float32, mode, fast)
                    dev = max(float((getattr(got, n).double().cpu() - getattr(ref, n)).abs().max()
                                    / getattr(ref, n).abs().max()) for n in ("images", "targets", "lrs"))
                    rows.append({"arch": arch, "device": device, "mode": mode, "fast_conv": fast,
                                 "max_rel_dev": dev, "ok": dev < 1e-3})
                    print(f"  {arch:11} {device:5} {mode:9} {'fast' if fast else 'aten'} conv: max rel deviation "
                          f"from float64 {dev:.2e} {'ok' if dev < 1e-3 else 'TOO LARGE'}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="small sizes and archs, speed part on the CPU (tests)")
    ap.add_argument("--archs", default=None, help="comma list of zoo ids for part 1 [default: all]")
    ap.add_argument("--sizes", default="224,299", help="image sizes of part 2")
    ap.add_argument("--iters", type=int, default=3, help="timed iterations per configuration in part 2")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    import torch

    from sldpack.nn.zoo import ARCHITECTURES

    cuda = torch.cuda.is_available()
    ngpu = torch.cuda.device_count() if cuda else 0
    gpu_txt = f"available: {ngpu} device(s), {torch.cuda.get_device_name(0)}" if cuda else "not available"
    print(f"torch {torch.__version__}; CUDA {gpu_txt}")
    report: dict[str, Any] = {"torch": torch.__version__, "cuda": cuda, "gpus": ngpu, "skipped": []}
    skipped: list[str] = report["skipped"]

    def skip(what: str) -> None:
        skipped.append(what)
        print(f"CUDA not available: skipped {what}", flush=True)

    archs = (args.archs.split(",") if args.archs else
             ["convnet@1", "lenet@1", "resnet18@1", "googlenet@1"] if args.tiny else list(ARCHITECTURES))
    print("\n1. replay: CPU reference vs CUDA")
    with tempfile.TemporaryDirectory(prefix="sldp-gpucheck-") as tmp:
        report["replay"] = replay_part(archs, cuda, Path(tmp))
    if not cuda:
        skip("CUDA replays (deviation vs tolerance, two-replay digest)")

    print("\n2. distill speed (M = 9, T = 9, K = 12)")
    speed: list[dict[str, Any]] = []
    if args.tiny:
        plan: list[tuple[str, dict[str, Any], bool, int]] = [("convnet@1", {"depth": 2, "width": 16}, True, 32)]
        dev = "cuda" if cuda else "cpu"
    else:
        plan = [(a, {}, bn, int(s)) for a, bn in (("resnet18@1", True), ("vgg16@1", False))
                for s in args.sizes.split(",")]
        dev = "cuda"
    if dev == "cuda" and not cuda:
        skip("distill it/s and peak CUDA memory at " + "/".join(args.sizes.split(",")) + " px (ResNet18, VGG16)")
    else:
        for arch, opts, bn, size in plan:
            pair = {}
            for unroll in ("graph", "recompute"):
                r = distill_speed(arch, opts, bn, size, unroll, dev, 1 if args.tiny else args.iters)
                pair[unroll] = r
                speed.append(r)
                print(f"  {arch:11} {size:4d} px {unroll:9} {dev}: {r['it_per_s']:.3f} it/s, "
                      f"peak {r['peak_gib']:.2f} GiB", flush=True)
            print(f"  {'':11} recompute/graph: time {pair['recompute']['s_per_it'] / pair['graph']['s_per_it']:.2f}x"
                  + ("" if dev != "cuda" else
                     f", memory {pair['recompute']['peak_gib'] / pair['graph']['peak_gib']:.2f}x"))
    report["speed"] = speed

    print("\n3. 1 vs N GPUs")
    if ngpu > 1 and not args.tiny:
        one = multi_gpu(1, 224, args.iters)
        many = multi_gpu(ngpu, 224, args.iters)
        report["multi_gpu"] = [one, many]
        print(f"  ResNet18 224 px: 1 GPU {one['s_per_it']:.3f} s/it, {ngpu} GPUs {many['s_per_it']:.3f} s/it "
              f"({one['s_per_it'] / many['s_per_it']:.2f}x)")
    elif not cuda:
        skip("1 vs N GPUs")
    else:
        print(f"  only {ngpu} GPU visible{' (--tiny)' if args.tiny else ''}: skipped 1 vs N GPUs")
        skipped.append("1 vs N GPUs")
    print("\n4. hypergradient paths (float32 vs a float64 CPU reference)")
    report["hypergrad"] = hypergrad_paths(["cpu", "cuda"] if cuda else ["cpu"])
    if not cuda:
        skip("CUDA hypergradient paths")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    bad = [r["arch"] for r in report["replay"]
           if r["cpu_status"] != "exact" or (cuda and r.get("cuda_status") not in ("exact", "within_tolerance"))]
    if bad:
        print(f"\nREPLAY CHECK FAILED for {', '.join(bad)}")
        return 1
    if not all(r["ok"] for r in report["hypergrad"]):
        print("\nHYPERGRADIENT CHECK FAILED")
        return 1
    print("\nreplay check passed" + ("" if cuda else " (CPU only)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
