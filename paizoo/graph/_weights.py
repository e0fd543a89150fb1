"""Kept weights of a layer as seen by the graph encoders.

Edge *existence* follows the mask; the edge weight is the magnitude ``|w|`` of the layer's
parameter (``weight_orig`` on a model whose masks are applied). The effective mask of a parameter
is the given mask's entry (all kept when the mask is ``None`` or has no entry for it) intersected
with the model's own ``weight_mask`` buffer, if one is applied. A kept weight whose value is
exactly zero still gives an edge, stored as an explicit zero in the adjacency.

A Conv/Linear weight computed by a parametrization that paizoo prunes exactly (weight norm,
spectral norm, see :mod:`paizoo.params`) is a layer like any other, under the mask name of its
pruned original (``<m>.parametrizations.weight.original1`` for weight norm); its edge weights
are ``|W|`` of the weight the masked module computes (for weight norm ``g (v*m) / ||v*m||``,
the kept entries renormalised), evaluated with the parametrization in eval mode (no power
iteration step of spectral norm). Other parametrizations raise
:class:`~paizoo.errors.CoverageError`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from ..errors import CoverageError, MaskMismatchError
from ..masks import Mask
from ..params import _parametrized_weight, layer_path, prunable_modules


def resolve_mask(model: nn.Module, mask: Mapping[str, torch.Tensor] | None) -> Mask | None:
    """Validate ``mask`` against ``model`` (names and shapes); ``None`` stays ``None``.

    Raises:
        MaskMismatchError: a name or shape does not fit, or an entry is a weight the graph
            encodings do not represent (attention, recurrent, embedding, parametrized).
    """
    if mask is None:
        return None
    resolved = mask if isinstance(mask, Mask) else Mask(mask)
    resolved.check_compatible(model)
    encoded = prunable_modules(model, parametrized=True)
    outside = [n for n in resolved if n not in encoded]
    if outside:
        raise MaskMismatchError(
            f"mask entries {', '.join(outside[:5])}{' ...' if len(outside) > 5 else ''} are "
            f"not Conv/Linear weights of {type(model).__name__}: the graph encodings represent "
            "Conv/Linear layers only (no attention, recurrent or embedding weights); pass a "
            "mask without them")
    return resolved


def kept_weight(owner: nn.Module, attr: str, name: str, mask: Mask | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, w)`` as numpy arrays (bool, float32) of parameter ``attr`` of ``owner``.

    ``name`` is the parameter's logical name (``"layer1.0.conv1.weight"``), the mask's key. ``w``
    is the raw weight (shared with the parameter when it lives on the CPU in float32; never
    written): callers take the magnitude of the kept entries only.
    """
    if attr.endswith("_orig"):
        attr = attr[: -len("_orig")]
    if parametrize.is_parametrized(owner, attr):
        return _kept_parametrized(owner, attr, name, mask)
    weight = getattr(owner, f"{attr}_orig", None)
    if weight is None:
        weight = getattr(owner, attr)
    w = weight.detach().to(device="cpu", dtype=torch.float32).numpy()
    keep: np.ndarray | None = None
    applied = getattr(owner, f"{attr}_mask", None)
    if isinstance(applied, torch.Tensor):
        keep = applied.detach().cpu().numpy() != 0
    if mask is not None and name in mask:
        given = mask[name].detach().cpu().numpy().astype(bool, copy=False)
        keep = given if keep is None else keep & given
    if keep is None:
        keep = np.ones(w.shape, dtype=bool)
    return keep, w


@torch.no_grad()
def _kept_parametrized(owner: nn.Module, attr: str, name: str, mask: Mask | None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`kept_weight` of a parametrized weight: the mask of its pruned original (given
    entry ``name`` and the mask applied to the original), and the weight the parametrization
    computes from the masked original (eval mode; entries outside the mask are set to 0)."""
    path = layer_path(name)
    key, _, refusal = _parametrized_weight(owner, f"{path}.{attr}" if path else attr)
    if refusal is not None:
        raise CoverageError(refusal)
    plist = owner.parametrizations[attr]
    pruned = key.rpartition(".")[2]
    names = ["original"] if plist.is_tensor else [f"original{i}" for i in range(plist.ntensors)]
    values = {n: plist._parameters.get(f"{n}_orig", plist._parameters.get(n)).detach()
              for n in names}
    keep = torch.ones_like(values[pruned], dtype=torch.bool)
    applied = getattr(plist, f"{pruned}_mask", None)
    if isinstance(applied, torch.Tensor):
        keep &= applied != 0
    if mask is not None and name in mask:
        keep &= mask[name].to(keep.device).bool()
    values[pruned] = values[pruned] * keep
    modes = [(m, m.training) for m in plist.modules()]
    plist.eval()
    try:
        chain = list(plist)
        w = chain[0](values["original"]) if plist.is_tensor else chain[0](
            *(values[n] for n in names))
        for p in chain[1:]:
            w = p(w)
    finally:
        for m, training in modes:
            m.training = training
    w = torch.where(keep, w, 0.0)  # an emptied weight-norm row computes 0/0 there
    return keep.cpu().numpy(), w.to(device="cpu", dtype=torch.float32).numpy()
