"""Which parameters of a model are prunable.

Kinds. Every parameter of a model is of one kind, from the module that uses it:

* ``"conv"``: the ``weight`` of ``Conv1d``/``Conv2d``/``Conv3d`` (and subclasses such as timm's
  ``Conv2dSame``);
* ``"linear"``: the ``weight`` of ``Linear`` (and subclasses, e.g. the ``out_proj`` of
  ``nn.MultiheadAttention``);
* ``"attention"``: ``nn.MultiheadAttention``'s packed ``in_proj_weight`` or its separate
  ``q_proj_weight``/``k_proj_weight``/``v_proj_weight``;
* ``"recurrent"``: the ``weight_ih_l*``, ``weight_hh_l*`` (and ``weight_hr_l*`` projections) of
  every layer and direction (``*_reverse``) of ``nn.LSTM``/``nn.GRU``/``nn.RNN``, and
  ``weight_ih``/``weight_hh`` of their ``*Cell`` versions;
* ``"embedding"``: the ``weight`` of ``nn.Embedding``/``nn.EmbeddingBag``;
* ``"other"``: everything else (biases, normalisation scales, positional encodings, raw
  ``nn.Parameter`` attributes).

Coverage (``cover=``). The default set is the ``conv`` and ``linear`` weights, the first and last
layers included. ``cover`` adds kinds: ``"attention"``, ``"recurrent"``, ``"embedding"``, or a
list of them; ``"all"`` is all three, ``"default"`` none. Embeddings are only pruned when asked
for (``"embedding"`` or ``"all"``).

``include=`` / ``exclude=`` (glob patterns, ``fnmatch``, on parameter names):

* without ``include``, the prunable set is the covered kinds;
* with ``include``, it is every parameter whose name matches an include pattern: covered weights
  that match (so ``include="layer1.*"`` narrows to layer 1), and also parameters of any other
  kind (so ``include="*.in_proj_weight"`` or ``include="pos_embed"`` extends the set). A glob
  only reaches parameters with at least two dimensions outside the covered kinds; a 1-D
  parameter (a bias, a norm scale) of another kind is included only when a pattern names it
  exactly (no ``*?[``);
* ``exclude`` always wins: a name matching an exclude pattern is never pruned.

Names are those of ``model.named_parameters()``. On a model whose masks are already applied in the
``torch.nn.utils.prune`` convention, the parameter ``x_orig`` is reported under its logical name
``x`` so that masks keep the same keys before and after :func:`paizoo.apply_mask`.

Tied weights (one ``nn.Parameter`` used by several modules, e.g. a language-model head tied to
its embedding) are one entry, under the name ``named_parameters()`` reports (the first use);
it is prunable when any of its uses is, and :func:`paizoo.apply_mask` masks every use.

Parametrized weights (``torch.nn.utils.parametrize``) are pruned through their original tensor,
where that keeps the mask exact on the weight the module computes:

* ``parametrizations.weight_norm``: the direction ``v`` (``<m>.parametrizations.weight.original1``)
  is pruned; ``w = g v / ||v||`` has exactly the zeros of ``v`` (the kept entries of each row
  are renormalised to norm ``g``, which is what weight normalisation means). A row (slice
  along ``dim``) with no kept weight would compute 0/0: the pruners keep a weight in every
  slice (``keep_one`` of :func:`paizoo.sparsity.select`; a sparsity keeping fewer weights than
  slices raises :class:`~paizoo.errors.SparsityError` up front), and apply refuses such a mask.
  The magnitude ``g`` (``original0``) is never pruned: an include pattern that reaches it but
  not the weight it scales (e.g. ``include="*.original0"``) raises
  :class:`~paizoo.errors.CoverageError` saying to name the weight (or ``original1``) instead;
* ``parametrizations.spectral_norm``: the original ``W`` is pruned; ``W / sigma(W)`` has its
  zeros;
* a custom parametrization is pruned through ``original`` only if it declares
  ``paizoo_preserves_zeros = True`` (an elementwise-zero-preserving, shape-preserving map);
  any other (e.g. ``orthogonal``), and the legacy hook-based ``torch.nn.utils.weight_norm`` and
  ``spectral_norm``, raise :class:`~paizoo.errors.CoverageError` when selected, naming the
  parameter and the fixes (exclude it, or remove the parametrization). Never silently skipped.
  So do timm's weight-standardised convolutions (``StdConv2d``, ``ScaledStdConv2d``), whose
  forward computes ``(w - mean) / std`` and would turn pruned zeros into non-zeros.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.utils.parametrize as parametrize
import torch.nn.utils.prune as torch_prune
from torch import nn

from .errors import CoverageError, NoPrunableParametersError

PRUNABLE_MODULE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

Patterns = str | Sequence[str] | None
Cover = str | Iterable[str] | None

DEFAULT_KINDS: frozenset[str] = frozenset({"conv", "linear"})
OPTIONAL_KINDS: tuple[str, ...] = ("attention", "recurrent", "embedding")
COVER_CHOICES: tuple[str, ...] = ("default", *OPTIONAL_KINDS, "all")
_ATTENTION_ATTRS = frozenset({"in_proj_weight", "q_proj_weight", "k_proj_weight",
                              "v_proj_weight"})
_RECURRENT_PREFIXES = ("weight_ih_l", "weight_hh_l", "weight_hr_l")
_GLOB_CHARS = frozenset("*?[")
#: modules that transform their ``weight`` in ``forward`` in a way that does not keep zeros
#: (timm's weight-standardised convolutions: ``(w - mean) / std`` per output channel)
_ZERO_BREAKING_MODULES = frozenset({"StdConv2d", "StdConv2dSame", "ScaledStdConv2d",
                                    "ScaledStdConv2dSame"})


@dataclass
class ParamInfo:
    """One distinct parameter tensor of a model and how it is used.

    Attributes:
        name: its key (``named_parameters()`` name of the first use; logical name, without
            ``_orig``, on a masked model).
        param: the tensor (``x_orig`` on a masked model).
        kind: see the module docstring (``"conv"``, ..., ``"other"``); for a tied tensor the kind
            of its first use of a covered kind, else of its first use.
        kinds: the kind of every use.
        layer: the module path of the module that computes with it (for a parametrized tensor,
            the parametrized module, e.g. ``"fc1"``, not its ``ParametrizationList``).
        logical: ``layer.attr`` names of every use (e.g. ``"fc1.weight"`` for
            ``fc1.parametrizations.weight.original1``).
        aliases: the names of the other uses (tied weights).
        refusal: why it cannot be pruned exactly (unsupported parametrization), or ``None``.
        auxiliary: an original of a parametrization that is not the pruned one (weight norm's
            ``g``): never pruned and never reported as left dense.
    """

    name: str
    param: torch.Tensor
    kind: str
    kinds: list[str]
    layer: str
    logical: list[str]
    aliases: list[str] = field(default_factory=list)
    refusal: str | None = None
    auxiliary: bool = False

    @property
    def numel(self) -> int:
        return self.param.numel()


def resolve_cover(cover: Cover) -> frozenset[str]:
    """The kinds pruned under ``cover`` (always including ``conv`` and ``linear``)."""
    if cover is None:
        return DEFAULT_KINDS
    if isinstance(cover, str):
        items = [cover]
    elif isinstance(cover, Iterable):
        items = list(cover)
    else:
        items = [cover]  # e.g. True: refused below like any other unknown kind
    kinds = set(DEFAULT_KINDS)
    for item in items:
        if item == "all":
            kinds.update(OPTIONAL_KINDS)
        elif item in OPTIONAL_KINDS:
            kinds.add(item)
        elif item != "default":
            raise CoverageError(
                f"unknown cover {item!r}; choose from {', '.join(COVER_CHOICES)} (or a list of "
                "them), e.g. cover='attention'")
    return frozenset(kinds)


def _as_patterns(patterns: Patterns) -> list[str]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        return [patterns]
    return list(patterns)


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _kind_of(module: nn.Module, attr: str) -> str:
    if attr == "weight":
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return "conv"
        if isinstance(module, nn.Linear):
            return "linear"
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return "embedding"
    if isinstance(module, nn.MultiheadAttention) and attr in _ATTENTION_ATTRS:
        return "attention"
    if isinstance(module, nn.RNNBase) and attr.startswith(_RECURRENT_PREFIXES):
        return "recurrent"
    if isinstance(module, nn.RNNCellBase) and attr in ("weight_ih", "weight_hh"):
        return "recurrent"
    return "other"


def logical_attr(module: nn.Module, attr: str) -> str:
    """``x`` for a parameter ``x_orig`` that a pruning mask re-parametrises, else ``attr``."""
    if attr.endswith("_orig"):
        base = attr[: -len("_orig")]
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == base:
                return base
    return attr


def _preserves_zeros(p: nn.Module) -> bool:
    from torch.nn.utils.parametrizations import _SpectralNorm

    return isinstance(p, _SpectralNorm) or getattr(p, "paizoo_preserves_zeros", False) is True


def _parametrization_role(plist: nn.Module, attr: str, where: str) -> tuple[str | None, bool]:
    """``(refusal or None, auxiliary)`` for the original ``attr`` of a ``ParametrizationList``."""
    from torch.nn.utils.parametrizations import _WeightNorm

    chain = list(plist)
    names = ", ".join(type(p).__name__ for p in chain)
    fix = (f"exclude it (exclude='{where}') to leave it dense, or remove the parametrization "
           f"(torch.nn.utils.parametrize.remove_parametrizations); a custom parametrization "
           "that maps zeros of its input to zeros of its output elementwise (and keeps the "
           "shape) may declare `paizoo_preserves_zeros = True`")
    if getattr(plist, "is_tensor", True):
        if all(_preserves_zeros(p) for p in chain) and attr == "original":
            return None, False
        return (f"{where} is computed by the parametrization {names}, which does not keep the "
                f"zeros of its original tensor, so no mask on that tensor is exact on the "
                f"weight; {fix}"), False
    if isinstance(chain[0], _WeightNorm) and all(_preserves_zeros(p) for p in chain[1:]):
        if attr == "original1":
            return None, False
        if attr == "original0":
            return None, True
    return (f"{where} is computed by the parametrization {names} of several tensors, which paizoo "
            f"cannot mask exactly; {fix}"), False


def _legacy_refusal(module: nn.Module, attr: str, where: str) -> tuple[str | None, str]:
    """``(refusal, attribute computed from attr)`` for the legacy hook-based weight/spectral
    norm; ``(None, attr)`` for any other parameter."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, WeightNorm) and attr in (f"{hook.name}_g", f"{hook.name}_v"):
            kind, new = "weight_norm", "torch.nn.utils.parametrizations.weight_norm"
        elif isinstance(hook, SpectralNorm) and attr == f"{hook.name}_orig":
            kind, new = "spectral_norm", "torch.nn.utils.parametrizations.spectral_norm"
        else:
            continue
        return (f"{where} is computed by the legacy hook-based torch.nn.utils.{kind}, which "
                f"paizoo cannot mask exactly; use {new} (pruned exactly through its original "
                f"tensor) or exclude it (exclude='{where}')"), hook.name
    return None, attr


