"""Fully connected networks (MLPs) of other depths and widths than LeNet-300-100.

Each is flatten, then ``Linear -> ReLU`` per hidden layer, then ``Linear(last, classes)``:

* ``mlp_1x512``: one hidden layer of 512 (wide and shallow, 2 weighted layers): 407,050
  parameters on 1x28x28 with 10 classes.
* ``mlp_4x128``: four hidden layers of 128 (narrow and deep, 5 weighted layers): 151,306
  parameters on 1x28x28 with 10 classes.

With ``lenet_300_100`` (784-300-100-10) they give the multi-architecture corpus MLPs of 2, 3 and
5 weighted layers. Layers are named ``fc1 .. fcN`` and ``relu1 ..`` like LeNet-300-100. Widths of
128 and 512 keep Dey et al.'s fan-in constraint (``784 * fo / width`` whole) satisfiable at
densities that are multiples of 1/16 on the first layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ..errors import ModelConfigError
from .common import InputSize, as_hw, check_counts, init_weights, zoo_model


class MLP(nn.Sequential):
    """flatten, ``fc{i}`` + ``relu{i}`` per width in ``hidden``, then the output ``fc``."""

    def __init__(self, hidden: Sequence[int], num_classes: int = 10, in_channels: int = 1,
                 input_size: InputSize = 28, *, model: str = "mlp") -> None:
        check_counts(num_classes, in_channels, model=model)
        h, w = as_hw(input_size, model=model)
        if not hidden or not all(isinstance(k, int) and k >= 1 for k in hidden):
            raise ModelConfigError(f"{model}: hidden widths must be positive ints, got {hidden}")
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        prev = in_channels * h * w
        for i, width in enumerate(hidden, start=1):
            layers += [(f"fc{i}", nn.Linear(prev, width)), (f"relu{i}", nn.ReLU())]
            prev = width
        layers.append((f"fc{len(hidden) + 1}", nn.Linear(prev, num_classes)))
        super().__init__(OrderedDict(layers))
        init_weights(self)


@zoo_model("mlp_1x512", "MLP with one hidden layer of 512 (784-512-10 on 1x28x28)", (1, 28, 28),
           family="mlp")
def mlp_1x512(num_classes: int = 10, in_channels: int = 3,
              input_size: InputSize = 28) -> nn.Module:
    """Wide, shallow MLP: one hidden layer of 512 units."""
    return MLP((512,), num_classes, in_channels, input_size, model="mlp_1x512")


@zoo_model("mlp_4x128", "MLP with four hidden layers of 128 (784-128-128-128-128-10 on "
           "1x28x28)", (1, 28, 28), family="mlp")
def mlp_4x128(num_classes: int = 10, in_channels: int = 3,
              input_size: InputSize = 28) -> nn.Module:
    """Narrow, deep MLP: four hidden layers of 128 units."""
    return MLP((128, 128, 128, 128), num_classes, in_channels, input_size, model="mlp_4x128")


__all__ = ["MLP", "mlp_1x512", "mlp_4x128"]
