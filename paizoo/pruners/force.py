"""Progressive skeletonization: iterative SNIP and FORCE (de Jorge et al. 2021)."""

from __future__ import annotations

import torch

from ._gradients import mean_loss_gradients
from .base import PruneContext
from .registry import register_pruner
from .snip import SNIP


@register_pruner("iterative_snip")
class IterativeSNIP(SNIP):
    """SNIP re-scored over T rounds on a shrinking mask; pruned weights stay pruned.

    Round t (t = 1..T) scores the network at its current weights ``theta_0 * m_{t-1}``::

        s_i = | (theta_0 * m_{t-1})_i * g_i |,   g = dL/dtheta at theta_0 * m_{t-1}

    (g averaged over all given batches, every round) and keeps the top ``k_t`` among the weights
    still alive (``monotone``: a pruned weight never comes back). Densities follow the
    exponential schedule d_t = d^(t/T). Default T = 60 with the exponential schedule, the setting
    of the official code's README examples (``--num_steps 60 --mode exp``); the code uses the same
    ``num_steps`` for both procedures.

    Reference: de Jorge, Sanyal, Behl, Torr, Rogez and Dokania, "Progressive Skeletonization:
    Trimming more fat from a network at initialization", ICLR 2021 (procedure "Iterative SNIP").

    Args: as :class:`~paizoo.pruners.snip.SNIP` (``train_mode=True`` by default, as in the
    official code, whose networks are scored in train mode).
    """

    default_rounds = 60
    monotone = True


@register_pruner("force")
class FORCE(SNIP):
    """Foresight connection sensitivity: gradients at the sparse net, dense initial weights.

    Round t (t = 1..T) computes the gradient g at the *masked* network (weights
    ``theta_0 * m_{t-1}``, pruned entries zero but their gradient not blocked) and scores every
    weight with the dense initial value::

        s_i = | theta_0_i * g_i |,   g = dL/dtheta at theta_0 * m_{t-1}

    then keeps the global top ``k_t`` over **all** weights, pruned ones included: a weight pruned
    in an earlier round comes back when its score is high enough (``monotone = False``). This is
    a first-order estimate of the connection sensitivity of the pruned network ("FORCE"), which
    the procedure maximises progressively. Densities follow the exponential schedule
    d_t = d^(t/T); default T = 60 (official code's ``--num_steps 60 --mode exp``). Every round
    uses all given batches (the official code draws ``--num_batches`` fresh batches from the
    loader each round; pass the batches you want to use every round).

    Reference: de Jorge, Sanyal, Behl, Torr, Rogez and Dokania, "Progressive Skeletonization:
    Trimming more fat from a network at initialization", ICLR 2021 (procedure "FORCE").

    Args: as :class:`~paizoo.pruners.snip.SNIP` (``train_mode=True`` by default).
    """

    default_rounds = 60
    monotone = False

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        grads = mean_loss_gradients(ctx)
        return {n: (ctx.initial[n].to(grads[n]) * grads[n]).abs_() for n in ctx.params}
