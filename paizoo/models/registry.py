"""The model registry: paizoo's own PaI models plus ``timm:<name>`` and ``torchvision:<name>``.

Nothing is ever downloaded: timm and torchvision models are built without pretrained weights.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import ModelConfigError, UnknownModelError

ModelFactory = Callable[..., nn.Module]
_MODELS: dict[str, ModelFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_model(name: str, description: str = "") -> Callable[[ModelFactory], ModelFactory]:
    """Register ``factory(num_classes=..., in_channels=..., **kwargs) -> nn.Module``."""

    def decorator(factory: ModelFactory) -> ModelFactory:
        key = name.lower()
        if key in _MODELS and _MODELS[key] is not factory:
            raise ValueError(f"a model named {key!r} is already registered")
        _MODELS[key] = factory
        doc = (factory.__doc__ or "").strip().splitlines()
        _DESCRIPTIONS[key] = description or (doc[0] if doc else "")
        return factory

    return decorator


def get_model_factory(name: str) -> ModelFactory:
    """The factory registered under ``name`` (paizoo models only)."""
    key = name.lower()
    if key not in _MODELS:
        raise UnknownModelError(
            f"unknown model {name!r}; paizoo models: {', '.join(list_models()) or '(none)'}")
    return _MODELS[key]


def list_models() -> list[str]:
    """Names of paizoo's own models (``timm:``/``torchvision:`` names are accepted too)."""
    return sorted(_MODELS)


def model_descriptions() -> dict[str, str]:
    return {k: _DESCRIPTIONS[k] for k in sorted(_MODELS)}


def create_model(
    name: str,
    num_classes: int | None = None,
    in_channels: int = 3,
    *,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a freshly initialised model.

    Args:
        name: a paizoo model (``list_models()``), ``"timm:<name>"`` or ``"torchvision:<name>"``.
        num_classes: output classes (default: 10 for paizoo models, the library's default for
            timm/torchvision).
        in_channels: input channels (torchvision models only support 3).
        seed: if given, initialisation runs under ``torch.manual_seed(seed)`` without touching
            the global RNG state.
    """
    if seed is None:
        return _build(name, num_classes, in_channels, **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(name, num_classes, in_channels, **kwargs)


def _build(name: str, num_classes: int | None, in_channels: int, **kwargs: Any) -> nn.Module:
    prefix, sep, rest = name.partition(":")
    if sep and prefix == "timm":
        import timm

        if not timm.is_model(rest):
            raise UnknownModelError(f"timm has no model {rest!r} (see timm.list_models())")
        extra = {"num_classes": num_classes} if num_classes is not None else {}
        return timm.create_model(rest, pretrained=False, in_chans=in_channels, **extra, **kwargs)
    if sep and prefix == "torchvision":
        import torchvision

        if rest not in torchvision.models.list_models():
            raise UnknownModelError(
                f"torchvision has no model {rest!r} (see torchvision.models.list_models())")
        if in_channels != 3:
            raise UnknownModelError(
                f"torchvision:{rest} takes 3 input channels, not {in_channels}; use a timm model "
                "or a paizoo model for other channel counts")
        extra: dict[str, Any] = {"num_classes": num_classes} if num_classes is not None else {}
        # detection/segmentation builders load an ImageNet backbone by default (a download)
        if "weights_backbone" in inspect.signature(
                torchvision.models.get_model_builder(rest)).parameters:
            if kwargs.get("weights_backbone") is not None:
                raise ModelConfigError(
                    f"torchvision:{rest} with weights_backbone={kwargs['weights_backbone']!r}: "
                    "paizoo builds models without pretrained weights (nothing is downloaded); "
                    "leave weights_backbone out")
            extra["weights_backbone"] = None
            kwargs = {k: v for k, v in kwargs.items() if k != "weights_backbone"}
        return torchvision.models.get_model(rest, weights=None, **extra, **kwargs)
    key = name.lower()
    if key not in _MODELS:
        raise UnknownModelError(
            f"unknown model {name!r}; paizoo models: {', '.join(list_models()) or '(none)'}; "
            "or use 'timm:<name>' / 'torchvision:<name>'")
    return _MODELS[key](num_classes=10 if num_classes is None else num_classes,
                        in_channels=in_channels, **kwargs)
