"""SynFlow: iterative synaptic flow pruning, data-free (Tanaka et al. 2020)."""

from __future__ import annotations

from typing import Literal

import torch

from ..errors import ScoreError
from ..sparsity import Schedule
from ._gradients import grads_or_zeros
from ._scaled import ScaledForward
from ._tokens import ones_forward
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
    (``input_shape=`` is required). Token-input models (with ``nn.Embedding`` layers; then
    ``input_shape`` is the sequence shape, e.g. ``(T,)``) get the all-ones signal in each
    embedding's one-hot space, scaled by 1/V: every embedding outputs its mean absolute row
    ``(1/V) 1^T |E|`` at every position (see :mod:`paizoo.pruners._tokens`). For a network
    without biases or normalisation, R is
    positively homogeneous of degree 1 in the weights of every layer, so by Euler's theorem the
    scores of each layer sum to R ("conservation of synaptic flow"); pruning iteratively with
    re-scoring lets the flow redistribute and avoids layer collapse. Defaults follow the paper:
    100 rounds on the exponential schedule d_r = d^(r/100), global scope.

    Precision: R is a sum over input-output paths of products of |weights| and overflows
    float32 on deep networks (about 12^L for L layers of width 128 at Kaiming init, above 3.4e38
    from L = 36 on; torchvision's and timm's resnet50 at 224x224 reach R ~ 2^241). Three modes:

    * ``"float64"`` (default): the working copy in double precision (range 2^1024).
    * ``"scaled32"``: float32 in which every activation tensor carries an integer power-of-two
      exponent, ``value = mantissa * 2**k`` (:mod:`paizoo.pruners._scaled`). The exponent is
      tracked per tensor, not per layer weight, so biases, batch-norm means and shifts and
      residual additions are handled exactly: before an affine op or an addition every operand
      (both branches of ``x + f(x)``, the bias, the running mean) is brought to the largest
      operand's exponent by a multiplication by ``2**(k_i - K)``, which changes no mantissa bit;
      normalisations (layer/group/RMS norm, batch norm on batch statistics) are invariant to
      their input's scale once their epsilon is scaled by ``2**(-2k)``; attention logits'
      exponent goes into the softmax ``scale``; any other op (GELU, softmax, ...) is evaluated on
      the values themselves when they fit float32 (``|k| <= 60``), else
      :class:`~paizoo.errors.ScoreError` says to use float64. Mantissas are renormalised to
      [1, 2) whenever they leave [2^-32, 2^32], so the forward pass cannot overflow (an op would
      need weights above 2^90 / fan-in). The output is ``out_m * 2**K``, the flow computed is
      ``R_m = R * 2**-K``, and autograd on the mantissas gives ``dR_m/dtheta =
      2**-K * dR/dtheta`` for every parameter: all scores carry the same factor ``2**-K``, so
      the ranking, hence the mask, is the exact float64 one up to float32 rounding (relative
      ~1e-7 per op; weights whose float64 scores differ by less than that, or that are exactly
      tied, may be ordered differently). The backward pass is not rescaled: a gradient would
      overflow only if some activation's backward flow exceeded its forward scale by ~2^100
      (never seen on the zoo's, timm's or torchvision's models); scores are checked and a
      non-finite one raises :class:`~paizoo.errors.ScoreError`.
    * ``"float32"``: plain single precision (the reference code's), which raises
      :class:`~paizoo.errors.ScoreError` as soon as R or a score is not finite.

    Over 100 rounds, rounding differences at the threshold compound (a weight kept in one
    precision and pruned in the other changes every later round's scores), so the final masks of
    two precisions can differ on more weights than a single round's rounding explains;
    ``benchmarks/bench_synflow.py`` measures this (IoU, ties at the threshold).

    The caller's model is never modified (the linearisation and the dtype change happen on the
    base class's deep copy).

    Reference: Tanaka, Kunin, Yamins and Ganguli, "Pruning neural networks without any data by
    iteratively conserving synaptic flow", NeurIPS 2020.

    Args:
        precision: ``"float64"`` (default), ``"scaled32"`` or ``"float32"`` (see above).
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
        #: whether the model being pruned takes token ids (decided in prepare)
        self._token_input = False

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
        assert ctx.input_shape is not None
        self._token_input = ctx.takes_token_ids(model, self.dtype)

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        names = list(ctx.params)
        params = [ctx.params[n] for n in names]
        if ctx.input_shape is None:  # pragma: no cover - the base class checks this
            raise ScoreError("SynFlow needs input_shape=")
        if self.precision == "scaled32":
            if self._token_input:
                raise ScoreError(
                    "SynFlow precision='scaled32' does not support token-input models (an "
                    "nn.Embedding); use the default precision='float64'")
            ones = torch.ones((1, *ctx.input_shape), dtype=self.dtype, device=ctx.device)
            # out * 2**exponent is the network's output: R * 2**-exponent below, and every
            # score is the true |theta dR/dtheta| times the same 2**-exponent
            out, self._flow_exponent = ScaledForward().run(ctx.model, ones)
        else:
            out = ones_forward(ctx.model, ctx.input_shape, self.dtype, ctx.device,
                               token_input=self._token_input)
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
