"""GraSP: gradient signal preservation (Wang, Zhang and Grosse 2020)."""

from __future__ import annotations

import torch

from ..batches import Batch, stratified_sample
from ..errors import MissingDataError, UnsupportedLayerError
from ..sparsity import Schedule
from ._gradients import batch_loss, grads_or_zeros
from .base import PruneContext, Pruner, Scope
from .registry import register_pruner


@register_pruner("grasp")
class GraSP(Pruner):
    """Gradient signal preservation: keep the largest theta * (H g) (GraSP, Wang et al. 2020).

    With g = dL/dtheta and H the Hessian of the loss L at theta, the paper's saliency is
    ``S(-theta) = -theta * (H g)``; removing a weight with a large S(-theta) is expected to
    *increase* the gradient norm after pruning, so the paper removes the weights with the
    **largest** ``-theta * Hg``. In paizoo's higher-is-kept convention the score is therefore::

        score_i = theta_i * (H g)_i          (= -S(-theta)_i; the signed value, no |.|)

    and keeping the top-k of ``theta * Hg`` removes exactly the weights with the largest
    ``-theta * Hg``. The reference code divides the scores by ``|sum(scores)| + 1e-10``, a
    positive constant that does not change the ranking; it is omitted here.

    Computation (following the reference implementation, alecwangcq/GraSP):

    * the sample: ``samples_per_class`` samples of every class, the first ones met scanning
      ``data`` in order (:func:`paizoo.batches.stratified_sample`), sorted by class; the number
      of classes is the model's output width on the first sample. It is drawn once and reused by
      every round.
    * logits are divided by the temperature T (``temperature=200``) before the loss.
    * the sample is split into two halves (first N//2 and the rest, as the reference does);
      ``L = L_1 + L_2`` with ``L_h`` the loss (mean over the half) of half h. Hence
      ``g = dL_1/dtheta + dL_2/dtheta`` (no graph) and
      ``Hg = d/dtheta sum_h (stop(g) . dL_h/dtheta)``, a second backward pass through the
      ``dL_h/dtheta`` built with ``create_graph=True``. Since the sample is sorted by class, each
      half holds about half of the classes. Halving matters in train mode, where batch-norm
      statistics are per half; in eval mode it gives g and Hg of ``L_1 + L_2``. The reference
      runs a separate forward/backward pass per half for g; here g is read off the
      ``create_graph`` gradients, which saves those passes (about 20% of the time) but keeps the
      graphs of both halves alive at once (the memory of one ``create_graph`` pass over the whole
      sample; lower ``samples_per_class`` if that does not fit).
    * the working copy is in train mode by default (the reference never calls ``eval()``).

    Unlike the reference, Linear layers are **not** re-initialised (the reference re-draws them
    with Xavier-normal before scoring, which changes the model being pruned); paizoo scores the
    model as given.

    Data-driven; global scope; one round by default (with ``rounds=T`` each round scores the
    network at ``theta_0 * mask``).

    Reference: Wang, Zhang and Grosse, "Picking Winning Tickets Before Training by Preserving
    Gradient Flow", ICLR 2020.

    Args:
        samples_per_class: samples drawn per class (default 10, the reference's CIFAR configs).
        temperature: logits are divided by this before the loss (default 200).
        train_mode: score the working copy in train mode (default) or eval mode.
        scope, rounds, schedule: see :class:`~paizoo.pruners.base.Pruner`.
    """

    requires_data = True

    def __init__(self, *, samples_per_class: int = 10, temperature: float = 200.0,
                 train_mode: bool = True, scope: Scope | None = None, rounds: int | None = None,
                 schedule: Schedule = "exponential") -> None:
        super().__init__(scope=scope, rounds=rounds, schedule=schedule)
        if int(samples_per_class) < 1:
            raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.samples_per_class = int(samples_per_class)
        self.temperature = float(temperature)
        self.train_mode = bool(train_mode)
        self._halves: list[Batch] = []

    def prepare(self, ctx: PruneContext) -> None:
        if ctx.batches is None:
            raise MissingDataError("GraSP needs data= to draw its stratified sample")
        num_classes = self._num_classes(ctx)
        x, y = stratified_sample(ctx.batches, num_classes, self.samples_per_class)
        n = x.shape[0]
        cut = n // 2
        # Halves of one sample would break batch-norm in train mode: tiny samples stay whole.
        self._halves = [(x[:cut], y[:cut]), (x[cut:], y[cut:])] if cut >= 2 else [(x, y)]
        ctx.model.train(self.train_mode)

    @staticmethod
    def _num_classes(ctx: PruneContext) -> int:
        """The model's output width on the first sample (eval mode, no grad: nothing changes)."""
        was_training = ctx.model.training
        ctx.model.eval()
        with torch.no_grad():
            out = ctx.model(ctx.batches[0][0][:1].to(ctx.device))  # type: ignore[index]
        ctx.model.train(was_training)
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise MissingDataError(
                f"GraSP infers the number of classes from logits of shape (batch, classes), but "
                f"the model returned {shape}; use a classifier whose forward() returns logits")
        return int(out.shape[1])

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        names = list(ctx.params)
        params = [ctx.params[n] for n in names]
        # dL_h/dtheta for both halves, each with its graph kept for the second backward pass
        per_half = [grads_or_zeros(batch_loss(ctx, half, self.temperature), params,
                                   create_graph=True) for half in self._halves]
        g = [sum(grads[i].detach() for grads in per_half) for i in range(len(params))]
        # Hg = d/dtheta sum_h (stop(g) . dL_h/dtheta)
        z = sum(((gs * gh).sum() for grads in per_half for gs, gh in zip(g, grads, strict=True)
                 if gh.requires_grad), torch.zeros((), device=ctx.device))
        try:
            hg = (grads_or_zeros(z, params) if z.requires_grad
                  else [torch.zeros_like(p) for p in params])
        except RuntimeError as exc:
            if "not implemented" not in str(exc):
                raise
            raise UnsupportedLayerError(
                "GraSP needs the Hessian-gradient product, and PyTorch has no second derivative "
                f"for an operation of {type(ctx.model).__name__} ({exc}); such models (e.g. "
                "hardsigmoid activations, fused attention kernels) cannot be scored by GraSP"
            ) from exc
        if ctx.round == ctx.num_rounds - 1:
            self._halves = []  # do not keep the sample alive with the pruner
        return {n: p.detach() * h for n, p, h in zip(names, params, hg, strict=True)}
