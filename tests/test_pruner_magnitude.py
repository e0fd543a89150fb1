"""The ``magnitude`` pruner against brute-force sorting, global and layer scope, rounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _pruner_testlib import prune_checking_collapse
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import paizoo


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 6),
                         nn.ReLU(), nn.Linear(6, 3))


def _brute_keep(values: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest, ties to the lower index: a stable sort of -values."""
    order = np.argsort(-values, kind="stable")
    keep = np.zeros(values.size, dtype=bool)
    keep[order[:k]] = True
    return keep


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.999), st.integers(0, 3))
def test_magnitude_global_equals_brute_force(sparsity: float, seed: int) -> None:
    model = _net(seed)
    params = paizoo.prunable_parameters(model)
    flat = np.concatenate([p.detach().abs().reshape(-1).numpy() for p in params.values()])
    k = math.floor((1 - sparsity) * flat.size + 0.5)
    if k == 0:
        with pytest.raises(paizoo.SparsityError):
            paizoo.prune(model, "magnitude", sparsity=sparsity)
        return
    mask = prune_checking_collapse(model, "magnitude", sparsity=sparsity)
    got = np.concatenate([mask[n].reshape(-1).numpy() for n in params])
    assert mask.num_kept == k
    assert np.array_equal(got, _brute_keep(flat.astype(np.float64), k))


@settings(max_examples=40, deadline=None)
@given(st.floats(0.0, 0.999), st.integers(0, 3))
def test_magnitude_layer_scope_equals_brute_force(sparsity: float, seed: int) -> None:
    model = _net(seed)
    params = paizoo.prunable_parameters(model)
    density = 1 - sparsity
    ks = {n: math.floor(density * p.numel() + 0.5) for n, p in params.items()}
    if sum(ks.values()) == 0:
        with pytest.raises(paizoo.SparsityError):
            paizoo.prune(model, "magnitude", sparsity=sparsity, scope="layer")
        return
    mask = prune_checking_collapse(model, "magnitude", sparsity=sparsity, scope="layer")
    for name, p in params.items():
        values = p.detach().abs().reshape(-1).numpy().astype(np.float64)
        assert int(mask[name].sum()) == ks[name]
        assert np.array_equal(mask[name].reshape(-1).numpy(), _brute_keep(values, ks[name]))


def test_magnitude_ties_kept_in_parameter_order() -> None:
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    with pytest.warns(paizoo.LayerCollapseWarning, match="1.weight"):
        mask = paizoo.prune(model, "magnitude", density=3 / 8)
    assert mask["0.weight"].tolist() == [[True, True], [True, False]]
    assert not mask["1.weight"].any()


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_rounds_equal_one_shot(scope: str) -> None:
    """Iterating on theta_0 * mask changes no magnitude of a kept weight, so any number of
    rounds gives the one-shot top-k (this exercises the rounds loop and eligibility)."""
    model = _net(1)
    one = paizoo.prune(model, "magnitude", sparsity=0.9, scope=scope)
    many = paizoo.prune(model, "magnitude", sparsity=0.9, scope=scope, rounds=7)
    linear = paizoo.prune(model, "magnitude", sparsity=0.9, scope=scope, rounds=4,
                          schedule="linear")
    assert one == many == linear


def test_magnitude_from_existing_mask_equals_one_shot() -> None:
    model = _net(2)
    direct = paizoo.prune(model, "magnitude", sparsity=0.8)
    paizoo.prune(model, "magnitude", sparsity=0.5, apply=True)
    further = paizoo.prune(model, "magnitude", sparsity=0.8)
    assert further == direct
