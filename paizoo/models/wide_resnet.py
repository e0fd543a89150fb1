"""Wide ResNet WRN-28-2 (Zagoruyko & Komodakis 2016, "Wide residual networks").

WRN-d-k: a 3x3 conv with 16 channels, three groups of N = (d - 4) / 6 pre-activation blocks
with 16k, 32k and 64k channels (the 2nd and 3rd group start with stride 2), then BN, ReLU,
global average pooling and Linear(64k, classes). A block is
``conv2(relu(bn2(conv1(relu(bn1(x)))))) + shortcut``: the shortcut is ``x`` itself when the
shape is kept, else a 1x1 conv (stride s, no bias) applied to the *pre-activated* input
``relu(bn1(x))``, as in the authors' code. Convolutions have no bias; optional dropout between
the two convs (the paper's 0.3 is off by default). WRN-28-2: 1,467,610 parameters on
3x32x32 / 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ModelConfigError
from .common import InputSize, as_hw, check_counts, init_weights, zoo_model
from .resnet import conv3x3


class WideBasicBlock(nn.Module):
    """Pre-activation wide basic block B(3,3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.equal_in_out = stride == 1 and in_channels == out_channels
        self.shortcut = (nn.Identity() if self.equal_in_out else
                         nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride,
                                   bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(act)))))
        # fixed at construction, so torch.fx resolves it while tracing
        residual = x if self.equal_in_out else self.shortcut(act)
        return out + residual


class WideResNet(nn.Module):
    """WRN-``depth``-``width`` for CIFAR-sized inputs."""

    def __init__(self, depth: int = 28, width: int = 2, num_classes: int = 10,
                 in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ModelConfigError(f"WRN depth must be 6N + 4 with N >= 1, got {depth}")
        if width < 1:
            raise ModelConfigError(f"WRN width must be >= 1, got {width}")
        if not 0.0 <= dropout < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.conv1 = conv3x3(in_channels, 16)
        channels = 16
        for i, w in enumerate(widths):
            blocks = []
            for j in range(n):
                blocks.append(WideBasicBlock(channels, w, 2 if (i > 0 and j == 0) else 1,
                                             dropout))
                channels = w
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer3(self.layer2(self.layer1(out)))
        out = self.relu(self.bn(out))
        return self.fc(self.flatten(self.avgpool(out)))


@zoo_model("wrn_28_2", "Wide ResNet 28-2 (Zagoruyko & Komodakis 2016), pre-activation, "
           "32/64/128 channels", (3, 32, 32), family="resnet")
def wrn_28_2(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32,
             dropout: float = 0.0) -> nn.Module:
    """Wide ResNet 28-2 (4 blocks per group, width factor 2)."""
    check_counts(num_classes, in_channels, model="wrn_28_2")
    as_hw(input_size, model="wrn_28_2")
    return WideResNet(28, 2, num_classes, in_channels, dropout)


__all__ = ["WideBasicBlock", "WideResNet", "wrn_28_2"]
