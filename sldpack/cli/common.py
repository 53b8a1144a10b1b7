"""What every ``sldp`` command shares: the progress printer, ``--threads``/``--device`` handling, the
``KEY=VALUE`` option parser, the byte formatter, the output-is-an-input check (:func:`check_outputs`) and
the run-directory lock (:func:`run_dir_lock`) (one of each).

Torch is imported only inside :func:`apply_runtime`, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from sldpack.errors import UsageError
from sldpack.pipelines.inputs import parse_key_values
from sldpack.pipelines.report import format_bytes

if TYPE_CHECKING:
    import torch

    from sldpack.pipelines.inputs import RuntimeSpec

__all__ = ["LOCK_NAME", "ProgressPrinter", "apply_runtime", "check_outputs", "fmt_time", "folder_entries",
           "format_bytes", "parse_key_values", "run_dir_lock"]

LOCK_NAME = ".sldp.lock"
"""The lock file ``sldp distill --out`` and ``sldp demo`` hold in their run directory."""


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

    from sldpack.nn.device import resolve_device

    if rt.threads is not None:
        if rt.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {rt.threads}")
        torch.set_num_threads(rt.threads)
    return resolve_device(rt.device)


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(inputs: Sequence[str | os.PathLike[str] | None],
                  outputs: Mapping[str, str | os.PathLike[str] | None]) -> None:
    """Refuse an output path that is one of the command's inputs (or another output), before anything is
    written: ``sldp replay X.sldp -o X.sldp`` would otherwise destroy X.

    Paths are compared with :func:`os.path.samefile` when both exist (hard links, symlinks) and by
    :func:`os.path.realpath` otherwise.

    Args:
        inputs: the files the command reads (``None`` entries are skipped).
        outputs: option name (``"--out"``) -> the path it writes (``None``: not written).

    Raises:
        UsageError: an output names an input or another output.
    """
    ins = [Path(p) for p in inputs if p is not None]
    outs = [(name, Path(p)) for name, p in outputs.items() if p is not None]
    for k, (name, out) in enumerate(outs):
        for inp in ins:
            if _same(out, inp):
                raise UsageError(f"{name} {out} is an input of this command ({inp}): writing it would destroy "
                                 "the input; choose another path")
        for other, path in outs[:k]:
            if _same(out, path):
                raise UsageError(f"{name} and {other} name the same file {out}: choose two paths")


def folder_entries(root: Path) -> list[str]:
    """The names in ``root`` a command could overwrite, sorted: hidden names (the lock file, a writer's
    temporaries) are left out, as no command writes one."""
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def _holder(lock: Path) -> str:
    try:
        info = json.loads(lock.read_text(encoding="utf-8") or "{}")
        return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} (since {info.get('since', '?')})"
    except (OSError, ValueError):
        return "another process"


def _locked_fd(root: Path, lock: Path, option: str) -> int:
    """An open descriptor of ``lock`` holding its exclusive flock (retried when the holder removed the file
    between our open and our lock: a lock on an unlinked file would exclude no one)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory lock, run unlocked
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    for _ in range(100):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"{option} {root} is in use by {_holder(lock)}: wait for it to finish or use "
                             f"another {option} (lock file {lock})") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise UsageError(f"{option} {root}: could not take its lock file {lock}")  # pragma: no cover


@contextlib.contextmanager
def run_dir_lock(directory: str | os.PathLike[str], *, option: str = "--out",
                 scratch: Sequence[str] = ("run.json", "log.jsonl"),
                 claim: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Hold an exclusive OS lock (``fcntl.flock``) on ``directory/.sldp.lock`` while a run writes there.

    The kernel drops the lock when the process dies (SIGKILL included), so a crashed run never blocks
    the next; the lock file itself is removed when the run ends. A directory this call created is removed
    again when the run fails before it holds anything but the ``scratch`` files (a run that failed before
    its first checkpoint leaves no empty folder or stray log behind).

    Args:
        claim: called with the directory, before anything is created in an existing one and again once the
            lock is held; it raises :class:`UsageError` when the folder holds something the command must
            not overwrite (someone else's files, another run).

    Raises:
        UsageError: another process holds the lock (its pid and host are named), or ``claim`` refused.
    """
    root = Path(directory)
    created = not root.exists()
    if not created and claim is not None:
        claim(root)  # refuse a folder that is not ours before even the lock file is put into it
    root.mkdir(parents=True, exist_ok=True)
    lock = root / LOCK_NAME
    fd = _locked_fd(root, lock, option)
    try:
        if claim is not None:
            try:
                claim(root)  # again, now that no other run can change the folder
            except BaseException:
                with contextlib.suppress(OSError):
                    lock.unlink()
                raise
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                         time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        failed = True
        try:
            yield root
            failed = False
        finally:
            os.ftruncate(fd, 0)
            with contextlib.suppress(OSError):
                lock.unlink()  # held by this process: no one else is inside, and none is left behind
            left = {p.name for p in root.iterdir()}
            if created and (not left or (failed and left <= set(scratch))):
                with contextlib.suppress(OSError):
                    for name in left:
                        (root / name).unlink()
                    root.rmdir()
    finally:
        os.close(fd)  # releases the lock
