"""VGG-style CIFAR networks: Conv-6 and VGG-11/16/19 with BatchNorm.

* ``conv6`` (Frankle & Carbin 2019, "The lottery ticket hypothesis", Fig. 2): 3x3 convolutions
  (padding 1, with bias) 64, 64, pool, 128, 128, pool, 256, 256, pool, then Linear 256, ReLU,
  Linear 256, ReLU, Linear classes; 2x2 max pools. 2,262,602 parameters on 3x32x32 / 10 classes.
  The first linear layer sees 256 * (H/8) * (W/8) features, so ``input_size`` matters.
* ``vgg11_bn``/``vgg16_bn``/``vgg19_bn``: the CIFAR VGGs of open_lth and Synaptic-Flow
  (Tanaka et al. 2020), which most PaI papers report: each 3x3 conv (padding 1, with bias) is
  followed by BatchNorm and ReLU; only **four** 2x2 max pools (the fifth VGG pool is dropped),
  then a global average pool and **one** Linear(512, classes) (no 4096-wide classifier).
  Synaptic-Flow writes the average pool as ``AvgPool2d(2)`` on the 2x2 map left from a 32x32
  input; ``AdaptiveAvgPool2d(1)`` is the same there and also accepts other input sizes (>= 16).
  Counts on 3x32x32 / 10 classes: VGG-11 9,231,114; VGG-16 14,728,266; VGG-19 20,040,522.
* ``vgg_mini_bn``: a small VGG-style net of the same kind for 1x28x28 (the multi-architecture
  Fashion-MNIST corpus): conv-BN-ReLU 16, pool, 32, pool, 64, 64, then global average pool and
  Linear(64, classes). 61,226 parameters on 1x28x28 with 10 classes.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .common import InputSize, as_hw, check_counts, check_min_size, init_weights, zoo_model

Plan = list[int | str]

VGG_PLANS: dict[int, Plan] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512],
}
CONV6_PLAN: Plan = [64, 64, "M", 128, 128, "M", 256, 256, "M"]
MINI_PLAN: Plan = [16, "M", 32, "M", 64, 64]


def make_features(plan: Plan, in_channels: int, batch_norm: bool) -> nn.Sequential:
    """3x3 conv (+BN) + ReLU per int in ``plan``, 2x2 max pool per ``"M"`` (torchvision naming)."""
    layers: list[nn.Module] = []
    channels = in_channels
    for spec in plan:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        assert isinstance(spec, int)
        layers.append(nn.Conv2d(channels, spec, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(spec))
        layers.append(nn.ReLU())
        channels = spec
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """CIFAR VGG: ``features`` (conv-BN-ReLU, 4 max pools), global average pool, ``classifier``."""

    def __init__(self, plan: Plan, num_classes: int = 10, in_channels: int = 3,
                 batch_norm: bool = True) -> None:
        super().__init__()
        widths = [s for s in plan if isinstance(s, int)]
        self.features = make_features(plan, in_channels, batch_norm)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(widths[-1], num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


class Conv6(nn.Module):
    """Conv-6 of the lottery-ticket paper: six 3x3 convs, three pools, FC 256-256-classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 input_size: InputSize = 32) -> None:
        super().__init__()
        check_counts(num_classes, in_channels, model="conv6")
        hw = as_hw(input_size, model="conv6")
        check_min_size(hw, 8, model="conv6", reason="three 2x2 max pools")
        flat = 256 * (hw[0] // 8) * (hw[1] // 8)
        self.features = make_features(CONV6_PLAN, in_channels, batch_norm=False)
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(flat, 256)),
            ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(256, 256)),
            ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(256, num_classes)),
        ]))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


def _vgg(depth: int, num_classes: int, in_channels: int, input_size: InputSize) -> VGG:
    name = f"vgg{depth}_bn"
    check_counts(num_classes, in_channels, model=name)
    check_min_size(as_hw(input_size, model=name), 16, model=name, reason="four 2x2 max pools")
    return VGG(VGG_PLANS[depth], num_classes, in_channels, batch_norm=True)


@zoo_model("conv6", "Conv-6 (64-64-P-128-128-P-256-256-P, FC 256-256) of the lottery-ticket "
           "paper (Frankle & Carbin 2019)", (3, 32, 32), family="cnn")
def conv6(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """Conv-6 (Frankle & Carbin 2019); the FC width depends on input_size."""
    return Conv6(num_classes, in_channels, input_size)


@zoo_model("vgg11_bn", "CIFAR VGG-11 with BatchNorm, GAP + one linear layer (Synaptic-Flow)",
           (3, 32, 32), family="cnn-bn")
def vgg11_bn(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """CIFAR VGG-11-BN (open_lth / Synaptic-Flow layout)."""
    return _vgg(11, num_classes, in_channels, input_size)


@zoo_model("vgg16_bn", "CIFAR VGG-16 with BatchNorm, GAP + one linear layer (Synaptic-Flow)",
           (3, 32, 32), family="cnn-bn")
def vgg16_bn(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """CIFAR VGG-16-BN (open_lth / Synaptic-Flow layout)."""
    return _vgg(16, num_classes, in_channels, input_size)


@zoo_model("vgg19_bn", "CIFAR VGG-19 with BatchNorm, GAP + one linear layer (Synaptic-Flow)",
           (3, 32, 32), family="cnn-bn")
def vgg19_bn(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 32) -> nn.Module:
    """CIFAR VGG-19-BN (open_lth / Synaptic-Flow layout)."""
    return _vgg(19, num_classes, in_channels, input_size)


@zoo_model("vgg_mini_bn", "small VGG-style net with BatchNorm for 1x28x28: conv 16-P-32-P-64-64, "
           "GAP + one linear layer", (1, 28, 28), family="cnn-bn")
def vgg_mini_bn(num_classes: int = 10, in_channels: int = 3,
                input_size: InputSize = 28) -> nn.Module:
    """Small VGG-style net (conv-BN-ReLU 16, pool, 32, pool, 64, 64; GAP; Linear)."""
    check_counts(num_classes, in_channels, model="vgg_mini_bn")
    check_min_size(as_hw(input_size, model="vgg_mini_bn"), 4, model="vgg_mini_bn",
                   reason="two 2x2 max pools")
    return VGG(MINI_PLAN, num_classes, in_channels, batch_norm=True)


__all__ = ["CONV6_PLAN", "MINI_PLAN", "VGG", "VGG_PLANS", "Conv6", "conv6", "make_features",
           "vgg11_bn", "vgg16_bn", "vgg19_bn", "vgg_mini_bn"]
