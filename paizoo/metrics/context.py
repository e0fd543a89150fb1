"""What a metric group sees: :class:`MetricContext`, with lazily built, shared intermediate results.

Several groups need the same expensive objects (the multipartite graph, the linearised network,
the rolled bipartite graphs); the context builds each at most once per :func:`compute` call.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import MaskMismatchError, MissingDataError, PaizooError
from ..masks import Mask
from ..params import prunable_modules

Scale = Literal["auto", "exact", "matrix_free"]
SCALES: tuple[str, ...] = ("auto", "exact", "matrix_free")

#: default limit on the edges of an explicitly materialised graph (about 2-3 GB of CSR + work)
DEFAULT_EDGE_BUDGET = 50_000_000


class GraphTooLargeError(PaizooError, MemoryError):
    """A metric needs the explicit graph and the graph exceeds the edge budget."""


class ExplicitGraphSkippedWarning(UserWarning):
    """Metrics that need the explicit graph were skipped (reported as NaN) at this scale."""


@dataclass
class MetricContext:
    """Inputs and shared caches of one metrics computation.

    Attributes:
        model: the network (not modified).
        mask: the mask, on the CPU; prunable weights it does not name count as dense.
        input_shape: one input sample's shape, without batch dimension, or None.
        scale: ``"auto"``, ``"exact"`` or ``"matrix_free"`` (see :func:`paizoo.metrics.compute`).
        edge_budget: the largest explicit graph (edges) that may be materialised.
        seed: seeds every sampled estimate.
        options: per-group options, ``{group: {option: value}}``.
    """

    model: nn.Module
    mask: Mask
    input_shape: tuple[int, ...] | None = None
    scale: Scale = "auto"
    edge_budget: int = DEFAULT_EDGE_BUDGET
    seed: int = 0
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    graph: Any = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale!r}")
        if self.input_shape is not None:
            self.input_shape = tuple(int(s) for s in self.input_shape)

    # ---- basic views ---------------------------------------------------------------------------
    def option(self, group: str, name: str, default: Any) -> Any:
        return self.options.get(group, {}).get(name, default)

    def require_input_shape(self, what: str) -> tuple[int, ...]:
        if self.input_shape is None:
            raise MissingDataError(
                f"{what} needs input_shape= (one sample's shape without the batch dimension, "
                "e.g. (3, 32, 32))")
        return self.input_shape

    @property
    def modules(self) -> dict[str, nn.Module]:
        """``{param name: module}`` for the masked parameters, in mask order."""
        if "modules" not in self._cache:
            owners = prunable_modules(self.model)
            missing = [n for n in self.mask if n not in owners]
            if missing:
                parametrized = [n for n in missing if ".parametrizations." in n]
                hint = (f"; {parametrized[:5]} are parametrized weights (weight norm, ...), which "
                        "only the groups built on the graph encodings (density, ramanujan, "
                        "spectral, mge) read: bake the parametrization in first "
                        "(torch.nn.utils.parametrize.remove_parametrizations(module, 'weight')) "
                        "and prune that model" if parametrized else "")
                raise MaskMismatchError(
                    f"mask entries {missing[:5]} are not prunable Conv/Linear weights of "
                    f"{type(self.model).__name__}{hint}")
            self._cache["modules"] = {n: owners[n] for n in self.mask}
        return self._cache["modules"]

    def weight(self, name: str) -> torch.Tensor:
        """The dense weight of a masked parameter (``weight_orig`` when a mask is applied)."""
        module = self.modules[name]
        w = getattr(module, "weight_orig", None)
        return (w if w is not None else module.weight).detach().cpu()

    def biadjacency(self, name: str, weighted: bool = False) -> sp.csr_array:
        """Rolled bipartite graph of a masked parameter as a CSR biadjacency (rows: the left
        nodes, the ``(c_in, kernel tap)`` fan-in positions, row-major; columns: the output
        channels), from :func:`paizoo.graph.bipartite`. Entries: 1, or |w| with ``weighted``."""
        if "bge" not in self._cache:
            from ..graph import bipartite

            self._cache["bge"] = bipartite(self.model, self.mask, "rolled")
        key = f"bi:{name}:{weighted}"
        if key not in self._cache:
            graph = self._cache["bge"][name]
            block = sp.csr_array(graph.block(graph.layers[0], graph.layers[1]))
            data = (block.data.astype(np.float64) if weighted
                    else np.ones(block.nnz, dtype=np.float64))
            self._cache[key] = sp.csr_array((data, block.indices.astype(np.int64),
                                             block.indptr.astype(np.int64)), shape=block.shape)
        return self._cache[key]

    # ---- the linearised network ---------------------------------------------------------------
    def linearized(self) -> nn.Module:
        from .linearize import linearized_copy

        if "linearized" not in self._cache:
            self._cache["linearized"] = linearized_copy(self.model, self.mask, torch.float64)
        return self._cache["linearized"]

    def layer_traces(self) -> dict[str, Any]:
        from .linearize import trace_layers

        if "traces" not in self._cache:
            shape = self.require_input_shape("tracing the unrolled layers")
            self._cache["traces"] = trace_layers(self.linearized().float(), shape)
            self.linearized().double()
        return self._cache["traces"]

    def unrolled_edges(self) -> int:
        """Edges of all Conv/Linear layers of the unrolled graph (computed matrix-free)."""
        return int(sum(t.edges for t in self.layer_traces().values()))

    # ---- the explicit multipartite graph --------------------------------------------------------
    def operator(self, what: str) -> Any:
        """The matrix-free multipartite operator (:mod:`paizoo.metrics.operator`), or None with
        a warning when there is no input shape or the model cannot be traced."""
        if "operator" not in self._cache:
            if self.input_shape is None:
                self._warn_once("noshape", f"{what} needs input_shape=; reported as NaN")
                self._cache["operator"] = None
                return None
            from ..errors import GraphEncodingError, UnsupportedLayerError
            from .operator import multipartite_operator

            try:
                self._cache["operator"] = multipartite_operator(self.model, self.mask,
                                                                self.input_shape)
            except (UnsupportedLayerError, GraphEncodingError) as exc:
                self._warn_once("untraceable", f"{what}: the multipartite graph of "
                                f"{type(self.model).__name__} cannot be built ({exc}); reported "
                                "as NaN")
                self._cache["operator"] = None
        return self._cache["operator"]

    def edge_estimate(self) -> int:
        """Edges of the multipartite graph: the given graph's, else counted matrix-free."""
        if self.graph is not None:
            return int(self.graph.num_edges)
        if "edge_estimate" not in self._cache:
            operator = self.operator("the edge budget") if self.input_shape is not None else None
            self._cache["edge_estimate"] = (operator.num_edges if operator is not None
                                            else self.unrolled_edges())
        return self._cache["edge_estimate"]

    def explicit_graph_allowed(self, what: str) -> bool:
        """Whether ``what`` may materialise the multipartite graph at this scale and budget.

        ``matrix_free``: never. ``exact``: always, but a graph over the edge budget raises
        :class:`GraphTooLargeError`. ``auto``: when the graph fits the budget; otherwise the
        metrics that need it are skipped (NaN) with one warning.
        """
        if self.scale == "matrix_free":
            return False
        edges = self.edge_estimate()
        if edges <= self.edge_budget:
            return True
        if self.scale == "exact":
            raise GraphTooLargeError(
                f"{what} needs the explicit multipartite graph, which has about {edges:,} edges, "
                f"over the edge budget of {self.edge_budget:,}. Raise edge_budget= (each edge "
                "costs roughly 30-60 bytes across the CSR copies these metrics make) or use "
                "scale='auto'/'matrix_free' to skip the metrics that need the explicit graph.")
        self._warn_once("budget",
                        f"the multipartite graph has about {edges:,} edges, over the edge budget "
                        f"of {self.edge_budget:,}: metrics that need the explicit graph ({what}, "
                        "...) are reported as NaN. Raise edge_budget= to compute them.")
        return False

    def multipartite(self) -> Any:
        """The multipartite graph (MGE) as a :class:`~paizoo.graph.LayeredGraph`."""
        if self.graph is not None:
            return self.graph
        if "mge" not in self._cache:
            shape = self.require_input_shape("the multipartite graph encoding")
            from ..graph import multipartite

            self._cache["mge"] = multipartite(self.model, self.mask, shape)
        return self._cache["mge"]

    def explicit_graph(self, what: str) -> Any:
        """The multipartite graph if ``what`` may use it here, else None (metrics become NaN).

        None when: no graph was passed and no input shape is known; the scale or the edge budget
        forbid it (see :meth:`explicit_graph_allowed`); or the model cannot be traced.
        """
        if self.graph is None and self.input_shape is None:
            self._warn_once("noshape", f"{what} needs the multipartite graph: pass input_shape= "
                            "or graph=; reported as NaN")
            return None
        if not self.explicit_graph_allowed(what):
            return None
        from ..errors import GraphEncodingError, UnsupportedLayerError

        try:
            return self.multipartite()
        except (UnsupportedLayerError, GraphEncodingError) as exc:
            self._warn_once("untraceable", f"{what}: the multipartite graph of "
                            f"{type(self.model).__name__} cannot be built ({exc}); reported as "
                            "NaN")
            return None

    def _warn_once(self, key: str, message: str) -> None:
        if not self._cache.get(f"warned_{key}"):
            warnings.warn(message, ExplicitGraphSkippedWarning, stacklevel=4)
            self._cache[f"warned_{key}"] = True

    def undirected_pattern(self) -> sp.csr_array:
        from .graphalgo import undirected_pattern

        if "mge_u" not in self._cache:
            self._cache["mge_u"] = undirected_pattern(self.multipartite().adjacency)
        return self._cache["mge_u"]

    def undirected_components(self) -> tuple[int, np.ndarray]:
        """``(count, labels)`` of the connected components of :meth:`undirected_pattern`."""
        from .graphalgo import weak_components

        if "mge_components" not in self._cache:
            self._cache["mge_components"] = weak_components(self.undirected_pattern())
        return self._cache["mge_components"]

    def undirected_connected_without_isolated(self) -> bool:
        """Whether the undirected multipartite graph, its isolated nodes removed, is connected
        (the components of more than one node number exactly one)."""
        _, labels = self.undirected_components()
        return int((np.bincount(labels) > 1).sum()) == 1


def nan_dict(names: list[str]) -> dict[str, float]:
    return dict.fromkeys(names, math.nan)
