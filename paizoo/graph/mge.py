"""The multipartite graph encoding (MGE) of a masked network.

After Cunegatti, Farina, Bucur & Iacca, "Understanding Sparse Neural Networks from their Topology
via Multipartite Graph Representations", TMLR 2024: the network, unrolled over a real input size,
becomes a layered directed graph whose nodes are the units of the input and of every layer's
output, and whose edges are the kept weights, one per position where a weight is applied.

Nodes (ids contiguous per node layer, row-major over the layer's shape):

* the input units, ``C x H x W`` of the real input (no padding nodes);
* the output units of every Conv/Linear layer (``C_out x H_out x W_out`` or ``out_features``);
* the output units of every pooling layer (max, average, adaptive, and ``x.mean(dims)``-style
  global pooling).

Edges, directed in the data-flow direction:

* convolution: kept weight ``(o, i, k)`` gives one edge per output position whose receptive-field
  tap falls inside the *unpadded* input: input unit ``(g C_in/groups + i, p*s - pad + k*dil)`` ->
  output unit ``(o, p)`` with ``g = o // (C_out/groups)``, weight ``|w|``. Stride, padding
  (``'same'`` included), dilation and groups (depthwise included) are honoured exactly;
* Linear: one edge per kept weight (per leading position when applied to ``(..., in)``);
* pooling: an edge from every unit of the window (inside the input) to the pooled unit, weight
  1 for max pooling and the PyTorch divisor's inverse for average pooling (``count_include_pad``,
  ``divisor_override`` and adaptive windows honoured), so that weights are the operator's
  coefficients;
* addition: creates no nodes. Each summand's contribution becomes edges into the sum's nodes: a
  convolution (or Linear) summand whose only consumer is the addition — through elementwise
  operations such as BatchNorm — sends its edges there (the node layer takes its name), any other
  summand adds one weight-1 edge per unit (identity shortcuts). Projection and identity shortcuts
  are thus part of the graph. An addition with no such convolution summand (``x + y`` of two
  reused tensors) gets a node layer of kind ``"add"``. A subtraction is an addition (weights are
  magnitudes), adding a constant (a parameter, a number) is elementwise;
* concatenation concatenates node sets; flatten/reshape/permute/slicing/padding relabel units
  (padding units are constants: no edges); elementwise operations (activations, BatchNorm and
  other normalisations, dropout, scaling by constants) create nothing.

Where two edges join the same pair of units (an identity skip and a convolution's centre tap, or
two overlapping windows with ``absorb_pooling``), the adjacency holds **one** entry whose weight is
their sum. Edge existence follows the mask: a kept weight that is exactly zero still gives an edge,
stored as an explicit zero (``adjacency.nnz`` counts it; ``eliminate_zeros()`` would drop it).
Biases and normalisation parameters are not encoded.

``absorb_pooling=True`` reproduces the paper's variant: a pooling layer is not a node layer; the
next layer's edges are copied (same weight) from every unit of the pooling window.

Unlike the public reference implementation, the construction is exact for stride-2 convolutions
with padding, includes identity shortcuts, and is vectorised: the model is traced once
(``torch.fx``, one sample through the network for shapes), reshapes and slices are replayed on
tensors of node ids, and every edge-creating operation becomes a *contribution* whose out-degree
per source unit is known in closed form. The CSR row pointer is summed from those counts, the
final column/weight arrays are allocated once, and each contribution writes its rows in place,
already sorted (index arithmetic on arrays, chunked over channels; never a Python loop per edge
or per output position). Peak memory is about the final CSR (8 bytes per edge) plus one chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..masks import Mask
from ..params import weight_key
from . import _trace as T
from ._blocks import (
    DEFAULT_CHUNK,
    Contribution,
    ConvRows,
    IdentityRows,
    LinearRows,
    RowGenerator,
    Sources,
    VirtualTable,
    WindowRows,
    assemble,
)
from ._tables import (
    AxisTaps,
    Taps,
    adaptive_axis,
    avgpool_axis,
    combine,
    conv_axis,
    identity_axis,
    reduce_axis,
)
from ._weights import kept_weight, resolve_mask
from .errors import GraphEncodingError
from .types import LayeredGraph, NodeLayer

MultipartiteGraph = LayeredGraph
"""The MGE is a :class:`~paizoo.graph.types.LayeredGraph` (one graph type in paizoo)."""

_BATCH = 2  # batch of the id tensors; relabels are checked to be batch-preserving


# ---- values flowing through the encoder ----------------------------------------------------

class _Ids:
    """The node ids of a data tensor's units (a contiguous range, or an explicit array)."""

    __slots__ = ("array", "shape", "start")

    def __init__(self, shape: tuple[int, ...], start: int | None = None,
                 array: np.ndarray | None = None):
        self.shape, self.start, self.array = shape, start, array

    @property
    def size(self) -> int:
        return T.prod(self.shape)

    def flat(self) -> np.ndarray:
        if self.array is None:
            assert self.start is not None
            return np.arange(self.start, self.start + self.size, dtype=np.int64)
        return self.array

    def sources(self) -> Sources:
        if self.array is None:
            assert self.start is not None
            return Sources.contiguous(self.start, self.size)
        return Sources(self.array, 0, self.size)

    def tensor(self) -> torch.Tensor:
        t = torch.from_numpy(self.flat().astype(np.float64)).reshape(self.shape)
        return t.unsqueeze(0).repeat((_BATCH,) + (1,) * len(self.shape))

    def meta(self) -> torch.Tensor:
        return torch.empty((_BATCH, *self.shape), device="meta")

    @classmethod
    def from_array(cls, ids: np.ndarray, shape: tuple[int, ...]) -> _Ids:
        ids = ids.reshape(-1).astype(np.int64, copy=False)
        if ids.size and ids[0] >= 0 and np.array_equal(ids, np.arange(ids[0], ids[0] + ids.size)):
            return cls(shape, start=int(ids[0]))
        return cls(shape, array=ids)


