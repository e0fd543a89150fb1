"""The matrix-free multipartite operator against the explicit MGE (paizoo.graph.multipartite)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _metrics_testlib import random_mask, tiny_cnn, tiny_resnet
from torch import nn

import paizoo.graph
from paizoo.masks import Mask
from paizoo.metrics.graphalgo import canonical_csr
from paizoo.metrics.mge import mge_metrics_from_graph, mge_metrics_matrix_free
from paizoo.metrics.operator import multipartite_operator
from paizoo.metrics.spectral import network_expansion, network_expansion_matrix_free
from paizoo.models import create_model


class Fancy(nn.Module):
    """Functional padding (constant units), concatenation, a mean over axes, dilation, groups."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, dilation=2, groups=2)
        self.b = nn.Conv2d(2, 2, 1, stride=1)
        self.c = nn.Conv2d(6, 6, 4, padding="same")
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(F.pad(x, (2, 2, 2, 2)))
        z = torch.cat([y, self.b(x)], dim=1)
        return self.fc(self.c(z).mean(dim=(2, 3)))


def pools() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, stride=2), nn.MaxPool2d(3, stride=2, padding=1,
                                                              ceil_mode=True),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.AvgPool2d(2, divisor_override=3), nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d((3, 2)),
        nn.AdaptiveMaxPool2d(2), nn.Flatten(), nn.Linear(12, 5))


def conv1d() -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(4, 6, 3, padding="same", dilation=2, groups=2), nn.ReLU(),
                         nn.Conv1d(6, 6, 4, stride=2, padding=1), nn.AdaptiveAvgPool1d(1),
                         nn.Flatten(), nn.Linear(6, 3))


def sequence_linear() -> nn.Sequential:
    return nn.Sequential(nn.Linear(5, 7), nn.GELU(), nn.Linear(7, 3))


CASES = {
    "tiny_cnn": (tiny_cnn, (1, 4, 4)),
    "tiny_resnet": (tiny_resnet, (1, 4, 4)),
    "resnet20": (lambda: create_model("resnet20", seed=0, input_size=6), (3, 6, 6)),
    "pools": (pools, (2, 11, 9)),
    "fancy": (Fancy, (2, 7, 6)),
    "conv1d": (conv1d, (4, 15)),
    "sequence_linear": (sequence_linear, (4, 5)),
}


#: torch's warning for Fancy's Conv2d(kernel 4, padding="same"), on every forward of that layer
SAME_PADDING = r"Using padding='same' with even kernel lengths and odd dilation"


@pytest.fixture(params=list(CASES))
def case(request):
    """``(model, mask, shape, expected)``: ``expected`` asserts the warnings the case's forward
    passes give (torch's even-kernel padding='same' warning for ``fancy``, else none). torch
    gives that warning once per process unless ``set_warn_always``: on for the test, so it is
    asserted wherever it is emitted, whatever ran before in the process."""
    factory, shape = CASES[request.param]
    torch.manual_seed(0)
    model = factory()
    mask = random_mask(model, 0.6, 1)
    expected = (pytest.warns(UserWarning, match=SAME_PADDING) if request.param == "fancy"
                else contextlib.nullcontext())
    before = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    yield model, mask, shape, expected
    torch.set_warn_always(before)


def test_operator_is_the_explicit_adjacency(case):
    model, mask, shape, expected = case
    with expected:
        graph = paizoo.graph.multipartite(model, mask, shape)
        op = multipartite_operator(model, mask, shape)
    assert [(x.name, x.kind, x.start, x.stop) for x in op.layers] == [
        (x.name, x.kind, x.start, x.stop) for x in graph.layers]
    assert np.array_equal(op.output_nodes, graph.output_nodes)
    a = canonical_csr(graph.adjacency).astype(np.float64)
    x = np.random.default_rng(0).standard_normal((graph.num_nodes, 3))
    # the explicit graph stores float32 weights (e.g. 1/3 of an average pool); ours are exact
    scale = np.abs(a.T @ x).max() + 1e-12
    assert np.abs(op.forward(x).numpy() - a.T @ x).max() <= 1e-6 * scale
    assert np.abs(op.backward(x).numpy() - a @ x).max() <= 1e-6 * (np.abs(a @ x).max() + 1e-12)
    pattern = canonical_csr(graph.adjacency)
    pattern = type(pattern)((np.ones(pattern.nnz), pattern.indices, pattern.indptr),
                            shape=pattern.shape)
    assert np.allclose(op.forward(x, weighted=False).numpy(), pattern.T @ x)
    assert np.array_equal(op.in_degree(), np.asarray(pattern.sum(axis=0)).ravel().astype(int))
    assert np.array_equal(op.out_degree(), np.diff(pattern.indptr))


def test_matrix_free_mge_and_network_spectra_agree_with_explicit(case):
    model, mask, shape, expected = case
    with expected:
        graph = paizoo.graph.multipartite(model, mask, shape)
        op = multipartite_operator(model, mask, shape)
    explicit = mge_metrics_from_graph(graph)
    free = mge_metrics_matrix_free(op)
    for key in ("nodes", "edges", "sources", "sinks", "disconnected", "r_in", "r_out",
                "strength", "spectral_gap", "laplacian_radius", "r_in_frac", "sinks_frac"):
        assert free[key] == pytest.approx(explicit[key], rel=1e-5, abs=1e-9), key
    assert np.isnan(free["coreness"]) and np.isnan(free["two_hop"])
    gap, lam = network_expansion(graph.adjacency)
    gap_free, lam_free = network_expansion_matrix_free(op)
    assert gap_free == pytest.approx(gap, rel=1e-5)
    assert lam_free == pytest.approx(lam, rel=1e-4, abs=1e-8)


def test_one_hop_matrix_free_is_one_plus_out_degree():
    model = tiny_resnet()
    mask = Mask.ones(model)
    graph = paizoo.graph.multipartite(model, mask, (1, 4, 4))
    op = multipartite_operator(model, mask, (1, 4, 4))
    assert mge_metrics_matrix_free(op)["one_hop"] == pytest.approx(
        mge_metrics_from_graph(graph)["one_hop"])


def test_reachability_finds_components():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    keep = torch.zeros(4, 4, dtype=torch.bool)
    keep[0, 0] = keep[1, 1] = True  # inputs 2, 3 have no out-edge
    mask = Mask({"0.weight": keep, "1.weight": torch.ones(2, 4, dtype=torch.bool)})
    op = multipartite_operator(model, mask, (4,))
    reached = op.reachable_from(np.array([0]))
    # hidden units 2, 3 have no input but reach the (dense) outputs
    assert reached.tolist() == [True, True, False, False, True, True, True, True, True, True]
