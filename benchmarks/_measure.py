"""Measurement helpers shared by the benchmarks (not a test, not part of the package).

Each benchmark configuration runs in a fresh process. Inside it, :class:`Window` brackets the timed outer
iterations: it resets the kernel's peak-RSS counter when it opens (``/proc/self/clear_refs`` = 5, Linux >= 4.0),
so the peak it reads when it closes is that of the timed iterations only, not of imports, module build, init
or a warm-up; and it records wall and CPU time (``time.process_time``: user + system CPU of the whole process)
side by side, because on a shared machine wall time moves with the load while CPU time mostly does not.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

MIB = 1024.0**2
GIB = 1024.0**3


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (how busy the shared machine was)."""
    return os.getloadavg()


def load_text() -> str:
    one, five, fifteen = load_average()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_bytes() -> int:
    """Current resident set size (0 where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return 0 if kib is None else kib * 1024


def reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


def peak_bytes() -> int:
    """Peak RSS since the last :func:`reset_peak` (VmHWM); the whole process's ``ru_maxrss`` without /proc."""
    kib = _status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024


@dataclass
class Window:
    """Wall time, CPU time and peak RSS of a stretch of work split into laps (outer iterations).

    ``open()`` starts the window (resets the peak), ``lap()`` ends one iteration, ``close()`` reads the peak.
    """

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_open: int = 0
    peak: int = 0
    peak_is_window: bool = False
    load_open: tuple[float, float, float] = (0.0, 0.0, 0.0)
    _t: tuple[float, float] = (0.0, 0.0)

    def open(self) -> None:
        self.peak_is_window = reset_peak()
        self.rss_open = rss_bytes()
        self.load_open = load_average()
        self._t = (time.perf_counter(), time.process_time())

    def lap(self) -> None:
        now = (time.perf_counter(), time.process_time())
        self.wall.append(now[0] - self._t[0])
        self.cpu.append(now[1] - self._t[1])
        self._t = now

    def close(self) -> dict[str, float | bool | list[float]]:
        self.peak = peak_bytes()
        n = max(len(self.wall), 1)
        return {"wall_s": sum(self.wall) / n, "cpu_s": sum(self.cpu) / n, "wall_laps": self.wall,
                "cpu_laps": self.cpu, "peak_bytes": float(self.peak), "rss_open_bytes": float(self.rss_open),
                "peak_is_window": self.peak_is_window, "load_open": list(self.load_open),
                "load_close": list(load_average())}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (e.g. extra MiB per inner step over T); nan with < 2 distinct xs."""
    if len(set(xs)) < 2:
        return float("nan")
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
