"""NNSTD against set-based and brute-force computations, and ``paizoo nnstd``."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from paizoo.cli import main
from paizoo.errors import MaskMismatchError
from paizoo.masks import Mask
from paizoo.metrics import nnstd
from paizoo.metrics.nnstd import jaccard_cost


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def rand_mask(shapes: dict[str, tuple[int, ...]], seed: int, density: float = 0.5) -> Mask:
    gen = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(s, generator=gen) < density for n, s in shapes.items()})


MLP_SHAPES = {"0.weight": (6, 8), "2.weight": (5, 6), "4.weight": (3, 5)}


def set_based_nnstd(a: Mask, b: Mask) -> tuple[float, list[float]]:
    """Liu et al.'s procedure with Python sets for the fan-ins (independent of the matmul)."""
    perm = None
    dists = []
    for name in a:
        m1, m2 = a[name].numpy(), b[name].numpy()
        if perm is not None and m2.shape[1] == perm.size:
            m2 = m2[:, perm]
        f1 = [set(np.flatnonzero(r.reshape(-1))) for r in m1]
        f2 = [set(np.flatnonzero(r.reshape(-1))) for r in m2]
        cost = np.array([[0.0 if not (x | y) else 1 - len(x & y) / len(x | y) for y in f2]
                         for x in f1])
        rows, cols = linear_sum_assignment(cost)
        dists.append(cost[rows, cols].mean())
        perm = cols[np.argsort(rows)]
    return float(np.mean(dists)), dists


def test_identical_masks_have_distance_zero():
    m = rand_mask(MLP_SHAPES, 0)
    assert nnstd(m, m).distance == 0.0


def test_permuted_hidden_neurons_have_distance_zero():
    def no_twins(mask: Mask) -> bool:  # twin neurons could be matched either way round
        return all(len({tuple(r.tolist()) for r in mask[n]}) == mask[n].shape[0]
                   for n in ("0.weight", "2.weight"))

    m = next(m for m in (rand_mask(MLP_SHAPES, s, 0.6) for s in range(100)) if no_twins(m))
    p, q = torch.randperm(6), torch.randperm(5)
    permuted = Mask({"0.weight": m["0.weight"][p], "2.weight": m["2.weight"][q][:, p],
                     "4.weight": m["4.weight"][:, q]})
    assert permuted != m
    result = nnstd(m, permuted)
    assert result.distance == 0.0
    assert np.array_equal(result.matchings["0.weight"], torch.argsort(p).numpy())


def test_permuted_channels_of_a_cnn_have_distance_zero():
    gen = torch.Generator().manual_seed(0)
    conv1 = torch.rand(6, 3, 3, 3, generator=gen) < 0.5
    conv2 = torch.rand(4, 6, 3, 3, generator=gen) < 0.5
    fc = torch.rand(5, 4 * 2 * 2, generator=gen) < 0.5
    m = Mask({"c1.weight": conv1, "c2.weight": conv2, "fc.weight": fc})
    p, q = torch.randperm(6, generator=gen), torch.randperm(4, generator=gen)
    fc_perm = fc.reshape(5, 4, 4)[:, q].reshape(5, 16)  # channel blocks of 2x2 features
    permuted = Mask({"c1.weight": conv1[p], "c2.weight": conv2[q][:, p], "fc.weight": fc_perm})
    assert nnstd(m, permuted).distance == 0.0
    assert nnstd(m, Mask({**permuted, "fc.weight": fc})).distance > 0


def test_disjoint_masks_have_distance_one():
    a1, b1 = torch.zeros(4, 8, dtype=torch.bool), torch.zeros(4, 8, dtype=torch.bool)
    a1[:, :4] = True  # inputs 0-3 only
    b1[:, 4:] = True  # inputs 4-7 only (a Mask is read-only: fill the tensors first)
    a = Mask({"l1": a1, "l2": torch.ones(3, 4, dtype=torch.bool)})
    b = Mask({"l1": b1, "l2": torch.zeros(3, 4, dtype=torch.bool)})
    result = nnstd(a, b)
    assert result.layers == {"l1": 1.0, "l2": 1.0} and result.distance == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_matches_set_based_reference(seed):
    a, b = rand_mask(MLP_SHAPES, 10 + seed), rand_mask(MLP_SHAPES, 20 + seed, density=0.4)
    ref, ref_layers = set_based_nnstd(a, b)
    result = nnstd(a, b)
    assert result.distance == pytest.approx(ref)
    assert list(result.layers.values()) == pytest.approx(ref_layers)
    assert 0.0 < result.distance < 1.0


def test_hungarian_layer_distance_is_the_optimal_matching():
    gen = torch.Generator().manual_seed(3)
    a = torch.rand(6, 7, generator=gen) < 0.5
    b = torch.rand(6, 7, generator=gen) < 0.5
    cost = jaccard_cost(a.numpy(), b.numpy())
    best = min(np.mean([cost[i, p[i]] for i in range(6)]) for p in itertools.permutations(range(6)))
    assert nnstd({"w": a}, {"w": b}).distance == pytest.approx(best)


def test_mismatched_masks_are_rejected():
    with pytest.raises(MaskMismatchError):
        nnstd(rand_mask(MLP_SHAPES, 0), rand_mask({"0.weight": (6, 8)}, 0))


def test_cli_prints_distance(tmp_path, capsys):
    a, b = rand_mask(MLP_SHAPES, 0), rand_mask(MLP_SHAPES, 1)
    a.save(tmp_path / "a.safetensors")
    b.save(tmp_path / "b.safetensors")
    assert main(["nnstd", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["nnstd"] == pytest.approx(nnstd(a, b).distance)
    assert main(["nnstd", str(tmp_path / "a.safetensors"), str(tmp_path / "a.safetensors")]) == 0
    assert capsys.readouterr().out.strip().endswith("0.000000")
