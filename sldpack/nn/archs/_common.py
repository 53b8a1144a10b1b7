"""Shared pieces of the architecture zoo: layer factories and 1-D spatial-size propagation.

Every family module builds its network from these factories so that three rules hold everywhere
(spec annex SLDP-1-architectures.md, section "Common rules"):

* parameters are float32 whatever ``torch.get_default_dtype()`` says;
* batch norm is ``BatchNorm2d(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True)``;
* the device comes from the caller's ``torch.device`` context (the zoo builds on ``meta``).

Spatial sizes are propagated one axis at a time with PyTorch's exact output-size formulas, so the
zoo can reject an input that is too small *before* building anything, and can size the flatten of
the classifiers that depend on the input size (LeNet, ConvNet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "Op",
    "batchnorm2d",
    "conv2d",
    "linear",
    "out_size",
    "trace",
]

BN_EPS = 1e-5
BN_MOMENTUM = 0.1
_DTYPE = torch.float32


def conv2d(cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0, bias: bool = True) -> nn.Conv2d:
    """A square-kernel ``Conv2d`` (dilation 1, groups 1, zero padding), float32."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias, dtype=_DTYPE)


def batchnorm2d(channels: int) -> nn.BatchNorm2d:
    """``BatchNorm2d`` with the zoo's fixed eps/momentum and running statistics, float32."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM, affine=True,
                          track_running_stats=True, dtype=_DTYPE)


def linear(fin: int, fout: int) -> nn.Linear:
    """A ``Linear`` layer with bias, float32."""
    return nn.Linear(fin, fout, bias=True, dtype=_DTYPE)


@dataclass(frozen=True)
class Op:
    """One spatial operation along one axis: kernel, stride, padding and rounding mode."""

    kernel: int
    stride: int = 1
    padding: int = 0
    ceil: bool = False


def out_size(n: int, op: Op) -> int:
    """PyTorch's output length of a conv/pool along one axis (dilation 1).

    ``floor((n + 2p - k) / s) + 1``; in ceil mode the division rounds up, and then the last window is
    dropped when it would start in the right padding (``(out - 1) * s >= n + p``), exactly as
    ``torch.nn.MaxPool2d(ceil_mode=True)`` does. A result below 1 means the input is too small.
    """
    span = n + 2 * op.padding - op.kernel
    if op.ceil:
        out = -(-span // op.stride) + 1  # ceil division (span may be negative)
        if (out - 1) * op.stride >= n + op.padding:
            out -= 1
    else:
        out = span // op.stride + 1  # floor division, as PyTorch's div_rtn
    return out


def trace(n: int, ops: Iterable[Op]) -> int:
    """Apply ``ops`` in order to a length ``n``; return the final length, or 0 if any step is below 1."""
    for op in ops:
        n = out_size(n, op)
        if n < 1:
            return 0
    return n
