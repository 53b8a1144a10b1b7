"""The distiller's checkpoint: what it saves every ``checkpoint_every`` iterations and which settings a
resumed run may change.

The file goes through :mod:`sldpack.nn.checkpoint` (crash-safe, weights-only); the trajectory continues
bit for bit from the saved images, labels, step sizes, Adam state, random stream and iterate selection.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sldpack.errors import UsageError
from sldpack.nn.checkpoint import load_state, save_state
from sldpack.nn.config import DistillConfig
from sldpack.nn.iterates import IterateSelection

__all__ = ["CHECKPOINT_FORMAT", "RESUMABLE_CHANGES", "check_resume_config", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "sldpack-distill-checkpoint/1"

RESUMABLE_CHANGES = frozenset({"iterations", "checkpoint_every", "device", "log_every", "select", "unroll",
                                "unroll_checkpoint", "shard_images", "select_every"})
"""DistillConfig fields a resumed run may change: they change how or how long it runs, not the trajectory so far."""


def save_checkpoint(path: Path, *, cfg: DistillConfig, iteration: int, images: Tensor, labels: Tensor,
                     lrs: Tensor, opt: torch.optim.Optimizer, rng: np.random.Generator, elapsed: float,
                     best: IterateSelection) -> None:
    """Write everything the run needs to continue after ``iteration`` iterations (atomically)."""
    state = {
        "config": json.dumps(cfg.to_obj(), sort_keys=True),
        "iteration": iteration,
        "images": images.detach().cpu().clone(),
        "labels": labels.detach().cpu().clone(),
        "lrs": lrs.detach().cpu().clone(),
        "optimizer": opt.state_dict(),
        "rng": json.dumps(rng.bit_generator.state),
        "elapsed": elapsed,
        "best": best.state(),
    }
    save_state(path, CHECKPOINT_FORMAT, state)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The state :func:`save_checkpoint` wrote (``DataError`` naming the path when it is not one)."""
    return load_state(path, CHECKPOINT_FORMAT)


def check_resume_config(old: DistillConfig, new: DistillConfig) -> None:
    """Refuse a resume whose settings would change the trajectory so far.

    Raises:
        UsageError: naming (``field``) ``resume``, the fields that differ and the ones that may change.
    """
    diffs = [f.name for f in fields(DistillConfig)
             if f.name not in RESUMABLE_CHANGES and getattr(old, f.name) != getattr(new, f.name)]
    if diffs:
        may = sorted(RESUMABLE_CHANGES)
        raise UsageError(f"{{resume}} with different settings: {', '.join('{' + d + '}' for d in diffs)} differ "
                         f"from the checkpoint (only {', '.join('{' + m + '}' for m in may)} may change)",
                         field=("resume", *diffs, *may))
