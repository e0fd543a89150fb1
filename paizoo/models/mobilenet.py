"""A small MobileNet-style network of depthwise-separable blocks (Howard et al. 2017).

``mobilenet_mini`` (for 28x28 inputs): a 3x3 stem conv (16 channels, stride 1, no bias) + BN +
ReLU, then four depthwise-separable blocks, each a depthwise 3x3 conv (``groups`` = channels,
padding 1, no bias) + BN + ReLU followed by a pointwise 1x1 conv (no bias) + BN + ReLU, as in
MobileNet v1 (Howard et al. 2017, Fig. 3):

====  ==========  ======  ============  ===========
block  channels    stride  output (28)   parameters
====  ==========  ======  ============  ===========
1      16 -> 32    2       14 x 14       144 + 512 (+ BN 32 + 64)
2      32 -> 64    2       7 x 7         288 + 2048 (+ BN 64 + 128)
3      64 -> 64    1       7 x 7         576 + 4096 (+ BN 128 + 128)
4      64 -> 128   2       4 x 4         576 + 8192 (+ BN 128 + 256)
====  ==========  ======  ============  ===========

then global average pooling and Linear(128, classes): 18,826 parameters on 1x28x28 with 10
classes. The stride sits on the depthwise conv, as in MobileNet v1. Modules are named
``stem``/``blocks.{i}.dw``/``blocks.{i}.pw``; every ReLU is a module so ``torch.fx`` sees each
layer as a module call.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from .common import InputSize, as_hw, check_counts, init_weights, zoo_model

#: ``(out_channels, stride)`` of each depthwise-separable block of ``mobilenet_mini``.
MINI_BLOCKS: tuple[tuple[int, int], ...] = ((32, 2), (64, 2), (64, 1), (128, 2))


class DepthwiseSeparable(nn.Sequential):
    """dw 3x3 (groups = in_channels, stride) + BN + ReLU, then pw 1x1 + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(OrderedDict([
            ("dw", nn.Conv2d(in_channels, in_channels, kernel_size=3, stride=stride, padding=1,
                             groups=in_channels, bias=False)),
            ("dw_bn", nn.BatchNorm2d(in_channels)),
            ("dw_relu", nn.ReLU()),
            ("pw", nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)),
            ("pw_bn", nn.BatchNorm2d(out_channels)),
            ("pw_relu", nn.ReLU()),
        ]))


class MobileNetMini(nn.Module):
    """Stem conv + BN + ReLU, :class:`DepthwiseSeparable` blocks, global average pool, ``fc``."""

    def __init__(self, blocks: Sequence[tuple[int, int]] = MINI_BLOCKS, stem: int = 16,
                 num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, stem, kernel_size=3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        self.stem_relu = nn.ReLU()
        layers, channels = [], stem
        for out, stride in blocks:
            layers.append(DepthwiseSeparable(channels, out, stride))
            channels = out
        self.blocks = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem_relu(self.stem_bn(self.stem(x))))
        return self.fc(self.flatten(self.avgpool(out)))


@zoo_model("mobilenet_mini", "small MobileNet-v1-style net: stem 16, four depthwise-separable "
           "blocks 32-64-64-128, for 1x28x28", (1, 28, 28), family="mobilenet")
def mobilenet_mini(num_classes: int = 10, in_channels: int = 3,
                   input_size: InputSize = 28) -> nn.Module:
    """Small MobileNet-style network (depthwise-separable blocks); any input size works."""
    check_counts(num_classes, in_channels, model="mobilenet_mini")
    as_hw(input_size, model="mobilenet_mini")  # validated only: global pooling
    return MobileNetMini(MINI_BLOCKS, 16, num_classes, in_channels)


__all__ = ["MINI_BLOCKS", "DepthwiseSeparable", "MobileNetMini", "mobilenet_mini"]
