"""SET: Sparse Evolutionary Training (Mocanu, Mocanu, Stone, Nguyen, Gibescu & Liotta, Nature
Communications 9, 2383 (2018), "Scalable training of artificial neural networks with adaptive
sparse connectivity inspired by network science").

Every ``delta_t`` optimiser steps, in every masked layer with ``k`` kept weights:

1. **drop** the ``r = floor(zeta * k)`` kept weights of smallest magnitude ``|w|`` (ties broken by
   the lower flat index);
2. **regrow** ``r`` connections chosen uniformly at random among the positions that are not kept
   after the drop, and set their weights to exactly 0.

So every layer keeps exactly ``k`` weights. By default (``exclude_dropped=False``) a just-dropped
position may be regrown, as in the authors' reference code (SET-MLP-Keras-Weights-Mask, where the
new connections are drawn among the zero entries of the mask *after* removal); with
``exclude_dropped=True`` they are drawn only among positions that were unkept before the update
(the number dropped is then capped by the number of such positions).

Deviation from the reference code, documented: that code removes the fraction ``zeta`` of the
positive weights closest to 0 and, separately, of the negative weights closest to 0; here, as
stated in the paper's text and in later work (RigL, Evci et al. 2020; sparselearning, Dettmers &
Zettlemoyer 2019), the fraction ``zeta`` of all kept weights with smallest ``|w|`` is removed.

Optimiser state (SGD momentum, Adam moments) is reset to 0 at every changed position (dropped or
regrown), so a regrown weight starts from 0 with no stale momentum (in ``"project"`` mask mode
momentum accumulates at pruned positions; without the reset, regrown weights would inherit it).
The reference code updates once per epoch and rebuilds its SGD optimiser (all momentum lost) after
every update; here the period is ``delta_t`` optimiser steps and only changed positions are reset.
Which layers evolve is decided by the mask: every masked parameter (the reference code keeps its
output layer dense; prune with ``exclude`` to do the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..masks import Mask


@dataclass(frozen=True)
class SETUpdate:
    """One topology update: the step it happened after, the new mask and the per-layer changes.

    ``dropped[name]`` / ``grown[name]`` are boolean tensors (parameter shape, on the CPU) of the
    positions removed from / added to the mask; a position both dropped and regrown appears in
    both (its weight was reset to 0).
    """

    step: int
    mask: Mask
    dropped: dict[str, torch.Tensor] = field(default_factory=dict)
    grown: dict[str, torch.Tensor] = field(default_factory=dict)


def _weights(model: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """The trainable tensor behind each masked name: ``x.weight`` or ``x.weight_orig``."""
    params = dict(model.named_parameters())
    out = {}
    for name in names:
        p = params.get(name, params.get(f"{name}_orig"))
        if p is None:
            raise KeyError(f"the model has no parameter {name!r} (nor {name + '_orig'!r}) for the "
                           "mask entry of that name; was the mask made for another model?")
        out[name] = p
    return out


class SETSchedule:
    """Sparse Evolutionary Training topology updates (see the module docstring).

    Use it as the ``topology_update`` callback of :func:`paizoo.training.train`::

        schedule = SETSchedule(delta_t=100, zeta=0.3, seed=0)
        train(model, train_set, test_set, config, topology_update=schedule)
        schedule.history      # [SETUpdate(step, mask, dropped, grown), ...]

    Args:
        delta_t: optimiser steps between updates (the update runs after steps delta_t, 2*delta_t,
            ...).
        zeta: fraction of each layer's kept weights that is dropped and regrown, 0 <= zeta <= 1.
        seed: seeds the random regrowth (its own CPU generator; global RNG untouched).
        exclude_dropped: never regrow a position dropped in the same update.
        keep_history: keep every update's :class:`SETUpdate` (CPU masks) in :attr:`history`.
        checkpoint_dir: also write each new mask to ``<dir>/mask-step<step>.safetensors``.
        on_update: called with each :class:`SETUpdate` (after the weights were changed).
    """

    def __init__(self, delta_t: int, zeta: float, seed: int = 0, *,
                 exclude_dropped: bool = False, keep_history: bool = True,
                 checkpoint_dir: str | Path | None = None,
                 on_update: Callable[[SETUpdate], None] | None = None) -> None:
        if isinstance(delta_t, bool) or not isinstance(delta_t, int) or delta_t < 1:
            raise ValueError(f"delta_t must be a positive integer number of steps, got {delta_t!r}")
        if not 0.0 <= float(zeta) <= 1.0:
            raise ValueError(f"zeta must be a fraction in [0, 1] (e.g. 0.3), got {zeta!r}")
        self.delta_t = delta_t
        self.zeta = float(zeta)
        self.seed = int(seed)
        self.exclude_dropped = exclude_dropped
        self.keep_history = keep_history
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.on_update = on_update
        self.generator = torch.Generator().manual_seed(self.seed)
        self.history: list[SETUpdate] = []

    def __repr__(self) -> str:
        return (f"SETSchedule(delta_t={self.delta_t}, zeta={self.zeta}, seed={self.seed}, "
                f"exclude_dropped={self.exclude_dropped})")

    def __call__(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                 mask: Mask) -> Mask | None:
        """The ``topology_update`` protocol of :func:`~paizoo.training.train`: after optimiser
        step ``step`` (1-based), update when ``step`` is a multiple of ``delta_t``."""
        if step % self.delta_t:
            return None
        return self.update(model, mask, optimizer, step=step)

    @torch.no_grad()
    def update(self, model: nn.Module, mask: Mapping[str, torch.Tensor],
               optimizer: torch.optim.Optimizer | None = None, *, step: int = 0) -> Mask:
        """One SET update of ``mask`` for the weights of ``model``; returns the new mask.

        The model's weights (``x.weight``, or ``x.weight_orig`` in the prune convention) are set
        to 0 at every dropped and regrown position, and the optimiser's per-parameter state
        tensors are zeroed there. ``mask`` itself is not modified.
        """
        names = list(mask)
        weights = _weights(model, names)
        new: dict[str, torch.Tensor] = {}
        dropped_all: dict[str, torch.Tensor] = {}
        grown_all: dict[str, torch.Tensor] = {}
        for name in names:
            w = weights[name]
            keep = mask[name].to(device=w.device, dtype=torch.bool)
            if keep.shape != w.shape:
                raise ValueError(f"mask entry {name!r} has shape {tuple(keep.shape)} but the "
                                 f"parameter has shape {tuple(w.shape)}")
            new_keep, dropped, grown = self._layer(w.detach(), keep)
            changed = dropped | grown
            w.masked_fill_(changed, 0.0)
            if optimizer is not None:
                for value in optimizer.state.get(w, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == w.shape:
                        value.masked_fill_(changed, 0.0)
            new[name] = new_keep
            dropped_all[name] = dropped.cpu()
            grown_all[name] = grown.cpu()
        result = Mask(new)
        update = SETUpdate(step=step, mask=result.cpu(), dropped=dropped_all, grown=grown_all)
        if self.keep_history:
            self.history.append(update)
        if self.checkpoint_dir is not None:
            update.mask.save(self.checkpoint_dir / f"mask-step{step}.safetensors",
                             metadata={"step": step, "delta_t": self.delta_t, "zeta": self.zeta,
                                       "seed": self.seed})
        if self.on_update is not None:
            self.on_update(update)
        return result

    def num_dropped(self, kept: int) -> int:
        """``floor(zeta * kept)``, the number of weights a layer with ``kept`` weights drops
        (a 1e-9 tolerance absorbs binary rounding, e.g. 0.29 * 100 = 28.999...)."""
        return math.floor(self.zeta * kept + 1e-9)

    def _layer(self, w: torch.Tensor, keep: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(new keep, dropped, grown) boolean tensors of one layer."""
        flat_keep = keep.reshape(-1)
        n = flat_keep.numel()
        k = int(flat_keep.sum())
        r = self.num_dropped(k)
        if self.exclude_dropped:
            r = min(r, n - k)  # only n - k positions can be regrown: keep the count exact
        dropped = torch.zeros(n, dtype=torch.bool, device=w.device)
        if r > 0:
            # smallest |w| among kept weights; unkept ones sort last; stable sort = ties by index
            score = w.reshape(-1).abs().float().masked_fill(~flat_keep, float("inf"))
            order = torch.sort(score, stable=True).indices
            dropped[order[:r]] = True
        after_drop = flat_keep & ~dropped
        candidates = ~flat_keep if self.exclude_dropped else ~after_drop
        g = r  # candidates hold n - k + r >= r positions (n - k >= r if exclude_dropped)
        grown = torch.zeros(n, dtype=torch.bool, device=w.device)
        if g > 0:
            # uniform random g-subset of the candidates: the g largest i.i.d. uniform keys
            keys = torch.rand(n, generator=self.generator).to(w.device)
            keys = keys.masked_fill(~candidates, -1.0)
            grown[torch.topk(keys, g).indices] = True
        new_keep = after_drop | grown
        shape = keep.shape
        return new_keep.reshape(shape), dropped.reshape(shape), grown.reshape(shape)
