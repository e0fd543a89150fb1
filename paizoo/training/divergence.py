"""When a training run counts as *diverged*, and how that is recognised.

Two criteria, both about the mean cross-entropy of the training mini-batches:

1. **Non-finite loss** (detected while training): some step's loss is NaN or infinite. The
   weights are then NaN/inf too, so :func:`paizoo.training.train` stops at once, keeps the
   metrics of the epochs so far (the last one cut short), and reports the 1-based epoch and
   optimiser step where it happened (:class:`Divergence`, ``reason="non-finite loss"``). The
   runner records such a run with ``status='diverged'`` instead of failing.
2. **Blow-up, then stuck at chance** (judged from the finished history): some epoch's mean
   training loss exceeded ``BLOWUP_FACTOR * ln C`` (10% worse than predicting the uniform
   distribution over C classes, whose loss is ln C: the optimiser overshot), and the final
   training loss is at least ``CHANCE_LOSS_FRACTION * ln C`` (the network ended at chance, e.g.
   with every ReLU dead). A run that blows up and then recovers is not diverged, nor is a run
   that sits at ln C from the start without ever blowing up (no signal reached the output, e.g.
   a mask that almost disconnects the network): the leaderboard marks that one "at chance".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: an epoch "blew up" when its mean training loss exceeds this multiple of ln C
BLOWUP_FACTOR = 1.1
#: a run "ended at chance" when its final training loss is at least this fraction of ln C
CHANCE_LOSS_FRACTION = 0.99

NONFINITE = "non-finite loss"
BLOWUP = "blow-up, then at chance"


@dataclass(frozen=True)
class Divergence:
    """Where a run diverged: 1-based ``epoch``, 1-based optimiser ``step`` counted across
    epochs (``None`` when judged from per-epoch means), and the criterion (``reason``)."""

    epoch: int
    step: int | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def at_chance(final_train_loss: float | None, num_classes: int) -> bool:
    """Whether a final training loss is at chance level (non-finite or missing counts)."""
    if final_train_loss is None or not math.isfinite(final_train_loss):
        return True
    return final_train_loss >= CHANCE_LOSS_FRACTION * math.log(num_classes)


def blowup_divergence(train_losses: Sequence[float | None], num_classes: int
                      ) -> Divergence | None:
    """Criterion 2 on per-epoch mean training losses: the first epoch above
    ``BLOWUP_FACTOR * ln C`` if the run also ended at chance, else ``None``. A non-finite (or
    missing, as SQLite stores NaN) epoch loss counts as a blow-up."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if not train_losses or not at_chance(train_losses[-1], num_classes):
        return None
    limit = BLOWUP_FACTOR * math.log(num_classes)
    for epoch, loss in enumerate(train_losses, start=1):
        if loss is None or not math.isfinite(loss) or loss > limit:
            return Divergence(epoch=epoch, step=None, reason=BLOWUP)
    return None
