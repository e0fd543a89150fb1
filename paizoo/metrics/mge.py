"""Group ``mge``: topological metrics of the multipartite graph encoding (Cunegatti, Farina, Bucur
& Iacca, TMLR 2024, "Understanding sparse neural networks from their topology via multipartite
graph representations"; reference code ``mge-snn``).

The graph is the directed, weighted (|w|) unrolled graph of the network
(:func:`paizoo.graph.multipartite`), n nodes and E edges. "Undirected" below means its simple
undirected graph (A + A^T as a 0/1 pattern).

==========================  ====================================================  ============
name                        definition                                            ``_frac`` by
==========================  ====================================================  ============
``nodes``, ``edges``        n and E
``sources``                 nodes with in-degree 0 and out-degree > 0 that are    n
                            not network inputs
``sinks``                   out-degree 0, in-degree > 0, not network outputs      n
``disconnected``            nodes with no edge at all (inputs/outputs included)   n
``r_in``                    edges leaving source nodes (removable: on no          E
                            input-to-output path)
``r_out``                   edges entering sink nodes (removable)                 E
``one_hop``                 mean |{v} u N_out(v)| (igraph ``neighborhood_size``)  E
``two_hop``                 mean |{v} u N_out(v) u N_out(N_out(v))|               E
``strength``                mean weighted degree (in + out, sum of |w|)           n
``coreness``                mean k-core number (undirected)                       E
``bridges``                 edges whose removal disconnects (undirected)          E
``articulation_points``     nodes whose removal disconnects (undirected)          n
``components``              number of weakly connected components                 n
``component_size``          mean size of the weakly connected components (n/c)    n
``spectral_gap``            first minus second distinct singular value of the
                            symmetrised weighted adjacency A + A^T
``laplacian_radius``        largest eigenvalue of L = D - (A + A^T), weighted
``motifs4``                 number of connected induced 4-node subgraphs,         n
                            estimated by 3-path sampling
==========================  ====================================================  ============

The normalisations follow the published MGE tables (one-hop and two-hop sizes are divided by
E there). Not every ``_frac`` is size-free: ``components_frac`` = c / n is 1 / n for any
connected network, and ``component_size_frac`` = 1 / c falls with n when a share of the nodes
is cut off; :mod:`paizoo.regression.agnostic` uses (c - 1) / (n - 1) instead
(``mge.components_rel``: 0 connected, 1 every node isolated).

``two_hop`` is exact while the number of 2-step walks is within the group option
``two_hop_budget`` (default 5e7), otherwise estimated from a node sample stratified by node layer
(option ``two_hop_samples`` sets the minimum sample). ``motifs4`` uses ``motif_samples`` (default
20000) 3-path samples. Both are seeded by ``seed``.

How each metric is computed:

* degree metrics (nodes, edges, sources, sinks, disconnected, r_in, r_out, one_hop, strength)
  come from the explicit CSR when the graph is materialised, else matrix-free from the
  :class:`~paizoo.metrics.operator.MultipartiteOperator` (degrees = the operator applied to
  all-ones vectors; there ``one_hop`` is 1 + out-degree);
* ``spectral_gap`` and ``laplacian_radius`` always use Lanczos iterations (``eigsh``, relative
  tolerance option ``eig_tol``, default 1e-6, or 1e-4 above 2e6 nodes) on the matrix-free
  operator (conv/conv-transpose of |W * M|), or, for masks of density below 0.2, on the CSR of
  the explicit graph when it is built (cheaper than dense convolutions), or on the CSR of a graph
  passed with ``graph=``;
* two_hop, coreness, bridges, articulation_points, components, component_size and motifs4 need
  the explicit graph (:mod:`paizoo.metrics.graphalgo`, vectorised on CSR arrays): NaN when it
  exceeds the edge budget (``scale="auto"``) or with ``scale="matrix_free"``.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator

from .context import MetricContext, nan_dict
from .graphalgo import (
    bridges_and_articulation_points,
    canonical_csr,
    closed_pattern,
    core_numbers,
    mean_two_hop_size,
    motif4_estimate,
    undirected_pattern,
    weak_components,
)
from .linalg import distinct_gap, laplacian, largest_eigenvalue, top_abs_eigenvalues
from .registry import register_metric_group

#: below this global mask density, CSR products of the explicit graph beat dense convolutions
CSR_DENSITY = 0.2
#: above this many nodes the default Lanczos tolerance is 1e-4 instead of 1e-6
LARGE_GRAPH_NODES = 2_000_000

BY_NODES = ("sources", "sinks", "disconnected", "strength", "articulation_points", "components",
            "component_size", "motifs4")
BY_EDGES = ("r_in", "r_out", "one_hop", "two_hop", "coreness", "bridges")
METRICS = ("nodes", "edges", "sources", "sinks", "disconnected", "r_in", "r_out", "one_hop",
           "two_hop", "strength", "coreness", "bridges", "articulation_points", "components",
           "component_size", "spectral_gap", "laplacian_radius", "motifs4")
NAMES = (*METRICS, *(f"{m}_frac" for m in (*BY_NODES, *BY_EDGES)))
EXPLICIT_ONLY = ("two_hop", "coreness", "bridges", "articulation_points", "components",
                 "component_size", "motifs4")


def degree_metrics(in_deg: np.ndarray, out_deg: np.ndarray, input_nodes: np.ndarray,
                   output_nodes: np.ndarray, total_weight: float,
                   one_hop: float | None = None) -> dict[str, float]:
    """Metrics that need only in/out-degrees: sources, sinks, disconnected, r_in, r_out, one_hop
    (1 + mean out-degree unless given), strength (2 * total |w| / n)."""
    n = in_deg.size
    is_input = np.zeros(n, dtype=bool)
    is_input[np.asarray(input_nodes, dtype=np.int64)] = True
    is_output = np.zeros(n, dtype=bool)
    is_output[np.asarray(output_nodes, dtype=np.int64)] = True
    sources = (in_deg == 0) & (out_deg > 0) & ~is_input
    sinks = (out_deg == 0) & (in_deg > 0) & ~is_output
    return {
        "nodes": float(n),
        "edges": float(out_deg.sum()),
        "sources": float(sources.sum()),
        "sinks": float(sinks.sum()),
        "disconnected": float(((in_deg == 0) & (out_deg == 0)).sum()),
        "r_in": float(out_deg[sources].sum()),
        "r_out": float(in_deg[sinks].sum()),
        "one_hop": (one_hop if one_hop is not None else 1.0 + float(out_deg.mean())) if n
        else math.nan,
        "strength": 2.0 * total_weight / n if n else math.nan,
    }


def explicit_metrics(a: sp.csr_array, u: sp.csr_array, strata: list[np.ndarray] | None, *,
                     motif_samples: int, two_hop_budget: float, two_hop_samples: int,
                     seed: int, closed: sp.csr_array | None = None,
                     components: tuple[int, np.ndarray] | None = None) -> dict[str, float]:
    """The metrics that need the explicit graph (CSR ``a``, its undirected pattern ``u``, and
    optionally its closed pattern I + A and ``weak_components(u)``)."""
    n = a.shape[0]
    n_comp, labels = weak_components(u) if components is None else components
    bridges, articulation = bridges_and_articulation_points(u, labels)
    two_hop, _ = mean_two_hop_size(a, strata=strata, work_budget=two_hop_budget,
                                   min_samples=two_hop_samples, seed=seed, closed=closed)
    return {
        "two_hop": two_hop,
        "coreness": float(core_numbers(u).mean()) if n else math.nan,
        "bridges": float(bridges.shape[0]),
        "articulation_points": float(articulation.size),
        "components": float(n_comp),
        "component_size": n / n_comp if n_comp else math.nan,
        "motifs4": motif4_estimate(u, samples=motif_samples, seed=seed),
    }


def spectral_metrics(symmetric: LinearOperator | sp.csr_array,
                     lap: LinearOperator | sp.csr_array, tol: float = 1e-6) -> dict[str, float]:
    """Weighted spectral gap (distinct singular values of A + A^T) and Laplacian radius."""
    return {"spectral_gap": distinct_gap(top_abs_eigenvalues(symmetric, k=4, tol=tol)),
            "laplacian_radius": largest_eigenvalue(lap, tol=tol)}


def _normalise(out: dict[str, float]) -> dict[str, float]:
    n, e = out["nodes"], out["edges"]
    for name in BY_NODES:
        out[f"{name}_frac"] = out[name] / n if n else math.nan
    for name in BY_EDGES:
        out[f"{name}_frac"] = out[name] / e if e else math.nan
    return {name: float(out[name]) for name in NAMES}


def mge_metrics_from_graph(graph: Any, *, motif_samples: int = 20000,
                           two_hop_budget: float = 5e7, two_hop_samples: int = 256,
                           seed: int = 0, eig_tol: float = 1e-6, operator: Any = None,
                           undirected: sp.csr_array | None = None,
                           components: tuple[int, np.ndarray] | None = None) -> dict[str, float]:
    """All ``mge`` metrics of a :class:`~paizoo.graph.LayeredGraph` (see the module docstring).

    With ``operator`` (the graph's :class:`~paizoo.metrics.operator.MultipartiteOperator`), the
    spectral metrics run matrix-free; otherwise on the CSR. ``undirected``: the graph's
    :func:`~paizoo.metrics.graphalgo.undirected_pattern` and ``components`` its
    :func:`~paizoo.metrics.graphalgo.weak_components`, if already computed.
    """
    a = canonical_csr(graph.adjacency)
    n = a.shape[0]  # every stored entry is an edge (a kept zero weight included)
    out_deg = np.diff(a.indptr).astype(np.int64)
    in_deg = np.bincount(a.indices, minlength=n).astype(np.int64)
    closed = closed_pattern(a)
    one_hop = float(np.diff(closed.indptr).mean()) if n else math.nan
    out = degree_metrics(in_deg, out_deg, graph.input_nodes, graph.output_nodes,
                         float(np.abs(a.data).astype(np.float64).sum()), one_hop)
    def spectra() -> dict[str, float]:
        if a.nnz == 0:
            return {"spectral_gap": math.nan, "laplacian_radius": math.nan}
        if operator is not None:
            return spectral_metrics(operator.symmetric(True), operator.laplacian(True), eig_tol)
        weights = sp.csr_array((np.abs(a.data).astype(np.float64), a.indices, a.indptr),
                               shape=a.shape)
        symmetric = sp.csr_array(weights + weights.T)
        return spectral_metrics(aslinearoperator(symmetric) if n > 2048 else symmetric,
                                laplacian(symmetric), eig_tol)

    # the Lanczos iterations (torch convolutions / sparse products, which release the GIL) run
    # on a second thread while the combinatorial algorithms run here
    with ThreadPoolExecutor(max_workers=1) as pool:
        spectral = pool.submit(spectra)
        u = undirected_pattern(a) if undirected is None else undirected
        strata = [np.arange(layer.start, layer.stop) for layer in graph.layers] or None
        out.update(explicit_metrics(a, u, strata, motif_samples=motif_samples,
                                    two_hop_budget=two_hop_budget,
                                    two_hop_samples=two_hop_samples, seed=seed, closed=closed,
                                    components=components))
        del closed
        out.update(spectral.result())
    return _normalise(out)


def mge_metrics_matrix_free(operator: Any, eig_tol: float = 1e-6) -> dict[str, float]:
    """The ``mge`` metrics computable without the explicit graph; the others are NaN."""
    out = degree_metrics(operator.in_degree(), operator.out_degree(), operator.input_nodes,
                         operator.output_nodes, float(operator.out_strength().sum()))
    out.update(dict.fromkeys(EXPLICIT_ONLY, math.nan))
    if out["edges"]:
        out.update(spectral_metrics(operator.symmetric(True), operator.laplacian(True), eig_tol))
    else:
        out.update(spectral_gap=math.nan, laplacian_radius=math.nan)
    return _normalise(out)


@register_metric_group("mge", needs_input_shape=True,
                       options=("motif_samples", "two_hop_budget", "two_hop_samples", "eig_tol"),
                       description="topometrics of the multipartite graph (sources, sinks, "
                                   "r-in/out, hops, k-core, bridges, spectra, motifs)")
def mge_metrics(ctx: MetricContext) -> dict[str, float]:
    """Topological metrics of the multipartite (unrolled) graph encoding."""
    options = {"motif_samples": int(ctx.option("mge", "motif_samples", 20000)),
               "two_hop_budget": float(ctx.option("mge", "two_hop_budget", 5e7)),
               "two_hop_samples": int(ctx.option("mge", "two_hop_samples", 256)),
               "seed": ctx.seed}
    eig_tol = ctx.option("mge", "eig_tol", None)
    if ctx.graph is not None:  # the caller's graph: everything on its CSR
        if not ctx.explicit_graph_allowed("mge"):
            return nan_dict(list(NAMES))
        return mge_metrics_from_graph(ctx.graph, eig_tol=float(eig_tol or 1e-6), **options)
    operator = ctx.operator("mge")
    if operator is None:
        return nan_dict(list(NAMES))
    if eig_tol is None:  # looser on graphs where each Lanczos step is a full network pass
        eig_tol = 1e-6 if operator.num_nodes <= LARGE_GRAPH_NODES else 1e-4
    graph = ctx.explicit_graph("mge (two_hop, coreness, bridges, components, motifs)")
    if graph is None:
        return mge_metrics_matrix_free(operator, eig_tol)
    # sparse masks: CSR products are cheaper than the dense convolutions of the operator
    sparse = ctx.mask.density < CSR_DENSITY
    return mge_metrics_from_graph(graph, eig_tol=eig_tol, operator=None if sparse else operator,
                                  undirected=ctx.undirected_pattern(),
                                  components=ctx.undirected_components(), **options)
