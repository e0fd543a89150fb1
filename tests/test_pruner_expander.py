"""The ``expander`` pruner: (near-)biregular bipartite construction (checked by brute force),
exact kept counts (the minimum of one edge per output taken from the other layers, an error
where impossible), whole kernels, grouped/depthwise convolutions, determinism, expansion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import paizoo
from paizoo.pruners._layer_densities import layer_budgets
from paizoo.pruners.expander import (
    _sparse_side,
    allocate_with_minimum,
    biregular_bipartite,
    expander_layouts,
    near_biregular_bipartite,
)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _fan_in(density: float, n: int) -> int:
    return min(n, max(1, _round_half_up(density * n)))


def _check_biregular(adj: torch.Tensor, fan_in: int) -> None:
    """Rows sum to ``fan_in`` exactly (so, in a 0/1 matrix, ``fan_in`` distinct inputs) and the
    column sums of every group are floor/ceil of m f / n."""
    _, m, n = adj.shape
    assert adj.dtype == torch.bool
    assert bool((adj.sum(-1) == fan_in).all())
    fan_out = adj.sum(1)  # (groups, n)
    lo, hi = (m * fan_in) // n, -(-(m * fan_in) // n)
    assert bool(((fan_out == lo) | (fan_out == hi)).all())


# ---- the construction ---------------------------------------------------------------------------


def test_biregular_bipartite_exhaustive_small_sizes() -> None:
    gen = torch.Generator().manual_seed(0)
    for m in range(1, 11):
        for n in range(1, 11):
            for f in range(1, n + 1):
                _check_biregular(biregular_bipartite(2, m, n, f, gen), f)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.data(), st.integers(1, 3), st.integers(0, 99))
def test_biregular_bipartite_property(m: int, n: int, data: st.DataObject, groups: int,
                                      seed: int) -> None:
    f = data.draw(st.integers(1, n))
    adj = biregular_bipartite(groups, m, n, f, torch.Generator().manual_seed(seed))
    assert adj.shape == (groups, m, n)
    _check_biregular(adj, f)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.data(), st.integers(0, 99))
def test_sparse_side_lists_distinct_inputs(m: int, n: int, data: st.DataObject, seed: int) -> None:
    """The edge lists themselves (before densifying): no output lists an input twice; every
    input is listed floor or ceil(m f / n) times."""
    f = data.draw(st.integers(1, (n + 1) // 2))
    ids = _sparse_side(1, m, n, f, torch.Generator().manual_seed(seed))[0]
    assert ids.shape == (m, f)
    for row in ids.tolist():
        assert len(set(row)) == f and all(0 <= i < n for i in row)
    counts = np.bincount(ids.reshape(-1).numpy(), minlength=n)
    assert counts.max() - counts.min() <= 1


def test_biregular_bipartite_errors() -> None:
    gen = torch.Generator()
    with pytest.raises(ValueError, match="fan_in must be in"):
        biregular_bipartite(1, 3, 4, 0, gen)
    with pytest.raises(ValueError, match="fan_in must be in"):
        biregular_bipartite(1, 3, 4, 5, gen)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_regular_graph_is_a_good_expander(seed: int) -> None:
    """A random d-regular bipartite graph is nearly Ramanujan: its second singular value is
    close to 2 sqrt(d - 1) (Friedman's theorem), far below d. Structured constructions (e.g.
    cyclic windows of one permutation) have second singular value d or close to it."""
    d = 4
    adj = biregular_bipartite(1, 128, 128, d, torch.Generator().manual_seed(seed))[0]
    singular = np.linalg.svd(adj.double().numpy(), compute_uv=False)
    assert singular[0] == pytest.approx(d)
    assert singular[1] < 2 * math.sqrt(d - 1) + 0.5


# ---- on models -----------------------------------------------------------------------------


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 12, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(12, 24, 3, padding=1, groups=12)
        self.pointwise = nn.Conv2d(24, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.stem, self.grouped, self.depthwise, self.pointwise):
            x = torch.relu(conv(x))
        return self.fc(x.mean((2, 3)))


def _group_slices(weight: torch.Tensor, groups: int) -> list[torch.Tensor]:
    m = weight.shape[0] // groups
    return [weight[g * m:(g + 1) * m] for g in range(groups)]


def _check_near_biregular(adj: torch.Tensor, edges: int) -> None:
    """``(groups, m, n)``: each group has exactly ``edges`` edges, row sums in
    floor/ceil(edges / m), column sums in floor/ceil(edges / n)."""
    _, m, n = adj.shape
    assert adj.dtype == torch.bool
    assert adj.flatten(1).sum(1).tolist() == [edges] * adj.shape[0]
    rows, cols = adj.sum(-1), adj.sum(1)
    assert bool(((rows == edges // m) | (rows == -(-edges // m))).all())
    assert bool(((cols == edges // n) | (cols == -(-edges // n))).all())


def _channel_adjacency(w: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Channel graph of a conv mask and the number of partial kernels (kept, but not whole)."""
    per_channel = w.flatten(2)
    partial = int((per_channel.any(-1) & ~per_channel.all(-1)).sum())
    return per_channel.any(-1), partial


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.data(), st.integers(1, 3), st.integers(0, 99))
def test_near_biregular_bipartite_property(m: int, n: int, data: st.DataObject, groups: int,
                                           seed: int) -> None:
    edges = data.draw(st.integers(m, m * n))
    adj = near_biregular_bipartite(groups, m, n, edges, torch.Generator().manual_seed(seed))
    assert adj.shape == (groups, m, n)
    _check_near_biregular(adj, edges)


