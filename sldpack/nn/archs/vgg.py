"""``vgg16@1`` / ``vgg19@1``: VGG configurations D and E (Simonyan & Zisserman), torchvision layout.

Every convolution is 3x3, stride 1, pad 1, with bias (also when batch norm follows, as torchvision's
``vgg16_bn``); a 2x2/2 max pool ends each of the five blocks; an adaptive 7x7 average pool feeds
``fc6`` (25088 -> 4096), ``fc7`` (4096 -> 4096) and ``fc8`` (4096 -> classes). No dropout.
With 1 input channel and 3 classes: 134,271,683 (VGG16) and 139,581,379 (VGG19) parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sldpack.nn.archs._common import Op, batchnorm2d, conv2d, linear

__all__ = ["CONFIGS", "VGG", "spatial_ops"]

# block -> convolutions per block; widths are 64, 128, 256, 512, 512
CONFIGS: dict[int, tuple[int, ...]] = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_WIDTHS = (64, 128, 256, 512, 512)


def spatial_ops(depth: int) -> list[Op]:
    """Per-axis chain: per block, its 3x3 pad-1 convolutions then a 2x2/2 max pool."""
    ops: list[Op] = []
    for n in CONFIGS[depth]:
        ops += [Op(3, 1, 1)] * n + [Op(2, 2)]
    return ops


class VGG(nn.Module):
    """``conv{b}_{i}`` (+ ``bn{b}_{i}``) for block b = 1..5, then ``fc6``, ``fc7``, ``fc8``."""

    def __init__(self, depth: int, in_channels: int, num_classes: int, batchnorm: bool) -> None:
        super().__init__()
        self.batchnorm = batchnorm
        self.blocks: tuple[tuple[str, ...], ...] = tuple(
            tuple(f"{b}_{i}" for i in range(1, n + 1)) for b, n in enumerate(CONFIGS[depth], start=1))
        c = in_channels
        for block, width in zip(self.blocks, _WIDTHS, strict=True):
            for tag in block:
                self.add_module(f"conv{tag}", conv2d(c, width, 3, padding=1))
                if batchnorm:
                    self.add_module(f"bn{tag}", batchnorm2d(width))
                c = width
        self.fc6 = linear(512 * 7 * 7, 4096)
        self.fc7 = linear(4096, 4096)
        self.fc8 = linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] float32 -> logits [N, num_classes]."""
        for block in self.blocks:
            for tag in block:
                x = self.get_submodule(f"conv{tag}")(x)
                if self.batchnorm:
                    x = self.get_submodule(f"bn{tag}")(x)
                x = F.relu(x)
            x = F.max_pool2d(x, 2, 2)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (7, 7)), 1)
        x = F.relu(self.fc6(x))
        x = F.relu(self.fc7(x))
        return self.fc8(x)  # type: ignore[no-any-return]
