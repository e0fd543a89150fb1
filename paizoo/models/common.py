"""Shared pieces of paizoo's own models: registration with a native input shape, input-size
handling and the default initialisation.

Initialisation (all paizoo models): every ``nn.Conv2d``/``nn.Linear`` weight is drawn with
``nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")``, i.e. from
N(0, 2 / fan_in) with fan_in = in_channels * kernel_h * kernel_w (He et al. 2015, "Delving deep
into rectifiers"); biases are 0; BatchNorm weights are 1 and biases 0. This is the
initialisation of Synaptic-Flow (Tanaka et al. 2020) and of open_lth (Frankle et al.), the code
bases most PaI results are reported with. ``fan_in`` (not torchvision's ``fan_out``) keeps the
forward activations' variance constant, which is what data-free saliencies such as SynFlow see.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..errors import ModelConfigError
from .registry import ModelFactory, register_model

InputSize = int | tuple[int, int]

#: ``name -> (C, H, W)``: the input each zoo model was designed for (its paper's dataset).
NATIVE_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {}

#: The architecture families of the zoo (``MODEL_FAMILIES`` values), for grouping runs by family
#: (e.g. leave-one-family-out validation): ``mlp`` (fully connected), ``cnn`` (convolutional,
#: no normalisation), ``cnn-bn`` (plain convolutional stacks with BatchNorm), ``resnet``
#: (residual, with BatchNorm), ``mobilenet`` (depthwise-separable blocks, with BatchNorm).
FAMILIES: tuple[str, ...] = ("mlp", "cnn", "cnn-bn", "resnet", "mobilenet")

#: ``name -> family`` of every zoo model (one of :data:`FAMILIES`).
MODEL_FAMILIES: dict[str, str] = {}


def zoo_model(
    name: str, description: str, native_input: tuple[int, int, int], *, family: str
) -> Callable[[ModelFactory], ModelFactory]:
    """Register a paizoo model factory and record the input shape it was designed for and its
    architecture family (one of :data:`FAMILIES`)."""
    if family not in FAMILIES:
        raise ValueError(f"{name}: family must be one of {FAMILIES}, got {family!r}")

    def decorator(factory: ModelFactory) -> ModelFactory:
        register_model(name, description)(factory)
        NATIVE_INPUT_SHAPES[name.lower()] = native_input
        MODEL_FAMILIES[name.lower()] = family
        return factory

    return decorator


def as_hw(input_size: InputSize, *, model: str) -> tuple[int, int]:
    """``28`` -> ``(28, 28)``; ``(32, 24)`` stays; anything else raises a clear ``ValueError``."""
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        hw = (input_size, input_size)
    elif (isinstance(input_size, (tuple, list)) and len(input_size) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in input_size)):
        hw = (int(input_size[0]), int(input_size[1]))
    else:
        raise ModelConfigError(
            f"{model}: input_size must be an int or an (H, W) pair, got {input_size!r} "
            "(channels go in in_channels, e.g. in_channels=1, input_size=28)")
    if min(hw) <= 0:
        raise ModelConfigError(f"{model}: input_size must be positive, got {input_size!r}")
    return hw


def check_min_size(hw: tuple[int, int], minimum: int, *, model: str, reason: str) -> None:
    if min(hw) < minimum:
        raise ModelConfigError(
            f"{model} needs inputs of at least {minimum}x{minimum} ({reason}); got "
            f"{hw[0]}x{hw[1]}")


def check_counts(num_classes: int, in_channels: int, *, model: str) -> None:
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelConfigError(f"{model}: {label} must be a positive int, got {value!r}")


def init_weights(model: nn.Module) -> nn.Module:
    """Kaiming-normal (fan_in, ReLU gain) conv/linear weights, zero biases, BN weight 1 bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model
