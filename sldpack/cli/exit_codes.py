"""The one table of ``sldp`` exit codes, and the mapping from errors to codes.

| code | meaning |
|------|---------|
| 0 | success; for ``verify``/``conformance``: everything checked passed |
| 1 | verification failed: the file is well-formed but a digest, replay fingerprint or conformance case failed |
| 2 | bad input or usage: unreadable/malformed file, bad data set, wrong or contradictory options |
| 3 | internal error: a bug in sldpack (please report it with the traceback) |
| 130 | interrupted (Ctrl-C); long jobs leave their last checkpoint behind |
"""

from __future__ import annotations

from typing import Final

from sldpack.errors import DigestError, ReplayMismatchError, SldpError

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_VERIFY_FAILED", "exit_code_for"]

EXIT_OK: Final = 0
EXIT_VERIFY_FAILED: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_INTERNAL: Final = 3
EXIT_INTERRUPTED: Final = 130


def exit_code_for(err: BaseException) -> int:
    """Map an exception to the documented exit code."""
    if isinstance(err, (DigestError, ReplayMismatchError)):
        return EXIT_VERIFY_FAILED
    if isinstance(err, SldpError):
        return EXIT_BAD_INPUT
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_INTERNAL
