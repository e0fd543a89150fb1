"""Make a working copy twice differentiable, for pruners that need second derivatives.

GraSP (a Hessian-gradient product) and ProsPr (a meta-gradient through SGD steps) differentiate
the loss twice. PyTorch has no second derivative for a few fused kernels that common
architectures use:

* ``nn.Hardsigmoid`` (the squeeze-excitation gates of MobileNetV3 in torchvision and timm): its
  backward kernel is not differentiable (``hardswish`` is, and needs nothing). It is swapped, in
  the pruner's working copy only, for the composite form of the same function
  (``torch.nn.functional`` docs),

      hardsigmoid(x) = relu6(x + 3) / 6,

  equal in value and first derivative (away from the kinks at x = +-3, a set of measure zero),
  whose second derivative (0 almost everywhere) autograd computes.
* fused scaled-dot-product attention (timm ViTs with ``fused_attn``, ``nn.MultiheadAttention``):
  the flash / memory-efficient kernels have no double backward; :func:`twice_differentiable`
  selects PyTorch's math implementation of ``F.scaled_dot_product_attention``, which has.

Functional calls (``F.hardsigmoid(x)`` written inside a ``forward``) cannot be swapped; such models
still raise :class:`~paizoo.errors.UnsupportedLayerError` from the pruner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel


class CompositeHardsigmoid(nn.Module):
    """``relu6(x + 3) / 6``: ``nn.Hardsigmoid`` written with twice-differentiable operations."""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x + 3.0) / 6.0


_REPLACEMENTS: dict[type[nn.Module], type[nn.Module]] = {
    nn.Hardsigmoid: CompositeHardsigmoid,
}


def swap_hard_activations(model: nn.Module) -> int:
    """Replace, in place, every ``nn.Hardsigmoid`` submodule of ``model`` by its composite twin;
    return how many were replaced. Only ever call this on a working copy."""
    targets = [(name, module) for name, module in model.named_modules()
               if name and type(module) in _REPLACEMENTS]
    for name, module in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _REPLACEMENTS[type(module)]())
    return len(targets)


@contextlib.contextmanager
def twice_differentiable() -> Iterator[None]:
    """Run scaled-dot-product attention with PyTorch's math kernel (it has a double backward)."""
    with sdpa_kernel([SDPBackend.MATH]):
        yield
