"""The multipartite graph as a matrix-free linear operator: conv/linear/pooling on tensors.

:func:`multipartite_operator` traces a model exactly as :func:`paizoo.graph.multipartite` does (the
same ``torch.fx`` plan: node layers, their order and ids, additions absorbing convolutions,
relabels replayed on tensors of node ids) but, instead of writing CSR rows, keeps every edge
*contribution* as a tensor operation:

* convolution - ``conv(x, |W * M|)`` (or the 0/1 mask) with the layer's stride, dilation, groups
  and left padding, cropped to the traced output;
* Linear - ``x @ |W * M|^T``;
* pooling and mean/sum reductions - separable window sums with the encoder's coefficients
  (1 for max pooling, PyTorch's divisor for average pooling, 1/width for adaptive averaging);
* identity shortcuts - a copy (weight 1).

The adjacency A (``A[u, v]`` = weight of u -> v) is then applied as ``A^T x`` (data-flow
direction: every contribution gathers its source units, runs its operation and adds into its
destination layer) and ``A y`` (the adjoint of each operation, by autograd), for a block of vectors
at once. Nothing of size E is ever built: memory is that of a forward pass. This gives degrees,
strengths and the leading eigen/singular values (Lanczos, LOBPCG) of graphs far beyond the explicit
graph's edge budget.

The operator equals the explicit adjacency as a linear map. Counts of *edges* (degrees) count
contributions: where two contributions join the same pair of units (e.g. an identity skip and the
centre tap of a convolution reading the same layer), the explicit graph stores one edge and the
operator counts two; standard architectures (the zoo's and torchvision/timm ResNets) have no such
pairs, which the tests check.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from scipy.sparse.linalg import LinearOperator
from torch import nn

from ..graph import _trace as T
from ..graph import mge as _mge
from ..graph._tables import AxisTaps
from ..graph._weights import resolve_mask
from ..graph.types import NodeLayer


class single_thread_torch:
    """Run torch intra-op work on one thread, restoring the previous setting afterwards.

    The operator's tensors are small (one sample per vector); on a loaded machine the OpenMP
    threads of the default pool spin and stall, making a 0.3 ms convolution take 60-100 ms.
    Nested and concurrent uses (several Python threads) share one count: the setting is
    restored when the last one leaves.
    """

    _lock = threading.Lock()
    _depth = 0
    _saved = 1

    def __enter__(self) -> None:
        with single_thread_torch._lock:
            if single_thread_torch._depth == 0:
                single_thread_torch._saved = torch.get_num_threads()
                torch.set_num_threads(1)
            single_thread_torch._depth += 1

    def __exit__(self, *exc: object) -> None:
        with single_thread_torch._lock:
            single_thread_torch._depth -= 1
            if single_thread_torch._depth == 0:
                torch.set_num_threads(single_thread_torch._saved)


# ---- edge contributions as tensor operations -------------------------------------------------


class _Op:
    """A linear map from a source tensor (B, *in_shape) to a destination tensor (B, *out_shape)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]

    def apply(self, x: torch.Tensor, weighted: bool) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor, weighted: bool) -> torch.Tensor:
        """The transposed map, by differentiating :meth:`apply` (exact for linear maps)."""
        with torch.enable_grad():
            x = torch.zeros((y.shape[0], *self.in_shape), dtype=y.dtype, requires_grad=True)
            out = self.apply(x, weighted)
            (grad,) = torch.autograd.grad(out, x, grad_outputs=y)
        return grad