def _forward_refusal(module: nn.Module, attr: str, where: str) -> str | None:
    """Why a module's own forward makes a mask on ``attr`` inexact, or ``None``."""
    names = {c.__name__ for c in type(module).__mro__}
    if attr == "weight" and names & _ZERO_BREAKING_MODULES:
        return (f"{where} belongs to a {type(module).__name__}, which standardises its weight "
                "in forward ((w - mean) / std per output channel), so the pruned entries would "
                f"not be zero in what it computes; exclude it (exclude='{where}') to leave it "
                "dense")
    return None


def parameter_table(model: nn.Module) -> dict[str, ParamInfo]:
    """Every distinct parameter tensor of ``model``, by key, in ``named_parameters()`` order."""
    by_id: dict[int, ParamInfo] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{module_name}." if module_name else ""
        plist = isinstance(module, parametrize.ParametrizationList)
        if plist:  # "<layer>.parametrizations.<tensor>"
            layer_path, _, tensor = module_name.rpartition(".")
            layer_path = layer_path.rpartition(".")[0]
            owner = model.get_submodule(layer_path) if layer_path else model
        for attr, p in module._parameters.items():
            if p is None:
                continue
            attr_name = logical_attr(module, attr)
            name = prefix + attr_name
            if plist:
                logical = f"{layer_path}.{tensor}" if layer_path else tensor
                kind = _kind_of(owner, tensor)
                refusal, auxiliary = _parametrization_role(module, attr_name, logical)
                layer = layer_path
            else:
                refusal, computed = _legacy_refusal(module, attr_name, name)
                refusal = refusal or _forward_refusal(module, attr_name, name)
                logical, kind, layer = name, _kind_of(module, computed), module_name
                auxiliary = False
            info = by_id.get(id(p))
            if info is None:
                by_id[id(p)] = ParamInfo(name=name, param=p, kind=kind, kinds=[kind],
                                         layer=layer, logical=[logical], refusal=refusal,
                                         auxiliary=auxiliary)
            elif name not in info.aliases and name != info.name:
                info.aliases.append(name)
                info.kinds.append(kind)
                info.logical.append(logical)
    return {info.name: info for info in by_id.values()}


