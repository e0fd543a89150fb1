"""Expander pruning: every layer becomes a random biregular bipartite graph (data-free)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..params import layer_of
from ..sparsity import kept_count
from ._layer_densities import Distribution, check_distribution, layer_budgets
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
        fan_in: edges per output (the same for every output).
    """

    num_outputs: int
    inputs_per_group: int
    kernel_size: int
    fan_in: int

    @property
    def kept(self) -> int:
        """Weights kept in this layer: ``num_outputs * fan_in * kernel_size``."""
        return self.num_outputs * self.fan_in * self.kernel_size


def expander_layouts(
    shapes: dict[str, torch.Size],
    density: float,
    distribution: Distribution = "uniform",
    granularity: Granularity = "channel",
) -> dict[str, ExpanderLayout]:
    """Per-layer graph sizes and fan-ins at global ``density``.

    The target density ``d_l`` of each layer is ``density`` itself for ``"uniform"``, and
    ``k_l / n_l`` with the exact ER/ERK kept counts ``k_l`` of
    :func:`~paizoo.pruners._layer_densities.layer_budgets` otherwise; the fan-in is then
    ``fan_in = min(n, max(1, floor(d_l * n + 1/2)))`` with ``n`` = :attr:`inputs_per_group`, so
    every output keeps at least one input and no layer collapses.
    """
    distribution = check_distribution(distribution)
    if granularity not in ("channel", "weight"):
        raise ValueError(f"granularity must be 'channel' or 'weight', got {granularity!r}")
    targets = None if distribution == "uniform" else layer_budgets(shapes, density, distribution)
    out = {}
    for name, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2:
            raise ValueError(f"{name}: expander pruning needs a weight with >= 2 dims, got {shape}")
        kernel = math.prod(shape[2:])
        n = shape[1] if granularity == "channel" else shape[1] * kernel
        layer_density = density if targets is None else targets[name] / math.prod(shape)
        fan_in = min(n, max(1, kept_count(layer_density, n)))
        out[name] = ExpanderLayout(shape[0], n, kernel if granularity == "channel" else 1, fan_in)
    return out


def biregular_bipartite(
    groups: int, num_out: int, num_in: int, fan_in: int, generator: torch.Generator
) -> torch.Tensor:
    """Random bipartite graphs with equal fan-ins and fan-outs differing by at most one.

    Returns a bool tensor ``adj`` of shape ``(groups, num_out, num_in)``, one independent graph per
    group, with ``adj[g, o].sum() == fan_in`` for every output ``o`` and, in every group, column
    sums (fan-outs) in ``{floor(num_out * fan_in / num_in), ceil(...)}``. No edge is repeated
    (it is a 0/1 matrix). For ``2 * fan_in > num_in + 1`` the complement graph (fan-in
    ``num_in - fan_in``, fan-outs ``num_out - c_j``, again differing by at most one) is built and
    inverted; :func:`_sparse_side` below handles ``2 f <= n + 1`` and states the proof.
    """
    if not 1 <= fan_in <= num_in:
        raise ValueError(f"fan_in must be in [1, {num_in}], got {fan_in}")
    if fan_in == num_in:
        return torch.ones(groups, num_out, num_in, dtype=torch.bool)
    complement = 2 * fan_in > num_in + 1
    sparse_fan_in = num_in - fan_in if complement else fan_in
    adj = _adjacency(_sparse_side(groups, num_out, num_in, sparse_fan_in, generator), num_in)
    return ~adj if complement else adj


def _adjacency(inputs: torch.Tensor, num_in: int) -> torch.Tensor:
    groups, num_out, _ = inputs.shape
    adj = torch.zeros(groups, num_out, num_in, dtype=torch.bool)
    return adj.scatter_(-1, inputs, True)


