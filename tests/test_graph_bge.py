"""Bipartite graph encodings against brute-force loops, and their degree sums."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

import paizoo
from paizoo.errors import NoPrunableParametersError
from paizoo.graph import BIPARTITE_KINDS, GraphEncodingError, bipartite
from paizoo.models import create_model


def random_mask(model: nn.Module, density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=gen) < density
            for n, p in paizoo.prunable_parameters(model).items()}


def brute_rolled(w: torch.Tensor, keep: torch.Tensor, groups: int) -> dict[tuple[int, int], float]:
    """Left node ``(c_in, taps)`` row-major, right node ``c_out`` (offset by the left count)."""
    c_out, c_in_g = w.shape[:2]
    kernel = w.shape[2:]
    n_taps = int(np.prod(kernel))
    n_left = c_in_g * groups * n_taps
    edges = {}
    for co in range(c_out):
        for cil in range(c_in_g):
            ci = (co // (c_out // groups)) * c_in_g + cil
            for t, k in enumerate(itertools.product(*(range(v) for v in kernel))):
                if keep[(co, cil, *k)]:
                    edges[(ci * n_taps + t, n_left + co)] = abs(float(w[(co, cil, *k)]))
    return edges


def brute_channel(w: torch.Tensor, keep: torch.Tensor, groups: int
                  ) -> dict[tuple[int, int], float]:
    c_out, c_in_g = w.shape[:2]
    n_left = c_in_g * groups
    edges = {}
    for co in range(c_out):
        for cil in range(c_in_g):
            ci = (co // (c_out // groups)) * c_in_g + cil
            kept = keep[co, cil]
            if kept.any():
                edges[(ci, n_left + co)] = float(torch.sqrt((w[co, cil][kept] ** 2).sum()))
    return edges


def brute_linear(w: torch.Tensor, keep: torch.Tensor) -> dict[tuple[int, int], float]:
    n_out, n_in = w.shape
    return {(i, n_in + j): abs(float(w[j, i])) for j in range(n_out) for i in range(n_in)
            if keep[j, i]}


def edges_of(g) -> dict[tuple[int, int], float]:
    coo = g.adjacency.tocoo()
    return {(int(r), int(c)): float(v) for r, c, v in zip(coo.row, coo.col, coo.data,
                                                            strict=True)}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, (3, 2))
        self.c2 = nn.Conv2d(4, 6, 3, groups=2)
        self.c3 = nn.Conv2d(6, 6, 3, groups=6)  # depthwise
        self.c4 = nn.Conv1d(2, 3, 4)
        self.fc = nn.Linear(5, 7)


@pytest.mark.parametrize("kind", BIPARTITE_KINDS)
def test_bipartite_matches_brute_force(kind):
    torch.manual_seed(0)
    net = Net()
    mask = random_mask(net, 0.6)
    graphs = bipartite(net, mask, kind=kind)
    assert list(graphs) == ["c1.weight", "c2.weight", "c3.weight", "c4.weight", "fc.weight"]
    for name, g in graphs.items():
        module = net.get_submodule(name.rpartition(".")[0])
        w, keep = module.weight.detach(), mask[name]
        if isinstance(module, nn.Linear):
            expected = brute_linear(w, keep)
            assert g.layers[0].shape == (w.shape[1],)
        elif kind == "rolled":
            expected = brute_rolled(w, keep, module.groups)
            assert g.layers[0].shape == (module.in_channels, *module.kernel_size)
        else:
            expected = brute_channel(w, keep, module.groups)
            assert g.layers[0].shape == (module.in_channels,)
        got = edges_of(g)
        assert set(got) == set(expected), name
        np.testing.assert_allclose([got[k] for k in sorted(expected)],
                                   [expected[k] for k in sorted(expected)], rtol=1e-5)
        assert [x.kind for x in g.layers] == ["left", "right"]
        assert [x.name for x in g.layers] == [f"{name}:in", f"{name}:out"]
        assert g.adjacency.indptr.dtype == np.int64 and g.adjacency.indices.dtype == np.int32
        assert g.adjacency.has_canonical_format
        assert np.array_equal(g.input_nodes, g.layers[0].ids)
        assert np.array_equal(g.output_nodes, g.layers[1].ids)
        # bipartite: every edge goes left -> right
        assert g.block(g.layers[0], g.layers[1]).nnz == g.num_edges


def test_degree_sums_equal_kept_counts():
    model = create_model("resnet20", seed=0)
    mask = random_mask(model, 0.1)
    rolled = bipartite(model, mask, kind="rolled")
    channel = bipartite(model, mask, kind="rolled_channel")
    assert set(rolled) == set(mask)
    for name, keep in mask.items():
        g = rolled[name]
        left = g.layers[0]
        assert int(g.out_degree()[left.start:left.stop].sum()) == int(keep.sum())
        assert int(g.in_degree().sum()) == int(keep.sum()) == g.meta["kept"]
        kernels = keep.reshape(keep.shape[0], keep.shape[1], -1).any(-1) if keep.dim() > 2 \
            else keep
        assert channel[name].num_edges == int(kernels.sum())
        masked_w = model.get_submodule(name.rpartition(".")[0]).weight.detach() * keep
        np.testing.assert_allclose(g.adjacency.data.sum(), masked_w.abs().sum(), rtol=1e-5)


def test_applied_masks_dense_and_errors():
    model = create_model("resnet20", seed=0)
    mask = random_mask(model, 0.3)
    applied = copy.deepcopy(model)
    paizoo.apply_mask(applied, mask)
    a, b = bipartite(model, mask), bipartite(applied)
    for name in mask:
        assert (a[name].adjacency != b[name].adjacency).nnz == 0
    dense = bipartite(model, include="fc.weight")
    assert list(dense) == ["fc.weight"] and dense["fc.weight"].num_edges == 64 * 10
    with pytest.raises(GraphEncodingError, match="unknown bipartite kind"):
        bipartite(model, kind="unrolled")
    with pytest.raises(NoPrunableParametersError):
        bipartite(nn.Sequential(nn.ReLU()))


def test_mask_entries_the_encodings_cannot_represent_are_refused() -> None:
    # a mask made with cover="recurrent" holds GRU weights, which no bipartite graph represents:
    # refused by name instead of encoding the Linear layer alone as if that were the network
    from paizoo.errors import MaskMismatchError

    class GRUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.GRU(4, 8, batch_first=True)
            self.fc = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.rnn(x)[0][:, -1])

    model = GRUNet()
    mask = paizoo.Mask.ones(model, cover="recurrent")
    pattern = r"rnn\.weight_ih_l0.*rnn\.weight_hh_l0.*not Conv/Linear weights"
    with pytest.raises(MaskMismatchError, match=pattern):
        bipartite(model, mask)
    import paizoo.metrics as pm

    for group in ("ramanujan", "spectral"):
        with pytest.raises(MaskMismatchError, match=pattern):
            pm.compute(model, mask, (5, 4), groups=[group])
    assert list(bipartite(model, paizoo.Mask.ones(model))) == ["fc.weight"]


def _plain_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5), nn.ReLU(), nn.Linear(5, 2))


def _weight_normed_net() -> nn.Module:
    from torch.nn.utils import parametrizations

    model = _plain_net()
    parametrizations.weight_norm(model[0])
    parametrizations.weight_norm(model[3])
    return model


def _plain_twin(model: nn.Module, mask: paizoo.Mask) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """The plain net computing what ``model`` masked by ``mask`` computes: its weight-normed
    weights are g (v*m) / ||v*m|| (norm over each output unit), by hand; the mask renamed."""
    twin = _plain_net()  # same biases and last layer; the weight-normed weights set below
    for i in (0, 3):
        plist = model[i].parametrizations.weight
        v = plist.original1.detach() * mask[f"{i}.parametrizations.weight.original1"]
        g = plist.original0.detach()
        norm = v.flatten(1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
        with torch.no_grad():
            twin[i].weight.copy_(g * v / norm)
    return twin, {n.replace(".parametrizations.weight.original1", ".weight"): mask[n]
                  for n in mask}


def test_weight_normed_layers_are_encoded_by_both_encodings_alike() -> None:
    """Both encodings cover the weight-normed layers (the bipartite one used to leave them out
    while the multipartite one included them dense), and give each exactly the graph of a
    plain twin whose weights are the masked layer's g (v*m) / ||v*m||, computed here by hand."""
    from paizoo.graph import multipartite

    model = _weight_normed_net()
    mask = paizoo.prune(model, "magnitude", sparsity=0.6)
    keys = {"0.weight": "0.parametrizations.weight.original1",
            "3.weight": "3.parametrizations.weight.original1", "5.weight": "5.weight"}
    assert list(mask) == list(keys.values())
    twin, twin_mask = _plain_twin(model, mask)
    applied = copy.deepcopy(model)
    mask.apply(applied)
    assert torch.allclose(applied[0].weight, twin[0].weight)  # the hand formula is torch's

    for kind in BIPARTITE_KINDS:
        graphs, expected = bipartite(model, mask, kind), bipartite(twin, twin_mask, kind)
        assert list(graphs) == list(keys.values())
        for plain, key in keys.items():
            a, b = graphs[key].adjacency, expected[plain].adjacency
            assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
            np.testing.assert_allclose(a.data, b.data, rtol=1e-6)
        applied_graphs = bipartite(applied, kind=kind)  # the mask applied to the model
        for key in keys.values():
            assert (applied_graphs[key].adjacency != graphs[key].adjacency).nnz == 0

    g, h = multipartite(model, mask, (2, 4, 4)), multipartite(twin, twin_mask, (2, 4, 4))
    assert [(n.name, n.kind) for n in g.layers] == [(n.name, n.kind) for n in h.layers]
    assert [n.kind for n in g.layers].count("conv") == 1
    assert [n.kind for n in g.layers].count("linear") == 2
    a, b = g.adjacency, h.adjacency
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6)
    assert a.nnz > 0 and g.num_edges == h.num_edges


