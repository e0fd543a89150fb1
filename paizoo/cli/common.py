"""Argument helpers shared by sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import PaizooError


class UsageError(PaizooError, ValueError):
    """The command line is wrong (a bad option value, a missing argument); exit code 2."""


def parse_shape(text: str) -> tuple[int, ...]:
    """``"3,32,32"`` -> ``(3, 32, 32)``."""
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; write e.g. 3,32,32") from exc
    if not shape or any(v <= 0 for v in shape):
        raise argparse.ArgumentTypeError(f"bad shape {text!r}; write e.g. 3,32,32")
    return shape


def parse_kv(items: list[str] | None, option: str = "--option") -> dict[str, object]:
    """``["rounds=10", "scope=layer"]`` -> ``{"rounds": 10, "scope": "layer"}`` (YAML scalars).

    Raises:
        UsageError: an item is not ``key=value``, or its value is not a YAML scalar.
    """
    import yaml

    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad {option} {item!r}; write KEY=VALUE, e.g. {option} rounds=10")
        try:
            out[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise UsageError(f"bad {option} {item!r}: the value is not a number, string, true/"
                             f"false or list ({' '.join(str(exc).split())})") from exc
    return out


def output_file(path: str, option: str = "--out") -> Path:
    """An output file named on the command line, checked before any work is done.

    paizoo creates no folder for such a file (a typo would otherwise leave folders at
    surprising places): its folder must exist, and the path must not be a folder.
    """
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{option} {path} is a folder; name the file to write, e.g. "
                         f"{out / 'mask.safetensors'}")
    parent = out.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist; create it "
                         "first (paizoo does not create folders for an output file)")
    return out


def zoo_model_input(model: str, input_shape: tuple[int, ...] | None
                    ) -> tuple[tuple[int, ...] | None, dict[str, Any]]:
    """The input shape of ``model`` and the keyword arguments that size it.

    A zoo model takes its native input (``NATIVE_INPUT_SHAPES``, e.g. 1x28x28 for LeNet-5)
    unless ``input_shape`` is given, which must then have as many dimensions (C, H, W); the
    keywords are ``in_channels`` and ``input_size``. Other models (``timm:``, ``torchvision:``)
    get ``in_channels`` from ``input_shape`` when given, and no default shape.
    """
    from ..models import NATIVE_INPUT_SHAPES

    native = NATIVE_INPUT_SHAPES.get(model.lower())
    if native is None:
        return input_shape, ({"in_channels": input_shape[0]} if input_shape else {})
    shape = tuple(input_shape) if input_shape is not None else tuple(native)
    if len(shape) != len(native):
        raise UsageError(
            f"{model} takes inputs of shape (channels, height, width), e.g. "
            f"{','.join(map(str, native))}; got --input-shape {','.join(map(str, shape))}")
    kwargs: dict[str, Any] = {"in_channels": shape[0]}
    if len(shape) == 3:
        kwargs["input_size"] = tuple(shape[1:])
    return shape, kwargs


def check_model_options(model: str, options: dict[str, object]) -> None:
    """Refuse ``-m`` keywords that the zoo model ``model`` does not take (listing those it
    does); ``timm:``/``torchvision:`` models are checked by their library when built."""
    import inspect

    from ..errors import UnknownModelError
    from ..models import get_model_factory

    if not options or ":" in model:
        return
    try:
        params = inspect.signature(get_model_factory(model)).parameters
    except (UnknownModelError, TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    fixed = {"num_classes", "in_channels", "seed"}
    accepted = [n for n in params if n not in fixed]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(f"{model} takes no model option {', '.join(map(repr, unknown))}; its "
                         f"options are {', '.join(accepted) or '(none)'} (-m KEY=VALUE)")


def synthetic_spec(dataset: str, input_shape: tuple[int, ...] | None,
                   num_classes: int | None) -> str:
    """``--dataset synthetic`` with ``--input-shape`` and/or ``--num-classes``: the spec
    ``synthetic:CxHxW:K`` of random data of that shape (default: the plain synthetic shape) and
    that many classes (default 10), so its labels fit the model; any other name unchanged."""
    if dataset != "synthetic" or (input_shape is None and num_classes is None):
        return dataset
    from ..data import dataset_info

    shape = input_shape or dataset_info("synthetic").input_shape
    return f"synthetic:{'x'.join(map(str, shape))}:{num_classes or 10}"
