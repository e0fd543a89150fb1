"""The order in which an executor submits a grid's runs: each seed's runs longest first.

With W workers a grid ends when its last run does; runs submitted in grid order can leave the
longest ones for last, one worker busy and the others idle (the *tail*). Submitting the longest
runs first (the longest-processing-time rule) ends with the short ones, so the workers finish
close together. The order never changes a result: each run is a pure function of its spec.

A run's cost is estimated from its spec, without running anything:

* **training**: multiply-accumulates of one forward pass of the model on one input of the
  dataset's shape (counted with hooks on its ``Linear`` and ``Conv`` layers) x epochs x training
  samples (``train_subset`` when set);
* **pruning rounds** break ties between runs of equal training cost: an iterative pruner
  (SynFlow's 100 rounds, FORCE's 60) rescores and re-ranks every weight in each round, which
  is what makes its runs of a grid the longest when the training is the same.

Seeds keep the grid's seed-major order (all of seed 0 first, as the sequential runner), so a
grid stopped half-way has whole seeds, and each seed's dense baselines stay first, so its
pruned runs find their dense accuracy in the store when they finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..results.record import RunSpec


def forward_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of ``model`` on one input of ``input_shape`` (``(C, H, W)`` or
    ``(features,)``), summed over its ``Linear`` and ``Conv1d/2d/3d`` layers (the rest, e.g.
    activations, norms and pooling, is neglected). The model is run once on the CPU, in eval
    mode, on a batch of one zero input."""
    total = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        per_output = module.weight[0].numel()  # in_features, or in_channels/groups x kernel
        total += output[0].numel() * per_output  # batch of one: drop the batch dimension

    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total


def longest_first(todo: Sequence[tuple[int, RunSpec]], info: Any,
                  train_samples: int | None = None) -> list[tuple[int, RunSpec]]:
    """``todo`` (``(grid position, spec)`` pairs) reordered for an executor: seed by seed in the
    grid's order, each seed's dense runs first, then its runs by decreasing estimated cost
    (:func:`run_cost`); runs of equal cost keep their grid order.

    ``info``: the dataset's ``DatasetInfo`` (input shape, classes); ``train_samples``: the
    training split's size, when known (``train_subset`` counts only then)."""
    seeds: dict[int, int] = {}
    for _, spec in todo:
        seeds.setdefault(spec.seed, len(seeds))
    macs: dict[tuple, int] = {}
    rounds: dict[tuple, int] = {}

    def key(item: tuple[int, RunSpec]) -> tuple:
        position, spec = item
        train, prune = run_cost(spec, info, train_samples, macs, rounds)
        return (seeds[spec.seed], not spec.is_dense, -train, -prune, position)

    return sorted(todo, key=key)


def run_cost(spec: RunSpec, info: Any, train_samples: int | None = None,
             _macs: dict | None = None, _rounds: dict | None = None) -> tuple[int, int]:
    """``(training cost, pruning rounds)`` of ``spec``: forward multiply-accumulates per sample
    x epochs x training samples, and its pruner's rounds (0 for the dense baseline). Only
    comparisons between runs of one grid mean anything."""
    from ..training.experiment import build_model

    macs = {} if _macs is None else _macs
    model_key = (spec.model, repr(sorted(spec.model_config.items())))
    if model_key not in macs:
        with torch.device("cpu"):
            macs[model_key] = forward_macs(build_model(spec, info), info.input_shape)
    subset = spec.train.train_subset  # compared with the full split only when its size is known
    samples = min(subset, train_samples) if subset and train_samples else (train_samples or 1)
    return macs[model_key] * spec.train.epochs * samples, _pruner_rounds(spec, _rounds)


def _pruner_rounds(spec: RunSpec, cache: dict | None = None) -> int:
    if spec.is_dense:
        return 0
    from ..pruners import create_pruner

    cache = {} if cache is None else cache
    key = (spec.pruner, repr(sorted(spec.pruner_config.items())))
    if key not in cache:
        cache[key] = int(getattr(create_pruner(spec.pruner, **spec.pruner_config), "rounds", 1))
    return cache[key]
