"""FastConvGrad: conv2d's first and second derivatives equal PyTorch's own (float64), forward output bit for bit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sldpack.nn import fastgrad
from sldpack.nn.fastgrad import FastConvGrad
from sldpack.nn.hypergrad import hypergradient
from sldpack.nn.unroll import apply_label_transform, make_schedule, scratch_buffers, set_inner_mode
from sldpack.nn.zoo import build

DT = torch.float64


@pytest.fixture(autouse=True)
def every_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' tiny convolutions have few channels: route every one through FastConvGrad."""
    monkeypatch.setattr(fastgrad, "MIN_IN_CHANNELS", 1)

# stride, padding, dilation, groups, bias
CONFS = [((1, 1), (1, 1), (1, 1), 1, True), ((2, 2), (3, 3), (1, 1), 1, False), ((2, 1), (0, 2), (2, 1), 2, True)]


def conv_inputs(conf: tuple[Any, ...], seed: int = 0) -> tuple[torch.Tensor, ...]:
    _s, _p, _d, groups, bias = conf
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 7, 6, generator=g, dtype=DT, requires_grad=True)
    w = torch.randn(4, 4 // groups, 3, 3, generator=g, dtype=DT, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=DT, requires_grad=True) if bias else None
    return x, w, b


def second_derivatives(conf: tuple[Any, ...], fast: bool) -> list[torch.Tensor]:
    """Gradients of <v, d L / d(x, w, b)> w.r.t. x, w, b for a fixed nonlinear L of the conv output."""
    stride, padding, dilation, groups, _bias = conf
    x, w, b = conv_inputs(conf)
    ins = [t for t in (x, w, b) if t is not None]
    with FastConvGrad() if fast else torch.enable_grad():
        y = F.conv2d(x, w, b, stride, padding, dilation, groups)
        loss = (torch.tanh(y) ** 2).sum()  # curvature in the output, so every second-order term is exercised
        first = torch.autograd.grad(loss, ins, create_graph=True)
    g = torch.Generator().manual_seed(1)
    s = sum((torch.randn(f.shape, generator=g, dtype=DT) * f).sum() for f in first)
    return [t.detach() for t in (*first, *torch.autograd.grad(s, ins))]


@pytest.mark.parametrize("conf", CONFS)
def test_second_derivatives_equal_pytorch_float64(conf: tuple[Any, ...]) -> None:
    ref, got = second_derivatives(conf, False), second_derivatives(conf, True)
    for r, o in zip(ref, got, strict=True):
        assert float(r.abs().max()) > 1e-3  # a vanished derivative would make the comparison vacuous
        assert float((r - o).abs().max() / r.abs().max()) < 1e-12


@pytest.mark.parametrize("conf", CONFS)
def test_second_derivatives_match_finite_differences(conf: tuple[Any, ...]) -> None:
    stride, padding, dilation, groups, _bias = conf
    ins = [t for t in conv_inputs(conf) if t is not None]

    def f(*a: torch.Tensor) -> torch.Tensor:
        with FastConvGrad():
            return torch.tanh(F.conv2d(a[0], a[1], a[2] if len(a) > 2 else None, stride, padding, dilation, groups))

    assert torch.autograd.gradgradcheck(f, ins, fast_mode=True)


def test_forward_is_the_same_conv2d_and_mode_passes_through() -> None:
    x, w, b = conv_inputs(CONFS[0])
    with FastConvGrad():
        y = F.conv2d(x, w, b, padding=1)
        with torch.no_grad():
            y_nograd = F.conv2d(x, w, b, padding=1)
        y_same = F.conv2d(x.detach(), w.detach(), None, padding="same")  # string padding: not intercepted
    assert torch.equal(y, F.conv2d(x, w, b, padding=1))
    assert torch.equal(y_nograd, y.detach())
    assert y.grad_fn is not None and "_Conv" in type(y.grad_fn).__name__
    assert y_same.grad_fn is None


def test_few_input_channels_keep_pytorchs_double_backward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastgrad, "MIN_IN_CHANNELS", 16)
    w1 = torch.randn(8, 1, 3, 3, requires_grad=True)
    w16 = torch.randn(8, 16, 3, 3, requires_grad=True)
    with FastConvGrad():
        y1 = F.conv2d(torch.randn(2, 1, 5, 5), w1)
        y16 = F.conv2d(torch.randn(2, 16, 5, 5), w16)
    assert y1.grad_fn is not None and "_Conv" not in type(y1.grad_fn).__name__
    assert y16.grad_fn is not None and "_Conv" in type(y16.grad_fn).__name__


@pytest.mark.parametrize("mode", ["graph", "recompute"])
def test_hypergradient_fast_equals_pytorch_float64(mode: str) -> None:
    # ConvNet with batch norm and conv biases; strides, dilation and groups are covered per layer above
    size = 8
    net = build("convnet@1", in_channels=1, num_classes=3, image_size=(size, size), batchnorm=True,
                options={"depth": 2, "width": 4}).to(DT)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=DT))
    set_inner_mode(net)
    theta0 = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.randn(4, 1, size, size, generator=g, dtype=DT)
    y = apply_label_transform(torch.randn(4, 3, generator=g, dtype=DT), "softmax")
    a = torch.tensor([0.05, 0.03, 0.04], dtype=DT)
    xr, yr = torch.randn(5, 1, size, size, generator=g, dtype=DT), torch.tensor([0, 1, 2, 0, 1])
    sched = make_schedule("all", num_images=4, steps=3, epochs=1)

    def outer(theta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(net, (dict(theta), scratch_buffers(net)), (xr,)), yr)

    ref = hypergradient(net, theta0, scratch_buffers(net), x, y, a, sched, outer, mode=mode,  # type: ignore[arg-type]
                        fast_conv=False)
    got = hypergradient(net, theta0, scratch_buffers(net), x, y, a, sched, outer, mode=mode,  # type: ignore[arg-type]
                        fast_conv=True)
    assert float(ref.loss) == float(got.loss)  # the forward passes are the same kernels
    for name in ("images", "targets", "lrs"):
        r, o = getattr(ref, name), getattr(got, name)
        assert float(r.abs().max()) > 1e-8, name
        assert float((r - o).abs().max() / r.abs().max()) < 1e-11, name