def _sparse_side(
    groups: int, m: int, n: int, f: int, generator: torch.Generator
) -> torch.Tensor:
    """Input ids ``(groups, m, f)`` of ``m`` outputs, each with ``f`` distinct inputs of ``n``.

    Requires ``1 <= f`` and ``2 f <= n + 1``. Construction (vectorised over groups and passes):

    1. Draw ``r = ceil(m f / n)`` independent random permutations ("passes": argsort of i.i.d.
       uniform keys) ``P_0 .. P_{r-1}`` of the ``n`` inputs and read them one after the other as
       a stream ``S = P_0 P_1 ...`` of which the first ``L = m f`` entries are used.
    2. Output ``o`` (before a final random relabelling of outputs) takes the chunk
       ``S[o f : (o + 1) f]``.
    3. A chunk that crosses the end of pass ``j`` takes the last ``a_j = ((j + 1) n) mod f``
       entries of ``P_j`` (the set ``A_j``) and the first ``b_j = f - a_j`` of ``P_{j+1}``
       (``a_j = 0``: no chunk crosses). To keep them disjoint, ``P_{j+1}`` is reordered by a
       stable partition (by counting, no sort) into the categories
       ``0``: position ``< n - a_{j+1}`` and element not in ``A_j``; ``1``: position
       ``< n - a_{j+1}`` and element in ``A_j``; ``2``: position ``>= n - a_{j+1}`` (its own tail,
       left as a set where it is, so ``A_{j+1}`` does not change and all passes are fixed at once).

    Proof of the three properties.

    * Equal fan-in: every output receives exactly one chunk of ``f`` entries.
    * Fan-outs differ by at most one: ``S[:L]`` is ``r - 1`` whole permutations (each input once
      each; reordering within a pass keeps it a permutation) followed by a prefix of length
      ``L - (r - 1) n`` in ``(0, n]`` of the last one (each input at most once), so every input
      occurs ``r - 1`` or ``r`` times.
    * No repeated edge: a chunk inside one pass has distinct entries (a permutation). A chunk
      crossing pass ``j``'s end consists of ``A_j`` and the first ``b_j`` entries of the
      reordered ``P_{j+1}``. Category 0 holds at least ``(n - a_{j+1}) - a_j`` elements, and
      ``n - a_{j+1} - a_j >= f - a_j = b_j`` because ``a_{j+1} <= f - 1 <= n - f`` (from
      ``2 f <= n + 1``). So those first ``b_j`` entries are all category 0, i.e. outside ``A_j``.
      (The two regions of a pass touched by crossing chunks, head ``b_{j-1}`` and tail ``a_j``,
      never overlap: they belong to different chunks, and chunks are disjoint intervals of S.)
    """
    total = m * f
    r = -(-total // n)
    perms = torch.rand(groups, r, n, generator=generator).argsort(dim=-1, stable=True)
    pass_ids = torch.arange(r)
    tail = torch.zeros(r, dtype=torch.long)
    tail[:-1] = ((pass_ids[1:] * n) % f)  # a_j; the last pass has no crossing chunk
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
    inputs = perms.reshape(groups, r * n)[:, :total].reshape(groups, m, f)
    relabel = torch.rand(groups, m, generator=generator).argsort(dim=-1, stable=True)
    return inputs.gather(1, relabel[:, :, None].expand(groups, m, f))


@register_pruner("expander")
class ExpanderPruner(Pruner):
    """Pre-defined sparse topology: each layer a random biregular bipartite (expander-like) graph.

    In the spirit of the bipartite expander layers of X-Nets (Prabhu et al. 2018, "Deep expander
    networks: efficient deep networks from graph theory", ECCV) and of Bourely et al. 2017
    ("Sparse neural network topologies"): data-free and weight-free, the mask is a random graph
    in which every output neuron/channel has the same fan-in and the fan-outs of the inputs
    differ by at most one (see :func:`biregular_bipartite` for the construction and its proof).

    * Linear ``(out, in)``: the graph is between input and output features.
    * Convolution ``(c_out, c_in / groups, *kernel)``: with ``granularity="channel"`` (default)
      the graph is between input and output channels and each edge keeps a whole kernel; with
      ``granularity="weight"`` the input side is the ``(c_in, kh, kw)`` positions. For grouped
      and depthwise convolutions the graph is built within each group (fan-in counted among the
      group's input channels, fan-outs balanced within the group); with channel granularity a
      depthwise layer (one input channel per group) is therefore always dense.

    Exactness. The per-layer target density ``d_l`` comes from ``distribution`` (``"uniform"``
    or ``"erk"``; ``"er"`` is accepted too), and each output keeps
    ``fan_in = min(n, max(1, floor(d_l n + 1/2)))`` of the ``n`` inputs of its group. The kept
    count of every layer is then EXACTLY ``c_out * fan_in * k`` with ``k = kh * kw`` (channel) or
    1 (weight); this is what is guaranteed. The global count is the sum of these, which differs
    from ``round(d N)`` because a layer's count must be a multiple of ``c_out * k`` and of a
    whole fan-in >= 1 (e.g. depthwise layers stay dense with channel granularity). The result's
    actual density is in ``mask.density``; :func:`expander_layouts` gives the counts up front.

    Args:
        distribution: ``"uniform"`` (default), ``"erk"`` or ``"er"``.
        granularity: ``"channel"`` (default) or ``"weight"`` (only matters for convolutions).
    """

    default_scope = "layer"

    def __init__(self, *, distribution: Distribution = "uniform",
                 granularity: Granularity = "channel", scope: Scope | None = None,
                 rounds: int | None = None) -> None:
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

    def layouts(self, shapes: dict[str, torch.Size], density: float) -> dict[str, ExpanderLayout]:
        return expander_layouts(shapes, density, self.distribution, self.granularity)

    def budgets(self, shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
        return {n: layout.kept for n, layout in self.layouts(shapes, density).items()}

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        if ctx.mask.num_kept != ctx.mask.num_total:
            raise ValueError(
                "the expander pruner builds a fixed topology from scratch and cannot prune a "
                "model that already carries a mask; remove it first (paizoo.remove_masks on a "
                "fresh copy of the model) or use another pruner")
        shapes = {n: p.shape for n, p in ctx.params.items()}
        out = {}
        for name, layout in self.layouts(shapes, ctx.density).items():
            shape = tuple(shapes[name])
            groups = _groups(ctx.model, name)
            if shape[0] % groups:
                raise ValueError(f"{name}: {shape[0]} outputs do not split into {groups} groups")
            adj = biregular_bipartite(groups, shape[0] // groups, layout.inputs_per_group,
                                      layout.fan_in, ctx.generator)
            adj = adj.reshape(shape[0], layout.inputs_per_group)
            if self.granularity == "channel":
                adj = adj.reshape(*shape[:2], *([1] * (len(shape) - 2))).expand(shape)
            out[name] = adj.reshape(shape).to(torch.float32)
        return out


def _groups(model: nn.Module, name: str) -> int:
    module = layer_of(model, name)
    return int(getattr(module, "groups", 1)) if isinstance(module, nn.modules.conv._ConvNd) else 1
