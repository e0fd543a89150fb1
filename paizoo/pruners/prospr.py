"""ProsPr: prospect pruning with meta-gradients through the first steps of training."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.func import functional_call

from ..batches import Batch
from ..errors import UnsupportedLayerError
from ..sparsity import Schedule
from ._gradients import compute_loss
from ._options import as_bool, as_float, as_int
from ._second_order import swap_hard_activations, twice_differentiable
from .base import LossFn, PruneContext, Pruner, Scope
from .registry import register_pruner


def prospr_meta_gradient(
    model: nn.Module,
    initial: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    batches: list[Batch],
    loss_fn: LossFn,
    *,
    steps: int = 3,
    lr: float = 0.1,
    momentum: float = 0.0,
    first_order: bool = False,
    new_data_in_inner: bool = False,
) -> dict[str, torch.Tensor]:
    """The signed meta-gradient ``dL(w_M)/dc`` of ProsPr for each prunable parameter.

    ``model`` is run functionally (``torch.func.functional_call``) and is not modified: its
    buffers (BatchNorm running statistics) are cloned, so batch statistics update the clones only.

    Args:
        model: the network, in the mode it should be run in (ProsPr uses train mode).
        initial: ``{name: theta_0}`` of the prunable parameters (names of
            ``model.named_parameters()``).
        mask: ``{name: c}`` at which to differentiate (0/1 or float, shapes of ``initial``).
        batches: ``(inputs, targets)`` on the model's device; inner step ``k`` uses batch
            ``k mod len(batches)`` if ``new_data_in_inner`` and batch 0 otherwise, the final loss
            batch ``M mod len(batches)`` or batch 0.
        loss_fn: ``loss_fn(logits, targets)``.
        steps: M, the number of inner SGD steps (0 gives SNIP's ``dL/dc`` at ``theta_0 * c``).
        lr, momentum: the inner SGD's learning rate and (heavy-ball) momentum.
        first_order: treat the inner gradients as constants (no second-order terms).
        new_data_in_inner: a new batch for every inner step (cycling through ``batches``).

    Returns:
        ``{name: dL/dc}`` with the shapes of ``initial``.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    names = list(initial)
    named = dict(model.named_parameters())
    unknown = [n for n in names if n not in named]
    if unknown:
        raise KeyError(f"{unknown} are not parameters of {type(model).__name__}")
    c = {n: mask[n].detach().to(initial[n].dtype).clone().requires_grad_(True) for n in names}
    # every other floating parameter (biases, norm affine) is trained in the inner loop too,
    # as in the reference implementation; it starts from a detached leaf copy
    others = {n: p.detach().clone().requires_grad_(True) for n, p in named.items()
              if n not in c and p.is_floating_point()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    fast: dict[str, torch.Tensor] = {**{n: initial[n] * c[n] for n in names}, **others}
    velocity: dict[str, torch.Tensor] = {}

    def batch(k: int) -> Batch:
        return batches[k % len(batches)] if new_data_in_inner else batches[0]

    def loss_at(weights: dict[str, torch.Tensor], k: int) -> torch.Tensor:
        x, y = batch(k)
        return compute_loss(loss_fn, functional_call(model, {**weights, **buffers}, (x,)), y,
                            model)

    try:
        for k in range(steps):
            keys = list(fast)
            grads = torch.autograd.grad(loss_at(fast, k), [fast[n] for n in keys],
                                        create_graph=not first_order, allow_unused=True)
            updated = {}
            for n, g in zip(keys, grads, strict=True):
                if g is None:
                    g = torch.zeros_like(fast[n])
                if momentum:
                    g = velocity[n] * momentum + g if n in velocity else g
                    velocity[n] = g
                updated[n] = fast[n] - lr * g
            fast = updated
        meta = torch.autograd.grad(loss_at(fast, steps), [c[n] for n in names],
                                   allow_unused=True)
    except RuntimeError as exc:
        if first_order or "not implemented" not in str(exc):
            raise
        raise UnsupportedLayerError(
            f"ProsPr's full meta-gradient differentiates through the inner gradients, and "
            f"PyTorch has no second derivative for an operation of {type(model).__name__} "
            f"({exc}); use first_order=True") from exc
    return {n: (g if g is not None else torch.zeros_like(c[n])).detach()
            for n, g in zip(names, meta, strict=True)}


@register_pruner("prospr")
class ProsPrPruner(Pruner):
    """Keep the largest |meta-gradient| of the loss after M SGD steps w.r.t. the mask: ProsPr.

    Alizadeh, Tailor, Zintgraf, van Amersfoort, Farquhar, Lane, Gal, "Prospect Pruning: Finding
    Trainable Weights at Initialization using Meta-Gradients", ICLR 2022.

    With the mask c as a variable (all ones in the first round), the inner loop trains the
    masked network for M steps of SGD on the pruning data,

        w_0 = theta_0 * c   (prunable weights; the other parameters start as initialised),
        w_{k+1} = w_k - lr * grad_w L(w_k; batch_k),   k = 0 .. M-1,

    and the score of each weight is the magnitude of the meta-gradient through the inner loop,

        s = | dL(w_M; batch_M) / dc |   (evaluated at c = current mask),

    computed by differentiating through the M steps (second-order terms included). With
    ``first_order=True`` the inner gradients are treated as constants (first-order MAML), so
    dw_M/dc = theta_0 and s = |grad_w L(w_M) * theta_0|. The largest scores are kept.

    As in the authors' code (``mil-ad/prospr``): the network is in train mode (BatchNorm uses
    batch statistics; the running statistics of a clone are updated, never those of the model),
    every floating parameter (biases and norm affine parameters too) is updated in the inner
    loop, momentum defaults to 0, and one batch (the first) serves every step unless
    ``new_data_in_inner=True``, which cycles through the batches (M + 1 batches are used).

    For the full meta-gradient, the working copy's ``nn.Hardsigmoid`` modules
    are swapped for twice-differentiable composites of equal value and attention runs on the
    math kernel (:mod:`paizoo.pruners._second_order`).

    Args:
        steps: M, inner SGD steps (paper default 3).
        lr: inner learning rate (paper default 0.1).
        momentum: inner SGD momentum (default 0).
        first_order: use the first-order approximation (much cheaper in memory).
        new_data_in_inner: a new batch for every inner step and for the final loss.
    """

    requires_data = True

    def __init__(self, *, steps: int = 3, lr: float = 0.1, momentum: float = 0.0,
                 first_order: bool = False, new_data_in_inner: bool = False,
                 scope: Scope | None = None, rounds: int | None = None,
                 schedule: Schedule = "exponential") -> None:
        super().__init__(scope=scope, rounds=rounds, schedule=schedule)
        self.steps = as_int("steps (number of inner SGD steps)", steps, minimum=0)
        self.lr = as_float("lr (inner SGD learning rate)", lr, low=0.0, low_open=True)
        self.momentum = as_float("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.first_order = as_bool("first_order", first_order)
        self.new_data_in_inner = as_bool("new_data_in_inner", new_data_in_inner)

    def prepare(self, ctx: PruneContext) -> None:
        ctx.model.train()
        if not self.first_order:
            swap_hard_activations(ctx.model)  # the working copy only

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        with twice_differentiable():
            grads = prospr_meta_gradient(
                ctx.model, ctx.initial, ctx.mask, ctx.device_batches(), ctx.loss_fn,
                steps=self.steps, lr=self.lr, momentum=self.momentum,
                first_order=self.first_order, new_data_in_inner=self.new_data_in_inner)
        return {n: g.abs() for n, g in grads.items()}