def test_near_biregular_bipartite_exhaustive_small_sizes() -> None:
    gen = torch.Generator().manual_seed(0)
    for m in range(1, 8):
        for n in range(1, 8):
            for edges in range(m, m * n + 1):
                _check_near_biregular(near_biregular_bipartite(2, m, n, edges, gen), edges)
    with pytest.raises(ValueError, match="every output keeps an input"):
        near_biregular_bipartite(1, 5, 4, 4, gen)


@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.8, 1.0])
def test_linear_layers_are_near_biregular_with_exact_counts(density: float) -> None:
    model = nn.Sequential(nn.Linear(37, 23), nn.ReLU(), nn.Linear(23, 41))
    mask = paizoo.prune(model, "expander", density=density)
    for name, numel in [("0.weight", 23 * 37), ("2.weight", 41 * 23)]:
        kept = _round_half_up(density * numel)  # uniform: round(d n_l) in every layer
        _check_near_biregular(mask[name][None], kept)
    assert mask.num_kept == _round_half_up(density * 851) + _round_half_up(density * 943)


# hand-computed water-filling. d = 0.4: requests round(0.4 n_l) = 86, 173, 86, 154, 64 (563);
# the depthwise layer needs 24 whole kernels = 216 (dense); lam = 347/477 puts the stem at
# 62.6 < 72, its minimum; then lam = 275/391: grouped 121.67, pointwise 108.31, fc 45.01,
# floors 274, the one left goes to the largest remainder (grouped). d = 0.7: requests 151, 302,
# 151, 269, 112 (985); depthwise 216; lam = 769/834: 139.23, 278.46, 248.03, 103.27 -> grouped +1.
CHANNEL_COUNTS = {
    0.4: {"stem.weight": 72, "grouped.weight": 122, "depthwise.weight": 216,
          "pointwise.weight": 108, "fc.weight": 45},
    0.7: {"stem.weight": 139, "grouped.weight": 279, "depthwise.weight": 216,
          "pointwise.weight": 248, "fc.weight": 103},
}


