"""``lenet@1``: LeNet-5 as in the dataset-distillation reference code (ReLU and max pooling).

conv1 5x5 pad 2 (so a 28x28 digit keeps its size), maxpool 2, conv2 5x5, maxpool 2, then three fully
connected layers 120 -> 84 -> classes. The flatten size follows the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sldpack.nn.archs._common import Op, batchnorm2d, conv2d, linear, trace

__all__ = ["LeNet", "spatial_ops"]


def spatial_ops() -> list[Op]:
    """Per-axis chain: conv5 pad 2, maxpool 2, conv5, maxpool 2."""
    return [Op(5, 1, 2), Op(2, 2), Op(5, 1, 0), Op(2, 2)]


class LeNet(nn.Module):
    """``conv1``, ``bn1``?, ``conv2``, ``bn2``?, ``fc1``, ``fc2``, ``fc3``."""

    def __init__(self, in_channels: int, num_classes: int, image_size: tuple[int, int], batchnorm: bool) -> None:
        super().__init__()
        self.batchnorm = batchnorm
        ops = spatial_ops()
        h, w = trace(image_size[0], ops), trace(image_size[1], ops)
        self.conv1 = conv2d(in_channels, 6, 5, padding=2)
        if batchnorm:
            self.bn1 = batchnorm2d(6)
        self.conv2 = conv2d(6, 16, 5)
        if batchnorm:
            self.bn2 = batchnorm2d(16)
        self.fc1 = linear(16 * h * w, 120)
        self.fc2 = linear(120, 84)
        self.fc3 = linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] float32 -> logits [N, num_classes]."""
        x = self.conv1(x)
        if self.batchnorm:
            x = self.bn1(x)
        x = F.max_pool2d(F.relu(x), 2, 2)
        x = self.conv2(x)
        if self.batchnorm:
            x = self.bn2(x)
        x = F.max_pool2d(F.relu(x), 2, 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)  # type: ignore[no-any-return]
