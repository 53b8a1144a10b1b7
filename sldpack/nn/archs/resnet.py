"""``resnet18@1`` / ``resnet34@1``: He et al.'s ImageNet ResNets with basic blocks, torchvision names.

With batch norm the network and its parameter names are exactly torchvision's ``resnet18``/``resnet34``
(convolutions without bias, ``downsample.0`` a 1x1 conv, ``downsample.1`` its BN). Without batch norm
every convolution gets a bias instead and the BN layers are simply absent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sldpack.nn.archs._common import Op, batchnorm2d, conv2d, linear

__all__ = ["LAYERS", "BasicBlock", "ResNet", "spatial_ops"]

LAYERS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
_WIDTHS = (64, 128, 256, 512)


def spatial_ops(depth: int) -> list[Op]:
    """Per-axis chain: stem conv7/2 pad 3, maxpool 3/2 pad 1, then one 3x3/2 pad 1 per stage 2..4.

    Stride-1 3x3 pad-1 convolutions keep the size; a stage's 1x1/2 shortcut gives the same length as
    its 3x3/2 pad-1 convolution, so neither needs its own entry.
    """
    return [Op(7, 2, 3), Op(3, 2, 1)] + [Op(3, 2, 1)] * 3


class BasicBlock(nn.Module):
    """``conv1`` 3x3/stride, ``bn1``, ReLU, ``conv2`` 3x3, ``bn2``, + shortcut, ReLU.

    The shortcut is ``downsample`` (1x1/stride conv, then BN) when stride or width changes, else identity.
    """

    def __init__(self, inplanes: int, planes: int, stride: int, batchnorm: bool) -> None:
        super().__init__()
        bias = not batchnorm  # with BN a conv bias is redundant (torchvision has none)
        self.batchnorm = batchnorm
        self.conv1 = conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=bias)
        if batchnorm:
            self.bn1 = batchnorm2d(planes)
        self.conv2 = conv2d(planes, planes, 3, padding=1, bias=bias)
        if batchnorm:
            self.bn2 = batchnorm2d(planes)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or inplanes != planes:
            parts: list[nn.Module] = [conv2d(inplanes, planes, 1, stride=stride, bias=bias)]
            if batchnorm:
                parts.append(batchnorm2d(planes))
            self.downsample = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One residual block."""
        out = self.conv1(x)
        if self.batchnorm:
            out = self.bn1(out)
        out = F.relu(out)
        out = self.conv2(out)
        if self.batchnorm:
            out = self.bn2(out)
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """``conv1`` 7x7/2, ``bn1``, ReLU, maxpool 3/2, ``layer1..layer4``, global avgpool, ``fc``."""

    def __init__(self, depth: int, in_channels: int, num_classes: int, batchnorm: bool) -> None:
        super().__init__()
        self.batchnorm = batchnorm
        self.conv1 = conv2d(in_channels, 64, 7, stride=2, padding=3, bias=not batchnorm)
        if batchnorm:
            self.bn1 = batchnorm2d(64)
        inplanes = 64
        for stage, (blocks, planes) in enumerate(zip(LAYERS[depth], _WIDTHS, strict=True), start=1):
            layer = []
            for b in range(blocks):
                stride = 2 if (stage > 1 and b == 0) else 1
                layer.append(BasicBlock(inplanes, planes, stride, batchnorm))
                inplanes = planes
            self.add_module(f"layer{stage}", nn.Sequential(*layer))
        self.fc = linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] float32 -> logits [N, num_classes]."""
        x = self.conv1(x)
        if self.batchnorm:
            x = self.bn1(x)
        x = F.max_pool2d(F.relu(x), 3, 2, 1)
        for stage in range(1, 5):
            x = self.get_submodule(f"layer{stage}")(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)  # type: ignore[no-any-return]