def _refuse_auxiliary_includes(table: dict[str, ParamInfo], include_p: list[str]) -> None:
    """Raise if an include pattern reaches weight norm's magnitude ``g`` (``original0``, never
    pruned) without reaching the weight it scales (its direction ``v`` or its logical name):
    that pattern would select nothing there, silently."""
    for info in table.values():
        if not info.auxiliary:
            continue
        partners = [other for other in table.values()
                    if not other.auxiliary and set(other.logical) & set(info.logical)]
        partner_names = {n for other in partners
                         for n in (other.name, *other.aliases, *other.logical)}
        for pattern in include_p:
            if not _matches(info.name, [pattern]) and not _matches_any(info.aliases, pattern):
                continue
            if _matches_any(partner_names, pattern):
                continue
            weight = info.logical[0]
            v = ", ".join(sorted({other.name for other in partners}))
            raise CoverageError(
                f"include pattern {pattern!r} names {info.name}, the magnitude g of weight norm "
                f"on {weight}, which paizoo never prunes (the weight g v/||v|| has the zeros of "
                f"the direction v; a mask on g would remove whole rows, not weights); to prune "
                f"that weight, name {weight} (or {v}), which masks v")


def _matches_any(names: Iterable[str], pattern: str) -> bool:
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


def select_parameters(
    model: nn.Module, include: Patterns = None, exclude: Patterns = None, cover: Cover = None
) -> dict[str, ParamInfo]:
    """The prunable parameters of ``model`` with their :class:`ParamInfo` (see the module doc).

    Raises:
        CoverageError: a selected parameter cannot be masked exactly (its parametrization).
    """
    kinds = resolve_cover(cover)
    include_p, exclude_p = _as_patterns(include), _as_patterns(exclude)
    exact = {p for p in include_p if not _GLOB_CHARS & set(p)}
    table = parameter_table(model)
    _refuse_auxiliary_includes(table, include_p)
    found: dict[str, ParamInfo] = {}
    for name, info in table.items():
        if info.auxiliary:
            continue
        names = [name, *info.aliases, *info.logical]
        covered = [k for k in info.kinds if k in kinds]
        if include_p:
            chosen = any(_matches(n, include_p) for n in names) and (
                bool(covered) or info.param.dim() >= 2 or bool(exact & set(names)))
        else:
            chosen = bool(covered)
        if not chosen or any(_matches(n, exclude_p) for n in names):
            continue
        if info.refusal is not None:
            raise CoverageError(info.refusal)
        if covered:
            info.kind = covered[0]
        found[name] = info
    return found


