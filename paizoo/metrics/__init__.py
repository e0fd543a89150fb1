"""Topological metrics of sparse networks.

Quick start::

    import paizoo.metrics as pm
    row = pm.compute(model, mask, input_shape=(3, 32, 32))            # {"density.global": ...}
    df = pm.compute_many(model, {"snip": m1, "synflow": m2}, (3, 32, 32), groups=["ramanujan"])
    d = pm.nnstd(mask_a, mask_b).distance

Every metric is a float in one flat row keyed ``"<group>.<metric>"``; ``<param>`` below is a
masked parameter's name (``layer1.0.conv1.weight``). NaN marks a metric that is undefined for the
mask or was skipped at the chosen ``scale``. Each group's module docstring gives the formulas.

=============  ==================================================================================
group          metrics
=============  ==================================================================================
``density``    ``global``, ``kept``, ``total``, ``<param>`` (kept / total)
               — :mod:`paizoo.metrics.density`
``effective``  ``weights``, ``density``, ``sparsity``, ``inactive_frac``, ``paths_log10``,
               ``nodes``, ``nodes_frac``, ``channels``, ``channels_frac``, ``density.<param>``
               (Vysogorets & Kempe 2021; Pham et al. 2023) — :mod:`paizoo.metrics.effective`
``ramanujan``  per layer ``d_left``, ``d_right``, ``mu0``, ``mu_hat``, ``bound``, ``delta_r``,
               ``delta_r_norm``, ``delta_s``, ``wgap``, ``imdb``, ``imdb_norm`` as
               ``<metric>.<param>``; ``<metric>_mean`` / ``<metric>_min`` for delta_r,
               delta_r_norm, delta_s, wgap, imdb, imdb_norm; ``ramanujan_frac``,
               ``eligible_frac`` (Hoang et al., ICLR 2023) — :mod:`paizoo.metrics.ramanujan`
``spectral``   ``gap.<param>``, ``lambda2.<param>``, ``gap_mean``, ``lambda2_mean``,
               ``lambda2_min``, ``network_gap``, ``network_lambda2`` (Bourely et al. 2017)
               — :mod:`paizoo.metrics.spectral`
``scatter``    ``forward.<param>``, ``backward.<param>`` (Linear junctions), ``io_forward``,
               ``io_backward``, ``min`` (Dey et al. 2018) — :mod:`paizoo.metrics.scatter`
``mge``        ``nodes``, ``edges``, ``sources``, ``sinks``, ``disconnected``, ``r_in``,
               ``r_out``, ``one_hop``, ``two_hop``, ``strength``, ``coreness``, ``bridges``,
               ``articulation_points``, ``components``, ``component_size``, ``spectral_gap``,
               ``laplacian_radius``, ``motifs4``, and ``<metric>_frac`` normalised by nodes or
               edges (Cunegatti et al. 2024) — :mod:`paizoo.metrics.mge`
=============  ==================================================================================

NNSTD (Liu et al. 2020) compares two masks and is not part of the row: :func:`nnstd`.

Scale: ``scale="exact"`` materialises the explicit multipartite graph where needed (and raises
:class:`GraphTooLargeError` above ``edge_budget`` edges), ``"matrix_free"`` never does, ``"auto"``
(default) picks ``"exact"`` within the budget. Without the explicit graph, only the ``mge``
metrics that are combinatorial (two_hop, coreness, bridges, articulation_points, components,
component_size, motifs4) are NaN: ``density``, ``effective``, ``ramanujan``, ``spectral`` and
``scatter``, and the ``mge`` degree and spectral metrics, work layer by layer on tensors
(:mod:`paizoo.metrics.linearize` for paths, :mod:`paizoo.metrics.operator` for the multipartite
graph as a conv/conv-transpose operator). Network-level ``spectral`` metrics are skipped (NaN)
above ``network_max_nodes`` nodes (default 2e6).

Add a group with :func:`register_metric_group`.
"""

from __future__ import annotations

from .api import compute, compute_many
from .context import (
    DEFAULT_EDGE_BUDGET,
    ExplicitGraphSkippedWarning,
    GraphTooLargeError,
    MetricContext,
)
from .effective import effective_mask
from .nnstd import NNSTDResult, nnstd
from .registry import (
    MetricGroup,
    MetricOptionError,
    UnknownMetricGroupError,
    get_metric_group,
    list_metric_groups,
    metric_group_summaries,
    register_metric_group,
)

__all__ = [
    "DEFAULT_EDGE_BUDGET",
    "ExplicitGraphSkippedWarning",
    "GraphTooLargeError",
    "MetricContext",
    "MetricGroup",
    "MetricOptionError",
    "NNSTDResult",
    "UnknownMetricGroupError",
    "compute",
    "compute_many",
    "effective_mask",
    "get_metric_group",
    "list_metric_groups",
    "metric_group_summaries",
    "nnstd",
    "register_metric_group",
]
