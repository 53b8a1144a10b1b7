"""The torch half of the membership-inference audit: what a network says about each example, and the attacks.

* :func:`example_signals`: per example, the cross-entropy loss and the logit-scaled confidence in the
  true class, ``phi = log(p_y / (1 - p_y)) = z_y - logsumexp_{j != y} z_j`` (computed from the logits, so it
  stays finite where ``p_y`` rounds to 1).
* :func:`loss_attack_scores`: the loss-threshold attack of Yeom et al. (2018): a member is an example the
  network fits well, so the score is ``-loss``.
* :func:`lira_offline_scores`: the offline likelihood-ratio attack of Carlini et al. (2022): each example's
  ``phi`` on the audited network is compared with its ``phi`` on reference networks that never saw it
  (trained on non-member data only), ``score = (phi_target - mean_ref) / sigma``. With few references the
  per-example variance is not estimable, so ``sigma`` is the global standard deviation of the references'
  deviations from their per-example means (the paper's fixed-variance variant); the score is the
  one-sided test statistic, so ranking by it ranks by the offline LiRA p-value.
* :func:`train_references`: the reference networks, trained by the ordinary trainer
  (:func:`sldpack.nn.train.train_normal`) from the portable init.

The statistics (AUC, TPR at low FPR, CIs, verdict) are torch-free: :mod:`sldpack.pipelines.membership`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from sldpack.errors import DataError, UsageError
from sldpack.format.manifest import ArchSpec, InitSpec
from sldpack.nn.source import RealSource

__all__ = ["ReferenceProgress", "Signals", "example_signals", "lira_offline_scores", "loss_attack_scores",
           "train_references"]

F64 = npt.NDArray[np.float64]

ReferenceProgress = Callable[[int, int, int, int], None]
"""``progress(reference_done_or_current, references, step, steps)`` while reference networks train."""

_REFERENCE_SEED_OFFSET = 7919  # reference r starts from init seed seed + offset + r: never the audited net's seed


@dataclass(frozen=True)
class Signals:
    """What a network says about each example.

    Attributes:
        loss: cross-entropy loss per example.
        phi: logit-scaled confidence in the true class, ``z_y - logsumexp_{j != y} z_j``.
    """

    loss: F64
    phi: F64

    def __len__(self) -> int:
        return int(self.loss.size)


def example_signals(module: nn.Module, inputs: npt.ArrayLike, labels: npt.ArrayLike, *,
                    batch_size: int = 256) -> Signals:
    """Per-example loss and logit-scaled confidence of ``module`` (eval mode is the caller's choice).

    Args:
        module: the network (its device is used).
        inputs: ``float32 [N, C, H, W]`` in network input space (preprocessed as the network expects).
        labels: ``[N]`` true classes.
        batch_size: inputs per forward pass.

    Raises:
        DataError: lengths disagree, a label is outside the network's outputs, or a logit is not finite.
    """
    x = np.asarray(inputs)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if x.shape[0] != y.size:
        raise DataError(f"{x.shape[0]} inputs for {y.size} labels")
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    dev = next(module.parameters()).device
    loss, phi = np.empty(y.size), np.empty(y.size)
    with torch.no_grad():
        for i in range(0, y.size, batch_size):
            xb = torch.from_numpy(np.array(x[i:i + batch_size], dtype=np.float32)).to(dev)
            z = module(xb).detach().to("cpu", torch.float64)
            yb = torch.from_numpy(y[i:i + batch_size])
            if yb.numel() and (int(yb.min()) < 0 or int(yb.max()) >= z.shape[1]):
                raise DataError(f"labels must be in 0..{z.shape[1] - 1} (the network's outputs)")
            if not torch.isfinite(z).all():
                raise DataError("the network produced non-finite logits")
            loss[i:i + yb.numel()] = F.cross_entropy(z, yb, reduction="none").numpy()
            zy = z.gather(1, yb[:, None])[:, 0]
            others = z.scatter(1, yb[:, None], float("-inf"))
            phi[i:i + yb.numel()] = (zy - torch.logsumexp(others, dim=1)).numpy()
    return Signals(loss=loss, phi=phi)


def loss_attack_scores(signals: Signals) -> F64:
    """Yeom et al. (2018): higher score = lower loss = more likely a member."""
    return -np.asarray(signals.loss, dtype=np.float64)


def lira_offline_scores(target: Signals, references: Sequence[Signals]) -> F64:
    """Offline LiRA (Carlini et al. 2022, fixed global variance): ``(phi_target - mean_ref) / sigma``.

    Args:
        target: the audited network's signals on the examples.
        references: each reference network's signals on the same examples, in the same order; no reference
            may have trained on any of them.

    Raises:
        UsageError: no reference. DataError: lengths disagree.
    """
    if not references:
        raise UsageError("the offline LiRA attack needs at least one reference network")
    n = len(target)
    if any(len(r) != n for r in references):
        raise DataError("reference signals do not cover the same examples as the target's")
    ref = np.stack([np.asarray(r.phi, dtype=np.float64) for r in references])  # [R, N]
    mu = ref.mean(axis=0)
    # one reference: no spread to measure; the ranking (hence AUC/TPR) is the same for any constant sigma
    sigma = float(np.sqrt(((ref - mu) ** 2).sum() / (ref.size - n))) if ref.shape[0] > 1 else 1.0
    sigma = max(sigma, 1e-6)
    out: F64 = (np.asarray(target.phi, dtype=np.float64) - mu) / sigma
    return out


def train_references(arch: ArchSpec, source: RealSource, count: int, *, steps: int, batch_size: int = 64,
                     lr: float = 1e-3, seed: int = 0, device: str | torch.device = "cpu",
                     progress: ReferenceProgress | None = None) -> list[nn.Module]:
    """Train ``count`` reference networks of ``arch`` normally on ``source`` (non-member data only).

    Reference ``r`` starts from the portable init with seed ``seed + 7919 + r`` and draws class-balanced
    batches with seed ``seed + r`` (Adam, cosine decay: :func:`sldpack.nn.train.train_normal`), so references
    differ from each other and from the audited network's start.

    Returns:
        The trained networks, eval mode, on ``device``.

    Raises:
        UsageError: bad settings, or training diverged.
    """
    from sldpack.nn.network import build_module
    from sldpack.nn.train import train_normal

    if count < 1:
        raise UsageError(f"reference count must be >= 1, got {count}")
    nets = []
    for r in range(count):
        module, _ = build_module(arch, InitSpec(seed=seed + _REFERENCE_SEED_OFFSET + r))

        def step_progress(done: int, total: int, loss: float, r: int = r) -> None:
            if progress is not None:
                progress(r, count, done, total)

        train_normal(module, lambda k, rng: source.sample(k, rng, balanced=True), steps=steps,
                     batch_size=batch_size, lr=lr, seed=seed + r, device=device, progress=step_progress)
        nets.append(module)
    return nets
