"""Which iterate of a distill run becomes the file: the running state of the selection rules.

``best``: the lowest moving average of the outer training loss; ``val-*``: the best held-out score of the
candidates scored every ``select_every`` iterations. The state is part of the run's checkpoint, so a
resumed run picks the same iterate as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["IterateSelection"]


@dataclass
class IterateSelection:
    """Running state of the iterate selection: the loss average and the best iterate so far.

    The average is ``ema += w * (loss - ema)`` with ``w = max(alpha, 1/n)`` for the n-th loss: a plain mean
    until ``1/alpha`` losses have been seen, an exponential moving average after. Iterates become
    candidates only from the ``ceil(1/alpha)``-th loss on, so one lucky early batch cannot win.
    """

    ema: float | None = None
    best_ema: float = math.inf
    iteration: int = 0
    count: int = 0
    images: Tensor | None = None
    labels: Tensor | None = None
    lrs: Tensor | None = None
    # validation selection (select="val-*"): the best held-out score and its iterate
    val_score: float = -math.inf
    val_iteration: int = 0
    val_state: tuple[Tensor, Tensor, Tensor] | None = None

    def offer(self, done: int, score: float, images: Tensor, labels: Tensor, lrs: Tensor) -> bool:
        """Keep this iterate when its held-out score beats every earlier one (ties keep the earlier)."""
        if not score > self.val_score:
            return False
        self.val_score, self.val_iteration = score, done
        self.val_state = (images.detach().cpu().clone(), labels.detach().cpu().clone(), lrs.detach().cpu().clone())
        return True

    def update(self, done: int, loss: float, alpha: float, images: Tensor, labels: Tensor, lrs: Tensor) -> None:
        """Add the outer loss of the iterate after ``done`` iterations; keep it when its average is the best."""
        self.count += 1
        w = max(alpha, 1.0 / self.count)
        self.ema = loss if self.ema is None else self.ema + w * (loss - self.ema)
        if self.count >= math.ceil(1.0 / alpha) and self.ema < self.best_ema:
            self.best_ema = self.ema
            self.iteration = done
            self.images = images.detach().cpu().clone()
            self.labels = labels.detach().cpu().clone()
            self.lrs = lrs.detach().cpu().clone()

    def state(self) -> dict[str, Any]:
        """The checkpointable form (tensors on the CPU, numbers)."""
        return {"ema": self.ema, "best_ema": self.best_ema, "iteration": self.iteration, "count": self.count,
                "images": self.images, "labels": self.labels, "lrs": self.lrs,
                "val_score": self.val_score, "val_iteration": self.val_iteration, "val_state": self.val_state}

    @classmethod
    def from_state(cls, st: Mapping[str, Any]) -> IterateSelection:
        """Inverse of :meth:`state`."""
        ema = st.get("ema")
        vs = st.get("val_state")
        return cls(ema=None if ema is None else float(ema), best_ema=float(st["best_ema"]),
                   iteration=int(st["iteration"]), count=int(st["count"]), images=st.get("images"),
                   labels=st.get("labels"),
                   lrs=st.get("lrs"), val_score=float(st.get("val_score", -math.inf)),
                   val_iteration=int(st.get("val_iteration", 0)), val_state=None if vs is None else tuple(vs))
