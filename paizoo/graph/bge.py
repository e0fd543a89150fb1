"""Bipartite graph encodings (BGE): one bipartite graph per prunable layer.

``kind="rolled"`` (the encoding of the Ramanujan-graph PaI papers, e.g. Pal et al. 2022 and
Hoang et al. 2023): a convolution's left nodes are the pairs ``(c_in, tap)`` — ``C_in x k_1 x ..``
nodes, ordered row-major — and its right nodes the output channels; kept weight
``w[o, i, k]`` gives the edge ``(g C_in/groups + i, k) -> o`` (``g = o // (C_out/groups)``: the
*true* input channel, so a depthwise layer's left nodes each reach one output channel), weight
``|w|``. Every kept weight is one edge: the out-degrees of the left nodes sum to the layer's kept
count.

``kind="rolled_channel"`` (Prabhu, Varma & Namboodiri, "Deep Expander Networks", ECCV 2018):
left nodes the input channels, right nodes the output channels; an edge ``c_in -> c_out`` where the
kernel ``w[c_out, c_in]`` keeps any weight, weighted by the L2 norm of its kept weights.

A Linear layer is ``in_features -> out_features`` with one edge per kept weight in both kinds.

Each graph is a :class:`~paizoo.graph.types.LayeredGraph` with two node layers of kinds ``"left"``
(named ``"<param>:in"``) and ``"right"`` (``"<param>:out"``); the left->right block is the
biadjacency. Edge existence follows the mask (kept weights equal to zero give explicit zeros).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import NoPrunableParametersError
from ..params import Patterns, prunable_modules
from ._weights import kept_weight, resolve_mask
from .errors import GraphEncodingError
from .types import LayeredGraph, NodeLayer, as_adjacency

BIPARTITE_KINDS = ("rolled", "rolled_channel")


def _biadjacency_graph(name: str, kind: str, rows: np.ndarray, cols: np.ndarray,
                       weights: np.ndarray, left_shape: tuple[int, ...], n_right: int,
                       meta: dict[str, object]) -> LayeredGraph:
    """Canonical CSR from edges already sorted by (left, right) and unique."""
    n_left = int(np.prod(left_shape))
    n = n_left + n_right
    idx_dtype = np.int32 if n < np.iinfo(np.int32).max else np.int64
    counts = np.bincount(rows, minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    indices = (cols + n_left).astype(idx_dtype)
    adjacency = as_adjacency(sp.csr_array((weights.astype(np.float32, copy=False), indices,
                                           indptr.astype(idx_dtype)), shape=(n, n), copy=False))
    layers = [NodeLayer(f"{name}:in", "left", left_shape, 0, n_left),
              NodeLayer(f"{name}:out", "right", (n_right,), n_left, n)]
    return LayeredGraph(adjacency, layers, np.arange(n_left, dtype=np.int64),
                        np.arange(n_left, n, dtype=np.int64),
                        {"encoding": "bge", "kind": kind, "param": name, **meta})


def _sorted_edges(left: np.ndarray, right: np.ndarray, n_right: int) -> np.ndarray:
    return np.argsort(left.astype(np.int64) * n_right + right, kind="stable")


def bipartite_layer(name: str, module: nn.Module, keep: np.ndarray, absw: np.ndarray,
                    kind: str) -> LayeredGraph:
    """The bipartite encoding of one Conv/Linear weight (``keep``, ``|w|`` as arrays)."""
    meta: dict[str, object] = {"module": type(module).__name__, "kept": int(keep.sum())}
    if absw.ndim == 2:  # Linear: (out, in)
        n_out, n_in = absw.shape
        right, left = np.nonzero(keep)
        order = _sorted_edges(left, right, n_out)
        return _biadjacency_graph(name, kind, left[order], right[order],
                                  absw[right, left][order], (n_in,), n_out, meta)
    c_out, c_in_g = absw.shape[:2]
    kernel = tuple(int(k) for k in absw.shape[2:])
    groups = int(getattr(module, "groups", 1))
    c_in = c_in_g * groups
    n_taps = int(np.prod(kernel))
    meta["groups"] = groups
    if kind == "rolled":
        co, ci_local, tap = np.nonzero(keep.reshape(c_out, c_in_g, n_taps))
        ci = (co // (c_out // groups)) * c_in_g + ci_local
        left = ci * n_taps + tap
        w = absw.reshape(c_out, c_in_g, n_taps)[co, ci_local, tap]
        order = _sorted_edges(left, co, c_out)
        return _biadjacency_graph(name, kind, left[order], co[order], w[order],
                                  (c_in, *kernel), c_out, meta)
    if kind == "rolled_channel":
        kept_w = (absw * keep).reshape(c_out, c_in_g, n_taps).astype(np.float64)
        any_kept = keep.reshape(c_out, c_in_g, n_taps).any(axis=2)
        co, ci_local = np.nonzero(any_kept)
        ci = (co // (c_out // groups)) * c_in_g + ci_local
        norms = np.sqrt((kept_w[co, ci_local] ** 2).sum(axis=1))
        order = _sorted_edges(ci, co, c_out)
        return _biadjacency_graph(name, kind, ci[order], co[order], norms[order], (c_in,),
                                  c_out, meta)
    raise GraphEncodingError(f"unknown bipartite kind {kind!r}; choose one of {BIPARTITE_KINDS}")


def bipartite(model: nn.Module, mask: Mapping[str, torch.Tensor] | None = None,
              kind: str = "rolled", *, include: Patterns = None, exclude: Patterns = None
              ) -> dict[str, LayeredGraph]:
    """One bipartite graph per prunable layer of ``model``, keyed by parameter name.

    Args:
        model: any model; its layers are the Conv/Linear modules (the default coverage;
            a weight-normed or spectral-normed weight under the name of its pruned original,
            see :mod:`paizoo.graph._weights`), as in :func:`paizoo.graph.multipartite`.
        mask: a :class:`paizoo.Mask` or ``{name: bool tensor}``; ``None``: dense (or the masks
            applied to the model). Layers without a mask entry are dense.
        kind: ``"rolled"`` (left: ``(c_in, tap)``, one edge per kept weight) or
            ``"rolled_channel"`` (left: ``c_in``, edge weight: the kernel's L2 norm).
        include, exclude: glob patterns selecting layers, as for the pruners.
    """
    if kind not in BIPARTITE_KINDS:
        raise GraphEncodingError(f"unknown bipartite kind {kind!r}; choose one of "
                                 f"{BIPARTITE_KINDS}")
    resolved = resolve_mask(model, mask)
    modules = prunable_modules(model, include, exclude, parametrized=True)
    if not modules:
        raise NoPrunableParametersError(
            f"{type(model).__name__} has no Conv/Linear weight to encode"
            + (f" after include={include!r} / exclude={exclude!r}" if include or exclude else ""))
    graphs: dict[str, LayeredGraph] = {}
    for name, module in modules.items():
        keep, absw = kept_weight(module, "weight", name, resolved)
        graphs[name] = bipartite_layer(name, module, keep, np.abs(absw), kind)
    return graphs