@dataclass
class _Contribution:
    """Edges from the units of ``src`` into a destination's units (not yet placed)."""

    label: str  # "conv layer1.0.conv2", "identity", ...
    kind: str  # conv / linear / pool / identity
    module: str
    src: _Ids
    gen: RowGenerator


class _Pending:
    """A convolution/Linear/addition whose edges go into the nodes of the addition consuming it."""

    __slots__ = ("contributions", "shape")

    def __init__(self, shape: tuple[int, ...], contributions: list[_Contribution]):
        self.shape, self.contributions = shape, contributions

    def meta(self) -> torch.Tensor:
        return torch.empty((_BATCH, *self.shape), device="meta")


# ---- the encoder ---------------------------------------------------------------------------

class _Encoder:
    def __init__(self, gm: fx.GraphModule, plan: T.Plan, mask: Mask | None,
                 input_shape: tuple[int, ...], absorb_pooling: bool, chunk: int):
        self.gm, self.plan, self.mask = gm, plan, mask
        self.input_shape = input_shape
        self.absorb_pooling = absorb_pooling
        self.chunk = chunk
        self.num_nodes = 0
        self.layers: list[NodeLayer] = []
        self.contributions: list[Contribution] = []
        self.sources_of: dict[str, list[str]] = {}
        self.table = VirtualTable() if absorb_pooling else None
        self.absorbed_pools: list[str] = []
        self.names: set[str] = set()
        self.env: dict[fx.Node, Any] = {}

    # -- bookkeeping --------------------------------------------------------------------------
    def _unique(self, name: str) -> str:
        name = name or "layer"
        if name not in self.names:
            self.names.add(name)
            return name
        k = 2
        while f"{name}#{k}" in self.names:
            k += 1
        self.names.add(f"{name}#{k}")
        return f"{name}#{k}"

    def _allocate(self, name: str, kind: str, shape: tuple[int, ...]) -> _Ids:
        start, size = self.num_nodes, T.prod(shape)
        self.layers.append(NodeLayer(self._unique(name), kind, tuple(shape), start, start + size))
        self.num_nodes += size
        return _Ids(tuple(shape), start=start)

    def _materialise(self, name: str, kind: str, shape: tuple[int, ...],
                     contributions: Sequence[_Contribution]) -> _Ids:
        ids = self._allocate(name, kind, shape)
        layer = self.layers[-1]
        for c in contributions:
            self.contributions.append(Contribution(c.gen, c.src.sources(), layer.start,
                                                   layer.size, c.label))
        self.sources_of[layer.name] = [c.label for c in contributions]
        return ids

    # -- value conversions ----------------------------------------------------------------------
    def _value(self, node: fx.Node) -> Any:
        return self.env[node]

    def _ids(self, node: fx.Node) -> _Ids:
        value = self.env[node]
        if not isinstance(value, _Ids):  # pragma: no cover - prevented by the plan
            raise RuntimeError(f"fx node {node.name!r} has no node ids")
        return value

    def _args(self, node: fx.Node, convert: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        def load(n: fx.Node) -> Any:
            value = self.env[n]
            return convert(value) if isinstance(value, (_Ids, _Pending)) else value

        args = fx.node.map_arg(node.args, load)
        kwargs = fx.node.map_arg(node.kwargs, load)
        return args, kwargs  # type: ignore[return-value]

    def _call(self, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]
        if node.op == "call_method":
            self_obj, *rest = args
            return getattr(self_obj, str(node.target))(*rest, **kwargs)
        if node.op == "call_module":
            return self.gm.get_submodule(str(node.target))(*args, **kwargs)
        if node.op == "get_attr":
            obj: Any = self.gm
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            return obj
        raise RuntimeError(f"cannot evaluate fx op {node.op}")

    # -- main loop ------------------------------------------------------------------------------
    def run(self, progress: bool) -> LayeredGraph:
        plan = self.plan
        live = [n for n in self.gm.graph.nodes if n in plan.live]
        output_ids: list[np.ndarray] = []
        for node in tqdm(live, desc="MGE", disable=not progress, leave=False):
            kind = plan.kind[node]
            if kind == "input":
                self.env[node] = self._allocate("input", "input", self.input_shape)
            elif kind == "const":
                self.env[node] = self._const(node)
            elif kind == "shape":
                args, kwargs = self._args(node, lambda v: v.meta())
                self.env[node] = self._call(node, args, kwargs)
            elif kind == "elementwise":
                src = next(a for a in T._flat_nodes((node.args, node.kwargs)) if plan.dep.get(a))
                self.env[node] = self.env[src]
            elif kind == "relabel":
                self.env[node] = self._relabel(node)
            elif kind in ("conv", "linear", "pool", "reduce"):
                self.env[node] = self._layer(node, kind)
            elif kind == "add":
                self.env[node] = self._add(node)
            elif kind == "output":
                for a in T._flat_nodes(node.args):
                    value = self.env[a]
                    if isinstance(value, _Ids):
                        output_ids.append(value.flat())
            self._release(node)
        return self._finish(output_ids, progress)

    def _release(self, node: fx.Node) -> None:
        for a in T._flat_nodes((node.args, node.kwargs)):
            if self.plan.last_use.get(a) is node:
                self.env.pop(a, None)

    def _const(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            return node.args[0] if node.args else None
        args, kwargs = self._args(node, lambda v: v)
        return self._call(node, args, kwargs)

    # -- relabels -------------------------------------------------------------------------------
    def _relabel(self, node: fx.Node) -> Any:
        def to_tensor(value: Any) -> torch.Tensor:
            if isinstance(value, _Pending):  # pragma: no cover - prevented by the plan
                raise RuntimeError("relabel of an absorbed value")
            return value.tensor()

        args, kwargs = self._args(node, to_tensor)
        target = node.target
        if node.op == "call_function" and target in (torch.cat, torch.concat, torch.concatenate,
                                                     torch.stack):
            seq = [t if self._is_data(a) else torch.full_like(t, -1.0, dtype=torch.float64)
                   for a, t in zip(_seq_nodes(node), args[0], strict=True)]
            out = target(seq, *args[1:], **kwargs)  # type: ignore[operator]
        elif node.op == "call_function" and target in (F.pad, torch._C._nn.pad,
                                                       torch.constant_pad_nd):
            out = _pad_ids(target, args, kwargs)
        elif node.op == "call_module" and isinstance(
                self.gm.get_submodule(str(target)), nn.modules.padding._ConstantPadNd):
            module = self.gm.get_submodule(str(target))
            out = F.pad(args[0], module.padding, mode="constant", value=-1.0)
        else:
            out = self._call(node, args, kwargs)
        return _wrap_ids(out, self.gm, node)

    def _is_data(self, node: Any) -> bool:
        return isinstance(node, fx.Node) and bool(self.plan.dep.get(node))

    # -- node-creating layers ---------------------------------------------------------------------
    def _layer(self, node: fx.Node, kind: str) -> Any:
        data_arg = next(a for a in T._flat_nodes((node.args, node.kwargs)) if self.plan.dep.get(a))
        src = self._ids(data_arg)
        in_shape, out_shape = T.unit_shape(data_arg), T.unit_shape(node)
        if kind == "conv":
            contribution = self._conv(node, src, in_shape, out_shape)
        elif kind == "linear":
            contribution = self._linear(node, src, in_shape, out_shape)
        else:
            contribution = self._window(node, kind, src, in_shape, out_shape)
        if kind in ("pool", "reduce"):
            name = _layer_name(node)
            if self.absorb_pooling:
                return self._absorb_pool(name, contribution, out_shape)
            return self._materialise(name, "pool", out_shape, [contribution])
        if node in self.plan.absorbed:
            return _Pending(out_shape, [contribution])
        return self._materialise(contribution.module, kind, out_shape, [contribution])

    def _absorb_pool(self, name: str, contribution: _Contribution, out_shape: tuple[int, ...]
                     ) -> _Ids:
        assert self.table is not None
        size = T.prod(out_shape)
        base = self.table.add_window(contribution.gen, contribution.src.sources(), size)
        self.absorbed_pools.append(self._unique(name))
        return _Ids(out_shape, array=-2 - np.arange(base, base + size, dtype=np.int64))

    def _weight(self, node: fx.Node) -> tuple[str, np.ndarray, np.ndarray, nn.Module | None]:
        """(module name, keep, |w|, module) of a Conv/Linear module or functional call."""
        if node.op == "call_module":
            module = self.gm.get_submodule(str(node.target))
            name = str(node.target)
            keep, weight = kept_weight(module, "weight", weight_key(name, module), self.mask)
            return name, keep, weight, module
        weight = node.args[1] if len(node.args) > 1 else node.kwargs["weight"]
        owner_name, _, attr = str(weight.target).rpartition(".")
        owner = self.gm.get_submodule(owner_name) if owner_name else self.gm
        logical = attr[: -len("_orig")] if attr.endswith("_orig") else attr
        full = f"{owner_name}.{logical}" if owner_name else logical
        keep, weight = kept_weight(owner, attr, full, self.mask)
        return owner_name or node.name, keep, weight, None

    def _conv_geometry(self, node: fx.Node, weight: torch.Tensor, module: nn.Module | None,
                       in_shape: tuple[int, ...]
                       ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]:
        """(stride, padding, dilation, groups) of a convolution node, from its module or, for a
        functional call, from the call's arguments; the input must be unbatched (C, *spatial)."""
        nd = weight.ndim - 2
        if module is not None:
            stride, dilation = T.ntuple(module.stride, nd), T.ntuple(module.dilation, nd)
            padding = T.conv_padding(module.padding, weight.shape[2:], dilation)
            groups = int(module.groups)
        else:
            params = _bind(self.gm, node, ("input", "weight", "bias", "stride", "padding",
                                           "dilation", "groups"),
                           {"stride": 1, "padding": 0, "dilation": 1, "groups": 1})
            stride, dilation = T.ntuple(params["stride"], nd), T.ntuple(params["dilation"], nd)
            padding = T.conv_padding(params["padding"], weight.shape[2:], dilation)
            groups = int(params["groups"])
        if len(in_shape) != nd + 1:
            raise T.unsupported(self.gm, node, f"input of shape {in_shape} (unbatched input?)")
        return stride, padding, dilation, groups

    def _conv(self, node: fx.Node, src: _Ids, in_shape: tuple[int, ...],
              out_shape: tuple[int, ...]) -> _Contribution:
        name, keep, weight, module = self._weight(node)
        stride, padding, dilation, groups = self._conv_geometry(node, weight, module, in_shape)
        gen = ConvRows(weight, keep, in_shape, out_shape, stride, padding, dilation, groups,
                       self.chunk)
        return _Contribution(f"conv {name}", "conv", name, src, gen)

    def _linear(self, node: fx.Node, src: _Ids, in_shape: tuple[int, ...],
                out_shape: tuple[int, ...]) -> _Contribution:
        name, keep, weight, _ = self._weight(node)
        if not in_shape or in_shape[-1] != weight.shape[1]:
            raise T.unsupported(self.gm, node, f"input of shape {in_shape}")
        gen = LinearRows(weight, keep, T.prod(in_shape[:-1]), self.chunk)
        return _Contribution(f"linear {name}", "linear", name, src, gen)

    def _window(self, node: fx.Node, kind: str, src: _Ids, in_shape: tuple[int, ...],
                out_shape: tuple[int, ...]) -> _Contribution:
        axes, override = (_pool_axes(self.gm, node, in_shape, out_shape) if kind == "pool"
                          else (_reduce_axes(self.gm, node, in_shape), None))
        name = _layer_name(node)

        def taps() -> Taps:
            combined = combine(axes)
            if override is not None:
                combined = Taps(combined.valid, combined.start, combined.offset,
                                np.full(combined.valid.shape, 1.0 / override))
            return combined

        gen = WindowRows(taps, T.prod(in_shape), self.chunk)
        return _Contribution(f"pool {name}", "pool", name, src, gen)

    # -- additions --------------------------------------------------------------------------------
    def _add(self, node: fx.Node) -> Any:
        shape = T.unit_shape(node)
        contributions: list[_Contribution] = []
        for a in T._flat_nodes((node.args, node.kwargs)):
            if not self.plan.dep.get(a):
                continue
            value = self.env[a]
            if isinstance(value, _Pending):
                contributions.extend(value.contributions)
                continue
            ids = value.flat().reshape(value.shape)
            try:
                ids = np.broadcast_to(ids, shape)
            except ValueError as exc:
                raise T.unsupported(self.gm, node, f"summand of shape {value.shape} does not "
                                    f"broadcast to {shape}") from exc
            summand = _Ids.from_array(np.ascontiguousarray(ids), shape)
            contributions.append(_Contribution("identity", "identity", "", summand,
                                               IdentityRows(shape)))
        if node in self.plan.absorbed:
            return _Pending(shape, contributions)
        named = next((c for c in contributions if c.kind in ("conv", "linear")), None)
        if named is not None:
            return self._materialise(named.module, named.kind, shape, contributions)
        return self._materialise(_layer_name(node), "add", shape, contributions)

    # -- result -----------------------------------------------------------------------------------
    def _layer_inputs(self) -> dict[str, list[str]]:
        """For each node layer, the node layers its in-edges come from (in layer order)."""
        starts = np.array([x.start for x in self.layers], dtype=np.int64)
        found: dict[str, set[int]] = {x.name: set() for x in self.layers}
        for c in self.contributions:
            src = c.sources
            if src.ids is None:
                nodes = np.array([src.start, src.start + src.size - 1], dtype=np.int64)
                first, last = np.searchsorted(starts, nodes, side="right") - 1
                layers = set(range(int(first), int(last) + 1))
            else:
                nodes = self.table.expand(src.ids) if self.table is not None else src.ids
                nodes = nodes[nodes >= 0]
                layers = set(np.unique(np.searchsorted(starts, nodes, side="right") - 1).tolist())
            target = int(np.searchsorted(starts, c.dst0, side="right") - 1)
            found[self.layers[target].name] |= layers
        return {name: [self.layers[k].name for k in sorted(v)] for name, v in found.items()
                if self.layers[0].name != name}

    def _finish(self, output_ids: list[np.ndarray], progress: bool) -> LayeredGraph:
        outputs = np.concatenate(output_ids) if output_ids else np.zeros(0, dtype=np.int64)
        if self.table is not None:
            outputs = self.table.expand(outputs)
        outputs = np.unique(outputs[outputs >= 0])

        def bar(order: list[int]) -> Any:
            return tqdm(order, desc="MGE edges", disable=not progress, leave=False)

        layer_inputs = self._layer_inputs()
        adjacency, stats = assemble(self.num_nodes, self.contributions, self.table, bar)
        self.contributions = []
        meta = {
            "encoding": "mge",
            "model": type(self.gm).__name__,
            "input_shape": tuple(self.input_shape),
            "absorb_pooling": self.absorb_pooling,
            "layer_sources": self.sources_of,
            "layer_inputs": layer_inputs,
            "raw_edges": stats.raw_edges,
            "edge_weight": "|w| (sum where contributions join the same pair of units)",
        }
        if self.absorb_pooling:
            meta["absorbed_pools"] = self.absorbed_pools
        return LayeredGraph(adjacency, self.layers, self.layers[0].ids, outputs, meta)


# ---- helpers ---------------------------------------------------------------------------------

def _seq_nodes(node: fx.Node) -> list[Any]:
    seq = node.args[0] if node.args else node.kwargs.get("tensors")
    return list(seq)  # type: ignore[arg-type]


def _pad_ids(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    names = ("input", "pad", "mode", "value")
    params = dict(zip(names, args, strict=False))
    params.update(kwargs)
    if target is torch.constant_pad_nd:
        return torch.constant_pad_nd(params["input"], params["pad"], -1.0)
    mode = params.get("mode", "constant")
    if mode == "constant":
        return F.pad(params["input"], params["pad"], mode="constant", value=-1.0)
    return F.pad(params["input"], params["pad"], mode=mode)


def _wrap_ids(out: Any, gm: fx.GraphModule, node: fx.Node) -> Any:
    if isinstance(out, torch.Tensor):
        if out.dim() == 0 or out.shape[0] != _BATCH or not bool((out == out[:1]).all()):
            raise T.unsupported(gm, node, "the operation mixes the batch dimension")
        first = out[0]
        return _Ids.from_array(np.rint(first.reshape(-1).numpy()).astype(np.int64),
                               tuple(int(v) for v in first.shape))
    if isinstance(out, (tuple, list)):
        return type(out)(_wrap_ids(o, gm, node) for o in out)
    return out


def _bind(gm: fx.GraphModule, node: fx.Node, names: Sequence[str], defaults: Mapping[str, Any]
          ) -> dict[str, Any]:
    """The call's parameters by name; sizes computed from traced shapes (``x.size()[3]``,
    ``x.shape[-1]``) become their values. ``input``/``weight``/``bias`` stay fx nodes."""
    params = dict(defaults)
    params.update(zip(names, node.args, strict=False))
    params.update(node.kwargs)
    return {k: v if k in ("input", "weight", "bias") else T.concrete(gm, node, v)
            for k, v in params.items()}


def _layer_name(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    path = T.where(node)
    return f"{path}.{node.name}" if path else node.name


def _pool_axes(gm: fx.GraphModule, node: fx.Node, in_shape: tuple[int, ...],
               out_shape: tuple[int, ...]) -> tuple[list[AxisTaps], float | None]:
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        name = type(m).__name__
        nd = int(name[-2])
        op = ("adaptive_avg" if "AdaptiveAvg" in name else "adaptive_max" if "AdaptiveMax" in name
              else "avg" if "Avg" in name else "max")
        params: dict[str, Any] = {k: getattr(m, k, None) for k in (
            "kernel_size", "stride", "padding", "dilation", "count_include_pad",
            "divisor_override")}
    else:
        op, nd = T.POOL_FUNCTIONS[node.target]
        if op == "max":
            names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode")
        elif op == "avg":
            names = ("input", "kernel_size", "stride", "padding", "ceil_mode",
                     "count_include_pad", "divisor_override")
        else:
            names = ("input", "output_size")
        params = _bind(gm, node, names, {"stride": None, "padding": 0, "dilation": 1,
                                     "count_include_pad": True, "divisor_override": None})
    if len(in_shape) < nd + 1 or len(out_shape) != len(in_shape):
        raise T.unsupported(gm, node, f"pooling an input of shape {in_shape}")
    lead = [identity_axis(v) for v in in_shape[:-nd]]
    sizes = list(zip(in_shape[-nd:], out_shape[-nd:], strict=True))
    if op.startswith("adaptive"):
        return lead + [adaptive_axis(i, o, op == "adaptive_avg") for i, o in sizes], None
    kernel = T.ntuple(params["kernel_size"], nd)
    stride = T.ntuple(params["stride"] if params["stride"] not in (None, ()) else kernel, nd)
    padding = T.ntuple(params["padding"] or 0, nd)
    if op == "max":
        dilation = T.ntuple(params["dilation"] or 1, nd)
        return lead + [conv_axis(i, o, k, s, p, d) for (i, o), k, s, p, d in
                       zip(sizes, kernel, stride, padding, dilation, strict=True)], None
    include = params["count_include_pad"] if params["count_include_pad"] is not None else True
    axes = [avgpool_axis(i, o, k, s, p, bool(include)) for (i, o), k, s, p in
            zip(sizes, kernel, stride, padding, strict=True)]
    override = params.get("divisor_override")
    return lead + axes, (float(override) if override else None)


def _reduce_axes(gm: fx.GraphModule, node: fx.Node, in_shape: tuple[int, ...]
                 ) -> list[AxisTaps]:
    if node.op == "call_method":
        op = T.REDUCE_METHODS[str(node.target)]
    else:
        op = T.REDUCE_FUNCTIONS[node.target]
    params = _bind(gm, node, ("input", "dim", "keepdim"), {"dim": None})
    dims = params["dim"]
    if dims is None:
        raise T.unsupported(gm, node, "a reduction over all axes, batch included; give dims")
    dims = [dims] if isinstance(dims, int) else list(dims)
    ndim = len(in_shape) + 1
    axes_reduced = {d % ndim for d in dims}
    if 0 in axes_reduced:
        raise T.unsupported(gm, node, "a reduction over the batch axis")
    return [reduce_axis(v, op == "mean") if (k + 1) in axes_reduced else identity_axis(v)
            for k, v in enumerate(in_shape)]


def _check_shape(input_shape: Iterable[int] | None) -> tuple[int, ...]:
    if input_shape is None:
        raise GraphEncodingError("input_shape is required: one sample's shape without the batch "
                                 "dimension, e.g. (3, 32, 32)")
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError) as exc:
        raise GraphEncodingError(f"input_shape must be a sequence of ints, got {input_shape!r}"
                                 ) from exc
    if not shape or any(v <= 0 for v in shape):
        raise GraphEncodingError(f"input_shape must be positive ints, got {shape}")
    return shape


def multipartite(model: nn.Module, mask: Mapping[str, torch.Tensor] | None = None,
                 input_shape: Sequence[int] | None = None, *, absorb_pooling: bool = False,
                 passthrough: Iterable[type[nn.Module]] = (), progress: bool = False,
                 chunk_size: int = DEFAULT_CHUNK) -> LayeredGraph:
    """The multipartite graph encoding (MGE) of ``model`` masked by ``mask``.

    Example::

        model = paizoo.models.create_model("resnet20")
        mask = paizoo.prune(model, "synflow", sparsity=0.98, input_shape=(3, 32, 32))
        g = paizoo.graph.multipartite(model, mask, (3, 32, 32))
        print(g.summary())                      # node layers, sizes
        g.block("layer1.0.conv1", "layer1.0.conv2")   # biadjacency of two node layers

    Args:
        model: any traceable model (``torch.fx``): paizoo's CIFAR models, torchvision/timm
            ResNets, plain ``nn.Sequential`` nets; or a ``torch.fx.GraphModule``.
        mask: a :class:`paizoo.Mask` or ``{parameter name: bool tensor}``; ``None``: dense (or
            the masks already applied to the model). Parameters without an entry are dense.
        input_shape: one input sample's shape without the batch dimension, e.g. ``(3, 32, 32)``.
        absorb_pooling: the paper's variant in which pooling layers are not node layers; the
            next layer's edges are copied from every unit of the window.
        passthrough: extra module types to treat as elementwise (no nodes, no edges).
        progress: show a progress bar over the traced operations.
        chunk_size: candidate (position, weight) pairs generated at once (bounds memory).

    Returns:
        a :class:`~paizoo.graph.types.LayeredGraph`: CSR adjacency ``A[u, v] = weight of u -> v``
        (int64 ``indptr``, int32 ``indices`` while node ids fit, float32 weights, canonical:
        sorted, one entry per pair), node layers in data-flow order (kinds ``input``, ``conv``,
        ``linear``, ``pool``, ``add``), input and output node ids, and ``meta`` with
        ``layer_sources`` (the operations sending edges into each node layer, e.g.
        ``["conv layer1.0.conv2", "identity"]``), ``layer_inputs`` (the node layers those edges
        come from) and ``raw_edges``: the (source node, destination node) entries written
        before those that join the same pair of nodes are summed into one edge (an identity
        shortcut and a convolution's centre tap reading the same layer; with
        ``absorb_pooling``, one per node of every absorbed window), so ``raw_edges >=
        num_edges``.

    Raises:
        UnsupportedLayerError: an operation on the data path has no graph rule.
        MaskMismatchError: the mask does not fit the model.
        GraphEncodingError: bad ``input_shape`` or the model does not run on it.
    """
    shape = _check_shape(input_shape)
    resolved = resolve_mask(model, mask)
    extra = tuple(passthrough)
    gm = T.trace(model, extra)
    T.propagate_shapes(gm, shape, 1)
    plan = T.analyse(gm, extra)
    encoder = _Encoder(gm, plan, resolved, shape, absorb_pooling, int(chunk_size))
    graph = encoder.run(progress)
    graph.meta["model"] = type(model).__name__
    return graph
