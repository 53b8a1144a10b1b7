"""The one inner loop: T plain SGD steps on the distilled data, shared by distiller and replay.

The distiller calls :func:`unroll` with ``differentiable=True`` (it keeps the graph, so the outer loss
can be back-propagated to the images, label parameters and learning rates); replay calls the very same
function with ``differentiable=False``. Keeping one function is what makes "the file re-derives the
network the distiller saw" true by construction rather than by two implementations agreeing.

The math is normative (spec/SLDP-1-replay.md, "Replay semantics"):

    for e in 0..epochs-1, for s in 0..steps-1, i = e * steps + s:
        x, p   = images[schedule[s]], targets[schedule[s]]       # targets = transform(label params)
        L_i    = -(p * log_softmax(f(x; theta_i))).sum(-1).mean()  # soft-target CE, mean over the batch
        theta_{i+1} = theta_i - (lrs[i] * grad_theta L_i)          # product rounded first, then subtracted

``f`` runs in "inner mode" (:func:`set_inner_mode`): batch-norm layers use the statistics of the
step's batch, dropout is the identity. Buffers (BN running statistics) are scratch copies that are
updated by the forward pass and then discarded: they never influence theta and are not differentiated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from sldpack.errors import UsageError

__all__ = [
    "Schedule",
    "apply_label_transform",
    "inner_grad",
    "inner_step",
    "make_schedule",
    "scratch_buffers",
    "set_inner_mode",
    "soft_cross_entropy",
    "stack_lrs",
    "step_index",
    "theta0_params",
    "unroll",
]


@dataclass(frozen=True)
class Schedule:
    """Which images each inner step uses, and how many passes (epochs) over the steps.

    Attributes:
        steps: inner steps per epoch.
        epochs: passes over the steps; the unroll has ``steps * epochs`` steps and as many learning rates.
        indices: ``indices[s]`` = image indices of step ``s`` (0 <= s < steps), in batch order.
    """

    steps: int
    epochs: int
    indices: tuple[tuple[int, ...], ...]

    @property
    def total(self) -> int:
        """Number of unrolled steps T = steps * epochs."""
        return self.steps * self.epochs

    def validate(self, num_images: int) -> None:
        """Check the schedule against ``num_images`` distilled images.

        Raises:
            UsageError: wrong number of entries, an empty step, or an index out of range.
        """
        if self.steps < 1 or self.epochs < 1:
            raise UsageError(f"steps and epochs must be >= 1, got {self.steps} and {self.epochs}")
        if len(self.indices) != self.steps:
            raise UsageError(f"schedule has {len(self.indices)} entries, expected one per step ({self.steps})")
        for s, idx in enumerate(self.indices):
            if not idx:
                raise UsageError(f"schedule step {s} uses no image")
            bad = [i for i in idx if not 0 <= i < num_images]
            if bad:
                raise UsageError(f"schedule step {s} names image {bad[0]}, but there are {num_images} images")


def make_schedule(kind: str, *, num_images: int, steps: int, epochs: int) -> Schedule:
    """Build one of the two standard schedules.

    Args:
        kind: ``"all"`` (every step uses all images 0..M-1) or ``"per-step"`` (step s uses its own
            contiguous block of M / steps images).
        num_images: M, the number of distilled images.
        steps: inner steps per epoch.
        epochs: passes over the steps.

    Returns:
        The schedule.

    Raises:
        UsageError: unknown kind, or M not divisible by steps for ``"per-step"``.
    """
    if kind == "all":
        idx = tuple(range(num_images))
        sched = Schedule(steps, epochs, tuple(idx for _ in range(steps)))
    elif kind == "per-step":
        if steps < 1 or num_images % steps:
            raise UsageError(f"per-step schedule needs M divisible by steps, got M={num_images}, steps={steps}")
        m = num_images // steps
        sched = Schedule(steps, epochs, tuple(tuple(range(s * m, (s + 1) * m)) for s in range(steps)))
    else:
        raise UsageError(f"unknown schedule {kind!r}; expected 'all' or 'per-step'")
    sched.validate(num_images)
    return sched


def apply_label_transform(label_params: Tensor, transform: str) -> Tensor:
    """Turn stored label parameters into target probabilities.

    Args:
        label_params: ``[M, K]`` learned label parameters (``labels`` tensor).
        transform: ``"softmax"`` (over the last axis) or ``"identity"`` (already probabilities).

    Returns:
        ``[M, K]`` targets.

    Raises:
        UsageError: unknown transform.
    """
    if transform == "softmax":
        return torch.softmax(label_params, dim=-1)
    if transform == "identity":
        return label_params
    raise UsageError(f"unknown label transform {transform!r}")


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Soft-target cross-entropy, mean over the batch: ``-(p * log_softmax(z)).sum(-1).mean()``."""
    return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def set_inner_mode(module: nn.Module) -> None:
    """Put ``module`` in the unroll's mode: train mode (BN uses batch statistics), dropout off.

    Dropout is switched off because the unroll must be a deterministic function of the file.
    """
    module.train()
    for m in module.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.eval()


def scratch_buffers(module: nn.Module, device: torch.device | str | None = None) -> dict[str, Tensor]:
    """Fresh copies of the module's buffers, for one unroll to update and then throw away."""
    return {n: b.detach().clone().to(device if device is not None else b.device)
            for n, b in module.named_buffers()}


StepHook = Callable[[int, Tensor], None]


