"""Model zoo: the PaI literature's models in their CIFAR forms, plus timm/torchvision pass-through.

paizoo's own models (``list_models()``) are built by ``create_model(name, num_classes,
in_channels, seed=..., input_size=...)``; every factory accepts ``input_size`` (an int or an
(H, W) pair; only the LeNets and Conv-6 depend on it) and initialises with Kaiming-normal
(fan_in) weights, see :mod:`paizoo.models.common`. ``NATIVE_INPUT_SHAPES`` gives the input each
model was designed for.
"""

from __future__ import annotations

from . import lenet, mlp, mobilenet, resnet, vgg, wide_resnet  # noqa: F401 - registers the zoo
from .common import FAMILIES, MODEL_FAMILIES, NATIVE_INPUT_SHAPES, init_weights
from .registry import (
           create_model,
           get_model_factory,
           list_models,
           model_descriptions,
           register_model,
)

__all__ = ["FAMILIES", "MODEL_FAMILIES", "NATIVE_INPUT_SHAPES", "create_model",
           "get_model_factory", "init_weights", "list_models", "model_descriptions",
           "register_model"]
