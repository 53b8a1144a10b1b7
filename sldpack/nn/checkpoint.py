"""Crash-safe torch state files: the one way the distiller and normal training write and read checkpoints."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from sldpack.atomic import atomic_write_bytes
from sldpack.errors import DataError

__all__ = ["load_state", "save_state"]


def save_state(path: str | Path, fmt: str, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, nested dicts) tagged with ``fmt`` to ``path`` atomically:
    a kill leaves the previous checkpoint or the new one, never half of one."""
    buf = io.BytesIO()
    torch.save({"format": fmt, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(path: str | Path, fmt: str) -> dict[str, Any]:
    """Read a file written by :func:`save_state` with the same ``fmt`` (weights-only unpickling).

    Raises:
        DataError: unreadable, damaged, or another kind of file (named with its path).
    """
    try:
        size = Path(path).stat().st_size
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # torch raises many types (with paragraphs of advice) for a damaged pickle
        what = "an empty file" if size == 0 else f"damaged or another kind of file ({type(exc).__name__})"
        raise DataError(f"cannot read checkpoint {path}: {what}, not a {fmt} checkpoint written by sldpack") \
            from exc
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise DataError(f"{path} is not a {fmt} checkpoint")
    return state