def unroll(
    module: nn.Module,
    params: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    images: Tensor,
    targets: Tensor,
    lrs: Tensor,
    schedule: Schedule,
    *,
    differentiable: bool,
    on_step: StepHook | None = None,
) -> dict[str, Tensor]:
    """Run the T inner SGD steps and return theta_T.

    Args:
        module: the architecture; only its structure is used (``functional_call``), its own parameters
            are never read or written. Call :func:`set_inner_mode` on it first.
        params: theta_0 by name, in the module's ``named_parameters`` order. With ``differentiable=True``
            these may be (functions of) tensors that require grad.
        buffers: scratch buffers (see :func:`scratch_buffers`); BN running statistics in them are
            updated in place by the forward passes and have no influence on the result.
        images: ``[M, C, H, W]`` distilled images (network input space).
        targets: ``[M, K]`` target probabilities (label transform already applied).
        lrs: ``[T]`` learning rates, T = ``schedule.total``.
        schedule: which images each step uses.
        differentiable: keep the graph of every step (distiller) or not (replay).
        on_step: called after each step with (step index i, inner loss L_i detached).

    Returns:
        theta_T by name (same order as ``params``).

    Raises:
        UsageError: shapes of images/targets/lrs do not match the schedule.
    """
    if images.shape[0] != targets.shape[0]:
        raise UsageError(f"{images.shape[0]} images but {targets.shape[0]} label rows")
    if lrs.ndim != 1 or lrs.shape[0] != schedule.total:
        raise UsageError(f"need {schedule.total} learning rates (steps x epochs), got shape {tuple(lrs.shape)}")
    schedule.validate(int(images.shape[0]))
    index = step_index(schedule, int(images.shape[0]), images.device)
    names = list(params)
    theta: dict[str, Tensor] = {}
    for n in names:
        p = params[n]
        # theta_0 must require grad so autograd.grad can differentiate L_i w.r.t. it; in replay it is a
        # fresh leaf so no graph reaches back into the caller's tensors
        theta[n] = p if (differentiable and p.requires_grad) else p.detach().requires_grad_(True)
    for e in range(schedule.epochs):
        for s in range(schedule.steps):
            i = e * schedule.steps + s
            theta, loss = inner_step(module, theta, buffers, images, targets, lrs[i], index[s],
                                     differentiable=differentiable)
            if on_step is not None:
                on_step(i, loss.detach())
    if not differentiable:
        theta = {n: t.detach() for n, t in theta.items()}
    return theta


def step_index(schedule: Schedule, num_images: int, device: torch.device) -> list[Tensor | None]:
    """Per step, the image indices as a tensor, or ``None`` when the step uses every image in order
    (no gather, and no scatter-add in the backward pass)."""
    full = tuple(range(num_images))
    return [None if tuple(idx) == full else torch.tensor(idx, dtype=torch.long, device=device)
            for idx in schedule.indices]


def inner_grad(
    module: nn.Module,
    theta: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    images: Tensor,
    targets: Tensor,
    index: Tensor | None,
    *,
    create_graph: bool,
) -> tuple[list[Tensor | None], Tensor]:
    """The inner loss L_i of one step and its gradient w.r.t. theta (``None`` where a parameter is unused).

    Args:
        theta: current parameters by name; each must require grad (a leaf or part of a graph).
        index: the step's image indices (all images in order when ``None``).
        create_graph: keep the graph of the gradient (for second derivatives).

    Returns:
        (gradients in ``theta``'s order, the loss).
    """
    names = list(theta)
    x = images if index is None else images[index]
    p_t = targets if index is None else targets[index]
    with torch.enable_grad():
        logits = functional_call(module, (dict(theta), dict(buffers)), (x,), tie_weights=False, strict=True)
        loss = soft_cross_entropy(logits, p_t)
        grads = torch.autograd.grad(loss, [theta[n] for n in names], create_graph=create_graph,
                                    allow_unused=True)
    return list(grads), loss


def inner_step(
    module: nn.Module,
    theta: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    images: Tensor,
    targets: Tensor,
    lr: Tensor,
    index: Tensor | None,
    *,
    differentiable: bool,
) -> tuple[dict[str, Tensor], Tensor]:
    """One inner SGD step ``theta - (lr * grad_theta L)`` on the images ``index`` names (all when ``None``).

    This and :func:`inner_grad` are the single definition of the step: :func:`unroll` (graph mode and
    replay) and the recompute hypergradient (:mod:`sldpack.nn.hypergrad`) both use them, so their math
    cannot drift apart.

    Args:
        theta: current parameters by name; each must require grad (a leaf or part of a graph).
        differentiable: keep the graph of the step (``create_graph``) so the result is a differentiable
            function of theta, images, targets and lr; otherwise the result is a fresh detached leaf.

    Returns:
        (theta_next by name, the inner loss L_i).
    """
    grads, loss = inner_grad(module, theta, buffers, images, targets, index, create_graph=differentiable)
    new: dict[str, Tensor] = {}
    for n, g in zip(theta, grads, strict=True):
        if g is None:
            new[n] = theta[n]  # the parameter does not influence L_i: it keeps its value
        elif differentiable:
            new[n] = theta[n] - lr * g
        else:
            with torch.no_grad():
                upd = theta[n] - lr.detach() * g
            new[n] = upd.requires_grad_(True)
    return new, loss


def theta0_params(module: nn.Module) -> dict[str, Tensor]:
    """The module's current parameters as a detached, cloned name -> tensor dict (theta_0)."""
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def stack_lrs(values: Sequence[float], *, device: torch.device | str = "cpu") -> Tensor:
    """Learning rates as a float32 tensor (helper for tests and callers with Python floats)."""
    return torch.tensor(list(values), dtype=torch.float32, device=device)
