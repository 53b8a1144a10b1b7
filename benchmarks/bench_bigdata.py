#!/usr/bin/env python3
"""Data bigger than memory (not a test): peak RSS of patch indexing + sampling, store vs eager arrays.

Builds a synthetic store of ``--n`` images of ``--size`` px (default 20,000 x 256 px: 1.31 GB of images and
1.31 GB of masks on disk, written into a temporary folder and deleted afterwards) and, in a fresh process
per row, opens it, builds the I/N/P patch index (``--patch``/``--stride``) over every image and draws
``--batches`` class-balanced batches of ``--batch`` patches (area-resized to ``--out-size``). Rows:

* ``baseline``: ``open_store`` only;
* ``store``   : :func:`sldpack.medical.store.open_store` (``pread`` of the bytes each window needs);
* ``store mmap``: the same store as ``numpy.memmap`` arrays (mapped file pages count in RSS while mapped);
* ``eager``   : ``np.load`` of images.npy + masks.npy into RAM, what every loader did before (run at
  ``--eager-n`` images, default ``--small``; the eager size at ``--n`` is printed as N x H x W x 2);
* ``store`` again at ``--small`` images, to show the peak does not grow with N beyond the index;
* ``sldp distill`` for ``--distill-iterations`` iterations over the store at ``--n`` and ``--small`` images
  and over an ``.npz`` of ``--eager-n`` images (loaded eagerly): peak RSS of the whole process (``wait4``);
* ``folder lazy`` / ``folder eager``: ``--folder-n`` PNG images + masks read lazily
  (:func:`~sldpack.medical.store.open_folder_lazy`, ``--folder-cache-mib`` cache, default 16) vs
  :func:`~sldpack.medical.loaders.load_folder`.

Each child imports first, then resets the kernel's peak-RSS mark (``/proc/self/clear_refs``) and reports
the peak (VmHWM) over open + index + sample minus the RSS before: the memory the work itself took.
The synthetic images are 200 phantom images
(:func:`sldpack.medical.make_phantom`) tiled and rolled by ``k mod 29`` px (image and mask together), so
generating 20k images takes seconds, not minutes; labels alternate with the phantom's.

Usage: python benchmarks/bench_bigdata.py [--n 20000] [--size 256] [--small 2000] [--folder-n 1000]
                                          [--patch 64] [--stride 32] [--batches 20] [--batch 256] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

REPO = Path(__file__).resolve().parents[1]


def _synthetic(n: int, size: int) -> Any:
    """A lazy ImageSet of ``n`` tiled, rolled phantom images (generated per item, never all at once)."""
    from sldpack.medical import make_phantom
    from sldpack.medical.loaders import ImageSet
    from sldpack.medical.store import LazyArray

    base = make_phantom(200, size=size, seed=0).to_image_set()
    assert base.masks is not None
    shifts = np.arange(n, dtype=np.int64) % 29

    class Tiled(LazyArray):
        def __init__(self, src: NDArray[np.uint8], rows: NDArray[np.int64]) -> None:
            super().__init__(src.shape[1:], np.dtype(np.uint8), rows)
            self.src = src

        def _view(self, rows: NDArray[np.int64]) -> Tiled:
            return Tiled(self.src, rows)

        def _read_item(self, row: int, rest: tuple[Any, ...]) -> NDArray[Any]:
            item = np.roll(self.src[row % self.src.shape[0]], int(shifts[row]), axis=(0, 1))
            out: NDArray[Any] = item[rest] if rest else item
            return out

    rows = np.arange(n, dtype=np.int64)
    return ImageSet(images=Tiled(base.images, rows), masks=Tiled(base.masks, rows),  # type: ignore[arg-type]
                    labels=base.labels[np.arange(n) % 200].astype(np.int64),
                    names=tuple(f"syn_{i:06d}" for i in range(n)))


def _child(mode: str, path: str, args: argparse.Namespace) -> dict[str, Any]:
    # PIL is imported by the folder rows anyway: import it before the measured window in every row
    import PIL.Image  # noqa: F401

    from sldpack.medical.loaders import ImageSet, load_folder
    from sldpack.medical.patches import PatchConfig, PatchSampler, index_image_set
    from sldpack.medical.store import open_folder_lazy, open_store

    rss_before = _reset_peak()
    t0 = time.perf_counter()
    if mode == "eager":
        d = open_store(path)
        data = ImageSet(images=np.load(Path(path) / "images.npy"), masks=np.load(Path(path) / "masks.npy"),
                        labels=d.labels, names=d.names)
    elif mode == "folder_lazy":
        data = open_folder_lazy(path, cache_bytes=args.folder_cache_mib << 20)
    elif mode == "folder_eager":
        data = load_folder(path)
    else:
        data = open_store(path, mmap=mode == "mmap")
    res: dict[str, Any] = {"mode": mode, "n": len(data), "open_s": time.perf_counter() - t0,
                           "rss_before": rss_before}
    if mode != "baseline":
        t1 = time.perf_counter()
        idx = index_image_set(data, PatchConfig(size=args.patch, stride=args.stride))
        t2 = time.perf_counter()
        sampler = PatchSampler(data.images, idx, seed=0, out_size=args.out_size)
        total = 0.0
        for _ in range(args.batches):
            x, _y = sampler.sample(args.batch)
            total += float(x.sum())
        res.update(windows=len(idx), index_s=t2 - t1, sample_s=time.perf_counter() - t2, checksum=total)
    res["rss_peak"] = _peak()
    return res


def _status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


_HWM_RESET = False


def _reset_peak() -> float:
    """Reset the kernel's peak-RSS mark (VmHWM) so the peak covers the measured work only; current RSS."""
    global _HWM_RESET
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _HWM_RESET = True
    except OSError:  # not Linux, or not permitted: fall back to the whole-process peak
        _HWM_RESET = False
    now = _status_mib("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak() -> float:
    hwm = _status_mib("VmHWM") if _HWM_RESET else None
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(mode: str, path: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    argv = [sys.executable, __file__, "--child", mode, str(path), "--patch", str(args.patch), "--stride",
            str(args.stride), "--batches", str(args.batches), "--batch", str(args.batch), "--out-size",
            str(args.out_size), "--folder-cache-mib", str(args.folder_cache_mib)]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"child {mode} failed:\n{out.stderr[-3000:]}")
    res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def _distill_peak(source_path: Path, run_dir: Path, args: argparse.Namespace) -> tuple[float, float]:
    """(peak RSS MiB, seconds) of a short ``sldp distill`` over a store/npz in a fresh process (``wait4``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    src = (f"sldpack.pipelines.inputs:npz_patch_source:{source_path},patch={args.patch},stride={args.stride},"
           f"out={args.out_size}")
    argv = [sys.executable, "-m", "sldpack.cli.main", "distill", "--source", src, "--arch-option", "depth=2",
            "--arch-option", "width=16", "--iterations", str(args.distill_iterations), "--steps", "2",
            "--threads", "1", "--bn-batches", "2", "--device", "cpu", "--out", str(run_dir)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"sldp distill failed:\n{err[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0


def _write_folder(data: Any, root: Path) -> None:
    from PIL import Image

    (root / "masks").mkdir(parents=True)
    lines = ["name,label"]
    for i in range(len(data)):
        name = f"{data.names[i]}.png"
        Image.fromarray(data.images[i]).save(root / name, compress_level=1)
        Image.fromarray(data.masks[i] * 255).save(root / "masks" / name, compress_level=1)
        lines.append(f"{name},{int(data.labels[i])}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--small", type=int, default=2_000, help="second store size (and default eager size)")
    ap.add_argument("--eager-n", type=int, default=None, help="images of the eager row (default --small)")
    ap.add_argument("--folder-n", type=int, default=1000, help="PNG folder rows (0: skip)")
    ap.add_argument("--folder-cache-mib", type=int, default=16, help="decoded-image cache of the lazy folder")
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--stride", type=int, default=32)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--out-size", type=int, default=32)
    ap.add_argument("--distill-iterations", type=int, default=3, help="short sldp distill rows (0: skip)")
    ap.add_argument("--keep", type=Path, default=None, help="build the stores here and keep them")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], args.child[1], args)))
        return
    from sldpack.medical.store import write_store

    work = Path(tempfile.mkdtemp(prefix="bench_bigdata_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        eager_n = args.small if args.eager_n is None else args.eager_n
        stores: dict[int, Path] = {}
        for n in sorted({args.n, args.small, eager_n}):
            p = work / f"store_{n}_{args.size}"
            if not p.exists():
                t0 = time.perf_counter()
                info = write_store(_synthetic(n, args.size), p, source="bench_bigdata synthetic")
                print(f"wrote {p.name}: {info.count} x {args.size}x{args.size} px, {info.bytes / 2**20:,.0f} MiB "
                      f"on disk ({time.perf_counter() - t0:.1f} s)", flush=True)
            stores[n] = p
        rows = [_run_child("baseline", stores[args.n], args), _run_child("store", stores[args.n], args),
                _run_child("mmap", stores[args.n], args), _run_child("store", stores[args.small], args),
                _run_child("eager", stores[eager_n], args)]
        if args.folder_n:
            folder = work / f"folder_{args.folder_n}_{args.size}"
            if not folder.exists():
                _write_folder(_synthetic(args.folder_n, args.size), folder)
            rows += [_run_child("folder_lazy", folder, args), _run_child("folder_eager", folder, args)]
        hw = args.size * args.size
        print(f"\npatch {args.patch} px stride {args.stride}, {args.batches} balanced batches of {args.batch} "
              f"(-> {args.out_size} px). 'before' = RSS after imports; 'peak' = VmHWM over open + index + sample "
              f"(reset before; ru_maxrss where that is unavailable); 'work' = peak - before.")
        head = (f"{'row':<14}{'images':>8}{'eager arrays':>14}{'before':>10}{'peak':>10}{'work':>10}"
                f"{'windows':>10}{'index s':>9}{'sample s':>10}")
        print(head)
        print("-" * len(head))
        for r in rows:
            eager_mib = r["n"] * hw * 2 / 2**20
            work_mib = r["rss_peak"] - r["rss_before"]
            r["work"] = work_mib
            print(f"{r['mode']:<14}{r['n']:>8,}{eager_mib:>10,.0f} MiB{r['rss_before']:>6,.0f} MiB"
                  f"{r['rss_peak']:>6,.0f} MiB{work_mib:>6,.0f} MiB{r.get('windows', 0):>10,}"
                  f"{r.get('index_s', 0):>9.1f}{r.get('sample_s', 0):>10.2f}")
        if args.distill_iterations:
            npz = work / f"eager_{eager_n}.npz"
            if not npz.exists():
                e = np.load(stores[eager_n] / "images.npy"), np.load(stores[eager_n] / "masks.npy")
                np.savez(npz, images=e[0], masks=e[1], labels=np.load(stores[eager_n] / "labels.npy"))
                del e
            print(f"\nsldp distill (ConvNet depth 2 width 16, {args.distill_iterations} iterations, 1 thread, "
                  f"--source npz_patch_source, split train = 70 %): peak RSS of the whole process (torch included)")
            for label, path in ((f"store {args.n:,}", stores[args.n]), (f"store {args.small:,}", stores[args.small]),
                                (f"eager .npz {eager_n:,}", npz)):
                peak, secs = _distill_peak(path, work / f"run_{path.name}", args)
                print(f"  {label:<18} peak RSS {peak:8,.0f} MiB   ({secs:.1f} s)", flush=True)
        st = next(r for r in rows if r["mode"] == "store" and r["n"] == args.n)
        small = next(r for r in rows if r["mode"] == "store" and r["n"] == args.small)
        eager_full = args.n * hw * 2 / 2**20
        print(f"\nstore at {args.n:,} images: work {st['work']:.1f} MiB for {eager_full:,.0f} MiB of images + "
              f"masks ({st['work'] / eager_full:.4f}x the eager arrays); at {args.small:,} images "
              f"{small['work']:.1f} MiB; the patch index itself is {st['windows'] * 13 / 2**20:.1f} MiB "
              f"(13 B per window).")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