class _ConvOp(_Op):
    def __init__(self, weight: np.ndarray, keep: np.ndarray, in_shape: Sequence[int],
                 out_shape: Sequence[int], stride: Sequence[int], pad: Sequence[int],
                 dilation: Sequence[int], groups: int) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.keep = torch.from_numpy(keep.astype(np.float32))
        self.absw = torch.from_numpy(np.abs(weight) * keep).float()
        self.stride, self.dilation, self.groups = tuple(stride), tuple(dilation), int(groups)
        nd = self.keep.dim() - 2
        kernel = self.keep.shape[2:]
        pads: list[int] = []
        for axis in reversed(range(nd)):  # F.pad takes the last axis first
            size_in, size_out = self.in_shape[1 + axis], self.out_shape[1 + axis]
            need = (size_out - 1) * self.stride[axis] + self.dilation[axis] * (kernel[axis] - 1) + 1
            pads += [int(pad[axis]), max(0, need - size_in - int(pad[axis]))]
        self.pads = tuple(pads)
        self.conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
        self.conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
        # sizes of the padded input and of the full (uncropped) convolution output
        self.padded = tuple(self.in_shape[1 + a] + pads[2 * (nd - 1 - a)]
                            + pads[2 * (nd - 1 - a) + 1] for a in range(nd))
        self.full = tuple((p - self.dilation[a] * (kernel[a] - 1) - 1) // self.stride[a] + 1
                          for a, p in enumerate(self.padded))
        self.output_padding = tuple(
            p - ((f - 1) * self.stride[a] + self.dilation[a] * (kernel[a] - 1) + 1)
            for a, (p, f) in enumerate(zip(self.padded, self.full, strict=True)))
        self.left = tuple(pads[2 * (nd - 1 - a)] for a in range(nd))

    def apply(self, x: torch.Tensor, weighted: bool) -> torch.Tensor:
        w = (self.absw if weighted else self.keep).to(x.dtype)
        y = self.conv(F.pad(x, self.pads), w, None, self.stride, 0, self.dilation, self.groups)
        crop = (slice(None), slice(None), *(slice(0, s) for s in self.out_shape[1:]))
        return y[crop]

    def adjoint(self, y: torch.Tensor, weighted: bool) -> torch.Tensor:
        """crop^T (zero-extend) -> conv^T (transposed convolution) -> pad^T (crop)."""
        w = (self.absw if weighted else self.keep).to(y.dtype)
        grow = []
        for a in reversed(range(len(self.full))):
            grow += [0, self.full[a] - self.out_shape[1 + a]]
        z = self.conv_t(F.pad(y, tuple(grow)), w, None, self.stride, 0, self.output_padding,
                        self.groups, self.dilation)
        crop = (slice(None), slice(None),
                *(slice(lo, lo + s) for lo, s in zip(self.left, self.in_shape[1:], strict=True)))
        return z[crop]


class _LinearOp(_Op):
    def __init__(self, weight: np.ndarray, keep: np.ndarray, in_shape: Sequence[int],
                 out_shape: Sequence[int]) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.keep = torch.from_numpy(keep.astype(np.float32))
        self.absw = torch.from_numpy(np.abs(weight) * keep).float()

    def apply(self, x: torch.Tensor, weighted: bool) -> torch.Tensor:
        w = (self.absw if weighted else self.keep).to(x.dtype)
        return x @ w.t()

    def adjoint(self, y: torch.Tensor, weighted: bool) -> torch.Tensor:
        return y @ (self.absw if weighted else self.keep).to(y.dtype)


def _axis_matrix(axis: AxisTaps, size_in: int, weighted: bool) -> torch.Tensor:
    """Dense (size_out, size_in) coefficient matrix of one separable axis."""
    i, k = np.nonzero(axis.valid)
    o = axis.a[i] + axis.b[k]
    values = axis.factor[i, k] if (weighted and axis.factor is not None) else np.ones(i.size)
    m = np.zeros((axis.size_out, size_in))
    np.add.at(m, (o, i), values)
    return torch.from_numpy(m)


def _is_identity(axis: AxisTaps, size_in: int) -> bool:
    return (axis.size_out == size_in and axis.b.size == 1 and axis.factor is None
            and bool(axis.valid.all()) and np.array_equal(axis.a + axis.b[0],
                                                          np.arange(size_in)))


