"""Kept weights of a layer as seen by the graph encoders.

Edge *existence* follows the mask; the edge weight is the magnitude ``|w|`` of the layer's
parameter (``weight_orig`` on a model whose masks are applied). The effective mask of a parameter
is the given mask's entry (all kept when the mask is ``None`` or has no entry for it) intersected
with the model's own ``weight_mask`` buffer, if one is applied. A kept weight whose value is
exactly zero still gives an edge, stored as an explicit zero in the adjacency.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..errors import MaskMismatchError
from ..masks import Mask
from ..params import prunable_modules


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
    encoded = prunable_modules(model)
    outside = [n for n in resolved if n not in encoded]
    if outside:
        raise MaskMismatchError(
            f"mask entries {', '.join(outside[:5])}{' ...' if len(outside) > 5 else ''} are "
            f"not Conv/Linear weights of {type(model).__name__}: the graph encodings represent "
            "Conv/Linear layers only (no attention, recurrent, embedding or parametrized "
            "weights); pass a mask without them")
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
