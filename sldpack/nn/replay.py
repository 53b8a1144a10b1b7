"""Replay: ``.sldp`` file -> theta_opt -> ready ``nn.Module``.

Replay builds the architecture named by the manifest, draws theta_0 with the portable init, runs the
shared :func:`~sldpack.nn.unroll.unroll` (not differentiated) over the stored images, label parameters
and learning rates, loads the stored batch-norm statistics theta_bn and switches to eval mode
(spec/SLDP-1-replay.md). Checking the result against the file's fingerprint is :mod:`sldpack.nn.verify`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sldpack.errors import UsageError
from sldpack.format.manifest import Manifest
from sldpack.nn.device import deterministic, resolve_device, thread_count
from sldpack.nn.network import buffer_names, build_module
from sldpack.nn.unroll import Schedule, apply_label_transform, scratch_buffers, set_inner_mode, unroll

__all__ = [
    "ReplayResult",
    "SourceLike",
    "check_replayable",
    "load_model",
    "load_theta",
    "read_source",
    "replay",
    "replay_arrays",
]

SourceLike = str | os.PathLike[str] | bytes
"""A ``.sldp`` file given by path or as its bytes (an open :class:`sldpack.SldpFile` is accepted too)."""


@dataclass
class ReplayResult:
    """What :func:`replay` produced.

    Attributes:
        module: theta_opt + theta_bn loaded, eval mode.
        theta0_status: ``"match"``, ``"not recorded"`` or ``"mismatch: <names>"`` against
            ``manifest.init.theta0_sha256``.
        manifest: the file's manifest.
        seconds: wall time of build + init + unroll.
        inner_losses: L_i of every inner step.
        theta_bn: ``"loaded"``, ``"none"`` (no batch norm) or ``"absent"`` (see :func:`load_theta`).
    """

    module: nn.Module
    theta0_status: str
    manifest: Manifest
    seconds: float
    inner_losses: list[float] = field(default_factory=list)
    theta_bn: str = "none"


def read_source(source: SourceLike | Any) -> tuple[Manifest, dict[str, np.ndarray]]:
    """The manifest and the stored tensors of a path, the file's bytes or an open :class:`sldpack.SldpFile`."""
    import sldpack

    if isinstance(source, sldpack.SldpFile):
        return source.manifest, source.arrays()
    f = sldpack.read(source if isinstance(source, bytes) else Path(os.fspath(source)))
    try:
        return f.manifest, f.arrays()
    finally:
        f.close()


