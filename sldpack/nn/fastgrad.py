"""A cheaper second derivative of 2-D convolution for the hypergradient (same math, better kernels).

Both hypergradient modes differentiate the inner gradient once more (graph: the backward pass through the
kept unroll; recompute: the Hessian-vector products). For a convolution ``y = conv(x, w)`` that second
derivative is, with ``gO`` the output gradient and ``ggI``, ``ggW``, ``ggB`` the incoming gradients of the
first backward's results ``gI = conv_T(gO, w)``, ``gW = corr(x, gO)``, ``gB = sum gO``:

    d/dgO = conv(ggI, w) + conv(x, ggW) + ggB      (two forward convolutions)
    d/dx  = input gradient of conv(x, ggW) at gO   (convolution_backward, input part)
    d/dw  = weight gradient of conv(ggI, w) at gO  (convolution_backward, weight part)

PyTorch's own double backward computes the ``d/dw`` term as a convolution of the batch-transposed ``ggI``
with the batch-transposed ``gO`` as a kernel the size of the feature map: on the CPU that runs at about half
the speed of the weight-gradient kernel that computes the same numbers (measured: 24-35 vs 48-66 GFLOP/s at
ResNet18's shapes, one thread). :class:`FastConvGrad` routes ``conv2d`` through an autograd function whose
backward is itself an autograd function with the formulas above, each one an ordinary oneDNN kernel. The
forward pass is the same ``conv2d`` call (bit for bit the same output); gradients equal PyTorch's up to
rounding (float64 tests: tests/nn/test_fastgrad.py).

Only the hypergradient uses it (:func:`sldpack.nn.hypergrad.hypergradient`); replay never does, so nothing
about replay output depends on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["FastConvGrad"]

_Conf = tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]  # stride, padding, dilation, groups


def _conv_backward(g_out: Tensor, inp: Tensor, weight: Tensor, conf: _Conf, mask: list[bool],
                   bias: bool = False) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    stride, padding, dilation, groups = conf
    gi, gw, gb = torch.ops.aten.convolution_backward(
        g_out, inp, weight, [weight.shape[0]] if bias else None, list(stride), list(padding), list(dilation),
        False, [0, 0], groups, mask)
    return (gi if mask[0] else None), (gw if mask[1] else None), (gb if mask[2] else None)


class _ConvBackward(torch.autograd.Function):
    """(gO, x, w) -> (gI, gW, gB), differentiable with the formulas of the module docstring."""

    @staticmethod
    def forward(ctx: Any, g_out: Tensor, x: Tensor, w: Tensor, conf: _Conf, bias: bool, need_x: bool,
                need_w: bool) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        ctx.conf = conf
        ctx.save_for_backward(g_out, x, w)
        return _conv_backward(g_out, x, w, conf, [need_x, need_w, bias], bias)

    @staticmethod
    def backward(ctx: Any, gg_in: Tensor | None, gg_w: Tensor | None,
                 gg_b: Tensor | None) -> tuple[Tensor | None, ...]:
        g_out, x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        d_out = d_x = d_w = None
        if ctx.needs_input_grad[0]:
            if gg_in is not None:
                d_out = F.conv2d(gg_in, w, None, stride, padding, dilation, groups)
            if gg_w is not None:
                t = F.conv2d(x, gg_w, None, stride, padding, dilation, groups)
                d_out = t if d_out is None else d_out + t
            if gg_b is not None:
                t = gg_b.reshape(1, -1, 1, 1).expand_as(g_out)
                d_out = t if d_out is None else d_out + t
        if ctx.needs_input_grad[1] and gg_w is not None:
            d_x = _conv_backward(g_out, x, gg_w, ctx.conf, [True, False, False])[0]
        if ctx.needs_input_grad[2] and gg_in is not None:
            d_w = _conv_backward(g_out, gg_in, w, ctx.conf, [False, True, False])[1]
        return d_out, d_x, d_w, None, None, None, None


class _Conv(torch.autograd.Function):
    """``conv2d`` whose backward is :class:`_ConvBackward` (so the second derivative uses its formulas)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor | None, conf: _Conf) -> Tensor:
        stride, padding, dilation, groups = conf
        ctx.conf = conf
        ctx.bias = b is not None
        ctx.save_for_backward(x, w)
        return F.conv2d(x, w, b, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx: Any, g_out: Tensor) -> tuple[Tensor | None, ...]:
        x, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        gi, gw, gb = _ConvBackward.apply(  # type: ignore[no-untyped-call]
            g_out, x, w, ctx.conf, bool(ctx.bias and need[2]), need[0], need[1])
        return gi, gw, gb, None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, Sequence):
        return int(v[0]), int(v[1])
    return int(v), int(v)


#: convolutions with fewer input channels (per group) keep PyTorch's double backward: for the 1-channel first
#: layer of a grey-scale network the weight-gradient kernel is the slower one (one layer 1 -> 64 channels, 3x3,
#: 9 x 28 x 28: 23.5 vs 16.2 ms; 64 -> 64 channels: 68 vs 75 ms, one thread)
MIN_IN_CHANNELS = 16

_CONV2D_ARGS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")


class FastConvGrad(TorchFunctionMode):
    """Inside ``with FastConvGrad():``, ``conv2d`` calls that autograd records use :class:`_Conv`.

    Calls it cannot take or that would not gain (padding given as a string, inputs that are not 4-D, fewer
    than :data:`MIN_IN_CHANNELS` input channels per group, grad mode off, no input that requires grad) go to
    ``conv2d`` unchanged.
    """

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d and torch.is_grad_enabled():
            v = dict(zip(_CONV2D_ARGS, args, strict=False))
            v.update(kwargs)
            x, w, b = v["input"], v["weight"], v.get("bias")
            pad = v.get("padding", 0)
            if (not isinstance(pad, str) and x.dim() == 4 and w.dim() == 4 and w.shape[1] >= MIN_IN_CHANNELS
                    and (x.requires_grad or w.requires_grad or (b is not None and b.requires_grad))):
                conf = (_pair(v.get("stride", 1)), _pair(pad), _pair(v.get("dilation", 1)), int(v.get("groups", 1)))
                return _Conv.apply(x, w, b, conf)  # type: ignore[no-untyped-call]
        return func(*args, **kwargs)
