"""The memory budget: a size that a file or an option claims is checked against it before anything is allocated.

The container reader bounds every length it reads by the bytes actually there; this module does the same for
what cannot be bounded by a file's size (an ``.npz`` header's shape, ``--phantom N``, ``-M``, ``--size``): the
bytes an allocation would take are estimated first and refused, with the estimate stated, when they exceed
the memory available (``MemAvailable`` of ``/proc/meminfo``, else the physical memory). ``SLDP_MEMORY_BUDGET``
(bytes, e.g. ``8e9``) sets the budget instead, for a machine shared with other jobs and for tests.
"""

from __future__ import annotations

import os

from sldpack.errors import SldpError, UsageError

__all__ = ["BUDGET_ENV", "check_allocation", "memory_budget"]

BUDGET_ENV = "SLDP_MEMORY_BUDGET"
"""Environment variable: the memory budget in bytes (default: the memory available now)."""


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def memory_budget() -> int | None:
    """Bytes one allocation may take: ``$SLDP_MEMORY_BUDGET``, else the memory available now (``None``
    where it cannot be read: then nothing is refused for size alone)."""
    raw = os.environ.get(BUDGET_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"{BUDGET_ENV} must be a number of bytes, got {raw!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise UsageError(f"{BUDGET_ENV} must be a finite number of bytes > 0, got {raw!r}")
        return int(value)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_allocation(nbytes: int, what: str, *, error: type[SldpError] = UsageError,
                     field: str | tuple[str, ...] = ()) -> None:
    """Refuse an allocation of about ``nbytes`` bytes that does not fit the memory budget.

    Args:
        nbytes: the estimate (Python ints: no overflow however large the claimed sizes).
        what: names what claims the size (``"--phantom 100000000 x 128 x 128 px"``, ``"x.npz: 'images'"``).
        error: the error to raise (:class:`UsageError` for options, ``DataError`` for files).
        field: with :class:`UsageError`, the setting(s) ``what`` names as ``{name}`` (spelled as the
            command's option by the CLI).

    Raises:
        error: the estimate exceeds the budget (both are stated).
    """
    budget = memory_budget()
    if budget is not None and nbytes > budget:
        if error is UsageError:
            raise UsageError(f"{what} needs about {_human(nbytes)} of memory, more than the {_human(budget)} "
                             f"available (set {BUDGET_ENV} to change the budget)", field=field)
        raise error(f"{what} needs about {_human(nbytes)} of memory, more than the {_human(budget)} available "
                    f"(set {BUDGET_ENV} to change the budget)")