def test_parametrizations_without_an_exact_mask_are_refused_by_both_encodings() -> None:
    from torch.nn.utils import parametrizations

    from paizoo.graph import multipartite

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    parametrizations.orthogonal(model[0])
    pattern = r"0\.weight is computed by the parametrization .*does not keep the zeros"
    with pytest.raises(paizoo.CoverageError, match=pattern):
        bipartite(model)
    with pytest.raises(paizoo.CoverageError, match=pattern):
        multipartite(model, input_shape=(4,))
    assert list(bipartite(model, exclude="0.*")) == ["2.weight"]


def test_graph_metrics_of_a_weight_normed_net_are_those_of_its_plain_twin() -> None:
    """The metric groups built on the graph encodings now read weight-normed layers (under
    their mask names): the values equal the plain twin's; the groups that read module weights
    directly (effective, scatter) still refuse the parametrized model, by name."""
    import paizoo.metrics as pm

    model = _weight_normed_net()
    mask = paizoo.prune(model, "magnitude", sparsity=0.6)
    twin, twin_mask = _plain_twin(model, mask)
    groups = ["density", "ramanujan", "spectral", "mge"]
    got = pm.compute(model, mask, (2, 4, 4), groups=groups)
    expected = pm.compute(twin, twin_mask, (2, 4, 4), groups=groups)
    renamed = {k.replace(".parametrizations.weight.original1", ".weight"): v
               for k, v in got.items()}
    assert renamed.keys() == expected.keys()
    for key, value in expected.items():
        assert renamed[key] == pytest.approx(value, rel=1e-5, abs=1e-9, nan_ok=True), key
    with pytest.raises(paizoo.errors.UnsupportedLayerError, match="parametrized weights"):
        pm.compute(model, mask, (2, 4, 4), groups=["effective"])
    with pytest.raises(paizoo.errors.MaskMismatchError,
                       match=r"parametrized weights .*remove_parametrizations"):
        pm.compute(model, mask, (2, 4, 4), groups=["scatter"])