class _WindowOp(_Op):
    """Separable window sums (pooling, reductions) with per-axis coefficient matrices."""

    def __init__(self, axes: Sequence[AxisTaps], override: float | None, in_shape: Sequence[int],
                 out_shape: Sequence[int]) -> None:
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.scale = 1.0 / override if override else None
        self.axes = [(d, _axis_matrix(ax, self.in_shape[d], True),
                      _axis_matrix(ax, self.in_shape[d], False))
                     for d, ax in enumerate(axes) if not _is_identity(ax, self.in_shape[d])]
        self.combined = tuple(ax.size_out for ax in axes)

    def _run(self, x: torch.Tensor, weighted: bool, transpose: bool) -> torch.Tensor:
        for d, mw, mp in self.axes:
            m = (mp if (self.scale is not None or not weighted) else mw).to(x.dtype)
            x = torch.movedim(torch.tensordot(x, m, dims=([d + 1], [0 if transpose else 1])),
                              -1, d + 1)
        if weighted and self.scale is not None:
            x = x * self.scale
        return x

    def apply(self, x: torch.Tensor, weighted: bool) -> torch.Tensor:
        return self._run(x, weighted, False).reshape((x.shape[0], *self.out_shape))

    def adjoint(self, y: torch.Tensor, weighted: bool) -> torch.Tensor:
        y = y.reshape((y.shape[0], *self.combined))
        return self._run(y, weighted, True)


class _IdentityOp(_Op):
    def __init__(self, shape: Sequence[int]) -> None:
        self.in_shape = self.out_shape = tuple(shape)

    def apply(self, x: torch.Tensor, weighted: bool) -> torch.Tensor:
        return x

    def adjoint(self, y: torch.Tensor, weighted: bool) -> torch.Tensor:
        return y


@dataclass
class _Block:
    label: str
    op: _Op
    src_start: int | None  # contiguous source ids [start, start + size) ...
    src_ids: torch.Tensor | None  # ... or explicit ids (-1: a constant unit, no edges)
    dst_start: int
    dst_size: int


# ---- building the operator from the encoder's trace ---------------------------------------------