def prunable_modules(
    model: nn.Module, include: Patterns = None, exclude: Patterns = None, *,
    parametrized: bool = False,
) -> dict[str, nn.Module]:
    """Map each prunable Conv/Linear weight name (``"<module>.weight"``) to its module.

    The metrics work on these layers only (the default coverage, without parametrized
    weights). With ``parametrized=True`` (the graph encoders) a Conv/Linear module whose
    ``weight`` is parametrized is listed too, under the name of the original tensor paizoo
    prunes (:func:`weight_key`, e.g. ``"fc1.parametrizations.weight.original1"`` for weight
    norm); include/exclude patterns match that name or ``"<module>.weight"``.

    Raises:
        CoverageError: (``parametrized=True``) a listed weight's parametrization cannot be
            masked exactly (the refusal of :func:`select_parameters`).
    """
    include_p, exclude_p = _as_patterns(include), _as_patterns(exclude)
    found: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_MODULE_TYPES):
            continue
        logical = f"{module_name}.weight" if module_name else "weight"
        if parametrize.is_parametrized(module, "weight"):
            if not parametrized:
                continue
            name, weight, refusal = _parametrized_weight(module, logical)
        else:
            weight = getattr(module, "weight_orig", None)
            if weight is None:
                weight = module._parameters.get("weight")
            name, refusal = logical, None
        if include_p and not _matches(name, include_p) and not _matches(logical, include_p):
            continue
        if _matches(name, exclude_p) or _matches(logical, exclude_p):
            continue
        if refusal is not None:
            raise CoverageError(refusal)
        if not isinstance(weight, nn.Parameter) or id(weight) in seen:
            continue  # weightless module, or a weight tied to one already listed
        seen.add(id(weight))
        found[name] = module
    return found


