"""Atomic file output: a crash never leaves a half-written file at the target path."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import secrets
import shutil
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

__all__ = ["atomic_write_all", "atomic_write_bytes", "atomic_writer", "remove_stale_temporaries", "temporary_path"]

# temporary names carry the writer's host and pid, so a later writer can tell a leftover of a killed
# process (SIGKILL runs no cleanup) from the temporary file of one still writing
_HOST = hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def temporary_path(target: str | os.PathLike[str]) -> Path:
    """A fresh ``.NAME.<host>.<pid>.<token>.tmp`` beside ``target``: the name a later writer recognises as
    a killed process's leftover (:func:`remove_stale_temporaries`)."""
    t = Path(target)
    return t.with_name(f".{t.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def remove_stale_temporaries(target: str | os.PathLike[str]) -> None:
    """Delete the temporary files or folders of ``target`` that dead processes of this host left behind."""
    _remove_stale_temporaries(Path(target))


def _remove_stale_temporaries(target: Path) -> None:
    """Delete ``.NAME.<host>.<pid>.<token>.tmp`` files (or folders: a store) beside ``target`` left by dead
    processes of this host."""
    for p in glob.glob(glob.escape(str(target.parent / f".{target.name}.")) + "*.tmp"):
        parts = Path(p).name[len(target.name) + 2:-len(".tmp")].split(".")
        if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
            continue  # another host's, or not ours at all: leave it
        pid = int(parts[1])
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path``; on success fsync it and rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched (old content or
    absent). Missing parent folders are created. The file gets the usual permissions (0666 minus the
    umask), not the 0600 of ``tempfile.mkstemp``, so a shared ``.sldp`` is readable as users expect.
    Temporary files of the same target left by killed processes of this host are removed first.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = temporary_path(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)  # atomic on POSIX and Windows
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            exc.filename = str(target)  # a failed write (disk full) names the file it was writing
        raise
    # fsync the directory so the rename itself survives a power cut (POSIX only)
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | memoryview) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); return the path."""
    with atomic_writer(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_all(files: Sequence[tuple[str | os.PathLike[str], bytes | memoryview]]) -> None:
    """Write several files that only make sense together: all of them, or (on a write error) none.

    Every file's bytes are first written and fsynced to a temporary file beside its target (where a full
    disk or a file-size limit fails); only when all are complete are they renamed into place, in order
    (a rename needs no space). On an error before that, every temporary file is removed and every target
    is left as it was.
    """
    with contextlib.ExitStack() as stack:
        handles = []
        for path, data in files:
            fh = stack.enter_context(atomic_writer(path))
            fh.write(data)
            fh.flush()  # the write error, if any, now: before any file of the group is renamed
            handles.append(fh)
        for fh in handles:
            os.fsync(fh.fileno())
    # ExitStack closes the writers last-in first-out: each renames its file over the target
