"""The ``random`` pruner: exact counts, ER/ERK densities against an independent computation,
uniformity of the random subset, determinism."""

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
from paizoo.pruners._layer_densities import layer_budgets, layer_densities


class SmallCNN(nn.Module):
    """conv 1->4 (3x3), conv 4->8 (3x3), global pool, fc 8->10: 36 + 288 + 80 = 404 weights."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 15), nn.ReLU(),
                         nn.Linear(15, 4))


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {n: tuple(p.shape) for n, p in paizoo.prunable_parameters(model).items()}


def _numpy_er_densities(shapes: list[tuple[int, ...]], density: float, kind: str) -> np.ndarray:
    """RigL's ``get_sparsities`` loop written from the paper's definition, in numpy floats:
    raw_l = sum(dims)/prod(dims) (ERK) or (n_in + n_out)/(n_in n_out) (ER); eps solves
    sum_l eps raw_l n_l = d N - (dense weights); the layer with the largest raw_l becomes dense
    while eps * raw_l > 1."""
    n = np.array([math.prod(s) for s in shapes], dtype=np.float64)
    if kind == "erk":
        raw = np.array([sum(s) / math.prod(s) for s in shapes])
    else:
        raw = np.array([(s[0] + s[1]) / (s[0] * s[1]) for s in shapes])
    target = math.floor(density * n.sum() + 0.5)
    dense = np.zeros(len(shapes), dtype=bool)
    while True:
        eps = (target - n[dense].sum()) / (raw[~dense] * n[~dense]).sum()
        dens = np.where(dense, 1.0, eps * raw)
        if dens[~dense].max() <= 1.0 + 1e-12:
            return dens
        dense |= (~dense) & (raw == raw[~dense].max())


# ---- ER / ERK allocation ---------------------------------------------------------------------


def test_erk_and_er_hand_computed_on_small_cnn() -> None:
    """Hand derivation at density 0.5 (N = 404, keep 202).

    ERK raw weights r_l n_l = sum of dims: conv1 11, conv2 18, fc 18 (sum 47). Shares 202*11/47 =
    47.3 > 36: conv1 dense. Re-solve 166 over 36: conv2 83, fc 83 > 80: fc dense. conv2 gets 86.
    ER r_l n_l = (c_in + c_out) * kh * kw: conv1 45, conv2 108, fc 18 (sum 171). conv1 share 53.2 >
    36: dense. Re-solve 166 over 126: conv2 142.29, fc 23.71 -> largest remainder gives fc 24.
    """
    shapes = _shapes(SmallCNN())
    assert layer_budgets(shapes, 0.5, "erk") == {
        "conv1.weight": 36, "conv2.weight": 86, "fc.weight": 80}
    assert layer_budgets(shapes, 0.5, "er") == {
        "conv1.weight": 36, "conv2.weight": 142, "fc.weight": 24}
    mask = paizoo.prune(SmallCNN(), "random", density=0.5, distribution="erk")
    assert {r.name: r.kept for r in mask.layers()} == {
        "conv1.weight": 36, "conv2.weight": 86, "fc.weight": 80}


RESNET_LIKE = [(16, 3, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (32, 16, 1, 1),
               (64, 32, 3, 3), (64, 64, 3, 3), (64, 32, 1, 1), (10, 64)]


@settings(max_examples=60, deadline=None)
@given(st.floats(0.001, 1.0), st.sampled_from(["er", "erk"]))
def test_er_erk_counts_match_numpy_closed_form(density: float, kind: str) -> None:
    shapes = {f"l{i}": s for i, s in enumerate(RESNET_LIKE)}
    counts = layer_budgets(shapes, density, kind)  # type: ignore[arg-type]
    sizes = np.array([math.prod(s) for s in RESNET_LIKE])
    expected = _numpy_er_densities(RESNET_LIKE, density, kind) * sizes
    got = np.array([counts[f"l{i}"] for i in range(len(RESNET_LIKE))])
    assert got.sum() == math.floor(density * sizes.sum() + 0.5)  # the GLOBAL count is exact
    assert np.all(np.abs(got - expected) < 1.0 + 1e-6)  # each layer within rounding of d_l n_l
    assert np.all(got <= sizes)
    dens = layer_densities(shapes, density, kind)  # type: ignore[arg-type]
    assert [dens[f"l{i}"] for i in range(len(RESNET_LIKE))] == pytest.approx(got / sizes)


def test_er_uses_fan_in_and_fan_out_only() -> None:
    # two convs with the same channels and different kernels get the same ER density, different
    # ERK densities
    shapes = {"a": (8, 8, 1, 1), "b": (8, 8, 5, 5)}
    er = layer_densities(shapes, 0.2, "er")
    erk = layer_densities(shapes, 0.2, "erk")
    assert er["a"] == pytest.approx(er["b"], abs=1 / 64)
    assert erk["a"] > erk["b"] + 0.2


# ---- exact counts on real pruning ------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 0.999), st.sampled_from(["uniform", "er", "erk", "global"]))
def test_random_exact_counts_sweep(sparsity: float, mode: str) -> None:
    model = SmallCNN()
    config = {"scope": "global"} if mode == "global" else {"distribution": mode}
    density = 1.0 - sparsity
    sizes = {n: math.prod(s) for n, s in _shapes(model).items()}
    total = sum(sizes.values())
    if mode == "uniform" and all(math.floor(density * s + 0.5) == 0 for s in sizes.values()):
        with pytest.raises(paizoo.SparsityError, match="keeps 0"):
            paizoo.prune(model, "random", sparsity=sparsity, **config)
        return
    if mode != "uniform" and math.floor(density * total + 0.5) == 0:
        with pytest.raises(paizoo.SparsityError, match="keeps 0"):
            paizoo.prune(model, "random", sparsity=sparsity, **config)
        return
    mask = prune_checking_collapse(model, "random", sparsity=sparsity, **config)
    if mode == "uniform":  # per layer: floor(d n_l + 1/2)
        assert {r.name: r.kept for r in mask.layers()} == {
            n: math.floor(density * s + 0.5) for n, s in sizes.items()}
    else:  # global: floor(d N + 1/2)
        assert mask.num_kept == math.floor(density * total + 0.5)


def test_random_global_scope_spreads_at_random_over_layers() -> None:
    model = _mlp()
    counts = {tuple(r.kept for r in paizoo.prune(model, "random", density=0.3, scope="global",
                                                 seed=s).layers()) for s in range(6)}
    assert all(sum(c) == round(0.3 * (600 + 450 + 60)) for c in counts)
    assert len(counts) > 1  # not a fixed per-layer allocation


# ---- randomness --------------------------------------------------------------------------------


def test_random_subset_is_uniform_over_positions() -> None:
    """Each of 30 positions is kept with probability 9/30; over 600 seeds every frequency is
    within 6 standard deviations, and the chi-square statistic over positions is plausible
    (an index-order bias at the top-k threshold would show up in both)."""
    model = nn.Linear(6, 5, bias=False)
    pruner = paizoo.create_pruner("random")
    runs = 600
    freq = torch.zeros(5, 6)
    for seed in range(runs):
        mask = pruner.compute_mask(model, 0.3, seed=seed)
        assert int(mask["weight"].sum()) == 9
        freq += mask["weight"]
    p = 9 / 30
    sd = math.sqrt(runs * p * (1 - p))
    assert float((freq - runs * p).abs().max()) < 6 * sd
    chi2 = float(((freq - runs * p) ** 2 / (runs * p * (1 - p))).sum())
    assert chi2 < 30 + 6 * math.sqrt(2 * 30)  # mean 29ish (30 cells, one constraint)


@pytest.mark.parametrize("config", [{}, {"distribution": "er"}, {"distribution": "erk"},
                                    {"scope": "global"}])
def test_random_determinism(config: dict[str, str]) -> None:
    model = SmallCNN()
    state = torch.random.get_rng_state()
    a = paizoo.prune(model, "random", sparsity=0.7, seed=3, **config)
    b = paizoo.prune(model, "random", sparsity=0.7, seed=3, **config)
    c = paizoo.prune(model, "random", sparsity=0.7, seed=4, **config)
    assert a == b
    assert a != c and a.num_kept == c.num_kept
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched


def test_random_ignores_weight_values() -> None:
    model = SmallCNN()
    other = SmallCNN()
    assert paizoo.prune(model, "random", sparsity=0.6) == paizoo.prune(other, "random",
                                                                      sparsity=0.6)


def test_random_continues_from_existing_mask() -> None:
    model = _mlp()
    first = paizoo.prune(model, "random", sparsity=0.5, seed=1, apply=True)
    second = paizoo.prune(model, "random", sparsity=0.8, seed=2)
    for name in first:
        assert not bool((second[name] & ~first[name]).any())
        assert int(second[name].sum()) == math.floor(0.2 * first[name].numel() + 0.5)


def test_random_option_errors() -> None:
    with pytest.raises(ValueError, match="unknown distribution 'gauss'"):
        paizoo.create_pruner("random", distribution="gauss")
    with pytest.raises(ValueError, match="cannot be combined with scope='global'"):
        paizoo.create_pruner("random", distribution="erk", scope="global")
    assert paizoo.create_pruner("random", distribution="ERK").distribution == "erk"


def test_random_config_and_summary() -> None:
    pruner = paizoo.create_pruner("random", distribution="er")
    assert pruner.config()["distribution"] == "er" and pruner.config()["scope"] == "layer"
    assert not type(pruner).requires_data
