"""``alexnet@1``: the single-tower AlexNet variant of torchvision ("One weird trick", 64-192-384-256-256).

With 1 input channel and 3 classes it has exactly 57,000,643 parameters, the seed paper's Table 6 figure.
Dropout is omitted (replay must be deterministic); it has no parameters, so counts are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sldpack.nn.archs._common import Op, batchnorm2d, conv2d, linear

__all__ = ["AlexNet", "spatial_ops"]

# (out_channels, kernel, stride, padding, maxpool 3x3/2 after it)
_CONVS = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False), (256, 3, 1, 1, False),
          (256, 3, 1, 1, True))


def spatial_ops() -> list[Op]:
    """Per-axis chain of the feature extractor (the adaptive 6x6 pool accepts any size >= 1)."""
    ops: list[Op] = []
    for _, k, s, p, pool in _CONVS:
        ops.append(Op(k, s, p))
        if pool:
            ops.append(Op(3, 2))
    return ops


class AlexNet(nn.Module):
    """``conv1..conv5`` (+ ``bn1..bn5``), adaptive avgpool 6x6, ``fc6`` 9216->4096, ``fc7``, ``fc8``."""

    def __init__(self, in_channels: int, num_classes: int, batchnorm: bool) -> None:
        super().__init__()
        self.batchnorm = batchnorm
        c = in_channels
        for i, (cout, k, s, p, _) in enumerate(_CONVS, start=1):
            self.add_module(f"conv{i}", conv2d(c, cout, k, stride=s, padding=p))
            if batchnorm:
                self.add_module(f"bn{i}", batchnorm2d(cout))
            c = cout
        self.fc6 = linear(256 * 6 * 6, 4096)
        self.fc7 = linear(4096, 4096)
        self.fc8 = linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] float32 -> logits [N, num_classes]."""
        for i, (_, _, _, _, pool) in enumerate(_CONVS, start=1):
            x = self.get_submodule(f"conv{i}")(x)
            if self.batchnorm:
                x = self.get_submodule(f"bn{i}")(x)
            x = F.relu(x)
            if pool:
                x = F.max_pool2d(x, 3, 2)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (6, 6)), 1)
        x = F.relu(self.fc6(x))
        x = F.relu(self.fc7(x))
        return self.fc8(x)  # type: ignore[no-any-return]
