"""``googlenet@1``: Inception-v1 (Szegedy et al. 2014) with torchvision's module names.

Differences from torchvision's ``googlenet``, on purpose: the third branch uses the paper's 5x5
convolution (torchvision keeps a 3x3 there, a documented bug), every convolution has a bias, and BN
uses the zoo-wide eps 1e-5. No auxiliary classifiers, no LRN, no dropout, no input transform.
With batch norm, 1 input channel and 3 classes this has exactly 5,984,915 parameters, the seed paper's
Table 6 figure (torchvision's definition would give 5,596,707: 380,928 fewer for 3x3 instead of 5x5 and
7,280 fewer for the missing conv biases).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sldpack.nn.archs._common import Op, batchnorm2d, conv2d, linear

__all__ = ["INCEPTIONS", "BasicConv2d", "GoogLeNet", "Inception", "spatial_ops"]

# name, in, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj  (Table 1 of the paper)
INCEPTIONS: tuple[tuple[str, int, int, int, int, int, int, int], ...] = (
    ("inception3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception5b", 832, 384, 192, 384, 48, 128, 128),
)
# max pools (3x3/2, ceil mode) follow these modules; a 2x2/2 ceil-mode pool follows inception4e
_POOL3_AFTER = ("conv1", "conv3", "inception3b")
_POOL2_AFTER = ("inception4e",)


def spatial_ops() -> list[Op]:
    """Per-axis chain: conv7/2 pad 3, four ceil-mode max pools (3/2, 3/2, 3/2, 2/2).

    The 1x1, 3x3 pad-1 and 5x5 pad-2 convolutions and the inception 3/1 pad-1 pool keep the size.
    """
    return [Op(7, 2, 3), Op(3, 2, 0, True), Op(3, 2, 0, True), Op(3, 2, 0, True), Op(2, 2, 0, True)]


class BasicConv2d(nn.Module):
    """``conv`` (with bias), ``bn`` when batch norm, ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, batchnorm: bool, *, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.conv = conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=True)
        self.bn = batchnorm2d(cout) if batchnorm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv -> BN? -> ReLU."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x)


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->5x5 | maxpool3->1x1."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int, batchnorm: bool) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, 1, batchnorm)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, 1, batchnorm),
                                     BasicConv2d(c3r, c3, 3, batchnorm, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, 1, batchnorm),
                                     BasicConv2d(c5r, c5, 5, batchnorm, padding=2))
        # the pool stays a module (index 0) so the projection is named branch4.1, as in torchvision
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, cp, 1, batchnorm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate the four branches in order along the channel axis."""
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    """``conv1`` 7x7/2, pool, ``conv2`` 1x1, ``conv3`` 3x3, pool, inception 3a-5b with pools, GAP, ``fc``."""

    def __init__(self, in_channels: int, num_classes: int, batchnorm: bool) -> None:
        super().__init__()
        self.conv1 = BasicConv2d(in_channels, 64, 7, batchnorm, stride=2, padding=3)
        self.conv2 = BasicConv2d(64, 64, 1, batchnorm)
        self.conv3 = BasicConv2d(64, 192, 3, batchnorm, padding=1)
        for name, cin, c1, c3r, c3, c5r, c5, cp in INCEPTIONS:
            self.add_module(name, Inception(cin, c1, c3r, c3, c5r, c5, cp, batchnorm))
        self.fc = linear(1024, num_classes)
        self.stages: tuple[str, ...] = ("conv1", "conv2", "conv3", *(row[0] for row in INCEPTIONS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] float32 -> logits [N, num_classes]."""
        for name in self.stages:
            x = self.get_submodule(name)(x)
            if name in _POOL3_AFTER:
                x = F.max_pool2d(x, 3, 2, ceil_mode=True)
            elif name in _POOL2_AFTER:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.fc(x)  # type: ignore[no-any-return]