def weight_key(module_name: str, module: nn.Module) -> str:
    """The mask name of a Conv/Linear module's ``weight``: ``"<module>.weight"``, or for a
    parametrized weight the original tensor paizoo prunes (``...parametrizations.weight.
    original1`` for weight norm, ``...original`` otherwise)."""
    logical = f"{module_name}.weight" if module_name else "weight"
    if parametrize.is_parametrized(module, "weight"):
        return _parametrized_weight(module, logical)[0]
    return logical


def _parametrized_weight(module: nn.Module, logical: str
                         ) -> tuple[str, nn.Parameter | None, str | None]:
    """``(mask name, original tensor, refusal or None)`` of a module's parametrized weight."""
    from torch.nn.utils.parametrizations import _WeightNorm

    plist = module.parametrizations["weight"]
    attr = "original1" if isinstance(plist[0], _WeightNorm) and not plist.is_tensor else "original"
    prefix = logical[: -len("weight")]
    name = f"{prefix}parametrizations.weight.{attr}"
    tensor = plist._parameters.get(f"{attr}_orig", plist._parameters.get(attr))
    refusal, _ = _parametrization_role(plist, attr, logical)
    return name, tensor, refusal


def prunable_parameters(
    model: nn.Module, include: Patterns = None, exclude: Patterns = None, cover: Cover = None
) -> dict[str, nn.Parameter]:
    """Return ``{name: parameter}`` for the prunable weights of ``model``, in module order.

    Args:
        model: any ``nn.Module``.
        include: glob pattern(s) (``fnmatch``, e.g. ``"layer1.*"``); when given, the prunable
            set is the matching parameters: it narrows the covered kinds and may extend them
            to any other parameter (see the module docstring for the rule on 1-D ones).
        exclude: glob pattern(s) of names to leave dense (e.g. ``["conv1.weight", "fc.weight"]``);
            exclude wins over include and cover.
        cover: kinds pruned besides Conv/Linear weights: ``"attention"``, ``"recurrent"``,
            ``"embedding"``, a list of them, ``"all"`` or ``"default"`` (``None``).

    Raises:
        NoPrunableParametersError: nothing is left to prune.
        CoverageError: a selected parameter cannot be masked exactly, or ``cover`` is unknown.
    """
    selected = select_parameters(model, include, exclude, cover)
    params = {n: info.param for n, info in selected.items()}
    if not params:
        detail = ""
        if include is not None or exclude is not None:
            detail = f" after include={include!r} / exclude={exclude!r}"
        one_d = [n for n, info in parameter_table(model).items() if info.param.dim() < 2
                 and any(_matches(m, _as_patterns(include)) for m in (n, *info.aliases))]
        if one_d:
            shown = ", ".join(repr(n) for n in one_d[:3]) + (", ..." if len(one_d) > 3 else "")
            detail += (f" (include matches the 1-D parameters {shown}, which a glob never "
                       "selects: a bias or norm scale is pruned only when include= names it "
                       f"exactly, e.g. include=[{one_d[0]!r}])")
        dense = coverage_of(model, (), exclude).summary() if include is None else ""
        if dense:  # weights it has but the coverage leaves out: name them and their fix
            detail += f"; {dense}"
        raise NoPrunableParametersError(
            f"{type(model).__name__} has no prunable parameter{detail}. paizoo prunes the weight "
            "of Conv1d/Conv2d/Conv3d/Linear modules (and their subclasses), and with cover= "
            "attention, recurrent and embedding weights; check the model, use cover=, or "
            "loosen the include/exclude patterns."
        )
    return params  # type: ignore[return-value]


