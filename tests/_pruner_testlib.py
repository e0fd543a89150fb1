"""Helpers shared by the pruner tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

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


def prune_checking_collapse(*args: Any, **kwargs: Any) -> Any:
    """``paizoo.prune(*args, **kwargs)``, asserting that it warns about layer collapse exactly
    when the mask has collapsed layers, naming them, and warns nothing else. For tests whose
    extreme sparsities may or may not collapse a layer (the collapse itself is checked by the
    diagnostics tests)."""
    import warnings

    import paizoo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = paizoo.prune(*args, **kwargs)
    collapse = [w for w in caught if issubclass(w.category, paizoo.LayerCollapseWarning)]
    assert len(collapse) == (1 if mask.collapsed_layers() else 0), [str(w.message) for w in caught]
    others = [w for w in caught if w not in collapse]
    assert not others, [str(w.message) for w in others]
    if collapse:
        message = str(collapse[0].message)
        assert all(name in message for name in mask.collapsed_layers()[:6]), message
    return mask


def plain_twin(model: nn.Module, build: Callable[[], nn.Module]) -> nn.Module:
    """A fresh unmasked ``build()`` loaded from ``model``'s state dict alone, with every
    ``x = x_orig * x_mask`` (the torch.nn.utils.prune convention folded by hand)."""
    state = model.state_dict()
    plain = {}
    for key, value in state.items():
        if key.endswith("_orig"):
            base = key[: -len("_orig")]
            plain[base] = value * state[f"{base}_mask"]
        elif not key.endswith("_mask"):
            plain[key] = value
    twin = build()
    twin.load_state_dict(plain)
    twin.train(model.training)
    return twin
