"""A distilled set -> a ready network: theta_opt by the replay path (no graph), theta_bn measured on real data.

The one procedure behind the distiller's final result and each ``val-*`` candidate it scores.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from sldpack.nn.config import DistillConfig
from sldpack.nn.source import RealSource
from sldpack.nn.unroll import Schedule, apply_label_transform, scratch_buffers, set_inner_mode, unroll

__all__ = ["PhaseRunner", "has_batchnorm", "materialize", "measure_bn_stats"]

PhaseRunner = Callable[[str, str, Callable[[], None]], None]
"""Runs one phase ``(name, detail, work)``; the distiller's announces and times it."""


def _run_plain(_name: str, _detail: str, work: Callable[[], None]) -> None:
    work()


def has_batchnorm(module: nn.Module) -> bool:
    """Whether the network has batch-norm layers (and so a theta_bn)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def measure_bn_stats(module: nn.Module, source: RealSource, *, batches: int, batch_size: int,
                     rng: np.random.Generator, balanced: bool = False) -> None:
    """Compute theta_bn for the module's current parameters on real data, in place.

    Procedure (spec, "theta_bn"): reset every batch-norm layer's running statistics (mean 0, var 1,
    count 0), set its momentum to ``None`` (cumulative average), forward ``batches`` real batches of
    ``batch_size`` images drawn with the natural class mix (``balanced``: equal counts per class) in inner mode
    (train mode, dropout off) without gradients, then restore the momentum. Parameters do not change.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    dev = next(module.parameters()).device
    moms = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    set_inner_mode(module)
    try:
        with torch.no_grad():
            for _ in range(batches):
                x, _y = source.sample(batch_size, rng, balanced=balanced)
                module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dev))
    finally:
        for m, mom in zip(bns, moms, strict=True):
            m.momentum = mom
    module.eval()


def materialize(module: nn.Module, theta0: Mapping[str, Tensor], sched: Schedule, images: Tensor, labels: Tensor,
                lrs: Tensor, transform: str, *, cfg: DistillConfig, source: RealSource,
                run: PhaseRunner = _run_plain) -> nn.Module:
    """Load theta_opt of (images, labels, lrs) (the replay path, no graph) and theta_bn into ``module``.

    theta_opt is unrolled from ``theta0`` in float32; theta_bn is measured with ``cfg``'s ``bn_batches`` x
    ``bn_batch_size`` real images and class mix, from the stream ``[seed, 3]`` (the same for every call, so
    a candidate and the final file agree). ``run`` executes the two phases (``"theta_opt"``, ``"theta_bn"``;
    the second only for a network with batch norm). Returns ``module``, in eval mode.
    """
    x, y, a = (t.detach().to(torch.float32) for t in (images, labels, lrs))
    set_inner_mode(module)

    def theta_opt() -> None:
        theta = unroll(module, theta0, scratch_buffers(module), x, apply_label_transform(y, transform), a, sched,
                       differentiable=False)
        with torch.no_grad():
            for n, p in module.named_parameters():
                p.copy_(theta[n])

    run("theta_opt", f"re-deriving theta_opt ({sched.total} inner steps, no graph)", theta_opt)
    if has_batchnorm(module):
        run("theta_bn", f"measuring theta_bn on {cfg.bn_batches} x {cfg.bn_batch_size} real images",
            lambda: measure_bn_stats(module, source, batches=cfg.bn_batches, batch_size=cfg.bn_batch_size,
                                     rng=np.random.default_rng([cfg.seed, 3]),
                                     balanced=cfg.bn_class_mix == "balanced"))
    module.eval()
    return module