@pytest.mark.parametrize("density", [0.4, 0.7])
def test_conv_channel_granularity_keeps_whole_kernels(density: float) -> None:
    model = ConvNet()
    mask = paizoo.prune(model, "expander", density=density)
    groups = {"stem.weight": 1, "grouped.weight": 2, "depthwise.weight": 12,
              "pointwise.weight": 1, "fc.weight": 1}
    assert {r.name: r.kept for r in mask.layers()} == CHANNEL_COUNTS[density]
    for name, g in groups.items():
        w = mask[name]
        kept = CHANNEL_COUNTS[density][name]
        if w.dim() == 4:  # whole kernels, except one partial kernel for the remainder
            adj, partial = _channel_adjacency(w)
            kernel = math.prod(w.shape[2:])
            assert partial == (1 if kept % kernel else 0)
            edges = -(-kept // kernel)
        else:
            adj, edges = w, kept
        blocks = torch.stack(_group_slices(adj, g))
        counts = blocks.flatten(1).sum(1).tolist()  # edges split over groups, the first more
        assert counts == [edges // g + (i < edges % g) for i in range(g)]
        for block, e in zip(blocks, counts, strict=True):
            _check_near_biregular(block[None], e)
    # the depthwise layer took what it needs from the others: the total is still exact
    requested = sum(_round_half_up(density * mask[n].numel()) for n in groups)
    assert mask.num_kept == requested


@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_conv_weight_granularity(density: float) -> None:
    model = ConvNet()
    mask = paizoo.prune(model, "expander", density=density, granularity="weight")
    requested = sum(_round_half_up(density * mask[n].numel()) for n in mask)
    assert mask.num_kept == requested
    for name, g in [("stem.weight", 1), ("grouped.weight", 2), ("depthwise.weight", 12)]:
        blocks = torch.stack(_group_slices(mask[name].flatten(1), g))
        for block in blocks:
            _check_near_biregular(block[None], int(block.sum()))
        assert bool((mask[name].flatten(1).sum(1) >= 1).all())  # no output left unconnected


def test_small_conv_net_at_high_sparsity_is_exact_or_refuses() -> None:
    """The issue's miss: s=0.9 on a small conv net kept far more than asked. With weight
    granularity the request (141 weights) is reachable and kept exactly; with channel
    granularity one whole kernel per output needs 8*9 + 12*9 + 24*9 + 16 + 10 = 422 weights,
    more than 141: it raises, or (opt-in) keeps the minimum where needed."""
    model = ConvNet()
    sizes = {n: p.numel() for n, p in paizoo.prunable_parameters(model).items()}
    requested = sum(_round_half_up(0.1 * v) for v in sizes.values())
    assert requested == 141
    assert paizoo.prune(model, "expander", sparsity=0.9, granularity="weight").num_kept == 141
    with pytest.raises(paizoo.SparsityError, match=r"141 weights, fewer than the 422 .*0\.7"):
        paizoo.prune(model, "expander", sparsity=0.9)
    with pytest.warns(UserWarning, match="keeps .* instead of the requested 141"):
        off = paizoo.prune(model, "expander", sparsity=0.9, allow_off_target=True)
    expected = {"stem.weight": 72, "grouped.weight": 108, "depthwise.weight": 216,
                "pointwise.weight": 38, "fc.weight": 16}  # max(request, minimum) per layer
    assert {r.name: r.kept for r in off.layers()} == expected


def test_tiny_mlp_at_0_99_refuses_instead_of_keeping_28_percent() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 10))
    # requested round(0.01 n_l): 20 + 10 + 3 = 33 weights < 74 outputs
    with pytest.raises(paizoo.SparsityError, match="33 weights, fewer than the 74"):
        paizoo.prune(model, "expander", sparsity=0.99)
    mask = paizoo.prune(model, "expander", sparsity=0.95)  # 102 + 51 + 16 = 169 >= 74: exact
    assert [r.kept for r in mask.layers()] == [102, 51, 16]


def test_minimum_is_taken_from_the_other_layers_hand_computed() -> None:
    """Linear(100 -> 4), Linear(4 -> 40) at density 0.1: requests 40 and 16; the second layer
    needs 40 (one input per output), so the first gives up 24: counts 16 and 40 (total 56)."""
    model = nn.Sequential(nn.Linear(100, 4), nn.Linear(4, 40))
    mask = paizoo.prune(model, "expander", density=0.1)
    assert [r.kept for r in mask.layers()] == [16, 40]
    assert mask["1.weight"].sum(1).tolist() == [1] * 40
    _check_near_biregular(mask["0.weight"][None], 16)


def test_allocate_with_minimum_brute_force() -> None:
    """Against a direct search: the lam in [0, 1] that makes the shares sum to the total, found
    by bisection in floats, gives the same shares up to rounding."""
    gen = np.random.default_rng(0)
    for _ in range(200):
        n = int(gen.integers(1, 6))
        requested = [int(v) for v in gen.integers(0, 50, n)]
        minimum = [int(v) for v in gen.integers(0, 20, n)]
        if sum(minimum) > sum(requested):
            continue
        counts = allocate_with_minimum(requested, minimum)
        assert sum(counts) == sum(requested)
        assert all(lo <= c <= max(r, lo) for c, r, lo in zip(counts, requested, minimum,
                                                                strict=True))
        lo_l, hi_l = 0.0, 1.0
        for _ in range(100):
            lam = (lo_l + hi_l) / 2
            if sum(max(lam * r, m) for r, m in zip(requested, minimum, strict=True)) > sum(
                    requested):
                hi_l = lam
            else:
                lo_l = lam
        shares = [max(lo_l * r, m) for r, m in zip(requested, minimum, strict=True)]
        assert all(abs(c - x) < 1 + 1e-6 for c, x in zip(counts, shares, strict=True))


