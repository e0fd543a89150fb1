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
