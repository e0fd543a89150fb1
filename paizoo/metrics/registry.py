"""The registry of metric groups.

A metric group is a function ``group(ctx) -> {metric: value}`` taking a
:class:`~paizoo.metrics.context.MetricContext` and returning plain floats under short names; the
flat row of :func:`paizoo.metrics.compute` prefixes each name with ``"<group>."``. Register a new
group with :func:`register_metric_group`::

    from paizoo.metrics import MetricContext, register_metric_group

    @register_metric_group("maxfanin", description="largest fan-in of any output channel")
    def max_fan_in(ctx: MetricContext) -> dict[str, float]:
        fan_in = [t.reshape(t.shape[0], -1).sum(1).max() for t in ctx.mask.values()]
        return {"value": float(max(fan_in))}

    paizoo.metrics.compute(model, mask, groups=["maxfanin"])   # -> {"maxfanin.value": ...}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import PaizooError

if TYPE_CHECKING:
    from .context import MetricContext


class UnknownMetricGroupError(PaizooError, ValueError):
    """A metric group name is not in the registry."""


class MetricOptionError(PaizooError, ValueError):
    """A metric option names a group that is not computed, or an option the group lacks."""


@dataclass(frozen=True)
class MetricGroup:
    """A registered metric group.

    Attributes:
        name: the prefix of its metric names in the flat row.
        func: ``func(ctx) -> {short_name: value}``.
        needs_input_shape: the group reads the input shape (unrolled graph, linearised forward).
        default: included when :func:`paizoo.metrics.compute` is called without ``groups``.
        description: one line for ``paizoo metrics --list``.
        options: the option names the group reads (``ctx.option(group, name, default)``);
            others are refused by :func:`paizoo.metrics.compute`. ``None``: not declared (not
            checked).
    """

    name: str
    func: Callable[[MetricContext], dict[str, float]]
    needs_input_shape: bool = False
    default: bool = True
    description: str = ""
    options: tuple[str, ...] | None = None


_GROUPS: dict[str, MetricGroup] = {}


def register_metric_group(
    name: str, *, needs_input_shape: bool = False, default: bool = True, description: str = "",
    options: tuple[str, ...] | None = ()
) -> Callable[[Callable[[MetricContext], dict[str, float]]],
              Callable[[MetricContext], dict[str, float]]]:
    """Decorator registering ``func(ctx) -> dict[str, float]`` as the metric group ``name``.

    Names are lower-case identifiers without dots; registering a taken name is an error.
    ``options`` names the options the group reads (default: none); ``None`` leaves them
    unchecked.
    """
    key = name.lower()
    if not key or "." in key or not key.replace("_", "").isalnum():
        raise ValueError(f"metric group names are identifiers without dots, got {name!r}")

    def decorator(func: Callable[[MetricContext], dict[str, float]]
                  ) -> Callable[[MetricContext], dict[str, float]]:
        if key in _GROUPS and _GROUPS[key].func is not func:
            raise ValueError(f"a metric group named {key!r} is already registered")
        doc = (func.__doc__ or "").strip().splitlines()
        _GROUPS[key] = MetricGroup(key, func, needs_input_shape, default,
                                   description or (doc[0] if doc else ""),
                                   tuple(options) if options is not None else None)
        return func

    return decorator


def _load_builtin_groups() -> None:
    from . import density, effective, mge, ramanujan, scatter, spectral  # noqa: F401


def get_metric_group(name: str) -> MetricGroup:
    """The group registered under ``name`` (case-insensitive)."""
    _load_builtin_groups()
    key = name.lower()
    if key not in _GROUPS:
        raise UnknownMetricGroupError(
            f"unknown metric group {name!r}; known groups: {', '.join(sorted(_GROUPS))}")
    return _GROUPS[key]


def list_metric_groups(default_only: bool = False) -> list[str]:
    """Names of the registered groups, in registration order."""
    _load_builtin_groups()
    return [g.name for g in _GROUPS.values() if g.default or not default_only]


def metric_group_summaries() -> dict[str, str]:
    _load_builtin_groups()
    return {g.name: g.description for g in _GROUPS.values()}
