"""PHEW: paths with higher edge weights, grown by biased random walks (data-free)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from ..errors import UnsupportedLayerError
from ..params import parameter_table
from ..sparsity import Schedule
from ._channel_flow import ChannelFlow, trace_channel_flow
from ._options import as_int
from ._tokens import embedding_names
from .base import PruneContext, Pruner, Scope
from .registry import register_pruner


@dataclass
class _Layer:
    """Walk tables of one prunable layer (weight ``(out, in / groups, *kernel)``)."""

    name: str
    out_units: int
    in_units: int
    in_per_group: int
    out_per_group: int
    kernel: int
    base: int  # offset of this layer's weights in the global flat weight index
    forward: _RowSampler  # rows: in units; draws the next out unit
    backward: _RowSampler  # rows: out units; draws the in unit
    positions: _RowSampler | None  # rows: (out, in / groups) edges; the kernel position


class _RowSampler:
    """Draws a column for many rows at once, with probability proportional to the row's weights.

    Each row's normalised cumulative sums are stored (float32, computed in float64 in chunks of
    rows); a draw for row r is the first column whose cumulative sum exceeds ``u * total_r``,
    ``u ~ U[0, 1)``, found by a binary search vectorised over all draws (log2(K) gathers of one
    element per draw, no per-draw row copies). Zero weights are never drawn; rows whose
    weights are all zero must not be sampled.
    """

    def __init__(self, weights: torch.Tensor, chunk: int = 1 << 22) -> None:
        rows, self.width = weights.shape
        cdf = torch.empty(rows, self.width, dtype=torch.float32)
        step = max(1, chunk // max(self.width, 1))
        for r in range(0, rows, step):
            part = weights[r:r + step].double().cumsum(-1)
            total = part[:, -1:]
            cdf[r:r + step] = torch.where(total > 0, part / total.clamp_min(1e-300), 0.0)
        self.total = cdf[:, -1].contiguous()  # 1 (up to rounding) or 0 for empty rows
        self.cdf = cdf.reshape(-1)

    def sample(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        target = torch.rand(len(rows), generator=generator) * self.total[rows]
        lo = torch.zeros_like(rows)
        hi = torch.full_like(rows, self.width - 1)
        base = rows * self.width
        while bool((lo < hi).any()):  # first k with cdf[k] > target
            mid = (lo + hi) // 2
            above = self.cdf[base + mid] > target
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid + 1)
        return lo


class PhewGraph:
    """The unit graph of a network and PHEW's biased random walks on it.

    Units are the model's input channels, and the input and output units (channels or
    features) of every prunable layer; :func:`~paizoo.pruners._channel_flow.trace_channel_flow`
    gives which sources feed each input unit. A channel edge ``i -> o`` of a layer exists where
    its mask keeps some kernel entry ``W[o, i, ...]``; its weight is the kernel's L1 norm
    ``||W[o, i]||_1``. Walks only use *live* units: reachable from an input channel and reaching
    a model output over existing edges, so every walk is a complete input-output path.

    Transitions (Patil & Dovrolis 2021 and their code ``ShreyasMalakarjunPatil/PHEW``):

    * forward, at input unit i of a layer: out unit o with probability
      ``||W[o, i]||_1 / sum_o' ||W[o', i]||_1`` (over live edges; uniform if all norms are 0);
    * backward, at output unit o: input unit i with probability ``||W[o, i]||_1 / sum_i' ...``;
    * then the kernel position k of the chosen channel edge with probability
      ``|W[o, i, k]| / ||W[o, i]||_1`` (the weight added to the subnetwork is ``W[o, i, k]``);
    * where a unit feeds several layers (a residual block's input feeds its convolution and the
      addition after it) or is fed by several sources (after the addition), the walk picks one
      uniformly, as the authors' code chooses between a block and its shortcut; a forward walk
      ends at a unit that feeds the model output (uniformly among ending and going on, if both),
      a backward walk at an input channel; flattening maps a channel to one of its features
      uniformly (forward) and a feature to its channel (backward).
    """

    def __init__(self, flow: ChannelFlow, weights: dict[str, torch.Tensor],
                 mask: dict[str, torch.Tensor]) -> None:
        self.flow = flow
        self.num_inputs = flow.num_inputs
        self.names = list(flow.layers)
        self.sizes = {n: weights[n].numel() for n in self.names}
        self.shapes = {n: tuple(weights[n].shape) for n in self.names}
        exist, norms, kernel_abs = {}, {}, {}
        for n in self.names:
            m = mask[n].detach().bool().cpu()
            w = weights[n].detach().abs().float().cpu() * m
            out_units, in_pg = w.shape[0], w.shape[1]
            k = w[0, 0].numel()
            w3, m3 = w.reshape(out_units, in_pg, k), m.reshape(out_units, in_pg, k)
            norm = w3.sum(-1) if k > 1 else w3[:, :, 0]  # kernel L1 norms, (out, in / groups)
            edge = m3.any(-1) if k > 1 else m3[:, :, 0]
            exist[n], norms[n] = _expand_groups(edge, flow.groups[n]), \
                _expand_groups(norm, flow.groups[n])
            kernel_abs[n] = (w3, m3)
        self._exist = exist
        self.magnitude = torch.cat([kernel_abs[n][0].reshape(-1) for n in self.names])
        self.weight_mask = torch.cat([kernel_abs[n][1].reshape(-1) for n in self.names])
        live_in, live_src = self._live(exist)
        self.live_sources = live_src
        self.live_in = live_in
        # global input-unit ids: one block per layer, in execution order
        self.in_offsets: dict[str, int] = {}
        total_in = 0
        for n in self.names:
            self.in_offsets[n] = total_in
            total_in += exist[n].shape[1]
        self.total_in = total_in
        self.layers: list[_Layer] = []
        base = 0
        for n in self.names:
            e = exist[n] & live_src[self._src(n)][:, None] & live_in[n][None, :]
            a = norms[n] * e
            out_units, in_units = e.shape
            w3, m3 = kernel_abs[n]
            self.layers.append(_Layer(
                name=n, out_units=out_units, in_units=in_units, in_per_group=w3.shape[1],
                out_per_group=out_units // flow.groups[n], kernel=w3.shape[2], base=base,
                forward=_RowSampler(_with_uniform_fallback(a.T, e.T)),
                backward=_RowSampler(_with_uniform_fallback(a, e)),
                positions=(_RowSampler(_with_uniform_fallback(w3, m3).reshape(-1, w3.shape[2]))
                           if w3.shape[2] > 1 else None)))
            base += self.sizes[n]
        self.total_weights = base
        self.layer_index = {layer.name: i for i, layer in enumerate(self.layers)}
        self._width = len(self.layers) + 2  # steps a walk can take, plus the final check
        self._build_tables(live_src, live_in)

    # ---- structure ---------------------------------------------------------------------------
    def _src(self, name: str) -> slice:
        start = self.flow.offsets[name]
        return slice(start, start + self._exist[name].shape[0])

    def _live(self, exist: dict[str, torch.Tensor]
              ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Units reachable from the inputs and reaching the outputs over existing edges."""
        reach_src, in_reach = _reachability(self.flow, self.names, exist)
        co_src, in_co = _co_reachability(self.flow, self.names, exist)
        live_src = reach_src & co_src
        live_in = {n: in_reach[n] & in_co[n] for n in self.names}
        return live_in, live_src

    def _build_tables(self, live_src: torch.Tensor, live_in: dict[str, torch.Tensor]) -> None:
        flow = self.flow
        live_in_all = np.concatenate([live_in[n].numpy() for n in self.names])
        reach = live_src.numpy()
        # forward: source -> consuming live input units (global ids)
        feeds_all = sp.vstack([flow.feeds[n] for n in self.names], format="csr")  # (in, S)
        rows_kept = np.flatnonzero(live_in_all)
        consumers = sp.csr_matrix(feeds_all[rows_kept].T)  # (S, live input units)
        self._cons_ptr = torch.from_numpy(consumers.indptr.astype(np.int64))
        self._cons_idx = torch.from_numpy(rows_kept[consumers.indices].astype(np.int64))
        ends = np.asarray(flow.output.sum(axis=0)).ravel() > 0
        self._ends = torch.from_numpy(ends & reach)
        # backward: live input unit -> live sources feeding it; output unit -> live sources
        feeders = sp.csr_matrix(feeds_all.multiply(reach[None, :]))
        self._feed_ptr = torch.from_numpy(feeders.indptr.astype(np.int64))
        self._feed_idx = torch.from_numpy(feeders.indices.astype(np.int64))
        outs = sp.csr_matrix(flow.output.multiply(reach[None, :]))
        self._out_ptr = torch.from_numpy(outs.indptr.astype(np.int64))
        self._out_idx = torch.from_numpy(outs.indices.astype(np.int64))
        self.live_outputs = torch.from_numpy(np.diff(outs.indptr) > 0)
        self.live_input_channels = live_src[: self.num_inputs].clone()
        # source id -> (layer index, unit); input unit id -> layer index
        self._src_layer = torch.full((flow.num_sources,), -1, dtype=torch.long)
        self._src_unit = torch.zeros(flow.num_sources, dtype=torch.long)
        self._in_layer = torch.zeros(self.total_in, dtype=torch.long)
        for i, layer in enumerate(self.layers):
            s = self._src(layer.name)
            self._src_layer[s] = i
            self._src_unit[s] = torch.arange(layer.out_units)
            start = self.in_offsets[layer.name]
            self._in_layer[start:start + layer.in_units] = i

    # ---- walks -------------------------------------------------------------------------------
    def walk_forward(self, seeds: torch.Tensor, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Walks from input channels ``seeds``; returns ``(walk, step, global weight index)``."""
        cur = seeds.clone().long()
        alive = torch.ones(len(cur), dtype=torch.bool)
        records: list[tuple[torch.Tensor, torch.Tensor]] = []
        for step in range(self._width):
            idx = torch.nonzero(alive, as_tuple=True)[0]
            if idx.numel() == 0:
                break
            src = cur[idx]
            deg = self._cons_ptr[src + 1] - self._cons_ptr[src]
            options = deg + self._ends[src].long()
            pick = torch.floor(torch.rand(len(idx), generator=generator, dtype=torch.float64)
                               * options).long()
            stop = pick >= deg
            alive[idx[stop]] = False
            go = ~stop
            idx, unit = idx[go], self._cons_idx[self._cons_ptr[src[go]] + pick[go]]
            for li in torch.unique(self._in_layer[unit]).tolist():
                layer = self.layers[li]
                sel = self._in_layer[unit] == li
                walkers, i = idx[sel], unit[sel] - self.in_offsets[layer.name]
                o = layer.forward.sample(i, generator)
                flat = self._pick_position(layer, o, i, generator)
                records.append((walkers * self._width + step, flat))
                cur[walkers] = self.flow.offsets[layer.name] + o
        else:  # pragma: no cover - a DAG walk ends within one step per layer
            raise RuntimeError("PHEW forward walk did not terminate")
        return self._collect(records)

    def walk_backward(self, seeds: torch.Tensor, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Walks from model output units ``seeds``; returns ``(walk, step, weight index)``."""
        start, deg = self._out_ptr[seeds], self._out_ptr[seeds + 1] - self._out_ptr[seeds]
        cur = self._out_idx[start + self._uniform(deg, generator)]
        alive = torch.ones(len(cur), dtype=torch.bool)
        records: list[tuple[torch.Tensor, torch.Tensor]] = []
        for step in range(self._width):
            alive &= cur >= self.num_inputs
            idx = torch.nonzero(alive, as_tuple=True)[0]
            if idx.numel() == 0:
                break
            src = cur[idx]
            for li in torch.unique(self._src_layer[src]).tolist():
                layer = self.layers[li]
                sel = self._src_layer[src] == li
                walkers, o = idx[sel], self._src_unit[src[sel]]
                i = layer.backward.sample(o, generator)
                flat = self._pick_position(layer, o, i, generator)
                records.append((walkers * self._width + step, flat))
                unit = self.in_offsets[layer.name] + i
                first, deg = self._feed_ptr[unit], self._feed_ptr[unit + 1] - self._feed_ptr[unit]
                cur[walkers] = self._feed_idx[first + self._uniform(deg, generator)]
        else:  # pragma: no cover
            raise RuntimeError("PHEW backward walk did not terminate")
        return self._collect(records)

    def _pick_position(self, layer: _Layer, o: torch.Tensor, i: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
        local = i - (o // layer.out_per_group) * layer.in_per_group
        if layer.positions is None:
            k = torch.zeros_like(o)
        else:
            k = layer.positions.sample(o * layer.in_per_group + local, generator)
        return layer.base + (o * layer.in_per_group + local) * layer.kernel + k

    @staticmethod
    def _uniform(deg: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if bool((deg <= 0).any()):  # pragma: no cover - live units always have a choice
            raise RuntimeError("PHEW walk reached a unit without live neighbours")
        u = torch.rand(len(deg), generator=generator, dtype=torch.float64)
        return torch.minimum(torch.floor(u * deg).long(), deg - 1)

    def _collect(self, records: list[tuple[torch.Tensor, torch.Tensor]]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not records:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, empty
        key = torch.cat([r[0] for r in records])
        flat = torch.cat([r[1] for r in records])
        return key // self._width, key % self._width, flat

    # ---- completion --------------------------------------------------------------------------
    def bridge_candidates(self, kept: torch.Tensor) -> torch.Tensor:
        """Global indices of unkept weights joining a unit reached from the inputs by kept
        weights to a unit that reaches the outputs by kept weights (each lies on a kept path)."""
        kept_edges = {}
        for layer in self.layers:
            part = kept[layer.base:layer.base + self.sizes[layer.name]]
            kept_edges[layer.name] = self._channel_any(layer, part)
        _, in_reach = _reachability(self.flow, self.names, kept_edges)
        co_src, _ = _co_reachability(self.flow, self.names, kept_edges)
        out = []
        for layer in self.layers:
            n = layer.name
            part = kept[layer.base:layer.base + self.sizes[n]]
            m = self.weight_mask[layer.base:layer.base + self.sizes[n]].view(
                layer.out_units, layer.in_per_group, -1)
            o = torch.arange(layer.out_units)[:, None]
            cols = (o // layer.out_per_group) * layer.in_per_group \
                + torch.arange(layer.in_per_group)[None, :]
            ok = in_reach[n][cols] & co_src[self._src(n)][:, None]  # (out, in / groups)
            ok = ok[:, :, None] & m & ~part.view(layer.out_units, layer.in_per_group, -1)
            out.append(layer.base + torch.nonzero(ok.reshape(-1), as_tuple=True)[0])
        return torch.cat(out)

    def _channel_any(self, layer: _Layer, part: torch.Tensor) -> torch.Tensor:
        edges = part.view(layer.out_units, layer.in_per_group, -1).any(-1)
        return _expand_groups(edges, layer.out_units // layer.out_per_group)


def _with_uniform_fallback(weights: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """``weights`` restricted to ``allowed``; rows whose allowed weights are all 0 become uniform
    over ``allowed`` (the authors' rule for all-zero kernels); rows with nothing allowed stay 0."""
    w = weights * allowed
    empty = ~(w > 0).any(-1)
    if bool(empty.any()):
        w = torch.where(empty[..., None], allowed.to(w.dtype), w)
    return w


def _expand_groups(per_group: torch.Tensor, groups: int) -> torch.Tensor:
    """``(out, in / groups)`` -> ``(out, in)``: output unit o of group g reads the inputs of g."""
    if groups == 1:
        return per_group
    out_units, in_pg = per_group.shape
    full = torch.zeros(out_units, in_pg * groups, dtype=per_group.dtype)
    rows = torch.arange(out_units)[:, None].expand(-1, in_pg)
    cols = (rows // (out_units // groups)) * in_pg + torch.arange(in_pg)[None, :]
    full[rows, cols] = per_group
    return full


def _reachability(flow: ChannelFlow, names: list[str], edges: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sources and input units reachable from the model's input channels over ``edges``."""
    reach = np.zeros(flow.num_sources, dtype=bool)
    reach[: flow.num_inputs] = True
    in_reach = {}
    for n in names:  # execution order is topological
        r_in = np.asarray(flow.feeds[n] @ reach).ravel() > 0
        in_reach[n] = torch.from_numpy(r_in)
        e = edges[n]
        out = (e.float() @ in_reach[n].float()) > 0
        start = flow.offsets[n]
        reach[start:start + e.shape[0]] = out.numpy()
    return torch.from_numpy(reach), in_reach


def _co_reachability(flow: ChannelFlow, names: list[str], edges: dict[str, torch.Tensor]
                     ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sources and input units from which a model output is reachable over ``edges``."""
    co = np.asarray(flow.output.sum(axis=0)).ravel() > 0
    in_co = {}
    for n in reversed(names):
        e = edges[n]
        start = flow.offsets[n]
        out_co = torch.from_numpy(co[start:start + e.shape[0]].copy())
        c_in = (e.float().T @ out_co.float()) > 0
        in_co[n] = c_in
        co = co | (np.asarray(flow.feeds[n].T @ c_in.numpy()).ravel() > 0)
    return torch.from_numpy(co), in_co


@register_pruner("phew")
class PHEWPruner(Pruner):
    """Grow the subnetwork from biased random walks along heavy input-output paths: PHEW.

    Patil, Dovrolis, "PHEW: Constructing Sparse Networks that Learn Fast and Generalize Well
    without Training Data", ICML 2021 (code: ``ShreyasMalakarjunPatil/PHEW``).

    Data-free. Walks alternate between forward walks, from the model's input channels (taken in
    round-robin order) to an output unit, and backward walks, from the output units (round robin)
    to an input channel. Each step moves along one channel edge ``i -> o`` of a layer with
    probability proportional to the kernel's L1 norm ``||W[o, i]||_1`` among the current unit's
    edges, then picks the kernel entry ``W[o, i, k]`` with probability ``|W[o, i, k]| /
    ||W[o, i]||_1`` (for Linear layers the kernel is the single weight); see
    :class:`PhewGraph`. Every weight a walk traverses joins the kept set, until the budget
    ``k = kept_count(density, N)`` is met.

    Exact count and the path property. Every weight is kept because a complete input-output
    walk used it. The last walk generally overshoots the budget, so it is not added; the
    ``r < walk length`` missing weights are then *bridges* (also used if three batches of walks
    in a row find no new weight): unkept weights ``W[o, i, k]`` whose input unit is reached
    from an input channel by kept weights and whose output unit reaches a model output by kept
    weights, drawn without replacement with probability proportional to ``|W[o, i, k]|``. A
    bridge completes an input-output path of kept weights, so every kept weight lies on such a
    path (for convolutions paths run over channels: ``W[o, i, k]`` joins channel ``i`` to
    channel ``o``). Only if fewer than ``r`` bridges exist (the kept subnetwork already holds
    every weight between its live units, which needs a very high density) are all bridges
    added and then the overshooting walk's new weights in walk order, cut at the budget, so at
    most one walk may contribute weights that lie off a complete path; and if no such walk is
    left (every weight on an input-output path is kept), the rest of the budget goes to
    off-path weights in index order. Scores are the insertion order (earlier = higher), so the
    base class's top-k keeps exactly this set.

    Only global scope: the walks decide how many weights each layer gets. Over several rounds
    (default 1, as in the paper), each round walks the current mask's network.

    Args:
        batch_walks: forward/backward walk pairs drawn per batch (vectorised); the default
            ``None`` sizes batches from the remaining budget.
    """

    requires_input_shape = True

    def __init__(self, *, batch_walks: int | None = None, scope: Scope | None = None,
                 rounds: int | None = None, schedule: Schedule = "exponential") -> None:
        super().__init__(scope=scope, rounds=rounds, schedule=schedule)
        if self.scope != "global":
            raise ValueError("PHEW grows one global subnetwork (the walks allocate the weights "
                             "over layers); scope must be 'global'")
        self.batch_walks = (None if batch_walks is None
                            else as_int("batch_walks", batch_walks, minimum=1))
        self._flow: ChannelFlow | None = None

    def prepare(self, ctx: PruneContext) -> None:
        assert ctx.input_shape is not None
        embeddings = embedding_names(ctx.model)
        dtype = next((p.dtype for p in ctx.model.parameters() if p.is_floating_point()),
                     torch.float32)
        if embeddings and ctx.takes_token_ids(ctx.model, dtype):
            raise UnsupportedLayerError(
                f"PHEW walks from the model's input channels through Conv/Linear layers and "
                f"cannot start from token ids: {type(ctx.model).__name__} has the embedding(s) "
                f"{', '.join(embeddings[:3])}. Prune token-input models with SynFlow, NTK-SAP "
                "or a data-driven pruner")
        table = parameter_table(ctx.model)
        other = [n for n in ctx.params if not {"conv", "linear"} & set(table[n].kinds)]
        if other:
            raise UnsupportedLayerError(
                f"PHEW walks channel paths through Conv/Linear layers only and cannot follow "
                f"{', '.join(other[:3])} ({table[other[0]].kind} weights); prune them with "
                "another pruner, or leave them out (the default cover, or exclude=)")
        self._flow = trace_channel_flow(ctx.model, list(ctx.params), ctx.input_shape)

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        assert self._flow is not None
        budget = self.budgets({n: p.shape for n, p in ctx.params.items()}, ctx.density)
        assert isinstance(budget, int)
        graph = PhewGraph(self._flow, ctx.initial, {n: ctx.mask[n] for n in ctx.params})
        rank = grow(graph, budget, ctx.generator, self.batch_walks)
        scores = torch.where(rank >= 0, (graph.total_weights - rank).double(),
                             torch.zeros((), dtype=torch.float64))
        out = {}
        for layer in graph.layers:
            n = layer.name
            out[n] = scores[layer.base:layer.base + graph.sizes[n]].view(graph.shapes[n])
        return out


def grow(graph: PhewGraph, budget: int, generator: torch.Generator,
         batch_walks: int | None = None, progress: bool | None = None) -> torch.Tensor:
    """Run PHEW's walks until ``budget`` weights are kept; return each weight's insertion rank
    (``-1`` if not kept). See :class:`PHEWPruner` for the completion rule."""
    total = graph.total_weights
    rank = torch.full((total,), -1, dtype=torch.long)
    count = 0
    inputs = torch.nonzero(graph.live_input_channels, as_tuple=True)[0]
    outputs = torch.nonzero(graph.live_outputs, as_tuple=True)[0]
    if budget <= 0:
        return rank
    if len(inputs) == 0 or len(outputs) == 0:
        raise RuntimeError("PHEW found no input-output path in the (masked) network")
    next_in = next_out = 0
    per_walk = float(len(graph.layers))
    stalled = 0
    quiet = progress is False or (progress is None and budget < 200_000)
    bar = tqdm(total=budget, desc="phew walks", disable=True if quiet else None, leave=False)
    while count < budget:
        pairs = batch_walks or int(min(65536, max(16, math.ceil(
            (budget - count) / max(per_walk, 0.25) / 2 * 1.2))))
        seeds_in = inputs[(next_in + torch.arange(pairs)) % len(inputs)]
        seeds_out = outputs[(next_out + torch.arange(pairs)) % len(outputs)]
        next_in, next_out = (next_in + pairs) % len(inputs), (next_out + pairs) % len(outputs)
        fw, fs, ff = graph.walk_forward(seeds_in, generator)
        bw, bs, bf = graph.walk_backward(seeds_out, generator)
        walk = torch.cat([2 * fw, 2 * bw + 1])  # forward and backward walks alternate
        step = torch.cat([fs, bs])
        flat = torch.cat([ff, bf])
        fresh = rank[flat] < 0
        walk, step, flat = walk[fresh], step[fresh], flat[fresh]
        # first visit of each new weight, in walk order (then step order within a walk)
        order = torch.argsort(walk * graph._width + step, stable=True)
        walk, step, flat = walk[order], step[order], flat[order]
        uniq, inverse = torch.unique(flat, return_inverse=True)
        first = torch.full((len(uniq),), len(flat), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(len(flat)), reduce="amin")
        first = torch.sort(first).values
        walk, flat = walk[first], flat[first]
        new_per_walk = torch.bincount(walk, minlength=2 * pairs)
        cumulative = torch.cumsum(new_per_walk, 0)
        fits = int(torch.searchsorted(cumulative, budget - count, right=True))
        accepted = walk < fits
        take = flat[accepted]
        rank[take] = count + torch.arange(len(take))
        count += len(take)
        bar.update(len(take))
        stalled = stalled + 1 if len(take) == 0 and fits == 2 * pairs else 0
        per_walk = max(len(flat) / (2 * pairs), 1e-3)
        if count >= budget:
            break
        if fits < 2 * pairs or stalled >= 3:  # the next walk overshoots: complete with bridges
            rest = budget - count
            candidates = graph.bridge_candidates(rank >= 0)
            if len(candidates) >= rest:
                chosen = _weighted_sample(graph, candidates, rest, generator)
                rank[chosen] = count + torch.arange(rest)
                count += rest
            else:  # rare: add the bridges, then the overshooting walk in walk order (cut)
                rank[candidates] = count + torch.arange(len(candidates))
                count += len(candidates)
                over = flat[walk == fits] if fits < 2 * pairs else flat[:0]
                over = over[rank[over] < 0]
                rank[over] = count + torch.arange(len(over))
                count += len(over)
                if count < budget:
                    unkept = torch.nonzero(rank < 0, as_tuple=True)[0][: budget - count]
                    rank[unkept] = count + torch.arange(len(unkept))
                    count += len(unkept)
            break
    bar.close()
    return rank


def _weighted_sample(graph: PhewGraph, candidates: torch.Tensor, k: int,
                     generator: torch.Generator) -> torch.Tensor:
    """``k`` of ``candidates`` without replacement, with probability proportional to |w|
    (exponential races: the ``k`` smallest ``E / |w|``, ``E ~ Exp(1)``; zero weights last)."""
    w = graph.magnitude[candidates]
    e = -torch.log1p(-torch.rand(len(candidates), generator=generator, dtype=torch.float64))
    keys = torch.where(w > 0, e / w.clamp_min(1e-300), torch.full_like(e, math.inf))
    order = torch.sort(keys, stable=True).indices[:k]
    return candidates[order]


__all__ = ["PHEWPruner", "PhewGraph", "grow"]
