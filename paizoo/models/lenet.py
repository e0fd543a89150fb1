"""The LeNets of the PaI literature (MNIST / Fashion-MNIST models).

* ``lenet_300_100``: the fully connected LeNet-300-100 (LeCun et al. 1998), as used by the
  lottery-ticket paper (Frankle & Carbin 2019) and SNIP (Lee et al. 2019): flatten,
  Linear(C*H*W, 300), ReLU, Linear(300, 100), ReLU, Linear(100, classes). 266,610 parameters
  on 1x28x28 with 10 classes.
* ``lenet5``: the classic LeNet-5 layout (LeCun et al. 1998) in its common modern form:
  Conv(6, 5x5, padding 2), ReLU, MaxPool 2, Conv(16, 5x5), ReLU, MaxPool 2, Linear 120, ReLU,
  Linear 84, ReLU, Linear classes. ReLU and max pooling replace the original tanh and trainable
  sub-sampling; padding 2 makes the 28x28 input behave like the original 32x32. 61,706
  parameters on 1x28x28 with 10 classes. (Neither Synaptic-Flow nor the lottery-ticket paper
  uses LeNet-5 -- they use MLPs and Conv-2/4/6 -- and SNIP prunes LeNet-5-Caffe, below.)
* ``lenet5_caffe``: "LeNet-5-Caffe", the variant that SNIP (Lee et al. 2019) and the pruning
  literature before it (Han et al. 2015) actually prune: Conv(20, 5x5), MaxPool 2, Conv(50, 5x5),
  MaxPool 2, Linear 500, ReLU, Linear classes (Caffe's MNIST example, no activation after the
  convolutions). 431,080 parameters on 1x28x28 with 10 classes.

All take ``input_size`` (default 28): the flattened size after the feature extractor depends on it.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..errors import ModelConfigError
from .common import InputSize, as_hw, check_counts, init_weights, zoo_model


class LeNet300100(nn.Sequential):
    """LeNet-300-100: a 3-layer MLP on the flattened input."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 input_size: InputSize = 28) -> None:
        check_counts(num_classes, in_channels, model="lenet_300_100")
        h, w = as_hw(input_size, model="lenet_300_100")
        super().__init__(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(in_channels * h * w, 300)),
            ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(300, 100)),
            ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(100, num_classes)),
        ]))
        init_weights(self)


def _after(size: int, kernel: int, padding: int) -> int:
    """Spatial size after a stride-1 conv (``kernel``, ``padding``) and a 2x2 max pool."""
    return (size + 2 * padding - kernel + 1) // 2


class LeNet5(nn.Sequential):
    """LeNet-5: conv 6@5x5 (pad 2), pool, conv 16@5x5, pool, FC 120, 84, classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 input_size: InputSize = 28) -> None:
        check_counts(num_classes, in_channels, model="lenet5")
        hw = as_hw(input_size, model="lenet5")
        h, w = (_after(_after(s, 5, 2), 5, 0) for s in hw)
        if min(h, w) < 1:
            raise ModelConfigError(f"lenet5 needs inputs of at least 12x12, got {hw[0]}x{hw[1]}")
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 6, kernel_size=5, padding=2)),
            ("relu1", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(6, 16, kernel_size=5)),
            ("relu2", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(16 * h * w, 120)),
            ("relu3", nn.ReLU()),
            ("fc2", nn.Linear(120, 84)),
            ("relu4", nn.ReLU()),
            ("fc3", nn.Linear(84, num_classes)),
        ]))
        init_weights(self)


class LeNet5Caffe(nn.Sequential):
    """LeNet-5-Caffe: conv 20@5x5, pool, conv 50@5x5, pool, FC 500, classes."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1,
                 input_size: InputSize = 28) -> None:
        check_counts(num_classes, in_channels, model="lenet5_caffe")
        hw = as_hw(input_size, model="lenet5_caffe")
        h, w = (_after(_after(s, 5, 0), 5, 0) for s in hw)
        if min(h, w) < 1:
            raise ModelConfigError(
                f"lenet5_caffe needs inputs of at least 16x16, got {hw[0]}x{hw[1]}")
        super().__init__(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 20, kernel_size=5)),
            ("pool1", nn.MaxPool2d(2)),
            ("conv2", nn.Conv2d(20, 50, kernel_size=5)),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(50 * h * w, 500)),
            ("relu1", nn.ReLU()),
            ("fc2", nn.Linear(500, num_classes)),
        ]))
        init_weights(self)


@zoo_model("lenet_300_100", "LeNet-300-100 MLP, 784-300-100-10 on 1x28x28 (Frankle & Carbin "
           "2019; SNIP)", (1, 28, 28), family="mlp")
def lenet_300_100(num_classes: int = 10, in_channels: int = 3,
                  input_size: InputSize = 28) -> nn.Module:
    """LeNet-300-100 MLP (flattens C x input_size x input_size inputs)."""
    return LeNet300100(num_classes, in_channels, input_size)


@zoo_model("lenet5", "LeNet-5 (conv 6-16, FC 120-84; ReLU + max-pool) for 1x28x28 "
           "(LeCun et al. 1998)", (1, 28, 28), family="cnn")
def lenet5(num_classes: int = 10, in_channels: int = 3, input_size: InputSize = 28) -> nn.Module:
    """LeNet-5, classic 6/16/120/84 layout with ReLU and max pooling."""
    return LeNet5(num_classes, in_channels, input_size)


@zoo_model("lenet5_caffe", "LeNet-5-Caffe (conv 20-50, FC 500) for 1x28x28, pruned by SNIP "
           "(Lee et al. 2019)", (1, 28, 28), family="cnn")
def lenet5_caffe(num_classes: int = 10, in_channels: int = 3,
                 input_size: InputSize = 28) -> nn.Module:
    """LeNet-5-Caffe, the 20/50/500 variant of Caffe's MNIST example."""
    return LeNet5Caffe(num_classes, in_channels, input_size)


__all__ = ["LeNet5", "LeNet5Caffe", "LeNet300100", "lenet5", "lenet5_caffe", "lenet_300_100"]
