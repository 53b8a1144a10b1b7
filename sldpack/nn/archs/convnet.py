"""``convnet@1``: the dataset-distillation baseline ConvNet (depth x [conv3x3 -> BN? -> ReLU -> avgpool2]).

Differences from the DC/DM reference code, on purpose: normalisation is batch norm or nothing (no
instance norm), and the first convolution always pads by 1, so a 28x28 input shrinks 28 -> 14 -> 7 -> 3
instead of being padded up to 32x32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sldpack.nn.archs._common import Op, batchnorm2d, conv2d, linear, trace

__all__ = ["ConvNet", "spatial_ops"]


def spatial_ops(depth: int) -> list[Op]:
    """Per-axis conv/pool chain: ``depth`` times (conv3x3 pad 1, avgpool 2x2 stride 2)."""
    return [op for _ in range(depth) for op in (Op(3, 1, 1), Op(2, 2))]


class ConvNet(nn.Module):
    """``conv{i}`` (3x3, pad 1, bias), ``bn{i}`` when batch norm, ReLU, avgpool 2x2; then ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, image_size: tuple[int, int], batchnorm: bool,
                 depth: int, width: int) -> None:
        super().__init__()
        self.batchnorm = batchnorm
        self.depth = depth
        ops = spatial_ops(depth)
        h, w = trace(image_size[0], ops), trace(image_size[1], ops)
        c = in_channels
        for i in range(1, depth + 1):
            # registration order is the canonical parameter order: conv1, bn1, conv2, bn2, ..., fc
            self.add_module(f"conv{i}", conv2d(c, width, 3, padding=1, bias=True))
            if batchnorm:
                self.add_module(f"bn{i}", batchnorm2d(width))
            c = width
        self.fc = linear(width * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] float32 -> logits [N, num_classes]."""
        for i in range(1, self.depth + 1):
            x = self.get_submodule(f"conv{i}")(x)
            if self.batchnorm:
                x = self.get_submodule(f"bn{i}")(x)
            x = F.avg_pool2d(F.relu(x), 2, 2)
        return self.fc(torch.flatten(x, 1))  # type: ignore[no-any-return]
