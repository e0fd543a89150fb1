"""Helpers shared by the pruner tests."""

from __future__ import annotations

from typing import Any

import torch

from paizoo.pruners.base import PruneContext


class ScoreRecorder:
    """Mixin for a pruner class: keeps the mask each round starts from and the scores it
    produces (``class RecordingSNIP(ScoreRecorder, SNIP): pass``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[call-arg]
        self._masks: list[dict[str, torch.Tensor]] = []
        self._scores: list[dict[str, torch.Tensor]] = []

    @property
    def _recorded(self) -> list[dict[str, torch.Tensor]]:
        return self._scores

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        self._masks.append({n: t.clone() for n, t in ctx.mask.items()})
        scores = super().score(ctx)  # type: ignore[misc]
        self._scores.append({n: s.detach().clone() for n, s in scores.items()})
        return scores