def check_replayable(manifest: Manifest, shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Check that a manifest + tensor shapes describe a replayable distilled set.

    Raises:
        UsageError: naming the first inconsistency (missing tensor, shape, schedule index, T).
    """
    d = manifest.distill
    if d is None:
        raise UsageError("the manifest has no distill section")
    for need in ("images", "labels", "lrs"):
        if need not in shapes:
            raise UsageError(f"no {need!r} tensor")
    img, lab, lrs = shapes["images"], shapes["labels"], shapes["lrs"]
    a = manifest.arch
    want_img = (a.in_channels, a.image_size[0], a.image_size[1])
    if len(img) != 4 or tuple(img[1:]) != want_img:
        raise UsageError(f"images must be [M, {want_img[0]}, {want_img[1]}, {want_img[2]}], got {list(img)}")
    if tuple(lab) != (img[0], a.num_classes):
        raise UsageError(f"labels must be [{img[0]}, {a.num_classes}], got {list(lab)}")
    if tuple(lrs) != (d.steps * d.epochs,):
        raise UsageError(f"lrs must be [{d.steps * d.epochs}] (steps x epochs), got {list(lrs)}")
    for s, idx in enumerate(d.schedule):
        bad = [i for i in idx if i >= img[0]]
        if bad:
            raise UsageError(f"schedule step {s} names image {bad[0]} but there are {img[0]} images")
    if manifest.labels is not None and len(manifest.labels.names) != a.num_classes:
        raise UsageError(f"{len(manifest.labels.names)} label names for {a.num_classes} classes")


def replay_arrays(manifest: Manifest, arrays: Mapping[str, np.ndarray], *, device: str | torch.device = "cpu",
                  threads: int | None = None) -> ReplayResult:
    """Replay from an already-read manifest and tensors (see :func:`replay`)."""
    t0 = time.perf_counter()
    check_replayable(manifest, {n: tuple(a.shape) for n, a in arrays.items()})
    dist = manifest.distill
    assert dist is not None
    dev = resolve_device(device)
    with deterministic(dev), thread_count(threads if dev.type == "cpu" else None):
        module, digests = build_module(manifest.arch, manifest.init, device=dev)
        theta0_status = _theta0_status(manifest, digests)
        images = torch.from_numpy(np.ascontiguousarray(arrays["images"], dtype=np.float32)).to(dev)
        labels = torch.from_numpy(np.ascontiguousarray(arrays["labels"], dtype=np.float32)).to(dev)
        lrs = torch.from_numpy(np.ascontiguousarray(arrays["lrs"], dtype=np.float32).reshape(-1)).to(dev)
        sched = Schedule(dist.steps, dist.epochs, tuple(tuple(s) for s in dist.schedule))
        targets = apply_label_transform(labels, dist.label_transform)
        set_inner_mode(module)
        params = {n: p.detach() for n, p in module.named_parameters()}
        losses: list[float] = []
        theta = unroll(module, params, scratch_buffers(module), images, targets, lrs, sched,
                       differentiable=False, on_step=lambda i, v: losses.append(float(v)))
        bn_status = load_theta(module, theta, arrays)
    return ReplayResult(module=module, theta0_status=theta0_status, manifest=manifest,
                        seconds=time.perf_counter() - t0, inner_losses=losses, theta_bn=bn_status)


def load_theta(module: nn.Module, theta: Mapping[str, Tensor], arrays: Mapping[str, np.ndarray]) -> str:
    """Copy theta_opt into ``module``, load theta_bn from ``bn.<name>`` arrays, switch to eval mode.

    Returns:
        ``"loaded"``, ``"none"`` (the network has no batch norm) or ``"absent"`` (batch norm, but the
        file carries no theta_bn: the running statistics keep their theta0 values, mean 0 and var 1).

    Raises:
        UsageError: a float buffer has no stored ``bn.`` tensor while the file has some, or shapes differ.
    """
    with torch.no_grad():
        for n, p in module.named_parameters():
            p.copy_(theta[n])
        names = buffer_names(module)
        stored = {k[3:] for k in arrays if k.startswith("bn.")}
        if names and stored:
            missing = [n for n in names if n not in stored]
            if missing:
                raise UsageError(f"theta_bn is incomplete: no tensor bn.{missing[0]}")
        extra = sorted(stored - set(names))
        if extra:
            raise UsageError(f"tensor bn.{extra[0]} names no batch-norm buffer of {type(module).__name__}")
        bufs = dict(module.named_buffers())
        for n in names:
            if n in stored:
                src = np.asarray(arrays[f"bn.{n}"], dtype=np.float32)
                if tuple(src.shape) != tuple(bufs[n].shape):
                    raise UsageError(f"bn.{n} has shape {src.shape}, the network needs {tuple(bufs[n].shape)}")
                bufs[n].copy_(torch.from_numpy(np.ascontiguousarray(src)))
    module.eval()
    return "none" if not names else ("loaded" if stored else "absent")


def _theta0_status(manifest: Manifest, digests: Mapping[str, str]) -> str:
    want = manifest.init.theta0_sha256
    if want is None:
        return "not recorded"
    bad = sorted(n for n in want if digests.get(n) != want[n])
    bad += sorted(n for n in digests if n not in want)
    return "match" if not bad else "mismatch: " + ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")


def replay(source: SourceLike | Any, *, device: str | torch.device = "cpu", threads: int | None = None) -> ReplayResult:
    """Re-derive theta_opt from a ``.sldp`` file.

    Args:
        source: a path, the file's bytes, or an open :class:`sldpack.SldpFile`.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        threads: torch CPU thread count during replay (``None``: leave it).

    Returns:
        The replay result; ``result.module`` is ready for inference (eval mode).

    Raises:
        FormatError / DigestError: the file is malformed. UsageError: it cannot be replayed.
    """
    manifest, arrays = read_source(source)
    return replay_arrays(manifest, arrays, device=device, threads=threads)


def load_model(source: SourceLike | Any, *, device: str | torch.device = "cpu") -> nn.Module:
    """The Python API: a ready ``torch.nn.Module`` (theta_opt + theta_bn, eval mode) from a ``.sldp`` file."""
    return replay(source, device=device).module
