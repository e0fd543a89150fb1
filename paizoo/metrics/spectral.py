"""Group ``spectral``: spectral expansion of each layer and of the whole network (Bourely, Boueri &
Choromonski 2017, "Sparse neural networks topologies"; expander-graph view of sparse layers).

Graphs are unweighted (topology only) and undirected; isolated (zero-degree) nodes are removed
first, as in the Ramanujan group, so that a layer is not called disconnected just because some
positions lost every weight.

* ``gap.<param>`` - spectral gap sigma_1 - sigma_2 of the layer's rolled 0/1 biadjacency B (with
  multiplicity: 0 when the top singular value repeats, e.g. for identical disconnected parts);
* ``lambda2.<param>`` - algebraic connectivity: the second-smallest eigenvalue of L = D - A of
  that bipartite graph (0 when it is disconnected). On the complete bipartite graph K(m, n) it
  is min(m, n), except K(1, 1), a single edge, where it is 2; so on a layer with a side of one
  node (every connected graph on it is a star) it is 1 with two kept weights or more and 2 with
  one (the agnostic ``spectral.lambda2_rel`` reads it as min(lambda2, 1) there);
* ``gap_mean``, ``lambda2_mean``, ``lambda2_min`` - over layers;
* ``network_gap`` - first minus second *distinct* singular value (|eigenvalue|) of the symmetrised
  0/1 adjacency of the whole multipartite graph (MGE), from Lanczos iterations (``eigsh``);
  distinct, because a bipartite graph's +lambda/-lambda pairs would otherwise give 0 (the same
  convention as ``mge.spectral_gap``, which is weighted);
* ``network_lambda2`` - algebraic connectivity of the whole undirected MGE (float32 LOBPCG with
  the constant vector deflated, stopped when the a-posteriori bound
  :func:`~paizoo.metrics.linalg.ritz_error_bound` is below ``1e-4`` relative; 0 when
  disconnected).

The two ``network_*`` metrics run matrix-free on
:class:`~paizoo.metrics.operator.MultipartiteOperator` (Lanczos and LOBPCG on conv/conv-transpose
of the 0/1 masks; connectivity by repeated application of A + A^T), or on the CSR of a graph
passed with ``graph=``. ``network_lambda2`` is NaN, with a warning, if LOBPCG has not converged
within the option ``lambda2_maxiter`` (default 500) iterations; both are NaN, with a warning, for
graphs of more than the option ``network_max_nodes`` (default 2e6) nodes, e.g. an ImageNet
ResNet-50 at 224 x 224 (10^7 nodes), where every Krylov step costs a forward and a backward pass.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from .context import MetricContext
from .graphalgo import undirected_pattern, weak_components
from .linalg import (
    SpectralConvergenceWarning,
    algebraic_connectivity,
    distinct_gap,
    laplacian,
    laplacian_lambda2,
    top_abs_eigenvalues,
    top_singular_values,
)
from .ramanujan import _drop_isolated
from .registry import register_metric_group


def bipartite_adjacency(b: sp.csr_array) -> sp.csr_array:
    """[[0, B], [B^T, 0]] of a biadjacency B."""
    b = sp.csr_array(b)
    return sp.csr_array(sp.bmat([[None, b], [b.T, None]], format="csr"))


def layer_expansion(b: sp.csr_array) -> tuple[float, float]:
    """(spectral gap, algebraic connectivity) of one layer's bipartite graph (0/1 entries)."""
    b = _drop_isolated(sp.csr_array(b))
    if b.nnz == 0:
        return math.nan, math.nan
    b = sp.csr_array((np.ones(b.nnz), b.indices, b.indptr), shape=b.shape)
    s = top_singular_values(b, 2) if min(b.shape) > 1 else np.array([math.nan, math.nan])
    return float(s[0] - s[1]), algebraic_connectivity(bipartite_adjacency(b))


def network_expansion(adjacency: sp.sparray | sp.spmatrix, maxiter: int = 500,
                      undirected: sp.csr_array | None = None,
                      connected: bool | None = None) -> tuple[float, float]:
    """(spectral gap, algebraic connectivity) of the undirected 0/1 graph of ``adjacency``
    (``undirected``: its :func:`~paizoo.metrics.graphalgo.undirected_pattern`, and
    ``connected``: whether it is connected without its isolated nodes, if known)."""
    u = undirected_pattern(adjacency) if undirected is None else undirected
    active = np.flatnonzero(np.diff(u.indptr))
    u = sp.csr_array(u[active][:, active]).astype(np.float64)
    if u.nnz == 0:
        return math.nan, math.nan
    gap = distinct_gap(top_abs_eigenvalues(u if u.shape[0] <= 2048 else aslinearoperator(u), k=4))
    if connected is None:
        connected = weak_components(sp.csr_array(u))[0] == 1
    return gap, _lambda2(laplacian(u), connected, maxiter)