def layer_path(name: str) -> str:
    """The path of the module that computes with the parameter ``name``: its owner, or for
    ``<m>.parametrizations.<t>.originalN`` the parametrized module ``<m>``."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[-3] == "parametrizations":
        return ".".join(parts[:-3])
    return ".".join(parts[:-1])


def layer_of(model: nn.Module, name: str) -> nn.Module:
    """The module that computes with the prunable parameter ``name`` (see :func:`layer_path`)."""
    path = layer_path(name)
    return model.get_submodule(path) if path else model


@dataclass(frozen=True)
class Coverage:
    """Which parameters of a model a mask leaves dense although they might be pruned.

    Attributes:
        dense: ``{kind: (names, ...)}`` for the attention, recurrent, embedding and other
            (at least 2-D) parameters outside the mask, excluding names the user excluded.
        dense_counts: ``{kind: number of weights}`` of those.
        model_total: all parameters of the model (distinct tensors).
    """

    dense: dict[str, tuple[str, ...]]
    dense_counts: dict[str, int]
    model_total: int

    @property
    def fraction(self) -> float:
        return sum(self.dense_counts.values()) / self.model_total if self.model_total else 0.0

    def summary(self) -> str:
        """One line per kind, or an empty string when nothing is left dense."""
        if not self.dense:
            return ""
        hints = {"attention": "cover='attention'", "recurrent": "cover='recurrent'",
                 "embedding": "cover='embedding'", "other": "include='<name>'"}
        parts = []
        for kind, names in self.dense.items():
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            share = self.dense_counts[kind] / self.model_total
            parts.append(f"{kind} weights ({len(names)} tensor(s), {share:.2%}: {shown}; prune "
                         f"them with {hints[kind]})")
        return (f"the current coverage leaves {self.fraction:.2%} of the model's parameters "
                "dense: " + "; ".join(parts))


def coverage_of(model: nn.Module, selected: Iterable[str], exclude: Patterns = None) -> Coverage:
    """The :class:`Coverage` of a mask over ``selected`` names of ``model``.

    Parameters left dense are reported when they are of the attention, recurrent or embedding
    kind, or other parameters with at least two dimensions (e.g. positional encodings); biases
    and norm scales (1-D), auxiliary parametrization tensors and names matching ``exclude``
    (the user's explicit choice) are not.
    """
    chosen = set(selected)
    exclude_p = _as_patterns(exclude)
    dense: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    total = 0
    for name, info in parameter_table(model).items():
        total += info.numel
        if name in chosen or info.auxiliary:
            continue
        kinds = [k for k in info.kinds if k in OPTIONAL_KINDS]
        kind = kinds[0] if kinds else ("other" if info.param.dim() >= 2 else None)
        if kind is None or info.kind in DEFAULT_KINDS:
            continue
        if _matches(name, exclude_p) or any(_matches(n, exclude_p) for n in info.logical):
            continue
        dense.setdefault(kind, []).append(name)
        counts[kind] = counts.get(kind, 0) + info.numel
    order = [*OPTIONAL_KINDS, "other"]
    return Coverage(dense={k: tuple(dense[k]) for k in order if k in dense},
                    dense_counts={k: counts[k] for k in order if k in counts}, model_total=total)
