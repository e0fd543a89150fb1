"""Group ``spectral`` and the spectral helpers against networkx/numpy."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from _metrics_testlib import random_layered_graph, random_mask
from torch import nn

import paizoo.metrics as pm
from paizoo.metrics.linalg import algebraic_connectivity, distinct_gap, top_abs_eigenvalues
from paizoo.metrics.spectral import layer_expansion, network_expansion


def nx_expansion(b: np.ndarray) -> tuple[float, float]:
    """Reference on the networkx bipartite graph without isolated nodes."""
    g = nx.Graph()
    nl = b.shape[0]
    g.add_edges_from((i, nl + j) for i, j in zip(*np.nonzero(b), strict=True))
    sv = np.linalg.svd(b, compute_uv=False)
    lam = nx.algebraic_connectivity(g, method="tracemin_lu", tol=1e-12) if nx.is_connected(
        g) else 0.0
    return sv[0] - sv[1], lam


@pytest.mark.parametrize("seed", range(6))
def test_layer_expansion_matches_networkx(seed):
    rng = np.random.default_rng(seed)
    b = (rng.random((int(rng.integers(5, 30)), int(rng.integers(5, 20))))
         < rng.uniform(0.1, 0.5)).astype(float)
    gap, lam = layer_expansion(sp.csr_array(b))
    ref_gap, ref_lam = nx_expansion(b)
    assert gap == pytest.approx(ref_gap, rel=1e-8)
    assert lam == pytest.approx(ref_lam, rel=1e-6, abs=1e-9)


def test_disconnected_layer_has_zero_algebraic_connectivity():
    b = sp.block_diag([sp.csr_array(np.ones((3, 3)))] * 2, format="csr")
    gap, lam = layer_expansion(b)
    assert lam == 0.0 and gap == pytest.approx(0.0, abs=1e-9)  # sigma_1 = 3 twice


def test_lobpcg_path_matches_dense_and_the_path_graph_formula():
    n = 400
    path = sp.diags_array([np.ones(n - 1), np.ones(n - 1)], offsets=[-1, 1], format="csr")
    exact = 2 - 2 * math.cos(math.pi / n)  # lambda_2 of the path P_n
    assert algebraic_connectivity(path) == pytest.approx(exact, rel=1e-9)
    rng = np.random.default_rng(0)
    a = sp.random_array((600, 600), density=0.02, random_state=rng, format="csr")
    a = sp.csr_array(((a + a.T) > 0).astype(float))
    dense = algebraic_connectivity(a, dense_limit=10_000)
    assert algebraic_connectivity(a, dense_limit=10, rtol=1e-9) == pytest.approx(dense, rel=1e-5)


def test_top_abs_eigenvalues_sparse_path_matches_dense():
    rng = np.random.default_rng(1)
    a = sp.random_array((500, 500), density=0.02, random_state=rng, format="csr")
    a = sp.csr_array(a + a.T)
    dense = top_abs_eigenvalues(a, k=4, dense_limit=10_000)
    assert top_abs_eigenvalues(a, k=4, dense_limit=10) == pytest.approx(dense, rel=1e-8)


def test_distinct_gap_skips_repeated_values():
    assert distinct_gap(np.array([5.0, 5.0, 3.0, 3.0])) == 2.0
    assert distinct_gap(np.array([4.0, 4.0])) == 0.0


def test_network_expansion_on_layered_graph_matches_dense():
    graph = random_layered_graph(np.random.default_rng(2), [8, 10, 9, 6], 0.4, 0.1)
    gap, lam = network_expansion(graph.adjacency)
    g = nx.from_numpy_array(((graph.adjacency.toarray() + graph.adjacency.toarray().T) > 0)
                            .astype(float))
    g.remove_nodes_from([v for v in list(g) if g.degree(v) == 0])
    adj = nx.to_numpy_array(g)
    sv = np.unique(np.round(np.abs(np.linalg.eigvalsh(adj)), 9))[::-1]
    assert gap == pytest.approx(sv[0] - sv[1])
    ref = nx.algebraic_connectivity(g, tol=1e-12, method="tracemin_lu") if nx.is_connected(
        g) else 0.0
    assert lam == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_group_row_has_per_layer_values_and_network_metrics_from_graph():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    mask = random_mask(model, 0.7, 1)
    graph = random_layered_graph(np.random.default_rng(0), [6, 5, 4, 3], 0.7)
    row = pm.compute(model, mask, groups=["spectral"], graph=graph)
    for name in mask:
        b = mask[name].t().numpy().astype(float)
        gap, lam = layer_expansion(sp.csr_array(b))
        assert row[f"spectral.gap.{name}"] == gap and row[f"spectral.lambda2.{name}"] == lam
    lams = [row[f"spectral.lambda2.{n}"] for n in mask]
    assert row["spectral.lambda2_mean"] == pytest.approx(np.nanmean(lams))
    assert (row["spectral.network_gap"], row["spectral.network_lambda2"]) == pytest.approx(
        network_expansion(graph.adjacency))


def test_network_spectra_respect_the_node_budget():
    from _metrics_testlib import tiny_cnn

    model = tiny_cnn()
    mask = random_mask(model, 0.8, 0)
    row = pm.compute(model, mask, (1, 4, 4), groups=["spectral"])
    assert not math.isnan(row["spectral.network_gap"])
    with pytest.warns(pm.ExplicitGraphSkippedWarning, match="network_max_nodes"):
        row = pm.compute(model, mask, (1, 4, 4), groups=["spectral"],
                         options={"spectral": {"network_max_nodes": 10}})
    assert math.isnan(row["spectral.network_gap"]) and math.isnan(row["spectral.network_lambda2"])
    assert not math.isnan(row["spectral.gap_mean"])


def _layered_laplacian(seed: int, sizes: list[int], p: float) -> sp.csr_array:
    """Laplacian of a connected random layered graph (consecutive layers, edge probability p,
    plus a path through each consecutive pair of layers so that it is connected)."""
    from paizoo.metrics.linalg import laplacian

    rng = np.random.default_rng(seed)
    offsets = np.cumsum([0, *sizes])
    n = int(offsets[-1])
    a = np.zeros((n, n))
    for i in range(len(sizes) - 1):
        lo, mid, hi = offsets[i], offsets[i + 1], offsets[i + 2]
        a[lo:mid, mid:hi] = rng.random((mid - lo, hi - mid)) < p
        a[lo:mid, mid] = 1.0
        a[mid - 1, mid:hi] = 1.0
    return laplacian(sp.csr_array(np.maximum(a, a.T)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_lobpcg_stopping_rule_meets_its_tolerance_against_dense(seed, dtype):
    """The iterative path (forced with dense_limit=10) against LAPACK on the same Laplacian: the
    value is within rtol of lambda_2 and, being a Rayleigh quotient, never below it."""
    from paizoo.metrics.linalg import laplacian_lambda2

    lap = _layered_laplacian(seed, [150, 200, 200, 150, 100], 0.03)
    exact = np.linalg.eigvalsh(lap.toarray())[1]
    for rtol in (1e-4, 1e-6):
        value, converged = laplacian_lambda2(lap, lap.diagonal(), dense_limit=10, rtol=rtol,
                                             dtype=dtype)
        assert converged
        floor = 1e-6 if dtype == np.float32 else 1e-12  # rounding of the Ritz value itself
        assert value >= exact * (1 - floor)
        assert value == pytest.approx(exact, rel=rtol + floor)


def test_lobpcg_recovers_from_stagnating_restarts():
    """Short chunks make scipy return the restart block unchanged (its best-residual iterate);
    doubling the chunk must still reach the tolerance."""
    from paizoo.metrics.linalg import laplacian_lambda2

    lap = _layered_laplacian(7, [300, 400, 300], 0.01)
    exact = np.linalg.eigvalsh(lap.toarray())[1]
    value, converged = laplacian_lambda2(lap, lap.diagonal(), dense_limit=10, rtol=1e-6,
                                         chunk=2, maxiter=2000)
    assert converged and value == pytest.approx(exact, rel=1e-6)


def test_ritz_error_bound_bounds_the_true_error():
    """On random subspaces close to the lowest eigenvectors of a matrix with a tight lowest pair,
    the bound of the lowest Ritz value is >= its true error, and the cluster bound is far smaller
    than the pair (Kato-Temple) bound with gap theta_2 - theta_1."""
    from paizoo.metrics.linalg import ritz_error_bound

    rng = np.random.default_rng(0)
    eig = np.concatenate([[1.0, 1.001, 1.5, 2.0], np.linspace(3.0, 10.0, 196)])
    q, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    a = (q * eig) @ q.T
    for noise in (1e-2, 1e-3, 1e-4):
        v, _ = np.linalg.qr(q[:, :4] + noise * rng.standard_normal((200, 4)))
        theta, w = np.linalg.eigh(v.T @ a @ v)
        ritz = v @ w
        residuals = np.linalg.norm(a @ ritz - ritz * theta, axis=0)
        bound = ritz_error_bound(theta, residuals)
        assert theta[0] - eig[0] <= bound
        assert bound < residuals[0] ** 2 / (theta[1] - theta[0])


@pytest.mark.parametrize("seed", range(4))
def test_context_connectivity_without_isolated_nodes_matches_networkx(seed):
    from paizoo.metrics.context import MetricContext

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    graph = random_layered_graph(np.random.default_rng(seed), [6, 5, 4], 0.25)
    ctx = MetricContext(model, random_mask(model, 0.5, 0), graph=graph)
    g = nx.from_scipy_sparse_array(graph.adjacency.tocsr().astype(float))
    g = g.to_undirected()
    g.remove_nodes_from([v for v in list(g) if g.degree(v) == 0])
    assert ctx.undirected_connected_without_isolated() == (g.number_of_nodes() > 0
                                                           and nx.is_connected(g))
    assert ctx.undirected_components()[0] == nx.number_connected_components(
        nx.from_scipy_sparse_array(graph.adjacency.tocsr().astype(float)).to_undirected())


def test_network_lambda2_of_a_tiny_network_matches_networkx():
    """A 4-3-2-1 MLP (10 nodes, matrix-free operator): LOBPCG's own dense fallback refuses the
    constraint ("The dense eigensolver does not support constraints"); lambda_2 must still come
    out, equal to networkx's on the layered graph."""
    from paizoo.masks import Mask

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    values = pm.compute(net, Mask.ones(net), (4,), groups=["spectral"])
    g = nx.Graph()
    sizes = [4, 3, 2, 1]
    start = np.cumsum([0, *sizes])
    for k in range(3):
        g.add_edges_from((start[k] + i, start[k + 1] + j)
                         for i in range(sizes[k]) for j in range(sizes[k + 1]))
    ref = nx.algebraic_connectivity(g, method="tracemin_lu", tol=1e-12)
    assert values["spectral.network_lambda2"] == pytest.approx(ref, rel=1e-4)


def test_laplacian_lambda2_of_a_small_matrix_free_operator():
    from scipy.sparse.linalg import aslinearoperator

    from paizoo.metrics.linalg import laplacian_lambda2

    lap = _layered_laplacian(0, [4, 3, 2, 1], 0.9)
    exact = np.linalg.eigvalsh(lap.toarray())[1]
    value, converged = laplacian_lambda2(aslinearoperator(lap), lap.diagonal())
    assert converged and value == pytest.approx(exact, rel=1e-8)
