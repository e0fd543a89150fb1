"""Group ``effective`` and the linearised network against brute-force path enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from _metrics_testlib import Unrolled, random_mask, tiny_cnn, tiny_mlp, tiny_resnet
from torch import nn

import paizoo.metrics as pm
from paizoo.errors import UnsupportedLayerError
from paizoo.masks import Mask
from paizoo.metrics.linearize import AdaptiveSumPool, SumPool, linearized_copy, trace_layers

CASES = [
    (tiny_mlp, (1, 2, 3), 0.55),
    (tiny_cnn, (1, 4, 4), 0.6),
    (tiny_resnet, (1, 4, 4), 0.5),
]


def brute_force(model: nn.Sequential, mask: Mask, shape: tuple[int, ...]) -> dict:
    unrolled = Unrolled(model, mask, shape)
    paths = unrolled.enumerate_paths()
    on_path_edges = {pair for p in paths for pair in itertools.pairwise(p)}
    on_path_nodes = {v for p in paths for v in p}
    effective = {n: torch.zeros_like(t) for n, t in mask.items()}
    for a, b in on_path_edges:
        data = unrolled.graph.edges[a, b]
        if "param" in data:
            effective[data["param"]][data["index"]] = True
    units = {n: int(sum(int(u) in on_path_nodes for u in ids.ravel()))
             for n, ids in unrolled.units.items()}
    channels = {n: int(sum(any(int(u) in on_path_nodes for u in ids[c].ravel())
                           for c in range(ids.shape[0])))
                for n, ids in unrolled.units.items()}
    edges = {}
    for _, _, data in unrolled.graph.edges(data=True):
        if "param" in data:
            edges[data["param"]] = edges.get(data["param"], 0) + 1
    return {"paths": len(paths), "effective": effective, "units": units, "channels": channels,
            "unit_total": sum(ids.size for ids in unrolled.units.values()), "edges": edges}


@pytest.mark.parametrize(("factory", "shape", "density"), CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_effective_matches_path_enumeration(factory, shape, density, seed):
    torch.manual_seed(seed)
    model = factory()
    mask = random_mask(model, density, seed)
    truth = brute_force(model, mask, shape)
    row = pm.compute(model, mask, shape, groups=["effective"])
    eff = pm.effective_mask(model, mask, shape)
    for name in mask:
        assert torch.equal(eff[name], truth["effective"][name]), name
        assert row[f"effective.density.{name}"] == pytest.approx(
            int(truth["effective"][name].sum()) / mask[name].numel())
    n_eff = sum(int(t.sum()) for t in truth["effective"].values())
    assert row["effective.weights"] == n_eff
    assert row["effective.sparsity"] == pytest.approx(1 - n_eff / mask.num_total)
    assert row["effective.inactive_frac"] == pytest.approx(1 - n_eff / mask.num_kept)
    expected_log = math.log10(truth["paths"]) if truth["paths"] else -math.inf
    assert row["effective.paths_log10"] == pytest.approx(expected_log, abs=1e-12)
    assert row["effective.nodes"] == sum(truth["units"].values())
    assert row["effective.nodes_frac"] == pytest.approx(sum(truth["units"].values())
                                                        / truth["unit_total"])
    assert row["effective.channels"] == sum(truth["channels"].values())


@pytest.mark.parametrize(("factory", "shape", "density"), CASES)
def test_trace_edge_counts_match_explicit_unrolling(factory, shape, density):
    model = factory()
    mask = random_mask(model, density, 5)
    truth = brute_force(model, mask, shape)
    traces = trace_layers(linearized_copy(model, mask, torch.float32), shape)
    for name in mask:
        assert traces[name].edges == truth["edges"].get(name, 0), name


def test_disconnected_mask_has_no_paths():
    model = tiny_mlp()
    mask = Mask.ones(model)
    mask = Mask({n: (torch.zeros_like(t) if n == "3.weight" else t) for n, t in mask.items()})
    row = pm.compute(model, mask, (1, 2, 3), groups=["effective"])
    assert row["effective.paths_log10"] == -math.inf
    assert row["effective.weights"] == 0
    assert row["effective.sparsity"] == 1.0


def test_dense_mlp_path_count_is_product_of_widths():
    model = tiny_mlp()
    row = pm.compute(model, Mask.ones(model), (1, 2, 3), groups=["effective"])
    assert row["effective.paths_log10"] == pytest.approx(math.log10(6 * 5 * 4 * 3))
    assert row["effective.sparsity"] == 0.0


def test_sum_pools_sum_their_windows():
    x = torch.arange(2 * 5 * 7, dtype=torch.float64).reshape(1, 2, 5, 7)
    pool = SumPool(2, 2, 2, 0, ceil_mode=False)
    expected = torch.stack([x[..., i:i + 2, j:j + 2].sum((-1, -2))
                            for i in range(0, 4, 2) for j in range(0, 6, 2)], -1)
    expected = expected.reshape(1, 2, 2, 3)
    assert torch.equal(pool(x), expected)
    adaptive = AdaptiveSumPool(2, (2, 3))(x)
    # PyTorch's adaptive windows: rows [0,3) [2,5); cols [0,3) [2,5) [4,7)
    rows, cols = [(0, 3), (2, 5)], [(0, 3), (2, 5), (4, 7)]
    manual = torch.tensor([[[x[0, c, r0:r1, c0:c1].sum() for c0, c1 in cols] for r0, r1 in rows]
                           for c in range(2)], dtype=torch.float64)
    assert torch.allclose(adaptive[0], manual)
    assert torch.equal(AdaptiveSumPool(2, 1, flatten=True)(x), x.sum((2, 3)))


def test_linearisation_replaces_what_it_must_and_refuses_the_rest():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.GELU(), nn.MaxPool2d(2),
                          nn.Dropout(0.5), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    lin = linearized_copy(model, Mask.ones(model))
    kinds = [type(m).__name__ for m in lin]
    assert kinds == ["Conv2d", "Identity", "Identity", "SumPool", "Identity", "AdaptiveSumPool",
                     "Flatten", "Linear"]
    assert torch.equal(lin[0].bias, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(UnsupportedLayerError, match="Embedding"):
        linearized_copy(nn.Sequential(nn.Embedding(4, 3), nn.Linear(3, 2)),
                        {"1.weight": torch.ones(2, 3, dtype=torch.bool)})


def test_parametrized_weights_are_refused_with_a_paizoo_error():
    # the metrics read plain Conv/Linear weights; a weight-normed layer's mask lives on its
    # original tensor, which they cannot place: refused by name instead of a raw KeyError
    model = tiny_mlp()
    torch.nn.utils.parametrizations.weight_norm(model[3])
    mask = Mask.ones(model)
    assert "3.parametrizations.weight.original1" in mask
    with pytest.raises(UnsupportedLayerError, match=r"parametrized weights.*3 "
                                                    r"\(ParametrizedLinear\).*"
                                                    r"remove_parametrizations"):
        pm.compute(model, mask, (1, 2, 3), groups=["effective"])


def test_masked_model_is_left_untouched_and_applied_masks_are_read_through():
    model = tiny_cnn()
    mask = random_mask(model, 0.5, 3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pm.compute(model, mask, (1, 4, 4), groups=["effective"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    applied = tiny_cnn()
    mask.apply(applied)
    a = pm.compute(applied, mask, (1, 4, 4), groups=["effective"])
    b = pm.compute(model, mask, (1, 4, 4), groups=["effective"])
    assert a == b
