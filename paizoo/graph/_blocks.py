"""Vectorised, source-major construction of the MGE adjacency.

Each operation that sends edges into a node layer is a *contribution*: a generator of the
out-edges of its input units (rows), whose counts per row are known in closed form before any
edge is generated. The assembler sums the counts of all contributions into the final CSR row
pointer, allocates the final ``indices``/``data`` once, and lets every contribution write its
rows in place, in order of destination layer. Since each generator emits a row's targets in
increasing order (see :mod:`paizoo.graph._tables`) and a row's contributions are written in
increasing destination order, the CSR comes out canonical without any sort; only contributions
that could put two entries on the same (row, column) pair, or whose rows are not in increasing
node order, trigger one final ``sum_duplicates`` (sort within rows, sum).

Memory: the final CSR (8 bytes per edge: int32 column, float32 weight) plus per-node arrays and
one chunk of candidates at a time (``chunk`` (position, weight) pairs, a few bytes each).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ._tables import Taps, combine, conv_axis
from .types import CSRAdjacency, as_adjacency

_INT32_MAX = int(np.iinfo(np.int32).max)
DEFAULT_CHUNK = 1 << 21  # (position, kept weight) candidates generated at once


def index_dtype(max_value: int) -> type[np.integer]:
    return np.int32 if max_value < _INT32_MAX else np.int64


def _indptr(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + c) for s, c in zip(starts, counts)])``, vectorised."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.repeat(starts - _indptr(counts)[:-1], counts) + np.arange(total, dtype=np.int64)


class Chunk:
    """Out-edges of consecutive source units ``row0 ..``: row ``r`` holds
    ``indices/data[rowptr[r]:rowptr[r+1]]`` (targets are global node ids, increasing).

    A chunk built from a candidate grid is compacted lazily: :meth:`write` compacts it straight
    into the caller's arrays (the final CSR), with no intermediate copy.
    """

    def __init__(self, row0: int, rowptr: np.ndarray, indices: np.ndarray | None = None,
                 data: np.ndarray | None = None,
                 grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None):
        self.row0 = row0
        self.rowptr = rowptr  # (nrows + 1,) int64, from 0
        self._indices, self._data, self._grid = indices, data, grid

    @property
    def nrows(self) -> int:
        return int(self.rowptr.shape[0] - 1)

    @property
    def nnz(self) -> int:
        return int(self.rowptr[-1])

    def write(self, indices: np.ndarray, data: np.ndarray) -> None:
        """Store the chunk's targets and weights into ``indices``/``data`` (length ``nnz``)."""
        if self._grid is None:
            assert self._indices is not None and self._data is not None
            indices[...] = self._indices
            data[...] = self._data
            return
        valid, targets, weights = self._grid
        keep = np.flatnonzero(valid.reshape(-1))
        np.take(targets.reshape(-1), keep, out=indices, mode="clip")
        np.take(np.ascontiguousarray(weights).reshape(-1), keep, out=data, mode="clip")

    def _materialise(self) -> None:
        if self._indices is None:
            assert self._grid is not None
            self._indices = np.empty(self.nnz, dtype=self._grid[1].dtype)
            self._data = np.empty(self.nnz, dtype=np.float32)
            self.write(self._indices, self._data)
            self._grid = None

    @property
    def indices(self) -> np.ndarray:
        self._materialise()
        assert self._indices is not None
        return self._indices

    @property
    def data(self) -> np.ndarray:
        self._materialise()
        assert self._data is not None
        return self._data


# ---- generators ------------------------------------------------------------------------------