class _OperatorBuilder(_mge._Encoder):
    """The MGE encoder with tensor operations in place of CSR row generators."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blocks: list[_Block] = []

    def _conv(self, node: fx.Node, src: Any, in_shape: tuple[int, ...],
              out_shape: tuple[int, ...]) -> Any:
        name, keep, weight, module = self._weight(node)
        stride, padding, dilation, groups = self._conv_geometry(node, weight, module, in_shape)
        op = _ConvOp(weight, keep, in_shape, out_shape, stride, padding, dilation, groups)
        return _mge._Contribution(f"conv {name}", "conv", name, src, op)

    def _linear(self, node: fx.Node, src: Any, in_shape: tuple[int, ...],
                out_shape: tuple[int, ...]) -> Any:
        name, keep, weight, _ = self._weight(node)
        if not in_shape or in_shape[-1] != weight.shape[1]:
            raise T.unsupported(self.gm, node, f"input of shape {in_shape}")
        op = _LinearOp(weight, keep, in_shape, out_shape)
        return _mge._Contribution(f"linear {name}", "linear", name, src, op)

    def _window(self, node: fx.Node, kind: str, src: Any, in_shape: tuple[int, ...],
                out_shape: tuple[int, ...]) -> Any:
        if kind == "pool":
            axes, override = _mge._pool_axes(self.gm, node, in_shape, out_shape)
        else:
            axes, override = _mge._reduce_axes(self.gm, node, in_shape), None
        name = _mge._layer_name(node)
        op = _WindowOp(axes, override, in_shape, out_shape)
        return _mge._Contribution(f"pool {name}", "pool", name, src, op)

    def _materialise(self, name: str, kind: str, shape: tuple[int, ...],
                     contributions: Sequence[Any]) -> Any:
        ids = self._allocate(name, kind, shape)
        layer = self.layers[-1]
        for c in contributions:
            op = _IdentityOp(shape) if c.kind == "identity" else c.gen
            if c.src.array is None:
                src_start, src_ids = int(c.src.start), None
            else:
                src_start, src_ids = None, torch.from_numpy(c.src.flat().astype(np.int64))
            self.blocks.append(_Block(c.label, op, src_start, src_ids, layer.start, layer.size))
        self.sources_of[layer.name] = [c.label for c in contributions]
        return ids

    def _finish(self, output_ids: list[np.ndarray], progress: bool) -> MultipartiteOperator:
        outputs = np.concatenate(output_ids) if output_ids else np.zeros(0, dtype=np.int64)
        outputs = np.unique(outputs[outputs >= 0])
        return MultipartiteOperator(self.num_nodes, list(self.layers), self.layers[0].ids,
                                    outputs, self.blocks,
                                    {"layer_sources": dict(self.sources_of)})


def multipartite_operator(model: nn.Module, mask: Mapping[str, torch.Tensor] | None,
                          input_shape: Sequence[int], *,
                          passthrough: Sequence[type[nn.Module]] = ()) -> MultipartiteOperator:
    """The MGE of ``model`` under ``mask`` as a :class:`MultipartiteOperator` (same node ids and
    layers as :func:`paizoo.graph.multipartite`)."""
    shape = _mge._check_shape(input_shape)
    resolved = resolve_mask(model, mask)
    extra = tuple(passthrough)
    gm = T.trace(model, extra)
    T.propagate_shapes(gm, shape, 1)
    plan = T.analyse(gm, extra)
    builder = _OperatorBuilder(gm, plan, resolved, shape, False, _mge.DEFAULT_CHUNK)
    return builder.run(False)


# ---- the operator ---------------------------------------------------------------------------


@dataclass
class MultipartiteOperator:
    """The MGE adjacency as a linear operator (see the module docstring).

    ``forward(x)`` is A^T x and ``backward(y)`` is A y for ``x`` of shape (n,) or (n, k);
    ``weighted=False`` uses the 0/1 pattern (every contribution's edges with weight 1).
    """

    num_nodes: int
    layers: list[NodeLayer]
    input_nodes: np.ndarray
    output_nodes: np.ndarray
    blocks: list[_Block]
    meta: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def _gather(self, x: torch.Tensor, x_ext: torch.Tensor | None, block: _Block) -> torch.Tensor:
        k = x.shape[1]
        if block.src_ids is None:
            part = x[block.src_start:block.src_start + math.prod(block.op.in_shape)]
        else:  # x_ext: x with a zero row at index n, for the constant units (id -1)
            assert x_ext is not None
            part = x_ext[torch.where(block.src_ids < 0, self.num_nodes, block.src_ids)]
        return part.t().reshape((k, *block.op.in_shape))

    def _scatter(self, z: torch.Tensor, block: _Block, values: torch.Tensor) -> None:
        k = values.shape[0]
        flat = values.reshape(k, -1).t()
        if block.src_ids is None:
            z[block.src_start:block.src_start + flat.shape[0]] += flat
        else:
            keep = block.src_ids >= 0
            z.index_add_(0, block.src_ids[keep], flat[keep])

    @staticmethod
    def _as_matrix(x: np.ndarray | torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, bool]:
        t = torch.as_tensor(x).to(dtype)
        return (t[:, None], True) if t.dim() == 1 else (t, False)

    def forward(self, x: np.ndarray | torch.Tensor, weighted: bool = True,
                dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """y = A^T x: y[v] = sum over edges u -> v of weight * x[u]."""
        xm, vec = self._as_matrix(x, dtype)
        y = xm.new_zeros(xm.shape)
        x_ext = (torch.cat([xm, xm.new_zeros((1, xm.shape[1]))])
                 if any(b.src_ids is not None for b in self.blocks) else None)
        with torch.no_grad(), single_thread_torch():
            for block in self.blocks:
                out = block.op.apply(self._gather(xm, x_ext, block), weighted)
                y[block.dst_start:block.dst_start + block.dst_size] += out.reshape(
                    out.shape[0], -1).t()
        return y[:, 0] if vec else y

    def backward(self, y: np.ndarray | torch.Tensor, weighted: bool = True,
                 dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """z = A y: z[u] = sum over edges u -> v of weight * y[v]."""
        ym, vec = self._as_matrix(y, dtype)
        z = ym.new_zeros(ym.shape)
        k = ym.shape[1]
        with single_thread_torch():
            for block in self.blocks:
                part = ym[block.dst_start:block.dst_start + block.dst_size].t().reshape(
                    (k, *block.op.out_shape))
                self._scatter(z, block, block.op.adjoint(part, weighted).detach())
        return z[:, 0] if vec else z

    # ---- degrees ---------------------------------------------------------------------------
    def _ones(self) -> torch.Tensor:
        return torch.ones(self.num_nodes, dtype=torch.float64)

    def in_degree(self) -> np.ndarray:
        """Number of in-edges (contributions counted separately) of every node."""
        if "in_deg" not in self._cache:
            self._cache["in_deg"] = np.rint(self.forward(self._ones(), False).numpy()).astype(
                np.int64)
        return self._cache["in_deg"]

    def out_degree(self) -> np.ndarray:
        if "out_deg" not in self._cache:
            self._cache["out_deg"] = np.rint(self.backward(self._ones(), False).numpy()).astype(
                np.int64)
        return self._cache["out_deg"]

    def in_strength(self) -> np.ndarray:
        if "in_str" not in self._cache:
            self._cache["in_str"] = self.forward(self._ones(), True).numpy()
        return self._cache["in_str"]

    def out_strength(self) -> np.ndarray:
        if "out_str" not in self._cache:
            self._cache["out_str"] = self.backward(self._ones(), True).numpy()
        return self._cache["out_str"]

    @property
    def num_edges(self) -> int:
        return int(self.in_degree().sum())

    # ---- scipy views -----------------------------------------------------------------------
    def symmetric(self, weighted: bool = True, nodes: np.ndarray | None = None,
                  dtype: torch.dtype = torch.float32,
                  array_dtype: type = np.float64) -> LinearOperator:
        """A + A^T (restricted to ``nodes``) as a scipy LinearOperator (``array_dtype`` in and
        out, float64 by default; the tensor work runs in ``dtype``)."""
        return self._linear_operator(weighted, nodes, dtype, laplacian=False,
                                     array_dtype=array_dtype)

    def laplacian(self, weighted: bool = True, nodes: np.ndarray | None = None,
                  dtype: torch.dtype = torch.float32,
                  array_dtype: type = np.float64) -> LinearOperator:
        """L = D - (A + A^T), D the (weighted) degrees of A + A^T, as a LinearOperator."""
        return self._linear_operator(weighted, nodes, dtype, laplacian=True,
                                     array_dtype=array_dtype)

    def degree_of_symmetric(self, weighted: bool) -> np.ndarray:
        if weighted:
            return self.in_strength() + self.out_strength()
        return (self.in_degree() + self.out_degree()).astype(np.float64)

    def _linear_operator(self, weighted: bool, nodes: np.ndarray | None, dtype: torch.dtype,
                         laplacian: bool, array_dtype: type = np.float64) -> LinearOperator:
        n = self.num_nodes
        sub = None if nodes is None else torch.as_tensor(np.asarray(nodes, dtype=np.int64))
        size = n if sub is None else int(sub.numel())
        diag = self.degree_of_symmetric(weighted) if laplacian else None
        if diag is not None and nodes is not None:
            diag = diag[np.asarray(nodes)]
        if diag is not None:
            diag = diag.astype(array_dtype)

        def matmat(v: np.ndarray) -> np.ndarray:
            with single_thread_torch():
                return _matmat(v)

        def _matmat(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, dtype=array_dtype).reshape(size, -1)
            t = torch.from_numpy(np.ascontiguousarray(v)).to(dtype)
            if sub is None:
                full = t
            else:
                full = torch.zeros((n, v.shape[1]), dtype=dtype)
                full[sub] = t
            s = self.forward(full, weighted, dtype)
            s += self.backward(full, weighted, dtype)
            out = np.asarray((s if sub is None else s[sub]).numpy(), dtype=array_dtype)
            if diag is not None:
                out = diag[:, None] * v - out
            return out

        return LinearOperator((size, size), matvec=lambda v: matmat(v)[:, 0], matmat=matmat,
                              rmatvec=lambda v: matmat(v)[:, 0], dtype=array_dtype)

    def reachable_from(self, start: np.ndarray, nodes_mask: np.ndarray | None = None,
                       max_steps: int | None = None) -> np.ndarray:
        """Nodes connected (undirected) to ``start``, by repeated application of A + A^T."""
        n = self.num_nodes
        seen = torch.zeros(n, dtype=torch.float32)
        seen[torch.as_tensor(np.asarray(start, dtype=np.int64))] = 1.0
        allowed = None if nodes_mask is None else torch.from_numpy(nodes_mask.astype(np.float32))
        for _ in range(max_steps or n):
            step = self.forward(seen, False, torch.float32) + self.backward(seen, False,
                                                                            torch.float32)
            grown = ((seen + step) > 0).float()
            if allowed is not None:
                grown = grown * allowed
            if torch.equal(grown, seen):
                break
            seen = grown
        return seen.numpy() > 0
