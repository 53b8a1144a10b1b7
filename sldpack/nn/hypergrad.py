"""Hypergradients of the outer loss w.r.t. the distilled data, in two interchangeable ways.

``graph`` keeps the autograd graph of all T inner steps (:func:`~sldpack.nn.unroll.unroll` with
``differentiable=True``) and back-propagates through it once: fast, but memory grows with T times the
activations of one step (at 224 px and ResNet18 that is what fills memory).

``recompute`` is the original dataset-distillation approach (Wang et al. 2018): run the T steps without a
graph keeping only theta_t (detached), evaluate the outer loss at theta_T, then walk the steps backwards,
rebuilding *one* step's graph at a time from the stored theta_t and pulling the adjoint
``g_t = dL/dtheta_t`` back through it (a Hessian-vector product) while accumulating the gradients of the
images, targets and learning rates. Memory is T x |theta| plus one step's graph; with
``checkpoint_every = k > 1`` only every k-th theta_t is kept and the thetas of one segment are
recomputed when the walk reaches it (T/k + k thetas, one more no-graph forward per step).

Both use the same step definition (:func:`~sldpack.nn.unroll.inner_step` /
:func:`~sldpack.nn.unroll.inner_grad`), so the math is shared; the results agree to rounding (float64:
~1e-12 relative, see tests/nn/test_hypergrad.py). The backward step of ``theta' = theta - a * g(theta)``
is one Hessian-vector product: with ``s = <adj, g>``, ``adj <- adj - a * ds/dtheta``, the images and
targets get ``-a * ds/dx`` and ``-a * ds/dp``, and ``dL/da = -s``.

Recompute mode can also split every step's images across processes (:class:`ImageShard`), so the
distilled set can grow with the number of devices.

Batch norm: inner steps normalise with the step batch's statistics (inner mode), exactly as in the unroll;
the running buffers are scratch, updated by every forward pass (including the recomputations) and never
differentiated, so recomputing a step any number of times does not change the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sldpack.errors import UsageError
from sldpack.nn.config import UNROLL_MODES, UnrollMode
from sldpack.nn.distributed import shard_bounds
from sldpack.nn.fastgrad import FastConvGrad
from sldpack.nn.unroll import Schedule, inner_grad, inner_step, step_index, unroll

__all__ = ["UNROLL_MODES", "Hypergrad", "ImageShard", "UnrollMode", "hypergradient"]


#: the outer objective: theta_T (by name) -> scalar loss, differentiable w.r.t. theta_T
OuterLoss = Callable[[Mapping[str, Tensor]], Tensor]


@dataclass
class Hypergrad:
    """Outer loss value and its gradients w.r.t. images ``[M, C, H, W]``, targets ``[M, K]`` and lrs ``[T]``."""

    loss: Tensor
    images: Tensor
    targets: Tensor
    lrs: Tensor


@dataclass(frozen=True)
class ImageShard:
    """Recompute mode over several processes, each taking a contiguous share of every inner step's images.

    Each rank computes its share's part of the inner gradient (weighted by share size / step batch size)
    and ``all_reduce`` (a sum over ranks) completes it, so every rank holds the same theta_t; in the
    backward walk the Hessian-vector products are summed the same way and each rank accumulates the image
    and label gradients of its own images. Only valid without batch norm: BN normalises with the statistics
    of the whole step batch, which a share does not see.

    The outer loss is expected to be each rank's share of the real batch (sum / global K); the returned
    :class:`Hypergrad` is then complete (already summed over ranks) on every rank.
    """

    rank: int
    world_size: int
    all_reduce: Callable[[Sequence[Tensor]], list[Tensor]]


def _zero_if_none(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


def hypergradient(
    module: nn.Module,
    theta0: Mapping[str, Tensor],
    buffers: Mapping[str, Tensor],
    images: Tensor,
    targets: Tensor,
    lrs: Tensor,
    schedule: Schedule,
    outer: OuterLoss,
    *,
    mode: UnrollMode = "graph",
    checkpoint_every: int = 1,
    shard: ImageShard | None = None,
    fast_conv: bool = True,
) -> Hypergrad:
    """d outer(theta_T) / d (images, targets, lrs), where theta_T is the unroll of ``schedule``.

    Args:
        module: the architecture in inner mode (:func:`~sldpack.nn.unroll.set_inner_mode`).
        theta0: theta_0 by name (treated as a constant).
        buffers: scratch buffers; updated in place by the forward passes, never differentiated.
        images, targets, lrs: the distilled data; their own ``requires_grad`` is ignored (the gradients
            are returned, not accumulated into ``.grad``).
        schedule: which images each step uses.
        outer: the outer loss of theta_T.
        mode: ``"graph"`` or ``"recompute"`` (see the module docstring).
        checkpoint_every: recompute mode: keep every k-th theta_t (1: all of them).
        shard: recompute mode: split every step's images across processes (see :class:`ImageShard`).
        fast_conv: differentiate convolutions twice with :class:`~sldpack.nn.fastgrad.FastConvGrad`
            (faster kernels, same math; ``False``: PyTorch's own double backward, for comparisons).

    Returns:
        The loss (detached) and the three gradients, shaped like their tensors.

    Raises:
        UsageError: unknown mode, ``checkpoint_every < 1``, or shapes that do not match the schedule.
    """
    if mode not in UNROLL_MODES:
        raise UsageError(f"unroll mode must be one of {UNROLL_MODES}, got {mode!r}")
    if checkpoint_every < 1:
        raise UsageError(f"unroll checkpoint interval must be >= 1, got {checkpoint_every}")
    x = images.detach().requires_grad_(True)
    p = targets.detach().requires_grad_(True)
    a = lrs.detach().requires_grad_(True)
    if shard is not None and mode != "recompute":
        raise UsageError("sharding the inner steps' images across processes needs the recompute unroll")
    def second_order() -> contextlib.AbstractContextManager[object]:
        # only where a graph is kept for a second derivative: the no-graph steps need nothing but conv2d
        return FastConvGrad() if fast_conv else contextlib.nullcontext()

    if mode == "graph":
        with second_order():
            theta0_c = {n: t.detach() for n, t in theta0.items()}
            theta = unroll(module, theta0_c, buffers, x, p, a, schedule, differentiable=True)
            loss = outer(theta)
            gx, gp, ga = torch.autograd.grad(loss, [x, p, a], allow_unused=True)
        return Hypergrad(loss.detach(), _zero_if_none(gx, x), _zero_if_none(gp, p), _zero_if_none(ga, a))
    return _recompute(module, theta0, buffers, x, p, a, schedule, outer, checkpoint_every, shard, second_order)


def _recompute(module: nn.Module, theta0: Mapping[str, Tensor], buffers: Mapping[str, Tensor], x: Tensor,
               p: Tensor, a: Tensor, schedule: Schedule, outer: OuterLoss, k: int,
               shard: ImageShard | None = None,
               second_order: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext
               ) -> Hypergrad:
    if x.shape[0] != p.shape[0]:
        raise UsageError(f"{x.shape[0]} images but {p.shape[0]} label rows")
    if a.ndim != 1 or a.shape[0] != schedule.total:
        raise UsageError(f"need {schedule.total} learning rates (steps x epochs), got shape {tuple(a.shape)}")
    schedule.validate(int(x.shape[0]))
    index = step_index(schedule, int(x.shape[0]), x.device)
    total = schedule.total
    xd, pd, ad = x.detach(), p.detach(), a.detach()

    weight = [1.0] * schedule.steps
    if shard is not None:
        if any(isinstance(m_, nn.modules.batchnorm._BatchNorm) for m_ in module.modules()):
            raise UsageError("sharding the inner steps' images needs an architecture without batch norm")
        for st, idx in enumerate(schedule.indices):
            lo, hi = shard_bounds(len(idx), shard.rank, shard.world_size)
            index[st] = torch.tensor(idx[lo:hi], dtype=torch.long, device=x.device)
            weight[st] = (hi - lo) / len(idx)

    def step_of(i: int) -> Tensor | None:
        return index[i % schedule.steps]

    def forward_no_graph(theta: dict[str, Tensor], i: int) -> dict[str, Tensor]:
        if shard is None:
            new, _ = inner_step(module, theta, buffers, xd, pd, ad[i], step_of(i), differentiable=False)
            return new
        # the same update as inner_step, with the gradient summed over the ranks' shares
        grads, _ = inner_grad(module, theta, buffers, xd, pd, step_of(i), create_graph=False)
        w = weight[i % schedule.steps]
        names_ = list(theta)
        used = [(names_[j], g * w) for j, g in enumerate(grads) if g is not None]
        full = shard.all_reduce([g for _n, g in used])
        out = dict(theta)
        for (n, _g), g in zip(used, full, strict=True):
            with torch.no_grad():
                upd = theta[n] - ad[i] * g
            out[n] = upd.requires_grad_(True)
        return out

    # forward walk without a graph; keep theta_t at every checkpoint (t = 0, k, 2k, ...) and all of the last
    # segment, which the backward walk needs first (so it is never recomputed; peak stays T/k + k thetas)
    last = ((total - 1) // k) * k
    theta: dict[str, Tensor] = {n: t.detach().requires_grad_(True) for n, t in theta0.items()}
    saved: dict[int, dict[str, Tensor]] = {}
    for i in range(total):
        if i % k == 0 or i >= last:
            saved[i] = theta
        theta = forward_no_graph(theta, i)
    # outer loss at theta_T and its gradient: the adjoint g_T
    with torch.enable_grad():
        loss = outer(theta)
        names = list(theta)
        g_list = torch.autograd.grad(loss, [theta[n] for n in names], allow_unused=True)
    adj: dict[str, Tensor] = {n: _zero_if_none(g, theta[n]) for n, g in zip(names, g_list, strict=True)}
    if shard is not None:  # each rank's outer loss covers its real share: the adjoint is their sum
        adj = dict(zip(names, shard.all_reduce([adj[n] for n in names]), strict=True))
    del theta
    gx, gp, ga = torch.zeros_like(x), torch.zeros_like(p), torch.zeros_like(a)
    # backward walk, one segment [c, c+k) at a time: recompute its thetas, then step back through it
    for c in reversed(range(0, total, k)):
        seg: list[dict[str, Tensor]] = [saved.pop(c)]
        for i in range(c, min(c + k, total) - 1):
            seg.append(saved.pop(i + 1) if i + 1 in saved else forward_no_graph(seg[-1], i))
        for i in reversed(range(c, min(c + k, total))):
            th = {n: t.detach().requires_grad_(True) for n, t in seg.pop().items()}
            # theta_{i+1} = theta_i - a_i * g_i(theta_i, x, p), so with s = <adj, g_i>:
            #   adj_i = adj - a_i * ds/dtheta_i,  dL/dx += -a_i * ds/dx,  dL/dp += -a_i * ds/dp,  dL/da_i = -s
            # (one Hessian-vector product; cheaper than the VJP of the update's own graph)
            with torch.enable_grad(), second_order():
                g_i, _ = inner_grad(module, th, buffers, x, p, step_of(i), create_graph=True)
                used = [j for j, g in enumerate(g_i) if g is not None]
                if not used:
                    continue
                s = sum((torch.vdot(adj[names[j]].reshape(-1), g_i[j].reshape(-1))  # type: ignore[union-attr]
                         for j in used), start=torch.zeros((), dtype=x.dtype, device=x.device))
                if shard is not None:
                    s = s * weight[i % schedule.steps]
                # theta_0 is a constant: the first step's adjoint is never used, so its Hessian-vector product
                # (the weight half of that step's double backward) is not computed
                wrt = [j for j in used if i > 0]
                grads = torch.autograd.grad(s, [th[names[j]] for j in wrt] + [x, p], allow_unused=True)
            lr_i = a.detach()[i]
            hvp = [_zero_if_none(h, th[names[j]]) for j, h in zip(wrt, grads[:len(wrt)], strict=True)]
            if shard is not None:  # sum the ranks' parts of the Hessian-vector product and of s
                *hvp, s = shard.all_reduce([*hvp, s.detach().reshape(1)])
                s = s[0]
            for j, h in zip(wrt, hvp, strict=True):
                adj[names[j]] = adj[names[j]] - lr_i * h
            dx, dp = grads[len(wrt):]
            if dx is not None:
                gx -= lr_i * dx
            if dp is not None:
                gp -= lr_i * dp
            ga[i] -= s.detach()
    loss = loss.detach()
    if shard is not None:  # image/label gradients live on the rank that owns the image; losses are shares
        loss_t, gx, gp = shard.all_reduce([loss.reshape(1), gx, gp])
        loss = loss_t[0]
    return Hypergrad(loss, gx, gp, ga)
