"""CIFAR ResNets: ResNet-20/32/56 (He et al. 2016, Sec. 4.2) and the CIFAR ResNet-18.

``resnet20``/``resnet32``/``resnet56``: a 3x3 conv with 16 channels, then three stages of
n = (depth - 2) / 6 basic blocks with 16, 32 and 64 channels (the 2nd and 3rd stage start with
stride 2), global average pooling and one Linear(64, classes); 6n + 2 weighted layers.

``resnet18``: the common CIFAR adaptation of ResNet-18 (the "pytorch-cifar" layout used by much
PaI work on CIFAR and Tiny ImageNet): a 3x3 stride-1 stem conv with 64 channels and **no** max
pool (instead of the ImageNet 7x7 stride-2 conv + max pool), then four stages of two basic
blocks with 64, 128, 256 and 512 channels, global average pooling, Linear(512, classes).

Shortcuts (both families): option **B** of He et al. 2016 -- identity when the shape is kept,
a projection ``1x1 conv (stride s, no bias) + BatchNorm`` when the stride or the width changes.
He et al. used the parameter-free option A (zero-padded identity) for their CIFAR ResNets, but
the PaI code bases whose numbers the literature reports (Synaptic-Flow, open_lth) use the
projection, so the counts and layer lists here match theirs; a projection is also an ordinary
prunable conv, which graph encodings and layer-collapse metrics can treat like any other layer.
Counts on 3x32x32 / 10 classes: ResNet-20 272,474; ResNet-32 466,906; ResNet-56 855,770;
ResNet-18 11,173,962.

``resnet8_narrow``: the same layout with one block per stage (6n + 2 = 8 weighted layers, plus
two projections) at half the width, 8/16/32 channels, for the 1x28x28 multi-architecture
corpus; 19,810 parameters on 1x28x28 with 10 classes.

Blocks add with ``out + shortcut`` and use module ReLUs, so ``torch.fx.symbolic_trace`` sees every
layer as a module call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ModelConfigError
from .common import InputSize, as_hw, check_counts, init_weights, zoo_model


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1,
                     bias=False)


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Option-B shortcut: identity if the shape is kept, else 1x1 conv (stride) + BN."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)) (He et al. 2016, post-activation)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = projection(in_channels, out_channels, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stem conv + BN + ReLU, stages of :class:`BasicBlock`, global average pool, ``fc``.

    Args:
        blocks: blocks per stage, e.g. ``(3, 3, 3)`` for ResNet-20.
        widths: channels per stage; the stem has ``widths[0]``. Stages after the first start
            with stride 2.
    """

    def __init__(self, blocks: Sequence[int], widths: Sequence[int], num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        if len(blocks) != len(widths) or not blocks:
            raise ModelConfigError(
                f"blocks {blocks} and widths {widths} must be non-empty, same length")
        self.conv1 = conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        channels = widths[0]
        for i, (count, width) in enumerate(zip(blocks, widths, strict=True)):
            stage = []
            for j in range(count):
                stage.append(BasicBlock(channels, width, stride=2 if (i > 0 and j == 0) else 1))
                channels = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.num_stages):  # a fixed count: unrolled by torch.fx
            out = getattr(self, f"layer{i + 1}")(out)
        return self.fc(self.flatten(self.avgpool(out)))


def _cifar_resnet(depth: int, num_classes: int, in_channels: int,
                  input_size: InputSize) -> CifarResNet:
    name = f"resnet{depth}"
    check_counts(num_classes, in_channels, model=name)
    as_hw(input_size, model=name)  # validated only: global pooling accepts any size
    n = (depth - 2) // 6
    return CifarResNet((n, n, n), (16, 32, 64), num_classes, in_channels)


@zoo_model("resnet20", "CIFAR ResNet-20 (He et al. 2016), 16/32/64 channels, projection "
           "shortcuts", (3, 32, 32), family="resnet")
def resnet20(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """CIFAR ResNet-20 (3 blocks per stage)."""
    return _cifar_resnet(20, num_classes, in_channels, input_size)


@zoo_model("resnet32", "CIFAR ResNet-32 (He et al. 2016), 16/32/64 channels, projection "
           "shortcuts", (3, 32, 32), family="resnet")
def resnet32(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """CIFAR ResNet-32 (5 blocks per stage)."""
    return _cifar_resnet(32, num_classes, in_channels, input_size)


@zoo_model("resnet56", "CIFAR ResNet-56 (He et al. 2016), 16/32/64 channels, projection "
           "shortcuts", (3, 32, 32), family="resnet")
def resnet56(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """CIFAR ResNet-56 (9 blocks per stage)."""
    return _cifar_resnet(56, num_classes, in_channels, input_size)


@zoo_model("resnet18", "CIFAR ResNet-18: 3x3 stem, no max pool, 64/128/256/512 channels",
           (3, 32, 32), family="resnet")
def resnet18(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """CIFAR ResNet-18 (2 blocks per stage, 4 stages)."""
    check_counts(num_classes, in_channels, model="resnet18")
    as_hw(input_size, model="resnet18")
    return CifarResNet((2, 2, 2, 2), (64, 128, 256, 512), num_classes, in_channels)


@zoo_model("resnet8_narrow", "narrow ResNet-8 for 1x28x28: one basic block per stage, 8/16/32 "
           "channels, projection shortcuts", (1, 28, 28), family="resnet")
def resnet8_narrow(num_classes: int = 10, in_channels: int = 3,
                   input_size: InputSize = 28) -> nn.Module:
    """ResNet-8 (1 block per stage) at half the CIFAR ResNets' width: 8/16/32 channels."""
    check_counts(num_classes, in_channels, model="resnet8_narrow")
    as_hw(input_size, model="resnet8_narrow")
    return CifarResNet((1, 1, 1), (8, 16, 32), num_classes, in_channels)


__all__ = [
    "BasicBlock",
    "CifarResNet",
    "projection",
    "resnet8_narrow",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet56",
]