def _lambda2(lap: sp.csr_array | LinearOperator, connected: bool, maxiter: int,
             diagonal: np.ndarray | None = None) -> float:
    if not connected:
        return 0.0
    diag = lap.diagonal() if diagonal is None else diagonal
    value, converged = laplacian_lambda2(lap, diag, maxiter=maxiter, rtol=NETWORK_RTOL,
                                         dtype=np.float32)
    if not converged:
        warnings.warn(f"lambda_2 of the {lap.shape[0]}-node network did not converge in "
                      f"{maxiter} LOBPCG iterations; reported as NaN (raise the spectral option "
                      "lambda2_maxiter)", SpectralConvergenceWarning, stacklevel=3)
        return math.nan
    return value


def network_expansion_matrix_free(operator: Any, maxiter: int = 500,
                                  connected: bool | None = None) -> tuple[float, float]:
    """:func:`network_expansion` on the matrix-free operator (no explicit graph).

    ``connected``: whether the graph without its isolated nodes is connected, if known;
    otherwise found by repeated application of A + A^T from one node.
    """
    degree = operator.degree_of_symmetric(False)
    active = np.flatnonzero(degree > 0)
    if active.size == 0:
        return math.nan, math.nan
    nodes = None if active.size == operator.num_nodes else active
    if connected is None:
        mask = np.zeros(operator.num_nodes, dtype=bool)
        mask[active] = True
        connected = bool(operator.reachable_from(active[:1], mask)[active].all())
    # Lanczos (gap) and LOBPCG (lambda_2) are independent: one runs on a second thread (torch
    # convolutions release the GIL)
    with ThreadPoolExecutor(max_workers=1) as pool:
        gap = pool.submit(lambda: distinct_gap(top_abs_eigenvalues(
            operator.symmetric(False, nodes), k=4)))
        lam = _lambda2(operator.laplacian(False, nodes, array_dtype=np.float32), connected,
                       maxiter, degree[active])
        return gap.result(), lam


#: below this global mask density, CSR products of the explicit graph beat dense convolutions
CSR_DENSITY = 0.2
#: relative accuracy of ``network_lambda2`` (a-posteriori bound, see ``linalg.ritz_error_bound``)
NETWORK_RTOL = 1e-4
#: larger multipartite graphs get NaN network spectra (option ``network_max_nodes``)
NETWORK_MAX_NODES = 2_000_000


def _network_metrics(ctx: MetricContext, maxiter: int) -> tuple[float, float]:
    if ctx.graph is not None:  # the caller's graph: CSR only
        if ctx.explicit_graph_allowed("spectral.network_*"):
            return network_expansion(ctx.graph.adjacency, maxiter)
        return math.nan, math.nan
    operator = ctx.operator("spectral.network_*")
    if operator is None:
        return math.nan, math.nan
    max_nodes = int(ctx.option("spectral", "network_max_nodes", NETWORK_MAX_NODES))
    if operator.num_nodes > max_nodes:
        ctx._warn_once("network_spectra",
                       f"spectral.network_gap/network_lambda2: the multipartite graph has "
                       f"{operator.num_nodes:,} nodes, over the spectral option network_max_nodes"
                       f"={max_nodes:,}; reported as NaN (each Krylov step costs a full "
                       "forward and backward pass; lambda_2 needs hundreds of them)")
        return math.nan, math.nan
    sparse = ctx.mask.density < CSR_DENSITY
    graph = (ctx.explicit_graph("spectral.network_*") if sparse or "mge" in ctx._cache
             else None)
    if graph is not None and sparse:
        return network_expansion(graph.adjacency, maxiter, ctx.undirected_pattern(),
                                 ctx.undirected_connected_without_isolated())
    connected = None if graph is None else ctx.undirected_connected_without_isolated()
    return network_expansion_matrix_free(operator, maxiter, connected)




@register_metric_group("spectral", options=("network_max_nodes", "lambda2_maxiter"),
                       description="spectral gap and algebraic connectivity, per layer and network")
def spectral_metrics(ctx: MetricContext) -> dict[str, float]:
    """Spectral gap and algebraic connectivity of every layer and of the whole network."""
    gaps, lambdas = {}, {}
    for name in ctx.mask:
        gaps[name], lambdas[name] = layer_expansion(ctx.biadjacency(name))
    g = np.array(list(gaps.values()), dtype=np.float64)
    lam = np.array(list(lambdas.values()), dtype=np.float64)
    out = {
        "gap_mean": float(np.nanmean(g)) if np.isfinite(g).any() else math.nan,
        "lambda2_mean": float(np.nanmean(lam)) if np.isfinite(lam).any() else math.nan,
        "lambda2_min": float(np.nanmin(lam)) if np.isfinite(lam).any() else math.nan,
        "network_gap": math.nan,
        "network_lambda2": math.nan,
    }
    out["network_gap"], out["network_lambda2"] = _network_metrics(
        ctx, int(ctx.option("spectral", "lambda2_maxiter", 500)))
    for name in ctx.mask:
        out[f"gap.{name}"] = gaps[name]
        out[f"lambda2.{name}"] = lambdas[name]
    return out
