"""What every ``sldp`` command shares: the progress printer, ``--threads``/``--device`` handling, the
``KEY=VALUE`` option parser and the byte formatter (one of each).

Torch is imported only inside :func:`apply_runtime`, so importing this module stays cheap.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from sldpack.errors import UsageError
from sldpack.pipelines.inputs import parse_key_values
from sldpack.pipelines.report import format_bytes

if TYPE_CHECKING:
    import torch

    from sldpack.pipelines.inputs import RuntimeSpec

__all__ = ["ProgressPrinter", "apply_runtime", "fmt_time", "format_bytes", "parse_key_values"]


def fmt_time(sec: float) -> str:
    """``h:mm:ss`` of a duration in seconds (rounded, never negative)."""
    sec = max(0, int(sec + 0.5))
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class ProgressPrinter:
    """One status line on stderr: rewritten in place on a terminal; on a pipe, a line every ~10 % or 60 s.

    Call it with ``(done, total, loss=None, elapsed=None, eta=None)``; :meth:`from_distill` adapts it to
    the distiller's ``Progress`` records.
    """

    def __init__(self, label: str, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last_decile = -1
        self.last_print = 0.0

    def __call__(self, done: int, total: int, loss: float | None = None, elapsed: float | None = None,
                 eta: float | None = None) -> None:
        if self.quiet:
            return
        el = time.monotonic() - self.t0 if elapsed is None else elapsed
        if eta is None:
            eta = el / done * (total - done) if done else 0.0
        rate = f"  {done / el:.2f} it/s" if el > 0 and loss is not None else ""
        line = (f"{self.label} {done}/{total}" + ("" if loss is None else f"  loss {loss:.4f}") + rate
                + f"  elapsed {fmt_time(el)}  ETA {fmt_time(eta)}")
        if self.tty:
            click.echo("\r" + line + "   ", nl=done >= total, err=True)
            return
        decile = (10 * done) // max(total, 1)
        now = time.monotonic()
        if decile != self.last_decile or now - self.last_print >= 60 or done >= total:
            self.last_decile, self.last_print = decile, now
            click.echo(line, err=True)

    def from_distill(self, p: Any) -> None:
        """Print a :class:`sldpack.nn.distill.Progress` record."""
        self(p.iteration, p.total, p.loss, p.elapsed, p.eta)


def apply_runtime(rt: RuntimeSpec) -> torch.device:
    """Set torch's CPU thread count (``--threads``) and resolve ``--device`` (``auto``: cuda if available).

    Raises:
        UsageError: threads < 1, or ``cuda`` asked for on a machine without it.
    """
    import torch

    from sldpack.nn.replay import resolve_device

    if rt.threads is not None:
        if rt.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {rt.threads}")
        torch.set_num_threads(rt.threads)
    return resolve_device(rt.device)