class RowGenerator:
    """Out-edges of the units of one operation's input tensor (row-major units).

    Generators over a ``(channels, positions)`` input whose rows can be produced as a dense
    candidate grid (``grid``) may be fused with others reading the same tensor (:class:`Fused`).
    """

    num_rows: int
    grid_layout: tuple[int, int] | None = None  # (channels, positions) if ``grid`` is supported
    grid_width: int = 0  # widest row of the candidate grid

    def row_counts(self) -> np.ndarray:
        raise NotImplementedError

    def chunks(self, dst0: int, dtype: type[np.integer]) -> Iterator[Chunk]:
        raise NotImplementedError

    def grid(self, c0: int, c1: int, dst0: int, dtype: type[np.integer],
             out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(valid, targets, weights)`` of shape ``(c1 - c0, positions, grid_width)``, written
        into ``out`` (views of a wider grid) when given."""
        raise NotImplementedError

    def grid_chunks(self, dst0: int, dtype: type[np.integer]) -> Iterator[Chunk]:
        assert self.grid_layout is not None
        channels, n_pos = self.grid_layout
        step = max(1, getattr(self, "chunk", DEFAULT_CHUNK) // max(1, n_pos * self.grid_width))
        counts = self.row_counts().reshape(channels, n_pos)
        for c0 in range(0, channels, step):
            c1 = min(channels, c0 + step)
            yield Chunk(c0 * n_pos, _indptr(counts[c0:c1].reshape(-1)),
                        grid=self.grid(c0, c1, dst0, dtype))


class ConvRows(RowGenerator):
    """A convolution unrolled over the real input.

    Kept weight ``(o, i, k)`` joins input unit ``(g C_in/groups + i, p)`` to output unit
    ``(o, q)`` whenever ``p = q s - pad + k dil`` lies inside the unpadded input (per axis), with
    ``g = o // (C_out/groups)``; weight ``|w|``. Row ``(c, p)`` lists the kept weights of input
    channel ``c`` in order (output channel, tap reversed), i.e. increasing output unit.
    """

    def __init__(self, weight: np.ndarray, keep: np.ndarray, in_shape: Sequence[int],
                 out_shape: Sequence[int], stride: Sequence[int], pad: Sequence[int],
                 dilation: Sequence[int], groups: int, chunk: int = DEFAULT_CHUNK):
        self.c_out, self.c_in_g = int(weight.shape[0]), int(weight.shape[1])
        self.kernel = tuple(int(k) for k in weight.shape[2:])
        self.groups = int(groups)
        self.c_in = int(in_shape[0])
        if self.c_in != self.c_in_g * self.groups:
            raise ValueError(f"input has {self.c_in} channels, weight expects "
                             f"{self.c_in_g} x {self.groups} groups")
        self.spatial_out = tuple(int(v) for v in out_shape[1:])
        self.taps = combine([conv_axis(int(i), o, k, int(s), int(p), int(d)) for i, o, k, s, p, d
                             in zip(in_shape[1:], self.spatial_out, self.kernel, stride, pad,
                                    dilation, strict=True)])
        self.num_pos = self.taps.num_positions
        self.num_rows = self.c_in * self.num_pos
        self.chunk = chunk
        self._prepare(weight, keep)

    def _prepare(self, weight: np.ndarray, keep: np.ndarray) -> None:
        g, cog, cig = self.groups, self.c_out // self.groups, self.c_in_g
        n_taps = self.taps.num_taps
        out_area = int(np.prod(self.spatial_out, dtype=np.int64))

        def by_input(arr: np.ndarray) -> np.ndarray:  # (C_in, C_out/g * T), taps reversed
            arr = arr.reshape(g, cog, cig, n_taps)[..., ::-1]
            return np.ascontiguousarray(arr.transpose(0, 2, 1, 3)).reshape(g * cig, cog * n_taps)

        nz = np.flatnonzero(by_input(keep))
        ci = nz // (cog * n_taps)
        rem = nz - ci * (cog * n_taps)
        co_local = rem // n_taps
        tap = rem - co_local * n_taps
        co = (ci // cig) * cog + co_local
        self.k_row = ci
        self.k_tap = tap
        self.k_base = co * out_area + self.taps.offset[tap]
        self.k_weight = np.abs(by_input(weight).reshape(-1)[nz]).astype(np.float32, copy=False)
        self.per_row = np.bincount(ci, minlength=self.c_in)
        per_tap = np.bincount(ci * n_taps + tap, minlength=self.c_in * n_taps)
        counts = per_tap.reshape(self.c_in, n_taps).astype(np.float64) @ \
            self.taps.valid.T.astype(np.float64)
        self.counts = np.rint(counts).astype(np.int64)  # (C_in, P_in)
        self.kstart = _indptr(self.per_row)
        n_pos = self.taps.num_positions
        self.valid_ext = np.concatenate([self.taps.valid, np.zeros((n_pos, 1), dtype=bool)],
                                        axis=1)
        self.grid_layout = (self.c_in, n_pos)
        self.grid_width = max(1, int(self.per_row.max(initial=0)))

    def row_counts(self) -> np.ndarray:
        return self.counts.reshape(-1)

    def grid(self, c0: int, c1: int, dst0: int, dtype: type[np.integer],
             out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_pos, n_taps = self.taps.valid.shape
        width = self.grid_width if out is not None else \
            max(1, int(self.per_row[c0:c1].max(initial=0)))
        k0, k1 = int(self.kstart[c0]), int(self.kstart[c1])
        kc = self.per_row[c0:c1]
        rows = self.k_row[k0:k1] - c0
        cols = np.arange(k1 - k0) - np.repeat(self.kstart[c0:c1] - k0, kc)
        tpad = np.full((c1 - c0, width), n_taps, dtype=np.intp)
        tpad[rows, cols] = self.k_tap[k0:k1]
        bpad = np.zeros((c1 - c0, width), dtype=dtype)
        bpad[rows, cols] = self.k_base[k0:k1] + dst0
        wpad = np.zeros((c1 - c0, width), dtype=np.float32)
        wpad[rows, cols] = self.k_weight[k0:k1]
        shape = (c1 - c0, n_pos, width)
        if out is None:
            valid = np.empty(shape, dtype=bool)
            targets = np.empty(shape, dtype=dtype)
        else:
            valid, targets, weights = out
        for c in range(c1 - c0):
            np.take(self.valid_ext, tpad[c], axis=1, out=valid[c])
        np.add(bpad[:, None, :], self.taps.start.astype(dtype)[None, :, None], out=targets)
        if out is None:
            return valid, targets, np.broadcast_to(wpad[:, None, :], shape)
        weights[...] = wpad[:, None, :]
        return out

    def chunks(self, dst0: int, dtype: type[np.integer]) -> Iterator[Chunk]:
        return self.grid_chunks(dst0, dtype)


class LinearRows(RowGenerator):
    """A Linear layer on ``lead`` positions of ``(..., in)``: one edge per kept weight each."""

    def __init__(self, weight: np.ndarray, keep: np.ndarray, lead: int,
                 chunk: int = DEFAULT_CHUNK):
        self.n_out, self.n_in = int(weight.shape[0]), int(weight.shape[1])
        self.lead = int(lead)
        self.num_rows = self.lead * self.n_in
        nz = np.flatnonzero(keep)  # (j, i) order; rows need (i, j): reorder the kept entries only
        j = nz // self.n_in
        i = nz - j * self.n_in
        order = np.argsort(i, kind="stable")
        self.k_j = j[order]
        self.k_weight = np.abs(weight.reshape(-1)[nz[order]]).astype(np.float32, copy=False)
        self.per_row = np.bincount(i, minlength=self.n_in)
        self.chunk = chunk

    def row_counts(self) -> np.ndarray:
        return np.tile(self.per_row, self.lead)

    def chunks(self, dst0: int, dtype: type[np.integer]) -> Iterator[Chunk]:
        step = max(1, self.chunk // max(1, self.k_j.size))
        for l0 in range(0, self.lead, step):
            l1 = min(self.lead, l0 + step)
            offsets = np.arange(l0, l1, dtype=np.int64) * self.n_out + dst0
            targets = (offsets[:, None] + self.k_j[None, :]).astype(dtype).reshape(-1)
            yield Chunk(l0 * self.n_in, _indptr(np.tile(self.per_row, l1 - l0)), targets,
                        np.tile(self.k_weight, l1 - l0))


class WindowRows(RowGenerator):
    """A separable window operation (pooling, reduction) over all unit axes."""

    def __init__(self, taps_factory: Callable[[], Taps], num_rows: int,
                 chunk: int = DEFAULT_CHUNK):
        self._factory = taps_factory
        self._taps: Taps | None = None
        self.num_rows = int(num_rows)
        self.chunk = chunk

    @property
    def taps(self) -> Taps:
        if self._taps is None:
            self._taps = self._factory()
        return self._taps

    def row_counts(self) -> np.ndarray:
        return self.taps.valid.sum(axis=1).astype(np.int64)

    def chunks(self, dst0: int, dtype: type[np.integer]) -> Iterator[Chunk]:
        taps = self.taps
        n_pos, n_taps = taps.valid.shape
        step = max(1, self.chunk // max(1, n_taps))
        for p0 in range(0, n_pos, step):
            p1 = min(n_pos, p0 + step)
            valid = taps.valid[p0:p1]
            pos, tap = np.nonzero(valid)
            targets = (taps.start[p0 + pos] + taps.offset[tap] + dst0).astype(dtype)
            if taps.factor is None:
                data = np.ones(targets.size, dtype=np.float32)
            else:
                data = taps.factor[p0:p1][valid].astype(np.float32)
            yield Chunk(p0, _indptr(valid.sum(axis=1)), targets, data)


class IdentityRows(RowGenerator):
    """One weight-1 edge from each unit to the same unit of the destination."""

    def __init__(self, shape: Sequence[int]):
        shape = tuple(int(v) for v in shape) or (1,)
        self.num_rows = int(np.prod(shape, dtype=np.int64))
        self.grid_layout = (shape[0], self.num_rows // shape[0]) if shape[0] else None
        self.grid_width = 1

    def row_counts(self) -> np.ndarray:
        return np.ones(self.num_rows, dtype=np.int64)

    def chunks(self, dst0: int, dtype: type[np.integer]) -> Iterator[Chunk]:
        yield Chunk(0, np.arange(self.num_rows + 1, dtype=np.int64),
                    np.arange(dst0, dst0 + self.num_rows, dtype=dtype),
                    np.ones(self.num_rows, dtype=np.float32))

    def grid(self, c0: int, c1: int, dst0: int, dtype: type[np.integer],
             out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.grid_layout is not None
        n_pos = self.grid_layout[1]
        shape = (c1 - c0, n_pos, 1)
        if out is None:
            out = (np.empty(shape, dtype=bool), np.empty(shape, dtype=dtype),
                   np.empty(shape, dtype=np.float32))
        valid, targets, weights = out
        valid[...] = True
        targets[...] = np.arange(dst0 + c0 * n_pos, dst0 + c1 * n_pos, dtype=dtype).reshape(shape)
        weights[...] = 1.0
        return out


class Fused(RowGenerator):
    """Several grid generators reading the same tensor, with disjoint increasing destinations:
    their candidate grids are concatenated per row, so each row is written once, in order."""

    def __init__(self, members: Sequence[tuple[RowGenerator, int]], chunk: int = DEFAULT_CHUNK):
        self.members = list(members)
        first = self.members[0][0]
        assert first.grid_layout is not None
        self.grid_layout = first.grid_layout
        self.num_rows = first.num_rows
        self.grid_width = sum(g.grid_width for g, _ in self.members)
        self.chunk = chunk

    def row_counts(self) -> np.ndarray:
        return np.sum([g.row_counts() for g, _ in self.members], axis=0)

    def grid(self, c0: int, c1: int, dst0: int, dtype: type[np.integer],
             out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert self.grid_layout is not None
        shape = (c1 - c0, self.grid_layout[1], self.grid_width)
        if out is None:
            out = (np.empty(shape, dtype=bool), np.empty(shape, dtype=dtype),
                   np.empty(shape, dtype=np.float32))
        w0 = 0
        for gen, d0 in self.members:
            w1 = w0 + gen.grid_width
            gen.grid(c0, c1, d0, dtype, tuple(a[:, :, w0:w1] for a in out))  # type: ignore[arg-type]
            w0 = w1
        return out

    def chunks(self, dst0: int, dtype: type[np.integer]) -> Iterator[Chunk]:
        return self.grid_chunks(0, dtype)


# ---- sources: units -> node ids ----------------------------------------------------------

@dataclass
class Sources:
    """Node ids of an operation's input units (row-major).

    ``-1`` marks a constant unit (e.g. zero padding added by ``F.pad``): no edge. ``<= -2`` marks
    a *virtual* unit ``v = -2 - id``: a unit of an absorbed pooling layer, standing for a set of
    nodes (see :class:`VirtualTable`).
    """

    ids: np.ndarray | None  # (n,) int64, or None for the contiguous range start .. start+n-1
    start: int
    size: int

    @classmethod
    def contiguous(cls, start: int, size: int) -> Sources:
        return cls(None, start, size)

    @property
    def is_contiguous(self) -> bool:
        return self.ids is None

    def increasing(self) -> bool:
        if self.ids is None:
            return True
        ids = self.ids
        return bool(ids.size == 0 or (ids[0] >= 0 and np.all(ids[1:] > ids[:-1])))


class VirtualTable:
    """Units of absorbed pooling layers: virtual unit ``v`` stands for the nodes
    ``indices[indptr[v]:indptr[v+1]]`` (its pooling window)."""

    def __init__(self) -> None:
        self.indptr = np.zeros(1, dtype=np.int64)
        self.indices = np.zeros(0, dtype=np.int64)

    @property
    def size(self) -> int:
        return int(self.indptr.shape[0] - 1)

    def add_window(self, gen: RowGenerator, sources: Sources, num_units: int) -> int:
        """Register the outputs of a pooling generator as virtual units; returns the first id."""
        rows, cols = [], []
        for chunk in gen.chunks(0, np.int64):
            counts = np.diff(chunk.rowptr)
            rows.append(np.repeat(np.arange(chunk.row0, chunk.row0 + chunk.nrows), counts))
            cols.append(chunk.indices.astype(np.int64))
        unit = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        pooled = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        occ_node, occ_unit, _ = occurrences(sources, self)
        order = np.argsort(occ_unit, kind="stable")
        occ_node, occ_unit = occ_node[order], occ_unit[order]
        first = np.searchsorted(occ_unit, unit, side="left")
        n_occ = np.searchsorted(occ_unit, unit, side="right") - first
        nodes = occ_node[_ragged_arange(first, n_occ)]
        pooled = np.repeat(pooled, n_occ)
        member = sp.csc_array((np.ones(nodes.size, dtype=np.float32), (nodes, pooled)),
                              shape=(int(nodes.max(initial=0)) + 1, num_units))
        member.sum_duplicates()
        base = self.size
        self.indptr = np.concatenate([self.indptr, self.indptr[-1] + member.indptr[1:]])
        self.indices = np.concatenate([self.indices, member.indices.astype(np.int64)])
        return base

    def expand(self, ids: np.ndarray) -> np.ndarray:
        """Real node ids standing behind ``ids`` (virtual ones expanded, constants dropped)."""
        virtual = -2 - ids[ids <= -2]
        lo, hi = self.indptr[virtual], self.indptr[virtual + 1]
        return np.concatenate([ids[ids >= 0], self.indices[_ragged_arange(lo, hi - lo)]])


def occurrences(sources: Sources, table: VirtualTable | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(node, unit, multiplier)`` for every (node, unit) pair a unit stands for."""
    if sources.ids is None:
        units = np.arange(sources.size, dtype=np.int64)
        return units + sources.start, units, np.ones(sources.size, dtype=np.float32)
    ids = sources.ids
    real = np.flatnonzero(ids >= 0)
    nodes, units = [ids[real]], [real]
    virtual = np.flatnonzero(ids <= -2)
    if virtual.size:
        if table is None:  # pragma: no cover - guarded by the encoder
            raise RuntimeError("virtual units without an absorbed-pooling table")
        v = -2 - ids[virtual]
        counts = table.indptr[v + 1] - table.indptr[v]
        nodes.append(table.indices[_ragged_arange(table.indptr[v], counts)])
        units.append(np.repeat(virtual, counts))
    node, unit = np.concatenate(nodes), np.concatenate(units)
    return node, unit, np.ones(node.size, dtype=np.float32)


# ---- assembly ------------------------------------------------------------------------------

@dataclass
class Contribution:
    """Edges from the units of ``sources`` into the node range ``[dst0, dst0 + dst_size)``."""

    gen: RowGenerator
    sources: Sources
    dst0: int
    dst_size: int
    label: str = ""
    # filled by the assembler
    mode: str = field(default="", init=False)
    lo: int = field(default=0, init=False)
    hi: int = field(default=-1, init=False)


@dataclass
class AssemblyStats:
    raw_edges: int = 0
    merged: bool = False


def assemble(num_nodes: int, contributions: list[Contribution], table: VirtualTable | None,
             progress: Callable[[list[int]], Iterator[int]] | None = None
             ) -> tuple[CSRAdjacency, AssemblyStats]:
    """The canonical CSR adjacency (rows: sources) of all contributions; duplicates summed."""
    stats = AssemblyStats()
    contributions = _fuse(contributions)
    rowcount = np.zeros(num_nodes, dtype=np.int64)
    occ: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for k, c in enumerate(contributions):
        counts = c.gen.row_counts()
        src = c.sources
        if src.is_contiguous:
            c.mode, c.lo, c.hi = "contiguous", src.start, src.start + src.size - 1
            rowcount[src.start:src.start + src.size] += counts
        elif src.increasing():
            assert src.ids is not None
            c.mode, c.lo, c.hi = "increasing", int(src.ids[0]), int(src.ids[-1])
            rowcount[src.ids] += counts
        else:
            c.mode = "general"
            node, unit, mult = occurrences(src, table)
            occ[k] = (node, unit, mult)
            if node.size:
                c.lo, c.hi = int(node.min()), int(node.max())
                rowcount += np.bincount(node, weights=counts[unit],
                                        minlength=num_nodes).astype(np.int64)
    # every (source node, destination node) entry written before joined pairs are summed; an
    # absorbed pooling unit counts once per node of its window
    stats.raw_edges = int(rowcount.sum())

    # the temporaries of one chunk stay a small fraction of the graph
    budget = min(DEFAULT_CHUNK, max(1 << 16, stats.raw_edges // 8))
    for c in contributions:
        if getattr(c.gen, "chunk", 0) > budget:
            c.gen.chunk = budget  # type: ignore[attr-defined]
            for member, _ in getattr(c.gen, "members", ()):
                member.chunk = budget
    # rows written by one contribution only are copied straight into place; two contributions
    # sharing rows and destinations may put entries on the same pair: sum them at the end
    lo = np.array([c.lo for c in contributions], dtype=np.int64)
    hi = np.array([c.hi for c in contributions], dtype=np.int64)
    d0 = np.array([c.dst0 for c in contributions], dtype=np.int64)
    d1 = d0 + np.array([c.dst_size for c in contributions], dtype=np.int64)
    rows_shared = (lo[:, None] <= hi[None, :]) & (lo[None, :] <= hi[:, None])
    np.fill_diagonal(rows_shared, False)
    exclusive = ~rows_shared.any(axis=1)
    dst_shared = (d0[:, None] < d1[None, :]) & (d0[None, :] < d1[:, None])
    needs_merge = any(c.mode == "general" for c in contributions) or \
        bool((rows_shared & dst_shared).any())
    stats.merged = needs_merge

    indptr = _indptr(rowcount)
    del rowcount
    nnz = int(indptr[-1])
    dtype = index_dtype(num_nodes)
    indices = np.empty(nnz, dtype=dtype)
    data = np.empty(nnz, dtype=np.float32)
    fill = indptr[:-1].copy()
    order = sorted(range(len(contributions)), key=lambda k: contributions[k].dst0)
    for k in (progress(order) if progress else order):
        c = contributions[k]
        direct = c.mode == "contiguous" and exclusive[k]
        for chunk in c.gen.chunks(c.dst0, dtype):
            if c.mode == "general":
                _scatter_general(chunk, occ[k], indices, data, fill)
            elif direct:
                pos0 = int(indptr[c.sources.start + chunk.row0])
                chunk.write(indices[pos0:pos0 + chunk.nnz], data[pos0:pos0 + chunk.nnz])
            else:
                if c.mode == "contiguous":
                    r0 = c.sources.start + chunk.row0
                    rows = np.arange(r0, r0 + chunk.nrows, dtype=np.int64)
                else:
                    assert c.sources.ids is not None
                    rows = c.sources.ids[chunk.row0:chunk.row0 + chunk.nrows]
                counts = np.diff(chunk.rowptr)
                pos = np.repeat(fill[rows] - chunk.rowptr[:-1], counts)
                pos += np.arange(chunk.indices.size, dtype=np.int64)
                indices[pos] = chunk.indices
                data[pos] = chunk.data
                fill[rows] += counts
    del fill
    wide = nnz >= _INT32_MAX or dtype is np.int64
    ptr = indptr if wide else indptr.astype(np.int32)
    adjacency = sp.csr_array((data, indices.astype(ptr.dtype, copy=False), ptr),
                             shape=(num_nodes, num_nodes), copy=False)
    del data, indices, indptr, ptr
    if needs_merge:
        adjacency.sum_duplicates()
    return as_adjacency(adjacency), stats


def _fuse(contributions: list[Contribution]) -> list[Contribution]:
    """Merge the grid contributions that read the same node range into disjoint, increasing
    destinations (a residual block's input feeding ``conv1`` and the shortcut)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, c in enumerate(contributions):
        if c.sources.is_contiguous and c.gen.grid_layout is not None:
            groups.setdefault((c.sources.start, c.sources.size), []).append(k)
    fused: dict[int, Contribution] = {}
    dropped: set[int] = set()
    for members in groups.values():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda k: contributions[k].dst0)
        cs = [contributions[k] for k in ordered]
        if len({c.gen.grid_layout for c in cs}) != 1:
            continue
        if any(a.dst0 + a.dst_size > b.dst0 for a, b in itertools.pairwise(cs)):
            continue
        gen = Fused([(c.gen, c.dst0) for c in cs], getattr(cs[0].gen, "chunk", DEFAULT_CHUNK))
        fused[members[0]] = Contribution(gen, cs[0].sources, cs[0].dst0,
                                         cs[-1].dst0 + cs[-1].dst_size - cs[0].dst0,
                                         " + ".join(c.label for c in cs))
        dropped.update(members[1:])
    return [fused.get(k, c) for k, c in enumerate(contributions) if k not in dropped]


def _scatter_general(chunk: Chunk, occ: tuple[np.ndarray, np.ndarray, np.ndarray],
                     indices: np.ndarray, data: np.ndarray, fill: np.ndarray) -> None:
    """Write a chunk whose units map to arbitrary node sets (repeated, virtual, constant)."""
    node, unit, mult = occ
    sel = np.flatnonzero((unit >= chunk.row0) & (unit < chunk.row0 + chunk.nrows))
    node, local, mult = node[sel], unit[sel] - chunk.row0, mult[sel]
    counts = chunk.rowptr[local + 1] - chunk.rowptr[local]
    order = np.argsort(node, kind="stable")
    node, local, mult, counts = node[order], local[order], mult[order], counts[order]
    # within a run of equal nodes, occurrences are written one after the other
    before = _indptr(counts)[:-1]
    run_start = np.r_[True, node[1:] != node[:-1]] if node.size else np.zeros(0, dtype=bool)
    run_first = np.maximum.accumulate(np.where(run_start, np.arange(node.size), 0))
    offset = before - before[run_first]
    dest = _ragged_arange(fill[node] + offset, counts)
    src = _ragged_arange(chunk.rowptr[local], counts)
    indices[dest] = chunk.indices[src]
    data[dest] = chunk.data[src] * np.repeat(mult, counts)
    np.add.at(fill, node, counts)
