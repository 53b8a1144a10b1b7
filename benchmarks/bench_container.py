#!/usr/bin/env python3
"""Container benchmark (not a test): prints ratios measured side by side in one run.

1. ``inspect`` (open + manifest + layout, what ``sldp inspect`` does) on a ~1 KB file vs a ~500 MB file:
   the ratio should stay near 1, because inspect reads only the header and manifest.
2. ``verify`` hashing throughput vs plain ``hashlib.sha256`` over the same tensor bytes, read from the
   same (page-cached) file: target >= 0.9.

Usage: python benchmarks/bench_container.py [--mb 500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import sldpack


def _manifest() -> sldpack.Manifest:
    return sldpack.Manifest(arch=sldpack.ArchSpec("convnet@1", 1, 3, (28, 28)), init=sldpack.InitSpec(seed=0),
                            provenance=sldpack.Provenance("bench", "2026-11-27T00:00:00Z"))


def _write(path: Path, n_bytes: int) -> None:
    m = max(1, n_bytes // (4 * 227 * 227))
    images = np.random.default_rng(0).standard_normal((m, 1, 227, 227), dtype=np.float32) if n_bytes > 4096 \
        else np.zeros((1, 1, 8, 8), np.float32)
    sldpack.write(path, _manifest(), {"images": sldpack.Tensor("images", images),
                                      "lrs": sldpack.Tensor("lrs", np.array([0.1], np.float32))})


def _inspect(path: Path) -> None:
    with sldpack.open(path) as f:
        f.layout()
        _ = f.manifest.tensors


def _best(fn: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=500, help="size of the large file in MB (default 500)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        small, large = Path(d) / "small.sldp", Path(d) / "large.sldp"
        _write(small, 1024)
        _write(large, args.mb * 1_000_000)
        s_small, s_large = small.stat().st_size, large.stat().st_size
        # inspect: median of many runs, both files warm in the page cache
        n = 200
        t_small = statistics.median(_best(lambda: _inspect(small), 1) for _ in range(n))
        t_large = statistics.median(_best(lambda: _inspect(large), 1) for _ in range(n))
        print(f"inspect   small {s_small:>12,d} B  {t_small * 1e6:8.1f} us")
        print(f"inspect   large {s_large:>12,d} B  {t_large * 1e6:8.1f} us")
        print(f"inspect ratio large/small: {t_large / t_small:.2f}  (target: near 1; file size ratio "
              f"{s_large / s_small:,.0f})")

        with sldpack.open(large) as f:
            off = f.payload_offset + f._span("images")[0]
            n_img = f._span("images")[1]

        def plain() -> None:
            h = hashlib.sha256()
            with open(large, "rb") as fh:
                fh.seek(off)
                remaining = n_img
                while remaining:
                    chunk = fh.read(min(1 << 23, remaining))
                    h.update(chunk)
                    remaining -= len(chunk)

        def verify() -> None:
            with sldpack.open(large) as f:
                f.verify()

        plain()  # warm the page cache
        t_plain = _best(plain, args.repeat)
        t_verify = _best(verify, args.repeat)
        print(f"hashlib.sha256 over the tensor bytes: {n_img / t_plain / 1e6:8.1f} MB/s")
        print(f"sldpack verify (whole file):          {s_large / t_verify / 1e6:8.1f} MB/s")
        print(f"verify throughput ratio vs hashlib: {(s_large / t_verify) / (n_img / t_plain):.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
