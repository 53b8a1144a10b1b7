"""Plain, normal training of an architecture on real data: the baselines next to a distilled set.

Nothing distillation-specific happens here: mini-batch training with Adam or SGD on batches from a
sampler, then inference. ``sldp train`` and the examples call these functions.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sldpack.errors import UsageError
from sldpack.nn.checkpoint import load_state, save_state
from sldpack.nn.device import deterministic, resolve_device

__all__ = ["BatchSampler", "TrainProgress", "predict", "timed", "train_normal"]

BatchSampler = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]
"""``sample(batch_size, rng) -> (float32 [B, C, H, W] preprocessed images, int [B] labels)``."""

TrainProgress = Callable[[int, int, float], None]
"""``progress(step_done, steps, loss)``."""

TRAIN_CHECKPOINT_FORMAT = "sldpack-train-checkpoint/1"


def _save_train_checkpoint(path: Path, settings: str, step: int, module: nn.Module, opt: torch.optim.Optimizer,
                           sched: Any, rng: np.random.Generator) -> None:
    state = {"settings": settings, "step": step,
             "module": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict() if sched is not None else None,
             "rng": json.dumps(rng.bit_generator.state)}
    save_state(path, TRAIN_CHECKPOINT_FORMAT, state)


def _load_train_checkpoint(path: Path, settings: str) -> dict[str, Any]:
    state = load_state(path, TRAIN_CHECKPOINT_FORMAT)
    if state.get("settings") != settings:
        raise UsageError(f"{path} was written by a training run with other settings ({state.get('settings')}; "
                         f"now {settings}); delete it to start over")
    return state


def train_normal(module: nn.Module, sample_batch: BatchSampler, *, steps: int, batch_size: int = 64,
                 lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu", optimizer: str = "adam",
                 weight_decay: float = 0.0, momentum: float = 0.9, cosine: bool = True,
                 progress: TrainProgress | None = None, checkpoint: str | Path | None = None,
                 checkpoint_every: int = 100) -> nn.Module:
    """Train ``module`` normally and return it in eval mode (on ``device``).

    Args:
        module: the network, already initialised (e.g. ``sldpack.nn.init.init_module_``).
        sample_batch: draws one training batch (e.g. ``source.sample`` of :mod:`sldpack.pipelines.sources`).
        steps: number of optimiser steps.
        batch_size: images per step.
        lr: peak learning rate.
        seed: seed of the batch sampling generator (``np.random.default_rng(seed)``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        optimizer: ``"adam"`` or ``"sgd"`` (with ``momentum``).
        weight_decay: L2 weight decay.
        momentum: SGD momentum.
        cosine: cosine learning-rate decay to 0 over ``steps``.
        progress: called after every step.
        checkpoint: a file that holds the run's state (network, optimiser, schedule, sampling generator)
            every ``checkpoint_every`` steps, written atomically; when it exists at the start, training
            continues from it (a killed run resumes; the result equals an uninterrupted run's on the same
            machine). The caller deletes it when the trained network is safely stored.
        checkpoint_every: steps between checkpoints.

    Returns:
        The same module, trained, in eval mode (batch-norm layers use their running statistics).

    Raises:
        UsageError: bad settings, the loss became non-finite, or a checkpoint of other settings.
        DataError: an unreadable checkpoint.
    """
    if steps < 0 or batch_size < 1 or not (lr > 0 and math.isfinite(lr)):
        raise UsageError(f"need steps >= 0, batch_size >= 1, lr > 0; got {steps}, {batch_size}, {lr}")
    if checkpoint_every < 1:
        raise UsageError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    dev = resolve_device(device)
    module.to(dev)
    params = [p for p in module.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise UsageError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1)) if cosine else None
    rng = np.random.default_rng(seed)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    settings = json.dumps({"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "optimizer": optimizer,
                           "weight_decay": weight_decay, "momentum": momentum, "cosine": cosine,
                           "parameters": [[n, list(p.shape)] for n, p in module.named_parameters()]}, sort_keys=True)
    start = 0
    if ckpt is not None and ckpt.is_file():
        state = _load_train_checkpoint(ckpt, settings)
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state["scheduler"] is not None:
            sched.load_state_dict(state["scheduler"])
        rng.bit_generator.state = json.loads(state["rng"])
        start = int(state["step"])
    module.train()
    with deterministic(dev):
        for step in range(start, steps):
            x_np, y_np = sample_batch(batch_size, rng)
            x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32)).to(dev)
            y = torch.from_numpy(np.asarray(y_np, dtype=np.int64)).to(dev)
            loss = F.cross_entropy(module(x), y)
            if not torch.isfinite(loss):
                raise UsageError(f"training diverged at step {step + 1}; lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            if sched is not None:
                sched.step()
            if progress is not None:
                progress(step + 1, steps, float(loss.detach()))
            if ckpt is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                _save_train_checkpoint(ckpt, settings, step + 1, module, opt, sched, rng)
    module.eval()
    return module


def predict(module: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits ``float32 [N, K]`` of ``module`` (eval mode is the caller's choice) on preprocessed images.

    Args:
        module: the network (its device is used).
        images: ``float32 [N, C, H, W]`` in network input space.
        batch_size: images per forward pass.

    Returns:
        The logits, on the CPU, as numpy.
    """
    dev = next(module.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, images.shape[0], batch_size):
            # a copy: the caller's array may be read-only, and torch wants writable memory
            x = torch.from_numpy(np.array(images[i:i + batch_size], dtype=np.float32)).to(dev)
            out.append(module(x).detach().to("cpu", torch.float32).numpy())
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (benchmarks and examples)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
