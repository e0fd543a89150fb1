"""Expander pruning: every layer becomes a random biregular bipartite graph (data-free)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import torch
from torch import nn

from ..diagnostics import warn_off_target
from ..errors import SparsityError
from ..params import layer_of
from ._layer_densities import Distribution, check_distribution, layer_budgets
from ._options import as_bool
from .base import PruneContext, Pruner, Scope
from .registry import register_pruner

Granularity = Literal["channel", "weight"]


@dataclass(frozen=True)
class ExpanderLayout:
    """The bipartite graph that one weight tensor becomes.

    Attributes:
        num_outputs: output features/channels (``shape[0]``).
        inputs_per_group: the input side of each group's graph: input channels per group
            (``shape[1]``) with ``granularity="channel"``, or ``shape[1] * kernel_size`` positions
            ``(c_in, kh, kw)`` with ``granularity="weight"``.
        kernel_size: weights per graph edge (``kh * kw`` for channel granularity, else 1).
        kept: the exact number of weights the layer keeps.
    """

    num_outputs: int
    inputs_per_group: int
    kernel_size: int
    kept: int

    @property
    def edges(self) -> int:
        """Graph edges: ``ceil(kept / kernel_size)`` (at most one edge keeps a partial kernel)."""
        return -(-self.kept // self.kernel_size)

    @property
    def minimum(self) -> int:
        """The fewest weights for which every output keeps an edge (whole kernels)."""
        return self.num_outputs * self.kernel_size


def expander_layouts(
    shapes: dict[str, torch.Size],
    density: float,
    distribution: Distribution = "uniform",
    granularity: Granularity = "channel",
    *,
    allow_off_target: bool = False,
) -> dict[str, ExpanderLayout]:
    """Per-layer graph sizes and exact kept counts at global ``density``.

    The requested count of each layer is ``t_l = kept_count(density, n_l)`` (``"uniform"``) or
    the exact ER/ERK count of :func:`~paizoo.pruners._layer_densities.layer_budgets`. Every output
    must keep at least one edge (one input, or one whole kernel with channel granularity): the
    minimum ``L_l`` is ``c_out`` weights (``c_out * kh * kw`` for channel granularity). Where
    ``t_l < L_l`` the layer gets ``L_l`` and the difference is taken from the other layers in
    proportion to their requests (water-filling, :func:`allocate_with_minimum`), so the total is
    exactly ``sum_l t_l``.

    Raises:
        SparsityError: ``sum_l t_l < sum_l L_l``: fewer edges than outputs, the target cannot be
            reached (unless ``allow_off_target``: then every layer keeps ``max(t_l, L_l)``).
    """
    distribution = check_distribution(distribution)
    if granularity not in ("channel", "weight"):
        raise ValueError(f"granularity must be 'channel' or 'weight', got {granularity!r}")
    for name, shape in shapes.items():
        if len(shape) < 2:
            raise ValueError(f"{name}: expander pruning needs a weight with >= 2 dims, got "
                             f"{tuple(shape)}")
    targets = layer_budgets(shapes, density, distribution)
    base = {}
    for name, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        kernel = math.prod(shape[2:])
        n = shape[1] if granularity == "channel" else shape[1] * kernel
        base[name] = ExpanderLayout(shape[0], n, kernel if granularity == "channel" else 1, 0)
    names = list(shapes)
    minimum = [base[n].minimum for n in names]
    requested = [targets[n] for n in names]
    total, needed = sum(requested), sum(minimum)
    if total < needed:
        if not allow_off_target:
            size = sum(math.prod(int(s) for s in shapes[n]) for n in names)
            unit = "one whole kernel" if granularity == "channel" else "one input"
            raise SparsityError(
                f"expander: density {density:.4g} keeps {total} weights, fewer than the {needed} "
                f"needed for every output neuron/channel to keep {unit} (fewer edges than "
                f"outputs); the highest sparsity it reaches on this model is "
                f"{1 - needed / size:.4g}"
                + (" (granularity='weight' reaches higher)" if granularity == "channel" else "")
                + ". Ask for a lower sparsity, or pass allow_off_target=True for the sparsest "
                "mask with every output connected")
        counts = [max(t, lo) for t, lo in zip(requested, minimum, strict=True)]
    else:
        counts = allocate_with_minimum(requested, minimum)
    return {n: ExpanderLayout(base[n].num_outputs, base[n].inputs_per_group,
                              base[n].kernel_size, k)
            for n, k in zip(names, counts, strict=True)}


def allocate_with_minimum(requested: list[int], minimum: list[int]) -> list[int]:
    """Integer counts ``k_l >= minimum_l`` summing to ``sum(requested)``, closest to ``requested``.

    Exact water-filling: ``k_l = max(lam * requested_l, minimum_l)`` with the ``lam`` in
    ``[0, 1]`` that makes the shares sum to the total (layers below their minimum are raised to
    it, the others scaled down by the same factor), computed in rational arithmetic; the shares
    are then rounded by the largest-remainder method (ties: earlier layer). Since
    ``lam <= 1``, no count exceeds its request, hence its layer's size. Requires
    ``sum(minimum) <= sum(requested)``.
    """
    total = sum(requested)
    if sum(minimum) > total:
        raise ValueError(f"minimum {sum(minimum)} exceeds the total {total}")
    n = len(requested)
    fixed = [requested[i] <= minimum[i] for i in range(n)]
    while True:
        free_weight = sum(requested[i] for i in range(n) if not fixed[i])
        rest = total - sum(minimum[i] for i in range(n) if fixed[i])
        lam = Fraction(rest, free_weight) if free_weight else Fraction(0)
        low = [i for i in range(n) if not fixed[i] and lam * requested[i] < minimum[i]]
        if not low:
            break
        for i in low:  # lam only decreases from here on, so fixed layers stay fixed
            fixed[i] = True
    shares = [Fraction(minimum[i]) if fixed[i] else lam * requested[i] for i in range(n)]
    counts = [math.floor(x) for x in shares]
    order = sorted(range(n), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def biregular_bipartite(
    groups: int, num_out: int, num_in: int, fan_in: int, generator: torch.Generator
) -> torch.Tensor:
    """Random bipartite graphs with equal fan-ins and fan-outs differing by at most one.

    Returns a bool tensor ``adj`` of shape ``(groups, num_out, num_in)``, one independent graph per
    group, with ``adj[g, o].sum() == fan_in`` for every output ``o`` and, in every group, column
    sums (fan-outs) in ``{floor(num_out * fan_in / num_in), ceil(...)}``: the special case
    ``edges = num_out * fan_in`` of :func:`near_biregular_bipartite`.
    """
    if not 1 <= fan_in <= num_in:
        raise ValueError(f"fan_in must be in [1, {num_in}], got {fan_in}")
    return near_biregular_bipartite(groups, num_out, num_in, num_out * fan_in, generator)


def near_biregular_bipartite(
    groups: int, num_out: int, num_in: int, edges: int, generator: torch.Generator
) -> torch.Tensor:
    """Random bipartite graphs with exactly ``edges`` edges and near-regular degrees.

    Returns a bool tensor ``adj`` of shape ``(groups, num_out, num_in)``, one independent graph per
    group, each with exactly ``edges`` edges (no edge repeated: a 0/1 matrix), fan-ins (row sums)
    in ``{floor(edges / num_out), ceil(edges / num_out)}`` and fan-outs (column sums) in
    ``{floor(edges / num_in), ceil(edges / num_in)}``: degrees on either side differ by at most
    one, and how many nodes have the larger degree is fixed (``edges mod num_out`` outputs,
    ``edges mod num_in`` inputs); which ones is drawn from ``generator``.

    For ``2 ceil(edges / num_out) <= num_in + 1`` :func:`_stream` below builds the graph and
    states the proof; otherwise the complement graph (``num_out * num_in - edges`` edges, for
    which the condition holds) is built and inverted, which maps degrees in ``{a, a + 1}`` to
    degrees in ``{n - a - 1, n - a}``.
    """
    if not num_out <= edges <= num_out * num_in:
        raise ValueError(f"edges must be in [{num_out}, {num_out * num_in}] (every output keeps "
                         f"an input), got {edges}")
    if edges == num_out * num_in:
        return torch.ones(groups, num_out, num_in, dtype=torch.bool)
    complement = 2 * -(-edges // num_out) > num_in + 1
    sparse_edges = num_out * num_in - edges if complement else edges
    adj = torch.zeros(groups, num_out, num_in, dtype=torch.bool)
    if sparse_edges:
        inputs, owner = _stream(groups, num_out, num_in, sparse_edges, generator)
        relabel = torch.rand(groups, num_out, generator=generator).argsort(dim=-1, stable=True)
        rows = relabel[:, owner]  # (groups, edges): the output of each stream position
        adj[torch.arange(groups)[:, None], rows, inputs] = True
    return ~adj if complement else adj


def _chunk_bounds(m: int, total: int) -> torch.Tensor:
    """Start of each output's chunk in the stream, and ``total``: ``m + 1`` increasing positions.

    The first ``total mod m`` outputs take ``ceil(total / m)`` entries, the others
    ``floor(total / m)``.
    """
    f, extra = divmod(total, m)
    o = torch.arange(m + 1)
    return o * f + torch.clamp(o, max=extra)


def _sparse_side(
    groups: int, m: int, n: int, f: int, generator: torch.Generator
) -> torch.Tensor:
    """Input ids ``(groups, m, f)`` of ``m`` outputs, each with ``f`` distinct inputs of ``n``
    (requires ``1 <= f`` and ``2 f <= n + 1``): the stream of :func:`_stream` cut into equal
    chunks, in a random order of outputs."""
    inputs, _ = _stream(groups, m, n, m * f, generator)
    relabel = torch.rand(groups, m, generator=generator).argsort(dim=-1, stable=True)
    chunks = inputs.reshape(groups, m, f)
    out = torch.empty_like(chunks)
    out.scatter_(1, relabel[:, :, None].expand(groups, m, f), chunks)
    return out


def _stream(
    groups: int, m: int, n: int, total: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A stream of ``total`` input ids per group cut into ``m`` chunks of distinct inputs.

    Returns ``(inputs, owner)``: ``inputs`` of shape ``(groups, total)`` and ``owner`` of shape
    ``(total,)``, the chunk (output) each stream position belongs to; chunk ``o`` is
    ``[B_o, B_{o+1})`` with the bounds of :func:`_chunk_bounds` (sizes ``f`` or ``f + 1``,
    ``f = floor(total / m)``). Requires ``1 <= total`` and ``2 F <= n + 1`` with
    ``F = ceil(total / m)`` the largest chunk. Construction (vectorised over groups and passes):

    1. Draw ``r = ceil(total / n)`` independent random permutations ("passes": argsort of i.i.d.
       uniform keys) ``P_0 .. P_{r-1}`` of the ``n`` inputs and read them one after the other as
       the stream ``S = P_0 P_1 ...``, of which the first ``total`` entries are used.
    2. A chunk that crosses the end of pass ``j`` (position ``t = (j + 1) n``, not a chunk
       bound) takes the last ``a_j = t - B`` entries of ``P_j`` (the set ``A_j``; ``B`` the
       largest bound ``<= t``) and the first ``b_j`` of ``P_{j+1}``, ``a_j + b_j <= F``
       (``a_j = 0``: no chunk crosses). To keep them disjoint, ``P_{j+1}`` is reordered by a
       stable partition (by counting, no sort) into the categories
       ``0``: position ``< n - a_{j+1}`` and element not in ``A_j``; ``1``: position
       ``< n - a_{j+1}`` and element in ``A_j``; ``2``: position ``>= n - a_{j+1}`` (its own tail,
       left as a set where it is, so ``A_{j+1}`` does not change and all passes are fixed at once).

    Proof of the properties.

    * Chunk sizes: by construction of the bounds.
    * Fan-outs differ by at most one: ``S[:total]`` is ``r - 1`` whole permutations (each input
      once each; reordering within a pass keeps it a permutation) followed by a prefix of length
      ``total - (r - 1) n`` in ``(0, n]`` of the last one (each input at most once), so every
      input occurs ``r - 1`` or ``r`` times.
    * No repeated edge: a chunk inside one pass has distinct entries (a permutation); a chunk
      has at most ``F < n`` entries, so it crosses at most one pass end. A chunk crossing pass
      ``j``'s end consists of ``A_j`` and the first ``b_j`` entries of the reordered ``P_{j+1}``.
      Category 0 holds at least ``(n - a_{j+1}) - a_j`` elements, and
      ``n - a_{j+1} - a_j >= b_j`` because ``a_j + b_j <= F`` and ``a_{j+1} <= F - 1`` and
      ``2 F - 1 <= n``. So those first ``b_j`` entries are all category 0, i.e. outside ``A_j``.
      (The two regions of a pass touched by crossing chunks, head ``b_{j-1}`` and tail ``a_j``,
      never overlap: they belong to different chunks, and chunks are disjoint intervals of S.)
    """
    r = -(-total // n)
    bounds = _chunk_bounds(m, total)
    perms = torch.rand(groups, r, n, generator=generator).argsort(dim=-1, stable=True)
    ends = torch.arange(1, r + 1) * n  # end of each pass in the stream
    last_bound = bounds[torch.searchsorted(bounds, ends, right=True) - 1]
    tail = torch.where(ends < total, ends - last_bound, 0)  # a_j; the last pass has none
    in_tail = torch.arange(n) >= (n - tail)[:, None]  # (r, n), by position
    # in_prev_tail[g, j, x]: input x is in A_{j-1} (the tail set of pass j - 1)
    in_prev_tail = torch.zeros(groups, r, n, dtype=torch.bool)
    in_prev_tail[:, 1:].scatter_(-1, perms[:, :-1], in_tail[:-1].expand(groups, r - 1, n))
    clash = in_prev_tail.gather(-1, perms)  # by position: element would repeat an edge
    # stable partition into categories 0 | 1 | 2 by counting (category 2 is already the suffix)
    first = ~in_tail & ~clash
    second = ~in_tail & clash
    new_pos = torch.where(
        first, first.cumsum(-1) - 1,
        torch.where(second, first.sum(-1, keepdim=True) + second.cumsum(-1) - 1, torch.arange(n)))
    perms = torch.empty_like(perms).scatter_(-1, new_pos, perms)
    inputs = perms.reshape(groups, r * n)[:, :total]
    owner = torch.searchsorted(bounds, torch.arange(total), right=True) - 1
    return inputs, owner


@register_pruner("expander")
class ExpanderPruner(Pruner):
    """Pre-defined sparse topology: each layer a random near-biregular bipartite graph.

    In the spirit of the bipartite expander layers of X-Nets (Prabhu et al. 2018, "Deep expander
    networks: efficient deep networks from graph theory", ECCV) and of Bourely et al. 2017
    ("Sparse neural network topologies"): data-free and weight-free, the mask is a random graph
    in which the fan-ins of the outputs differ by at most one and so do the fan-outs of the
    inputs (see :func:`near_biregular_bipartite` for the construction and its proof).

    * Linear ``(out, in)``: the graph is between input and output features.
    * Convolution ``(c_out, c_in / groups, *kernel)``: with ``granularity="channel"`` (default)
      the graph is between input and output channels and each edge keeps a whole kernel; with
      ``granularity="weight"`` the input side is the ``(c_in, kh, kw)`` positions. For grouped
      and depthwise convolutions the graph is built within each group (the edges split over
      the groups as evenly as possible, the first groups taking one more); with channel
      granularity a depthwise layer (one input channel per group) is therefore always dense.

    Exactness. Each layer keeps EXACTLY the count of :func:`expander_layouts`: the request of the
    ``distribution`` (``"uniform"``: ``kept_count(d, n_l)`` per layer, as every layer-scope
    pruner; ``"erk"``/``"er"``: the exact ER/ERK counts), except that a layer whose request
    would leave an output without any input is raised to one edge per output, the difference
    being taken from the other layers, so the total is exactly the requested one. With channel
    granularity a count that is not a multiple of ``kh * kw`` keeps one partial kernel (the
    first positions of the last edge in row-major order). When even one edge per output exceeds
    the requested total (fewer edges than outputs) it raises :class:`~paizoo.SparsityError`.

    Args:
        distribution: ``"uniform"`` (default), ``"erk"`` or ``"er"``.
        granularity: ``"channel"`` (default) or ``"weight"`` (only matters for convolutions).
        allow_off_target: where the target is impossible, keep one edge per output in the layers
            that need it instead of raising (the mask is then denser than requested; the
            leaderboard runner uses this and marks such cells).
    """

    default_scope = "layer"

    def __init__(self, *, distribution: Distribution = "uniform",
                 granularity: Granularity = "channel", scope: Scope | None = None,
                 rounds: int | None = None, allow_off_target: bool = False) -> None:
        if scope not in (None, "layer"):
            raise ValueError("the expander pruner fixes every layer's fan-in; scope must be "
                             f"'layer' (the default), got {scope!r}")
        if rounds not in (None, 1):
            raise ValueError(f"the expander topology is built in one round; got rounds={rounds}")
        super().__init__(scope="layer", rounds=1)
        self.distribution: Distribution = check_distribution(distribution)
        if granularity not in ("channel", "weight"):
            raise ValueError(f"granularity must be 'channel' or 'weight', got {granularity!r}")
        self.granularity: Granularity = granularity
        self.allow_off_target = as_bool("allow_off_target", allow_off_target)

    def layouts(self, shapes: dict[str, torch.Size], density: float) -> dict[str, ExpanderLayout]:
        return expander_layouts(shapes, density, self.distribution, self.granularity,
                                allow_off_target=self.allow_off_target)

    def budgets(self, shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
        return {n: layout.kept for n, layout in self.layouts(shapes, density).items()}

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        if ctx.mask.num_kept != ctx.mask.num_total:
            raise ValueError(
                "the expander pruner builds a fixed topology from scratch and cannot prune a "
                "model that already carries a mask; remove it first (paizoo.remove_masks on a "
                "fresh copy of the model) or use another pruner")
        shapes = {n: p.shape for n, p in ctx.params.items()}
        layouts = self.layouts(shapes, ctx.density)
        requested = sum(layer_budgets(shapes, ctx.density, self.distribution).values())
        kept = sum(layout.kept for layout in layouts.values())
        if kept != requested:  # only with allow_off_target
            warn_off_target(
                self.name, kept, requested, sum(math.prod(s) for s in shapes.values()),
                "fewer edges than outputs; layers below one edge per output keep that minimum",
                stacklevel=4)
        out = {}
        for name, layout in layouts.items():
            shape = tuple(shapes[name])
            groups = _groups(ctx.model, name)
            if shape[0] % groups:
                raise ValueError(f"{name}: {shape[0]} outputs do not split into {groups} groups")
            out[name] = _layer_mask(shape, groups, layout, ctx.generator).to(torch.float32)
        return out


def _layer_mask(shape: tuple[int, ...], groups: int, layout: ExpanderLayout,
                generator: torch.Generator) -> torch.Tensor:
    """The bool mask of one weight: near-biregular graphs per group, edges -> weights."""
    m, n = shape[0] // groups, layout.inputs_per_group
    per_group, extra = divmod(layout.edges, groups)
    adj = torch.cat([near_biregular_bipartite(count, m, n, edges, generator)
                     for count, edges in ((extra, per_group + 1), (groups - extra, per_group))
                     if count]).reshape(shape[0], n)
    if layout.kernel_size == 1:
        return adj.reshape(shape)
    full = adj.reshape(*shape[:2], 1).expand(*shape[:2], layout.kernel_size).clone()
    partial = layout.kept - (layout.edges - 1) * layout.kernel_size
    if partial < layout.kernel_size:  # the last edge (row-major) keeps its first positions
        o, i = divmod(int(torch.nonzero(adj.reshape(-1))[-1]), n)
        full[o, i, partial:] = False
    return full.reshape(shape)


def _groups(model: nn.Module, name: str) -> int:
    module = layer_of(model, name)
    return int(getattr(module, "groups", 1)) if isinstance(module, nn.modules.conv._ConvNd) else 1
