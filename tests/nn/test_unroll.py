"""The shared unroll: plain-SGD equivalence (bit for bit) and hypergradients vs finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sldpack.errors import UsageError
from sldpack.nn.unroll import (
    Schedule,
    apply_label_transform,
    make_schedule,
    scratch_buffers,
    set_inner_mode,
    soft_cross_entropy,
    unroll,
)
from sldpack.nn.zoo import build


def tiny_net(*, batchnorm: bool = False, seed: int = 0, dtype: torch.dtype = torch.float32,
             size: int = 8, width: int = 8, depth: int = 2, classes: int = 3) -> nn.Module:
    """A small zoo ConvNet with random (torch-generator) weights: the unroll does not care about init."""
    net = build("convnet@1", in_channels=1, num_classes=classes, image_size=(size, size), batchnorm=batchnorm,
                options={"depth": depth, "width": width})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return net.to(dtype)


def distilled(m: int, classes: int = 3, size: int = 8, seed: int = 1,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 1, size, size, generator=g).to(dtype)
    y = torch.randn(m, classes, generator=g).to(dtype)
    return x, y


def plain_sgd(net: nn.Module, x: torch.Tensor, targets: torch.Tensor, lrs: torch.Tensor,
              sched: Schedule) -> dict[str, torch.Tensor]:
    """The reference: an ordinary in-place SGD loop with .backward(), no functional machinery."""
    set_inner_mode(net)
    for e in range(sched.epochs):
        for s in range(sched.steps):
            i = e * sched.steps + s
            idx = torch.tensor(sched.indices[s])
            net.zero_grad(set_to_none=True)
            soft_cross_entropy(net(x[idx]), targets[idx]).backward()  # type: ignore[no-untyped-call]
            with torch.no_grad():
                for p in net.parameters():
                    if p.grad is not None:
                        p.sub_(lrs[i] * p.grad)
    return {n: p.detach().clone() for n, p in net.named_parameters()}


@pytest.mark.parametrize(("batchnorm", "kind", "steps", "epochs"),
                         [(False, "all", 3, 2), (True, "all", 2, 2), (True, "per-step", 3, 2)])
def test_replay_equals_plain_sgd_bit_for_bit(batchnorm: bool, kind: str, steps: int, epochs: int) -> None:
    m = 6
    x, yp = distilled(m)
    targets = apply_label_transform(yp, "softmax")
    sched = make_schedule(kind, num_images=m, steps=steps, epochs=epochs)
    lrs = torch.linspace(0.05, 0.2, sched.total)
    net = tiny_net(batchnorm=batchnorm)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    set_inner_mode(net)
    replayed = unroll(net, theta0, scratch_buffers(net), x, targets, lrs, sched, differentiable=False)
    graph = unroll(net, theta0, scratch_buffers(net), x.clone().requires_grad_(True), targets, lrs, sched,
                   differentiable=True)
    reference = plain_sgd(net, x, targets, lrs, sched)
    assert list(replayed) == list(reference)
    moved = [n for n in reference if not torch.equal(reference[n], theta0[n])]
    # (a conv bias right before batch norm has an exactly-zero gradient, so not every tensor moves)
    assert "fc.weight" in moved, "theta never moved: the test would prove nothing"
    assert "conv1.weight" in moved
    for n in reference:
        assert torch.equal(replayed[n], reference[n]), f"{n} differs from plain SGD"
        # the distiller's differentiable unroll computes the very same theta_T
        assert torch.equal(graph[n].detach(), reference[n]), f"{n}: differentiable unroll differs"


def test_unroll_leaves_module_and_theta0_untouched() -> None:
    net = tiny_net(batchnorm=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    t0copy = {k: v.clone() for k, v in theta0.items()}
    x, yp = distilled(3)
    sched = make_schedule("all", num_images=3, steps=2, epochs=1)
    set_inner_mode(net)
    unroll(net, theta0, scratch_buffers(net), x, apply_label_transform(yp, "softmax"), torch.full((2,), 0.1),
           sched, differentiable=False)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), f"module state {k} changed"
    for k, v in theta0.items():
        assert torch.equal(v, t0copy[k])


def test_hypergradient_matches_finite_differences_float64() -> None:
    dt = torch.float64
    net = tiny_net(dtype=dt, size=6, width=4, depth=1, classes=3, seed=3)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    m = 3
    x0, y0 = distilled(m, size=6, dtype=dt, seed=4)
    a0 = torch.tensor([0.05, 0.08, 0.03], dtype=dt)
    sched = make_schedule("all", num_images=m, steps=3, epochs=1)
    g = torch.Generator().manual_seed(5)
    xr = torch.randn(8, 1, 6, 6, generator=g).to(dt)
    yr = torch.randint(0, 3, (8,), generator=g)
    set_inner_mode(net)

    def outer(x: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        bufs = scratch_buffers(net)
        theta = unroll(net, theta0, bufs, x, apply_label_transform(y, "softmax"), a, sched, differentiable=True)
        logits = torch.func.functional_call(net, (theta, bufs), (xr,))
        return torch.nn.functional.cross_entropy(logits, yr)

    x = x0.clone().requires_grad_(True)
    y = y0.clone().requires_grad_(True)
    a = a0.clone().requires_grad_(True)
    gx, gy, ga = torch.autograd.grad(outer(x, y, a), [x, y, a])
    eps = 1e-6
    for which, grad in (("x", gx), ("y", gy), ("a", ga)):
        for trial in range(2):
            v = torch.randn(grad.shape, generator=torch.Generator().manual_seed(10 + trial), dtype=dt)
            args_p = [x0, y0, a0]
            args_m = [x0, y0, a0]
            k = "xya".index(which)
            args_p = [t + eps * v if j == k else t for j, t in enumerate(args_p)]
            args_m = [t - eps * v if j == k else t for j, t in enumerate(args_m)]
            fd = (outer(*args_p) - outer(*args_m)).item() / (2 * eps)
            an = float((grad * v).sum())
            assert abs(fd - an) <= 1e-6 * max(1.0, abs(fd)), f"d/d{which}: analytic {an} vs finite diff {fd}"
            assert abs(an) > 1e-8, f"d/d{which} is ~0: the check would be vacuous"


def test_schedule_validation() -> None:
    with pytest.raises(UsageError):
        make_schedule("per-step", num_images=5, steps=2, epochs=1)
    with pytest.raises(UsageError):
        make_schedule("sometimes", num_images=4, steps=2, epochs=1)
    with pytest.raises(UsageError):
        Schedule(2, 1, ((0,), (7,))).validate(4)
    s = make_schedule("per-step", num_images=6, steps=3, epochs=2)
    assert s.indices == ((0, 1), (2, 3), (4, 5))
    assert s.total == 6
    net = tiny_net()
    x, yp = distilled(6)
    with pytest.raises(UsageError):
        unroll(net, dict(net.named_parameters()), {}, x, yp, torch.zeros(5), s, differentiable=False)


def test_label_transforms() -> None:
    y = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    p = apply_label_transform(y, "softmax")
    assert torch.allclose(p.sum(-1), torch.ones(2))
    assert torch.equal(apply_label_transform(y, "identity"), y)
    with pytest.raises(UsageError):
        apply_label_transform(y, "sigmoid")
    # soft CE with a one-hot target equals the ordinary cross-entropy
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0, 2, 1, 1])
    assert torch.allclose(soft_cross_entropy(z, torch.eye(3)[t]), torch.nn.functional.cross_entropy(z, t))
