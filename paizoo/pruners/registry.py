"""The one pruner registry: built-ins, ``@register_pruner`` classes and entry points.

Third-party packages expose pruners through the entry-point group ``paizoo.pruners``::

    [project.entry-points."paizoo.pruners"]
    mypruner = "mypkg.pruners:MyPruner"

A ``"module:Class"`` string also works wherever a pruner name is accepted.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import PaizooError, PrunerOptionError, UnknownPrunerError

if TYPE_CHECKING:
    from .base import Pruner

P = TypeVar("P", bound="type[Pruner]")

_REGISTRY: dict[str, type[Pruner]] = {}
_ENTRY_POINTS_LOADED = False


def register_pruner(name: str | None = None) -> Callable[[P], P]:
    """Class decorator registering a :class:`~paizoo.pruners.base.Pruner` under ``name``.

    ``name`` defaults to the class attribute ``name``. Registering a taken name is an error.
    """

    def decorator(cls: P) -> P:
        key = (name or getattr(cls, "name", None) or cls.__name__).lower()
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise ValueError(f"a pruner named {key!r} is already registered "
                             f"({_REGISTRY[key].__module__}.{_REGISTRY[key].__qualname__})")
        cls.name = key
        _REGISTRY[key] = cls
        return cls

    return decorator


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    for ep in entry_points(group="paizoo.pruners"):
        if ep.name.lower() in _REGISTRY:
            continue
        cls = ep.load()
        register_pruner(ep.name)(cls)


def _import_spec(spec: str) -> type[Pruner]:
    from .base import Pruner

    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnknownPrunerError(f"cannot import pruner {spec!r}: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Pruner)):
        raise UnknownPrunerError(f"{spec!r} is not a paizoo Pruner subclass")
    return obj


def get_pruner_class(name: str | type[Pruner]) -> type[Pruner]:
    """The class registered under ``name`` (case-insensitive), or imported from ``module:Class``;
    a :class:`Pruner` subclass is returned as it is."""
    from .base import Pruner

    if isinstance(name, type) and issubclass(name, Pruner):
        return name
    if not isinstance(name, str):
        raise UnknownPrunerError(
            f"a pruner is a registered name (paizoo.list_pruners()), 'module:Class', a Pruner "
            f"subclass or a Pruner instance; got the {type(name).__name__} {name!r}")
    _load_entry_points()
    key = name.lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    if ":" in name:
        return _import_spec(name)
    raise UnknownPrunerError(
        f"unknown pruner {name!r}; known pruners: {', '.join(sorted(_REGISTRY))}. Third-party "
        "pruners register through the 'paizoo.pruners' entry-point group or as 'module:Class'.")


def create_pruner(name: str | type[Pruner], **config: Any) -> Pruner:
    """Instantiate the pruner ``name`` (or the :class:`Pruner` subclass ``name``) with keyword
    ``config`` (see each pruner's docstring).

    Raises:
        paizoo.errors.PrunerOptionError: an unknown option (listing the pruner's options) or a
            bad option value, naming the pruner.
    """
    cls = get_pruner_class(name)
    name = name if isinstance(name, str) else cls.name or cls.__name__
    options = pruner_options(cls)
    unknown = sorted(set(config) - set(options)) if options is not None else []
    if unknown:
        raise PrunerOptionError(
            f"pruner {name!r} has no option {', '.join(map(repr, unknown))}; its options are "
            f"{', '.join(sorted(options or [])) or '(none)'}")
    try:
        return cls(**config)
    except PaizooError:
        raise
    except (TypeError, ValueError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in config.items())
        raise PrunerOptionError(f"pruner {name!r} with {given or 'no options'}: {exc}") from exc


def pruner_options(cls: type[Pruner]) -> list[str] | None:
    """The keyword options the constructor of ``cls`` (and the base constructors its
    ``**kwargs`` reach) accepts; ``None`` when it takes ``**kwargs`` that do not reach a base."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        names += [p.name for p in params if p.name != "self" and p.kind in (
            p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return list(dict.fromkeys(names))
        if klass is object:
            break
    return None


def list_pruners() -> list[str]:
    """Names of all registered pruners, sorted."""
    _load_entry_points()
    return sorted(_REGISTRY)


def pruner_summaries() -> dict[str, str]:
    """``{name: one-line description}`` (the first line of each class docstring)."""
    _load_entry_points()
    out = {}
    for key in sorted(_REGISTRY):
        doc = (_REGISTRY[key].__doc__ or "").strip().splitlines()
        out[key] = doc[0] if doc else ""
    return out


def allowing_off_target(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` plus ``allow_off_target=True`` when pruner ``name`` has that option and
    ``options`` does not set it: for callers that record the achieved sparsity (leaderboards,
    ``paizoo rank``) instead of refusing masks that miss the requested one."""
    import inspect

    out = dict(options)
    if "allow_off_target" in inspect.signature(get_pruner_class(name).__init__).parameters:
        out.setdefault("allow_off_target", True)
    return out
