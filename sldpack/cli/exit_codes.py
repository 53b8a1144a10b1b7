"""The one table of ``sldp`` exit codes, and the mapping from errors to codes.

| code | meaning |
|------|---------|
| 0 | success; for ``verify``/``conformance``: everything checked passed |
| 1 | verification failed: the file is well-formed but a digest, replay fingerprint or conformance case failed |
| 2 | bad input or usage: unreadable/malformed file, bad data set, wrong or contradictory options; also a |
|   | file that cannot be read or written (disk full, file-size limit, permissions), named with its cause |
| 3 | internal error: a bug in sldpack: one line; ``SLDP_TRACEBACK=1`` prints the traceback |
| 130 | interrupted (Ctrl-C); long jobs leave their last checkpoint behind |
"""

from __future__ import annotations

from typing import Final

from sldpack.errors import DigestError, ReplayMismatchError, SignatureError, SldpError

__all__ = ["EXIT_BAD_INPUT", "EXIT_CODES", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_VERIFY_FAILED",
           "describe_os_error", "exit_code_for"]

EXIT_OK: Final = 0
EXIT_VERIFY_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_INTERNAL: Final = 3
EXIT_INTERRUPTED: Final = 130

EXIT_CODES: Final[dict[int, str]] = {
    EXIT_OK: "ok",
    EXIT_VERIFY_FAILED: "verification failed",
    EXIT_BAD_INPUT: "bad input or usage (also a file that cannot be read or written)",
    EXIT_INTERNAL: "internal error",
    EXIT_INTERRUPTED: "interrupted",
}
"""Every exit code ``sldp`` uses (README's table and ``sldp --help`` list the same; tests/test_readme.py)."""


def exit_code_for(err: BaseException) -> int:
    """Map an exception to the documented exit code."""
    if isinstance(err, (DigestError, ReplayMismatchError, SignatureError)):
        return EXIT_VERIFY_FAILED
    if isinstance(err, SldpError):
        return EXIT_BAD_INPUT
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(err, OSError):
        return EXIT_BAD_INPUT
    return EXIT_INTERNAL


def describe_os_error(err: OSError) -> str:
    """One line naming the path(s) and the cause: ``cannot write out.sldp: No space left on device``."""
    import errno as _errno

    cause = err.strerror or str(err) or type(err).__name__
    if err.errno == _errno.EFBIG:
        cause += " (the file-size limit, ulimit -f, was reached)"
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "a file"
    return f"I/O error on {where}: {cause}"
