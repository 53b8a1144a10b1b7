"""What a run directory records besides the checkpoint: the JSON-lines log and the montage of the result.

``log.jsonl`` holds one JSON object per line, flushed per line, so a killed run leaves every line it
finished; ``montage.png`` shows the distilled images with their label distributions.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sldpack.atomic import atomic_write_bytes

__all__ = ["RunLog", "save_montage", "utc_now"]


def utc_now() -> str:
    """The current UTC time as the manifests and logs record it (``2026-01-31T12:00:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")



class RunLog:
    """Append-only JSON-lines log (one object per line, flushed per line)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fh = path.open("a", encoding="utf-8") if path is not None else None

    def drop_after(self, iteration: int) -> None:
        """Forget the loss records after ``iteration`` (a resume repeats them from the checkpoint)."""
        if self.fh is None or self.path is None:
            return
        self.fh.close()
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                obj = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash
            if "loss" in obj and int(obj.get("iteration", 0)) > iteration:
                continue
            keep.append(line)
        atomic_write_bytes(self.path, "".join(keep).encode("utf-8"))
        self.fh = self.path.open("a", encoding="utf-8")

    def write(self, **obj: Any) -> None:
        """Append one record (with the current time) and flush it."""
        if self.fh is not None:
            self.fh.write(json.dumps({"time": utc_now(), **obj}, sort_keys=True) + "\n")
            self.fh.flush()

    def close(self) -> None:
        """Close the file (a log without a path has nothing to close)."""
        if self.fh is not None:
            self.fh.close()


def save_montage(images: np.ndarray, probs: np.ndarray, class_names: Sequence[str], path: str | Path, *,
                 mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,), scale: int = 4) -> None:
    """Write a PNG grid of the distilled images, each captioned with its label distribution.

    Args:
        images: ``[M, C, H, W]`` in network input space (de-normalised here with ``mean``/``std``).
        probs: ``[M, K]`` target probabilities.
        class_names: K names.
        path: PNG path (written atomically).
        mean, std: the preprocessing statistics.
        scale: nearest-neighbour magnification.
    """
    from sldpack.medical.montage import save_montage as _sheet

    mu = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    sd = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    tiles = (np.clip(images * sd + mu, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    captions = []
    for i in range(images.shape[0]):
        order = np.argsort(-probs[i])[:4]
        captions.append("\n".join(f"{class_names[c]} {probs[i, c]:.2f}" for c in order))
    _sheet(list(tiles), captions, path, ncols=min(8, images.shape[0]), scale=scale,
           title=f"{images.shape[0]} distilled images")
