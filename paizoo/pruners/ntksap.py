"""NTK-SAP: neural-tangent-kernel spectrum-aware pruning (data-free, multi-round)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from contextlib import nullcontext

import torch
from torch import nn
from torch.func import functional_call

from ..sparsity import Schedule
from ._options import as_float, as_int
from ._tokens import (
    RandomTokens,
    call_token_model,
    embedding_names,
    token_placeholder,
)
from .base import PruneContext, Pruner, Scope
from .registry import register_pruner

Reinit = str | Callable[[nn.Module], None]


def ntksap_draw_gradient(
    model: nn.Module,
    weights: Mapping[str, torch.Tensor],
    mask: Mapping[str, torch.Tensor],
    inputs: torch.Tensor,
    noise: Mapping[str, torch.Tensor],
    epsilon: float,
) -> dict[str, torch.Tensor]:
    """One draw of NTK-SAP: ``d/dc sum_b ||f(x_b; w * c) - f(x_b; (w + eps * delta) * c)||^2``.

    The model is run functionally (``torch.func.functional_call``) in its current mode with its
    own buffers; parameters not in ``weights`` are taken from the model. NTK-SAP calls this in
    eval mode, after the BatchNorm running statistics were set from the same batch.

    Args:
        model: the network (not modified).
        weights: ``{name: w}`` for the prunable parameters.
        mask: ``{name: c}``, the point at which to differentiate.
        inputs: the batch x.
        noise: ``{name: delta}``, the weight perturbation directions.
        epsilon: the perturbation size.

    Returns:
        ``{name: dJ/dc}`` (signed) with the shapes of ``weights``.
    """
    names = list(weights)
    c = {n: mask[n].detach().to(weights[n].dtype).clone().requires_grad_(True) for n in names}
    clean = functional_call(model, {n: weights[n] * c[n] for n in names}, (inputs,))
    if not isinstance(clean, torch.Tensor):
        raise TypeError(f"{type(model).__name__} returned a {type(clean).__name__}; NTK-SAP needs "
                        "a model whose forward() returns one tensor (wrap the model so that "
                        "forward() returns the logits)")
    perturbed = functional_call(
        model, {n: (weights[n] + epsilon * noise[n]) * c[n] for n in names}, (inputs,))
    objective = (clean - perturbed).pow(2).sum()
    grads = torch.autograd.grad(objective, [c[n] for n in names], allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(c[n])).detach()
            for n, g in zip(names, grads, strict=True)}


@register_pruner("ntksap")
class NTKSAPPruner(Pruner):
    """Keep the weights whose mask most changes a finite-difference NTK-spectrum proxy: NTK-SAP.

    Wang, Li, Sun, "NTK-SAP: Improving Neural Network Pruning by Aligning Training Dynamics",
    ICLR 2023.

    NTK-SAP saliency approximates the trace of the (analytic) neural tangent kernel, the sum of
    its eigenvalues, by a finite difference of the network function under a random weight
    perturbation. For one draw (fresh weights w, Gaussian inputs x, perturbation delta):

        J(c) = sum_b || f(x_b; w * c) - f(x_b; (w + eps * delta) * c) ||^2,
        w ~ the initialisation distribution, x_b ~ N(0, I), delta ~ N(0, I),

    and the score of each weight is

        s = | sum_{r=1..R} dJ_r / dc |   (evaluated at c = current mask, summed before |.|).

    The network is re-initialised for every draw ("multi-sampling"), so the mask does not
    depend on one weight draw and NTK-SAP is data-free. Token-input models (with
    ``nn.Embedding`` layers; ``input_shape`` is then the sequence shape, e.g. ``(T,)``) get
    random token ids instead of Gaussian inputs: every embedding looks up ids drawn uniformly
    from its vocabulary, the same for both evaluations of a draw (see
    :mod:`paizoo.pruners._tokens`). Pruning runs T rounds on an exponential
    density schedule, the mask of each round feeding the next (defaults T = 20, R = 5,
    eps = 0.01, as in the paper and the authors' code ``YiteWang/NTK-SAP``).

    BatchNorm: as in the authors' code, the running statistics are reset and set from the draw's
    batch by a forward pass of the unperturbed masked network in train mode with momentum 1,
    then both function evaluations run in eval mode with these (constant) statistics. This runs
    on a private copy; the model and its buffers are never touched.

    Args:
        draws: R, independent draws per round.
        epsilon: perturbation size eps.
        batch_size: Gaussian inputs per draw (the authors' CIFAR-10 setting: 100 = 10 per class).
        reinit: how weights are re-drawn for each draw: ``"gaussian"`` (default; each prunable
            weight tensor ~ N(0, rms(theta_0)^2) i.i.d., matching the scale of the model's own
            initialisation, exactly the authors' Kaiming-normal re-initialisation for
            Kaiming-normal models; other parameters keep their initial values),
            ``"reset_parameters"`` (call every submodule's ``reset_parameters()``: PyTorch's
            default initialisation, norm layers and biases included), or a callable
            ``reinit(model)`` that re-initialises the (private copy of the) model in place.
            With ``"gaussian"``, a norm layer initialised to zero stays zero (e.g. timm ResNets'
            ``zero_init_last`` residual branches), so the weights before it score 0 and may
            collapse; ``"reset_parameters"`` re-initialises norm layers to 1 as well.
        rounds: T (default 20), with ``schedule`` (default exponential).
    """

    requires_input_shape = True
    default_rounds = 20

    def __init__(self, *, draws: int = 5, epsilon: float = 0.01, batch_size: int = 100,
                 reinit: Reinit = "gaussian", scope: Scope | None = None,
                 rounds: int | None = None, schedule: Schedule = "exponential") -> None:
        super().__init__(scope=scope, rounds=rounds, schedule=schedule)
        if not callable(reinit) and reinit not in ("gaussian", "reset_parameters"):
            raise ValueError(f"reinit must be 'gaussian', 'reset_parameters' or a callable "
                             f"reinit(model), got {reinit!r}")
        self.draws = as_int("draws (weight/input draws per round)", draws, minimum=1)
        self.epsilon = as_float("epsilon (perturbation size)", epsilon, low=0.0, low_open=True)
        self.batch_size = as_int("batch_size", batch_size, minimum=1)
        self.reinit = reinit

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        assert ctx.input_shape is not None  # guaranteed by requires_input_shape
        scratch = copy.deepcopy(ctx.model)
        for p in scratch.parameters():
            p.requires_grad_(False)
        norms = [m for m in scratch.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.momentum = 1.0  # running statistics = the statistics of the last batch
        names = list(ctx.params)
        dtype = ctx.initial[names[0]].dtype
        mask = {n: ctx.mask[n].to(dtype) for n in names}
        total = {n: torch.zeros_like(ctx.initial[n]) for n in names}
        embeddings = embedding_names(scratch) if ctx.takes_token_ids(scratch, dtype) else []
        tokens = RandomTokens(scratch, ctx.generator) if embeddings else nullcontext()
        with tokens:
            for _ in range(self.draws):
                weights = self._draw_weights(ctx, scratch)
                if isinstance(tokens, RandomTokens):
                    tokens.redraw()
                    x = token_placeholder(scratch, self.batch_size, ctx.input_shape, ctx.device)
                else:
                    x = torch.randn((self.batch_size, *ctx.input_shape), generator=ctx.generator,
                                    dtype=dtype).to(ctx.device)
                noise = {n: torch.randn(ctx.initial[n].shape, generator=ctx.generator,
                                        dtype=dtype).to(ctx.device) for n in names}

                def draw(x: torch.Tensor = x, weights: dict[str, torch.Tensor] = weights,
                         noise: dict[str, torch.Tensor] = noise) -> dict[str, torch.Tensor]:
                    scratch.train()
                    for m in norms:
                        m.reset_running_stats()
                    with torch.no_grad():
                        functional_call(scratch, {n: weights[n] * mask[n] for n in names}, (x,))
                    scratch.eval()
                    return ntksap_draw_gradient(scratch, weights, mask, x, noise, self.epsilon)

                grads = (call_token_model("NTK-SAP", scratch, embeddings, draw, tuple(x.shape))
                         if embeddings else draw())
                for n in names:
                    total[n] += grads[n]
        return {n: total[n].abs() * mask[n] for n in names}

    def _draw_weights(self, ctx: PruneContext, scratch: nn.Module) -> dict[str, torch.Tensor]:
        if self.reinit == "gaussian":
            out = {}
            for n, theta in ctx.initial.items():
                rms = theta.double().pow(2).mean().sqrt().to(theta.dtype)
                draw = torch.randn(theta.shape, generator=ctx.generator, dtype=theta.dtype)
                out[n] = draw.to(ctx.device) * rms
            return out
        with torch.no_grad():
            if self.reinit == "reset_parameters":
                for module in scratch.modules():
                    reset = getattr(module, "reset_parameters", None)
                    if callable(reset):
                        reset()
            else:
                self.reinit(scratch)  # type: ignore[operator]
        params = dict(scratch.named_parameters())
        return {n: params[n].detach().clone() for n in ctx.params}
