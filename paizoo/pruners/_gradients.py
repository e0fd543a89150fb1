"""Loss gradients shared by the gradient-based pruners (SNIP, iterative SNIP, FORCE, GraSP)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..batches import Batch
from ..errors import MissingDataError, ScoreError
from .base import PruneContext


def grads_or_zeros(
    outputs: torch.Tensor, params: Sequence[torch.Tensor], *, create_graph: bool = False
) -> list[torch.Tensor]:
    """``torch.autograd.grad(outputs, params)`` with zeros for parameters the output ignores."""
    grads = torch.autograd.grad(outputs, list(params), allow_unused=True,
                                create_graph=create_graph)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]


def batch_loss(ctx: PruneContext, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """``ctx.loss_fn(model(x) / temperature, y)`` on one batch moved to ``ctx.device``."""
    x, y = batch
    out = ctx.model(x.to(ctx.device))
    if temperature != 1.0 and isinstance(out, torch.Tensor):
        out = out / temperature
    return compute_loss(ctx.loss_fn, out, y.to(ctx.device), ctx.model)


def compute_loss(loss_fn: Callable[[torch.Tensor, torch.Tensor], object], out: object,
                 targets: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """:func:`checked_loss` of ``loss_fn(out, targets)`` for the output ``out`` of ``model``.

    An output that is not one tensor (a tuple, a dict) is a ``TypeError`` saying to wrap the
    model; targets the loss cannot take (float class labels, a wrong shape, another batch size
    than the inputs) are a :class:`MissingDataError` naming the shapes and dtypes instead of
    the loss's own error."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"{type(model).__name__} returned a {type(out).__name__}, not a tensor of logits; "
            "wrap the model so that forward() returns the logits")
    try:
        loss = loss_fn(out, targets)
    except (RuntimeError, ValueError, IndexError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise MissingDataError(
            f"the pruning loss cannot take the model's output of shape {tuple(out.shape)} and "
            f"the data's targets of shape {tuple(targets.shape)} ({targets.dtype}): "
            f"{' '.join(str(exc).split())}. With the default cross-entropy, targets are class "
            "indices (torch.long, one per input: targets.long()) or class probabilities of "
            "the output's shape; otherwise pass a loss_fn(logits, targets) that takes them"
        ) from exc
    return checked_loss(loss, targets)


def checked_loss(loss: object, targets: torch.Tensor) -> torch.Tensor:
    """``loss`` if it is a finite scalar tensor that depends on the weights, else a clear error.

    A NaN loss (cross-entropy with every target equal to ``ignore_index``, -100, is 0/0) or one
    without a gradient (a constant, a detached output) would leave every score zero or NaN and
    the mask to the tie-break rule.
    """
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ScoreError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}"
                         + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor)
                            else ""))
    if not bool(torch.isfinite(loss.detach())):
        ignored = bool((targets == -100).all()) if not targets.is_floating_point() else False
        raise ScoreError(
            f"the pruning loss is {float(loss.detach())}"
            + (": every target of the batch is -100, cross-entropy's ignore_index, so the "
               "mean loss is 0/0; give batches with labelled samples" if ignored else
               "; check the data (NaN/inf inputs?) and the model's initialisation"))
    if not loss.requires_grad:
        raise ScoreError(
            "the pruning loss does not depend on the model's weights (it has no gradient): "
            "loss_fn must compute a differentiable loss from the logits (no .detach(), "
            ".item() or constant)")
    return loss


def mean_loss_gradients(ctx: PruneContext) -> dict[str, torch.Tensor]:
    """g = (1/B) sum_b dL_b/dtheta over all B batches of ``ctx.batches``, per prunable parameter.

    ``L_b = ctx.loss_fn(model(x_b), y_b)`` (cross-entropy with mean reduction by default). The
    gradient is taken at the current weights of ``ctx.model`` (``theta_0 * mask``) and the
    parameters' ``.grad`` fields are left untouched.
    """
    if ctx.batches is None:
        raise MissingDataError(
            "this pruner needs data= (a DataLoader or a list of (inputs, targets) batches)")
    names = list(ctx.params)
    params = [ctx.params[n] for n in names]
    total = [torch.zeros_like(p) for p in params]
    for batch in ctx.batches:
        grads = grads_or_zeros(batch_loss(ctx, batch), params)
        for acc, g in zip(total, grads, strict=True):
            acc.add_(g)
    count = len(ctx.batches)
    return {n: acc.div_(count) for n, acc in zip(names, total, strict=True)}