def test_grouped_conv_fan_outs_are_balanced_within_each_group() -> None:
    conv = nn.Conv2d(12, 18, 1, groups=3)  # 6 outputs x 4 inputs per group
    mask = paizoo.prune(conv, "expander", density=0.5)["weight"][:, :, 0, 0]
    for block in _group_slices(mask, 3):  # f = 2 -> 12 edges over 4 inputs: exactly 3 each
        assert block.sum(0).tolist() == [3, 3, 3, 3]
        assert block.sum(1).tolist() == [2] * 6


def test_erk_distribution_hand_computed() -> None:
    """At density 0.5 on conv(1->4, 3x3), conv(4->8, 3x3), fc(8->10) the ERK counts are
    36, 86, 80 (see test_pruner_random), all above the minima 36, 72, 10: kept exactly, the
    86 of the second conv as 9 whole kernels and one of 5 weights (10 edges over 8 outputs)."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8, 10))
    mask = paizoo.prune(model, "expander", density=0.5, distribution="erk")
    assert [r.kept for r in mask.layers()] == [36, 86, 80]
    adj, partial = _channel_adjacency(mask["1.weight"])
    assert partial == 1 and int(adj.sum()) == 10
    _check_near_biregular(adj[None], 10)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.001, 1.0), st.sampled_from(["uniform", "erk"]),
       st.sampled_from(["channel", "weight"]))
def test_expander_counts_sweep(density: float, distribution: str, granularity: str) -> None:
    """Exactly the distribution's total wherever one edge per output fits, else an error."""
    model = ConvNet()
    shapes = {n: p.shape for n, p in paizoo.prunable_parameters(model).items()}
    requested = layer_budgets(shapes, density, distribution)  # type: ignore[arg-type]
    minimum = sum(s[0] * (math.prod(s[2:]) if granularity == "channel" else 1)
                  for s in shapes.values())
    if sum(requested.values()) < minimum:
        with pytest.raises(paizoo.SparsityError, match="fewer edges than outputs"):
            paizoo.prune(model, "expander", density=density, distribution=distribution,
                         granularity=granularity)
        return
    mask = paizoo.prune(model, "expander", density=density, distribution=distribution,
                        granularity=granularity)
    assert mask.num_kept == sum(requested.values())
    layouts = expander_layouts(shapes, density, distribution, granularity)  # type: ignore[arg-type]
    assert {r.name: r.kept for r in mask.layers()} == {n: v.kept for n, v in layouts.items()}
    assert not mask.collapsed_layers()


def test_expander_determinism_and_seeds() -> None:
    model = ConvNet()
    a = paizoo.prune(model, "expander", sparsity=0.6, seed=5)
    b = paizoo.prune(model, "expander", sparsity=0.6, seed=5)
    c = paizoo.prune(model, "expander", sparsity=0.6, seed=6)
    assert a == b
    assert a != c and a.num_kept == c.num_kept


def test_expander_option_errors() -> None:
    with pytest.raises(ValueError, match="scope must be 'layer'"):
        paizoo.create_pruner("expander", scope="global")
    with pytest.raises(ValueError, match="one round"):
        paizoo.create_pruner("expander", rounds=3)
    with pytest.raises(ValueError, match="granularity must be"):
        paizoo.create_pruner("expander", granularity="kernel")
    with pytest.raises(ValueError, match="unknown distribution"):
        paizoo.create_pruner("expander", distribution="normal")


def test_expander_refuses_an_already_masked_model() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))
    paizoo.prune(model, "random", sparsity=0.5, apply=True)
    with pytest.raises(ValueError, match="already carries a mask"):
        paizoo.prune(model, "expander", sparsity=0.8)


@pytest.mark.parametrize("granularity", ["channel", "weight"])
def test_conv1d_and_conv3d(granularity: str) -> None:
    model = nn.Sequential(nn.Conv1d(4, 6, 3), nn.Conv3d(6, 10, (1, 2, 3), groups=2))
    mask = paizoo.prune(model, "expander", density=0.5, granularity=granularity)
    for name, g in [("0.weight", 1), ("1.weight", 2)]:
        w = mask[name]
        if granularity == "channel":
            adj, partial = _channel_adjacency(w)
            assert partial <= 1
        else:
            adj = w.flatten(1)
        for block in _group_slices(adj, g):
            _check_near_biregular(block[None], int(block.sum()))
        assert int(w.sum()) == _round_half_up(0.5 * w.numel())
