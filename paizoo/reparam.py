"""Applying and removing masks in the ``torch.nn.utils.prune`` convention.

After :func:`apply_mask`, each masked module has a parameter ``weight_orig`` (trained), a buffer
``weight_mask`` (0/1, saved in ``state_dict``) and a forward pre-hook that sets
``weight = weight_orig * weight_mask``. Gradients reaching ``weight_orig`` are thus multiplied by
the mask, so pruned entries of ``weight`` stay exactly zero under any optimizer (weight decay and
momentum only change ``weight_orig`` at pruned positions, never the effective weight).

The same holds for any masked parameter ``x`` (``x_orig``, ``x_mask``): attention
``in_proj_weight``, recurrent ``weight_ih_l0`` (``nn.LSTM`` reads the masked tensor through its
``_flat_weights``, which assigning the attribute updates), and the original tensor of a
parametrized weight (the mask sits on ``<m>.parametrizations.weight.original1``; the
parametrization then computes the weight from the masked original). A tied parameter is masked
in every module that uses it: each gets ``x_orig`` (the one shared parameter, trained once) and
the same mask, so every use computes with the masked tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.utils.parametrize as parametrize
import torch.nn.utils.prune as torch_prune
from torch import nn
from torch.nn.utils.parametrizations import _WeightNorm

from .errors import CoverageError
from .masks import Mask
from .params import logical_attr, parameter_table
from .sparsity import as_slices


def apply_mask(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> nn.Module:
    """Apply ``mask`` to ``model`` in place and return it.

    A parameter that already carries a mask gets the intersection of both (as torch's own
    ``prune`` does). Masks are moved to each parameter's device.

    A tied parameter (one tensor used by several modules) is masked in every module using it.

    ``nn.MultiheadAttention`` reads ``out_proj.weight`` without calling ``out_proj``, and the
    fast path of ``nn.TransformerEncoderLayer``/``DecoderLayer`` reads its submodules' weights
    directly; for those modules a pre-hook keeps the masked weights of their submodules up to
    date.

    Raises:
        MaskMismatchError: a mask name or shape does not fit ``model``.
        CoverageError: the mask leaves a whole row of a weight-normed weight empty (weight norm
            would divide 0 by 0 there).
    """
    mask = mask if isinstance(mask, Mask) else Mask(mask)
    mask.check_compatible(model)
    table = parameter_table(model)
    by_name = {n: info.param for info in table.values() for n in (info.name, *info.aliases)}
    uses = _uses(model)
    for name, keep in mask.items():  # refuse before changing anything
        for module, attr in uses[id(by_name[name])]:
            _check_weight_norm_rows(module, attr, keep, name)
    # masks made inside torch.inference_mode() would be inference tensors, which the forward
    # pre-hook cannot multiply into a weight that trains afterwards
    with torch.inference_mode(False):
        for name, keep in mask.items():
            param = by_name[name]
            for module, attr in uses[id(param)]:
                torch_prune.custom_from_mask(module, attr,
                                             keep.to(device=param.device, dtype=param.dtype))
    _refresh_hooks_for_direct_weight_readers(model)
    return model


def _uses(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """``{id(parameter): [(module, attribute), ...]}`` over every module using each parameter
    (logical attribute names: ``x`` for a masked ``x_orig``)."""
    out: dict[int, list[tuple[nn.Module, str]]] = {}
    seen: set[tuple[int, str]] = set()
    for module in model.modules():
        for attr, p in module._parameters.items():
            if p is None:
                continue
            logical = logical_attr(module, attr)
            if (id(module), logical) not in seen:
                seen.add((id(module), logical))
                out.setdefault(id(p), []).append((module, logical))
    return out


def weight_norm_dims(model: nn.Module, names: Iterable[str]) -> dict[str, int]:
    """``{name: dim}`` for the names of ``model``'s parameters that are weight norm's direction
    ``v`` (``<m>.parametrizations.weight.original1``): every slice along ``dim`` (the whole
    tensor for ``dim=-1``) is divided by its norm, so a mask must keep a weight in each."""
    out = {}
    for name in names:
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        if (isinstance(module, parametrize.ParametrizationList) and attr == "original1"
                and isinstance(module[0], _WeightNorm)):
            out[name] = module[0].dim
    return out


def _check_weight_norm_rows(module: nn.Module, attr: str, keep: torch.Tensor, name: str) -> None:
    """Refuse a mask on weight norm's ``v`` that empties a slice normalised as one (0 / 0)."""
    if not (isinstance(module, parametrize.ParametrizationList) and attr == "original1"
            and isinstance(module[0], _WeightNorm)):
        return
    existing = getattr(module, "original1_mask", None)
    kept = keep.bool().cpu() & (existing.bool().cpu() if existing is not None else True)
    dim = module[0].dim
    empty = int((~as_slices(kept, dim).any(1)).sum())
    if empty:
        raise CoverageError(
            f"the mask keeps no weight in {empty} slice(s) of {name!r} along dim {dim}; weight "
            "norm divides each slice by its norm, so these would compute 0/0 = NaN. Prune at a "
            "lower sparsity, exclude this weight, or remove the weight norm first "
            "(torch.nn.utils.parametrize.remove_parametrizations(module, 'weight') bakes "
            "g v / ||v|| into a plain weight, which is then pruned like any other)")


def remove_masks(model: nn.Module) -> nn.Module:
    """Make masks permanent: ``weight = weight_orig * weight_mask`` becomes a plain parameter."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
        handle = getattr(module, "_paizoo_refresh_handle", None)
        if handle is not None:
            handle.remove()
            del module._paizoo_refresh_handle
    return model


def is_masked(model: nn.Module) -> bool:
    """Whether any module of ``model`` carries a pruning re-parametrisation."""
    return torch_prune.is_pruned(model)


_DIRECT_READERS: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


def _pruning_hooks(module: nn.Module) -> list[torch_prune.BasePruningMethod]:
    return [h for h in module._forward_pre_hooks.values()
            if isinstance(h, torch_prune.BasePruningMethod)]


def _refresh_hooks_for_direct_weight_readers(model: nn.Module) -> None:
    for module in model.modules():
        if not isinstance(module, _DIRECT_READERS):
            continue
        if getattr(module, "_paizoo_refresh_handle", None) is not None:
            continue
        if not any(_pruning_hooks(m) for m in module.modules()):
            continue

        def refresh(reader: nn.Module, _args: object) -> None:
            for sub in reader.modules():
                for hook in _pruning_hooks(sub):
                    hook(sub, None)

        module._paizoo_refresh_handle = module.register_forward_pre_hook(refresh)
