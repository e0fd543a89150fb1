"""Dey et al. pre-defined sparsity: exact degrees, clash-freedom by brute force, pattern counts."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import paizoo
from paizoo.diagnostics import OffTargetWarning
from paizoo.errors import NoPrunableParametersError
from paizoo.pruners.dey import (
    basic_pattern,
    clash_free_interleaver,
    clash_free_pattern,
    cyclic_pattern,
    fan_out_for_density,
    feasible_fan_outs,
    interleaver_to_adjacency,
    random_pattern,
)

JUNCTIONS = [(6, 9, 2), (10, 40, 2), (12, 12, 5), (4, 8, 4), (7, 21, 3), (5, 5, 5)]  # (n, p, fo)



def _degrees_by_loops(adj: torch.Tensor) -> tuple[list[int], list[int]]:
    n, p = adj.shape
    a = adj.tolist()
    fan_in = [sum(1 for j in range(p) if a[i][j]) for i in range(n)]
    fan_out = [sum(1 for i in range(n) if a[i][j]) for j in range(p)]
    return fan_in, fan_out


def _clash_free_by_loops(order: list[int], z: int) -> bool:
    """Every cycle of z consecutive slots reads z left neurons from z distinct memories l % z."""
    for start in range(0, len(order), z):
        memories = [order[k] % z for k in range(start, start + z)]
        if sorted(memories) != list(range(z)):
            return False
    return True


@pytest.mark.parametrize(("n", "p", "fo"), JUNCTIONS)
def test_basic_and_cyclic_have_exact_fan_in_and_fan_out(n, p, fo):
    fi = p * fo // n
    for seed in range(5):
        adj = basic_pattern(n, p, fo, torch.Generator().manual_seed(seed))
        fan_in, fan_out = _degrees_by_loops(adj)
        assert fan_in == [fi] * n and fan_out == [fo] * p
    fan_in, fan_out = _degrees_by_loops(cyclic_pattern(n, p, fo))
    assert fan_in == [fi] * n and fan_out == [fo] * p


def test_cyclic_windows():
    adj = cyclic_pattern(4, 6, 2)  # fi = 3: rows take 0-2, 3-5, 0-2, 3-5
    expected = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]] * 2, dtype=torch.bool)
    assert torch.equal(adj, expected)


def test_basic_is_random_and_reproducible():
    a = basic_pattern(10, 40, 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, basic_pattern(10, 40, 2, torch.Generator().manual_seed(0)))
    assert not torch.equal(a, basic_pattern(10, 40, 2, torch.Generator().manual_seed(1)))


def test_random_pattern_count_only():
    adj = random_pattern(10, 40, 80, torch.Generator().manual_seed(0))
    assert int(adj.sum()) == 80
    fan_in, _ = _degrees_by_loops(adj)
    assert len(set(fan_in)) > 1  # no degree constraint (fixed seed: degrees vary)


@pytest.mark.parametrize(("n", "p", "fo", "z"), [(6, 9, 2, 3), (10, 40, 2, 8), (12, 12, 5, 4),
                                                 (7, 21, 3, 7), (4, 8, 4, 2), (5, 5, 5, 5)])
@pytest.mark.parametrize("kind", [1, 2, 3])
@pytest.mark.parametrize("dither", [False, True])
def test_clash_free_interleaver_properties(n, p, fo, z, kind, dither):
    fi = p * fo // n
    rows = p // z
    for seed in range(3):
        order_t = clash_free_interleaver(p, fo, z, n, kind=kind, memory_dither=dither,
                                         generator=torch.Generator().manual_seed(seed))
        order = order_t.tolist()
        assert len(order) == p * fo
        assert _clash_free_by_loops(order, z)
        sweeps = [order[s * p:(s + 1) * p] for s in range(fo)]
        for sweep in sweeps:  # every sweep reads every left neuron exactly once
            assert sorted(sweep) == list(range(p))
        if kind in (2, 3):  # each slot's addresses step by +1 mod p/z within a sweep
            for sweep in sweeps:
                for v in range(z):
                    addr = [sweep[c * z + v] // z for c in range(rows)]
                    assert all((addr[c + 1] - addr[c]) % rows == 1 % rows
                               for c in range(rows - 1))
        if kind == 3:
            assert all(s == sweeps[0] for s in sweeps)
        adj = interleaver_to_adjacency(order_t, n, p)
        for k, left in enumerate(order):  # slot k joins left neuron order[k] to right k // fi
            assert adj[k // fi, left]
        fan_in, fan_out = _degrees_by_loops(adj)
        assert fan_in == [fi] * n and fan_out == [fo] * p  # no repeated connection


def test_type1_is_not_restricted_to_consecutive_addresses():
    found = False
    for seed in range(20):
        order = clash_free_interleaver(12, 1, 2, 4, kind=1,
                                       generator=torch.Generator().manual_seed(seed)).tolist()
        addr = [order[c * 2] // 2 for c in range(6)]
        found |= any((addr[c + 1] - addr[c]) % 6 != 1 for c in range(5))
    assert found


@pytest.mark.parametrize(("kind", "draws", "expected"), [(3, 600, 27), (2, 8000, 729)])
def test_number_of_distinct_clash_free_patterns_matches_the_paper(kind, draws, expected):
    """p=9, fo=2, n=6, z=3: type 3 has (p/z)^z = 27 patterns, type 2 ((p/z)^z)^fo = 729."""
    g = torch.Generator().manual_seed(0)
    seen = {tuple(clash_free_pattern(6, 9, 2, 3, kind=kind, generator=g).flatten().tolist())
            for _ in range(draws)}
    assert len(seen) == expected


def test_type1_has_more_patterns_than_type2():
    g = torch.Generator().manual_seed(0)
    seen = {tuple(clash_free_pattern(6, 9, 2, 3, kind=1, generator=g).flatten().tolist())
            for _ in range(2000)}
    assert len(seen) > 729


def test_fan_out_choice():
    assert feasible_fan_outs(120, 400) == list(range(3, 121, 3))
    assert fan_out_for_density(120, 400, 0.1) == 12
    assert fan_out_for_density(10, 84, 0.1) == 5  # gcd(10, 84) = 2: fo in {5, 10}
    assert 84 * fan_out_for_density(10, 84, 0.1) % 10 == 0


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc1 = nn.Linear(2 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.relu(self.conv(x)).flatten(1))))


@pytest.mark.parametrize("pattern", ["basic", "cyclic", "random", "clash_free"])
def test_pruner_masks_linear_junctions_and_leaves_convs_dense(pattern):
    model = _Net()
    # the dense conv (18 weights) puts the mask off the requested 0.25 (150 of 612 kept
    # instead of 153 = round(0.25 * 612)): refused unless allowed, and then said
    with pytest.raises(paizoo.SparsityError, match=r"Linear junctions only.*conv.weight"):
        paizoo.prune(model, "dey", density=0.25, pattern=pattern)
    with pytest.warns(OffTargetWarning, match=r"weight\(s\) \(conv.weight\) stay dense"):
        mask = paizoo.prune(model, "dey", density=0.25, pattern=pattern, allow_off_target=True)
    assert bool(mask["conv.weight"].all())
    for name, (n, p) in (("fc1.weight", (16, 32)), ("fc2.weight", (4, 16))):
        fo = fan_out_for_density(n, p, 0.25)
        adj = mask[name]
        assert int(adj.sum()) == p * fo
        if pattern != "random":
            fan_in, fan_out = _degrees_by_loops(adj)
            assert fan_in == [p * fo // n] * n and fan_out == [fo] * p
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only Linear layers: on target, nothing to warn about
        linear_only = paizoo.prune(model, "dey", density=0.25, pattern=pattern,
                                   include="fc*")
    assert linear_only == {n: mask[n] for n in ("fc1.weight", "fc2.weight")}
    assert linear_only.num_kept == round(0.25 * (16 * 32 + 4 * 16))
    with pytest.warns(OffTargetWarning):
        assert mask == paizoo.prune(model, "dey", density=0.25, pattern=pattern,
                                    allow_off_target=True)
        other = paizoo.prune(model, "dey", density=0.25, pattern=pattern, seed=3,
                             allow_off_target=True)
    assert (mask == other) == (pattern == "cyclic")


def test_unreachable_density_raises_instead_of_a_denser_mask():
    """The issue's miss: asked for 0.99, Dey returned a fully dense mask. fc1 (300 x 784) of
    LeNet-300-100 has fan-outs in multiples of 75 (density >= 0.25), fc2 and fc3 any fan-out."""
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                          nn.Linear(100, 10))
    total = 784 * 300 + 300 * 100 + 100 * 10
    with pytest.raises(paizoo.SparsityError, match=r"0.weight \(\(300, 784\): fan-out 75 of 300"):
        paizoo.prune(model, "dey", sparsity=0.99)
    with pytest.warns(OffTargetWarning, match=f"keeps {784 * 75 + 300 * 1 + 100 * 1} of {total}"):
        off = paizoo.prune(model, "dey", sparsity=0.99, allow_off_target=True)
    assert [r.kept for r in off.layers()] == [784 * 75, 300 * 1, 100 * 1]
    exact = paizoo.prune(model, "dey", sparsity=0.5)  # fo = 150, 50, 5: exactly half
    assert exact.num_kept == total // 2


def test_pruner_errors():
    with pytest.raises(NoPrunableParametersError, match="Linear"):
        paizoo.prune(nn.Sequential(nn.Conv2d(1, 2, 3)), "dey", density=0.5)
    with pytest.raises(ValueError, match="divide"):
        paizoo.prune(_Net(), "dey", density=0.25, pattern="clash_free", z=5, include="fc*")
    with pytest.raises(ValueError, match="pattern"):
        paizoo.create_pruner("dey", pattern="windowed")
    with pytest.raises(ValueError, match="rounds"):
        paizoo.create_pruner("dey", rounds=3)
