"""SynFlow: iterative synaptic flow pruning, data-free (Tanaka et al. 2020)."""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import ScoreError
from ..sparsity import Schedule
from ._gradients import grads_or_zeros
from ._scaled import ScaledForward
from .base import PruneContext, Pruner, Scope
from .registry import register_pruner

Precision = Literal["float64", "float32", "scaled32"]
_DTYPES: dict[str, torch.dtype] = {"float64": torch.float64, "float32": torch.float32,
                                   "scaled32": torch.float32}


@register_pruner("synflow")
class SynFlow(Pruner):
    """Iterative synaptic flow: score |theta * dR/dtheta| of the all-positive network, 100 rounds.

    Each round the working copy is *linearised*: every parameter and every floating buffer
    (batch-norm running statistics included) is replaced by its absolute value, the model is put
    in eval mode, and with ``x = 1`` (all ones, shape ``(1, *input_shape)``)::

        R = 1^T f_|theta|(1)            (the sum of the outputs)
        score_i = | theta_i * dR/dtheta_i |

    with ``theta = |theta_0 * mask|`` for the prunable weights. No data is used
    (``input_shape=`` is required). For a network without biases or normalisation, R is
    positively homogeneous of degree 1 in the weights of every layer, so by Euler's theorem the
    scores of each layer sum to R ("conservation of synaptic flow"); pruning iteratively with
    re-scoring lets the flow redistribute and avoids layer collapse. Defaults follow the paper:
    100 rounds on the exponential schedule d_r = d^(r/100), global scope.

    Precision: R is a product of |weights| along paths and overflows float32 on deep networks
    (about 12^L for L layers of width 128 at Kaiming init, above 3.4e38 from L = 36 on). The
    default ``precision="float64"`` converts the working copy to double (up to 1.8e308).
    ``precision="float32"`` keeps single precision, which is faster, in particular on GPUs, and
    raises :class:`~paizoo.errors.ScoreError` as soon as R or a score is not finite. No
    rescaling is offered for float32: multiplying layer l by c_l > 0 scales every score by the
    same factor prod_l c_l (hence keeps the ranking) only when R is homogeneous in each layer,
    which biases, batch-norm shifts and epsilons, layer norm and other normalisations break;
    a rescaling that is ranking-preserving for every architecture does not exist in that form.

    The caller's model is never modified (the linearisation and the dtype change happen on the
    base class's deep copy).

    Reference: Tanaka, Kunin, Yamins and Ganguli, "Pruning neural networks without any data by
    iteratively conserving synaptic flow", NeurIPS 2020.

    Args:
        precision: ``"float64"`` (default) or ``"float32"``; the dtype of the working copy.
        scope, rounds, schedule: see :class:`~paizoo.pruners.base.Pruner` (default 100 rounds,
            exponential schedule).
    """

    requires_input_shape = True
    default_rounds = 100

    def __init__(self, *, precision: Precision = "float64", scope: Scope | None = None,
                 rounds: int | None = None, schedule: Schedule = "exponential") -> None:
        super().__init__(scope=scope, rounds=rounds, schedule=schedule)
        if precision not in _DTYPES:
            raise ValueError(
                f"precision must be 'float64', 'float32' or 'scaled32', got {precision!r}")
        self.precision: Precision = precision
        #: the power of two the last round's flow and scores were divided by ("scaled32")
        self._flow_exponent = 0

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    def prepare(self, ctx: PruneContext) -> None:
        model = ctx.model.to(self.dtype).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.abs_()
            for b in model.buffers():
                if b.is_floating_point():
                    b.abs_()
            for n, t in ctx.initial.items():  # the base class resets the weights to these
                ctx.initial[n] = t.to(self.dtype).abs_()

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        names = list(ctx.params)
        params = [ctx.params[n] for n in names]
        if ctx.input_shape is None:  # pragma: no cover - the base class checks this
            raise ScoreError("SynFlow needs input_shape=")
        ones = torch.ones((1, *ctx.input_shape), dtype=self.dtype, device=ctx.device)
        if self.precision == "scaled32":
            # out * 2**exponent is the network's output: R * 2**-exponent below, and every
            # score is the true |theta dR/dtheta| times the same 2**-exponent
            out, self._flow_exponent = ScaledForward().run(ctx.model, ones)
        else:
            out = ctx.model(ones)
            self._flow_exponent = 0
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"{type(ctx.model).__name__} returned a {type(out).__name__}; SynFlow needs a "
                "model whose forward() returns one tensor")
        flow = out.sum()
        if not torch.isfinite(flow):
            raise ScoreError(self._overflow_message(float(flow.detach()), ctx.round))
        grads = grads_or_zeros(flow, params)
        scores = {n: (g.mul_(p.detach()) if g.is_contiguous() else g * p.detach()).abs_()
                  for n, p, g in zip(names, params, grads, strict=True)}
        # one check for all layers: the largest score of a layer is inf (or NaN) iff one is
        largest = torch.stack([s.max() for s in scores.values()])
        if not bool(torch.isfinite(largest).all()):
            bad = names[int((~torch.isfinite(largest)).nonzero()[0])]
            raise ScoreError(f"SynFlow scores of {bad!r} are not finite. "
                             + self._overflow_message(float(flow.detach()), ctx.round))
        return scores

    def _overflow_message(self, flow: float, round_index: int) -> str:
        hint = {"float32": "use precision='scaled32' or 'float64'",
                "scaled32": "the backward pass overflowed float32 (the gradient of some "
                            "activation exceeds its forward scale by over 2^100); use "
                            "precision='float64'",
                }.get(self.precision, "the network's synaptic flow exceeds float64; check for "
                                      "huge weights or an unbounded activation")
        return (f"SynFlow's flow R = {flow} (times 2^{self._flow_exponent}) is not finite in "
                f"round {round_index + 1} "
                f"(precision={self.precision!r}): {hint}")
