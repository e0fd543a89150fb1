"""The one-call API: :func:`prune`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .masks import Mask
from .params import Cover, Patterns
from .progress import Progress
from .pruners.base import LossFn, Pruner
from .pruners.registry import create_pruner
from .sparsity import resolve_density


def prune(
    model: nn.Module,
    pruner: str | type[Pruner] | Pruner,
    *,
    sparsity: float | None = None,
    density: float | None = None,
    compression: float | None = None,
    data: object = None,
    input_shape: tuple[int, ...] | None = None,
    apply: bool = False,
    seed: int = 0,
    include: Patterns = None,
    exclude: Patterns = None,
    cover: Cover = None,
    loss_fn: LossFn | None = None,
    progress: Progress = None,
    **config: Any,
) -> Mask:
    """Prune ``model`` at initialisation and return the :class:`~paizoo.masks.Mask`.

    Args:
        model: any ``nn.Module``; it is not modified unless ``apply=True``.
        pruner: a registered name (``paizoo.list_pruners()``), ``"module:Class"``, or a
            :class:`~paizoo.pruners.base.Pruner` subclass (built with ``**config``) or
            instance.
        sparsity / density / compression: exactly one; fraction removed (0 <= s < 1), fraction
            kept (0 < d <= 1), or x with density = 10^-x.
        data: for data-driven pruners (SNIP, GraSP, ...): a DataLoader, a list of
            ``(inputs, targets)`` batches, or one such pair.
        input_shape: one sample's shape without batch dimension, for data-free pruners that feed
            an input (SynFlow); read from ``data`` when omitted.
        apply: also apply the mask to ``model`` in the ``torch.nn.utils.prune`` convention.
        seed: seeds every random draw (a shuffling ``DataLoader``'s order included); the same
            seed gives the same mask bit for bit.
        include / exclude: glob patterns on parameter names; ``include`` narrows the covered
            weights to the matching names and may add any other parameter, ``exclude`` always
            wins (see :mod:`paizoo.params`).
        cover: weights pruned besides Conv/Linear ones: ``"attention"``
            (``nn.MultiheadAttention`` Q/K/V projections), ``"recurrent"`` (LSTM/GRU/RNN
            ``weight_ih_l*``/``weight_hh_l*``), ``"embedding"``, a list of these, or ``"all"``;
            ``None``/``"default"``: Conv/Linear only. Weights left dense are named by a
            :class:`~paizoo.masks.CoverageWarning` and in ``mask.report()``.
        loss_fn: ``loss_fn(logits, targets)`` for data-driven pruners (cross-entropy default).
        progress: progress over rounds, for multi-round pruners: by default a bar on a
            terminal and, when stderr is not a terminal, a line every 10 s with the round and an
            ETA; ``True`` a bar, ``False`` nothing, a number of seconds: lines at that interval
            (see :mod:`paizoo.progress`).
        **config: pruner options (e.g. ``rounds=100``, ``scope="layer"``,
            ``distribution="erk"``).

    Scoring (and ``apply``) run with autograd on whatever the caller's grad mode: a call inside
    ``torch.no_grad()`` or ``torch.inference_mode()`` gives the same mask.

    Example::

        mask = paizoo.prune(model, "synflow", sparsity=0.99, input_shape=(3, 32, 32), apply=True)
    """
    target = resolve_density(sparsity=sparsity, density=density, compression=compression)
    if isinstance(pruner, Pruner):
        if config:
            raise TypeError(f"pruner options {sorted(config)} go to the pruner's constructor, "
                            "not to prune(), when a Pruner instance is passed")
        instance = pruner
    else:
        instance = create_pruner(pruner, **config)
    # scoring differentiates the model, and the applied mask must train: both whatever the
    # caller's grad mode (a call inside torch.no_grad() or torch.inference_mode())
    with torch.inference_mode(False), torch.enable_grad():
        mask = instance.compute_mask(
            model, target, data=data, input_shape=input_shape, seed=seed, include=include,
            exclude=exclude, loss_fn=loss_fn, progress=progress, cover=cover)
        if apply:
            mask.apply(model)
    return mask
