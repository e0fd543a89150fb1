"""Pre-defined sparse connectivity patterns for Linear junctions (Dey et al. 2017-2019).

A junction joins ``p`` left (input) neurons to ``n`` right (output) neurons; its adjacency is the
``(n, p)`` boolean matrix of a Linear weight. A *pre-defined* sparse junction has a fixed fan-out
``fo`` (connections per left neuron) and fan-in ``fi`` (per right neuron), ``p * fo = n * fi``,
chosen before training and kept fixed.

Patterns:

* ``basic``: random, with exact fan-in and fan-out ("structured pre-defined sparsity").
* ``cyclic``: deterministic, right neuron j connects to the window of left neurons
  ``(j * fi + t) mod p``, ``t = 0 .. fi - 1`` (exact fan-in and fan-out; paizoo's reference
  windowed pattern, not from the papers).
* ``random``: ``p * fo`` connections placed uniformly at random (same count, no degree
  constraints: Dey et al.'s "random pre-defined sparsity").
* ``clash_free``: built from a clash-free weight interleaver with degree of parallelism ``z``
  (types 1-3 below), as used by their hardware accelerator.

Clash-free interleavers (Dey, Beerel, Chugg, "Interleaver design for deep neural networks",
Asilomar 2017; Dey, Huang, Beerel, Chugg, "Pre-defined sparse neural networks with hardware
acceleration", IEEE JETCAS 2019): the ``p`` left activations are stored in ``z`` memories, left
neuron ``l`` at address ``l // z`` of memory ``l % z``. The ``p * fo`` edges are processed ``z``
per cycle, right neuron by right neuron (the ``fi`` edges of right neuron ``r`` occupy processing
slots ``r * fi .. r * fi + fi - 1``). The processing order is ``fo`` sweeps of ``p / z`` cycles;
each sweep reads every left neuron once. In cycle ``c`` of a sweep, slot ``v`` (memory ``v``, or
``pi(v)`` with memory dither) reads address ``t_v(c)``:

* type 1: ``t_v`` is any permutation of ``0 .. p/z - 1`` (drawn per memory and sweep);
* type 2: ``t_v(c) = (s_v + c) mod (p/z)`` with a random start ``s_v`` (per memory and sweep);
* type 3: type 2 with the same starts for every sweep.

*Clash-free* means every cycle reads ``z`` left neurons from ``z`` different memories, so all
``z`` reads happen in parallel. A draw whose sweeps would connect a left neuron twice to the
same right neuron is re-drawn (per sweep), so fan-in and fan-out are exact.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ..diagnostics import warn_off_target
from ..errors import NoPrunableParametersError, ScoreError, SparsityError
from ..sparsity import Schedule, kept_count, off_target
from ._options import as_bool, as_int
from .base import PruneContext, Pruner, Scope
from .registry import register_pruner

Pattern = Literal["basic", "cyclic", "random", "clash_free"]
PATTERNS: tuple[str, ...] = ("basic", "cyclic", "random", "clash_free")


def feasible_fan_outs(n: int, p: int) -> list[int]:
    """Fan-outs ``fo`` (1..n) of an ``(n, p)`` junction for which ``fi = p * fo / n`` is whole."""
    step = n // math.gcd(n, p)
    return list(range(step, n + 1, step))


def fan_out_for_density(n: int, p: int, density: float) -> int:
    """The feasible fan-out whose density ``fo / n`` is closest to ``density`` (ties: smaller)."""
    options = feasible_fan_outs(n, p)
    return min(options, key=lambda fo: (abs(fo - density * n), fo))


def _check_junction(n: int, p: int, fo: int) -> int:
    if not 1 <= fo <= n:
        raise ValueError(f"fan-out {fo} must be in 1..{n} (the number of right neurons)")
    if (p * fo) % n:
        raise ValueError(f"p * fo = {p} * {fo} is not divisible by n = {n}: no whole fan-in; "
                         f"feasible fan-outs: {feasible_fan_outs(n, p)}")
    return p * fo // n


def basic_pattern(n: int, p: int, fo: int, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Random ``(n, p)`` adjacency with exactly ``fi`` ones per row and ``fo`` per column.

    Rows are filled in order; each takes every column whose remaining capacity equals the number
    of rows left (it would otherwise be short) and draws its other ``fi`` columns uniformly
    among those with capacity left. Since all row sums are equal, the remaining problem stays
    feasible exactly when no column needs more than the rows left (Gale-Ryser), which the forced
    columns guarantee; so the draw always succeeds.
    """
    fi = _check_junction(n, p, fo)
    cap = torch.full((p,), fo, dtype=torch.long)
    adj = torch.zeros(n, p, dtype=torch.bool)
    for r in range(n):
        keys = torch.rand(p, generator=generator)
        keys[cap == n - r] = -1.0  # forced
        keys[cap == 0] = 2.0  # full
        cols = torch.topk(keys, fi, largest=False).indices
        adj[r, cols] = True
        cap[cols] -= 1
    return adj


def cyclic_pattern(n: int, p: int, fo: int) -> torch.Tensor:
    """Right neuron j connects to left neurons ``(j * fi + t) mod p``, ``t = 0 .. fi - 1``."""
    fi = _check_junction(n, p, fo)
    cols = (torch.arange(n)[:, None] * fi + torch.arange(fi)[None, :]) % p
    adj = torch.zeros(n, p, dtype=torch.bool)
    adj[torch.arange(n)[:, None], cols] = True
    return adj


def random_pattern(n: int, p: int, count: int, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """``count`` connections of an ``(n, p)`` junction placed uniformly at random."""
    if not 0 <= count <= n * p:
        raise ValueError(f"count {count} must be in 0..{n * p}")
    flat = torch.zeros(n * p, dtype=torch.bool)
    flat[torch.randperm(n * p, generator=generator)[:count]] = True
    return flat.view(n, p)


def clash_free_interleaver(
    p: int, fo: int, z: int, n: int, *, kind: int = 2, memory_dither: bool = False,
    generator: torch.Generator | None = None, max_tries: int = 1000,
) -> torch.Tensor:
    """The left neuron read in each of the ``p * fo`` processing slots (a clash-free order).

    Slot ``k`` belongs to right neuron ``k // fi`` and cycle ``k // z``. See the module
    docstring for the types. Raises ``ValueError`` if ``z`` does not divide ``p`` or no draw
    without repeated connections is found in ``max_tries`` tries per sweep.
    """
    if kind not in (1, 2, 3):
        raise ValueError(f"clash-free type must be 1, 2 or 3, got {kind}")
    if z < 1 or p % z:
        raise ValueError(f"the degree of parallelism z = {z} must divide the number of left "
                         f"neurons p = {p}; divisors of p: {_divisors(p)}")
    fi = _check_junction(n, p, fo)
    rows = p // z

    def addresses() -> torch.Tensor:  # (rows, z): address read by slot v in cycle c
        if kind == 1:
            return torch.argsort(torch.rand(z, rows, generator=generator), dim=1).T
        start = torch.randint(rows, (z,), generator=generator)
        return (start[None, :] + torch.arange(rows)[:, None]) % rows

    def slots() -> torch.Tensor:  # (z,): memory read by each slot
        return torch.randperm(z, generator=generator) if memory_dither else torch.arange(z)

    for _ in range(max_tries if kind == 3 else 10):  # type 3 redraws all; 1, 2 one sweep
        fixed = (addresses(), slots()) if kind == 3 else None
        order: list[torch.Tensor] = []
        for sweep in range(fo):
            for _attempt in range(max_tries if fixed is None else 1):
                t, v = fixed if fixed is not None else (addresses(), slots())
                left = (t * z + v[None, :]).reshape(-1)
                if not _repeats(torch.cat([*order, left]), fi, p, sweep):
                    break
            else:
                break
            order.append(left)
        if len(order) == fo:
            return torch.cat(order)
    raise ValueError(f"no clash-free type-{kind} pattern without repeated connections found "
                     f"for p={p}, fo={fo}, n={n}, z={z}; try another z or type")


def _repeats(order: torch.Tensor, fi: int, p: int, sweep: int) -> bool:
    """Whether the right neurons touched by the last sweep get some left neuron twice."""
    start = (sweep * p // fi) * fi  # first slot of the first right neuron of this sweep
    part = order[start:]
    pairs = (torch.arange(start, start + part.numel()) // fi) * p + part
    return bool(torch.unique(pairs).numel() != pairs.numel())


def interleaver_to_adjacency(order: torch.Tensor, n: int, p: int) -> torch.Tensor:
    """The ``(n, p)`` adjacency of a processing order: slot k joins ``order[k]`` to ``k // fi``."""
    fi = order.numel() // n
    adj = torch.zeros(n, p, dtype=torch.bool)
    adj[torch.arange(order.numel()) // fi, order] = True
    return adj


def clash_free_pattern(n: int, p: int, fo: int, z: int, *, kind: int = 2,
                       memory_dither: bool = False,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """The ``(n, p)`` adjacency of a clash-free interleaver (see the module docstring)."""
    order = clash_free_interleaver(p, fo, z, n, kind=kind, memory_dither=memory_dither,
                                   generator=generator)
    return interleaver_to_adjacency(order, n, p)


def _divisors(p: int) -> list[int]:
    return [d for d in range(1, p + 1) if p % d == 0]


@register_pruner("dey")
class DeyPruner(Pruner):
    """Pre-defined sparse Linear junctions with fixed fan-in/fan-out (Dey et al. 2018).

    Dey, Huang, Beerel, Chugg, "Characterizing sparse connectivity patterns in neural networks",
    ITA 2018, and "Pre-defined sparse neural networks with hardware acceleration", IEEE JETCAS
    2019 (clash-free patterns; see :mod:`paizoo.pruners.dey` for the definitions).

    Each Linear weight ``(n, p)`` (n right/output neurons, p left/input neurons) gets a pattern
    with fan-out fo and fan-in fi = p * fo / n, where fo is the feasible value (fi whole) whose
    density fo / n is closest to the requested density; the junction keeps exactly p * fo
    weights, so the achieved density can differ from the request. Conv and other non-Linear
    weights are left dense (the patterns are defined for fully connected junctions); a model
    without Linear layers is an error. When the mask misses the requested kept count by more
    than :data:`paizoo.sparsity.OFF_TARGET_TOLERANCE` (1%, the leaderboard's § rule), it raises
    :class:`~paizoo.SparsityError` naming the junctions or dense layers responsible, unless
    ``allow_off_target=True`` (then it warns with an
    :class:`~paizoo.diagnostics.OffTargetWarning` and keeps the closest patterns).

    Patterns (``pattern=``): ``"basic"`` (random with exact fan-in/fan-out), ``"cyclic"``
    (deterministic windows), ``"random"`` (same count, placed uniformly), ``"clash_free"``
    (interleaver with degree of parallelism ``z``, ``clash_type`` 1-3, optional
    ``memory_dither``).

    Args:
        pattern: one of ``"basic"``, ``"cyclic"``, ``"random"``, ``"clash_free"``.
        z: degree of parallelism for ``clash_free``: an int dividing every junction's p, or
            ``None`` (default) for gcd(p, fi) per junction (so z divides both p and fi).
        clash_type: 1, 2 or 3 (default 2).
        memory_dither: permute the memory read order per sweep (clash-free only).
        allow_off_target: accept a mask that misses the requested density (see above).
    """

    def __init__(self, *, pattern: Pattern = "basic", z: int | None = None, clash_type: int = 2,
                 memory_dither: bool = False, scope: Scope | None = None,
                 rounds: int | None = None, schedule: Schedule = "exponential",
                 allow_off_target: bool = False) -> None:
        super().__init__(scope=scope, rounds=rounds, schedule=schedule)
        if pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}; got {pattern!r}")
        if self.rounds != 1:
            raise ValueError("Dey patterns are pre-defined in one shot; rounds must be 1")
        self.clash_type = as_int("clash_type", clash_type, minimum=1)
        if self.clash_type not in (1, 2, 3):
            raise ValueError(f"clash_type must be 1, 2 or 3, got {clash_type}")
        self.pattern: Pattern = pattern
        self.z = None if z is None else as_int("z (degree of parallelism)", z, minimum=1)
        self.memory_dither = as_bool("memory_dither", memory_dither)
        self.allow_off_target = as_bool("allow_off_target", allow_off_target)

    def fan_outs(self, shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
        """The fan-out chosen for each Linear weight (2-D shape ``(n, p)``) at ``density``."""
        linear = {name: tuple(s) for name, s in shapes.items() if len(s) == 2}
        if not linear:
            raise NoPrunableParametersError(
                "Dey pre-defined sparsity applies to Linear junctions only and the model has "
                "no Linear weight among its prunable parameters; use another pruner for "
                "convolutional layers (or include the Linear layers)")
        return {name: fan_out_for_density(n, p, density) for name, (n, p) in linear.items()}

    def budgets(self, shapes: dict[str, torch.Size], density: float) -> dict[str, int]:
        fo = self.fan_outs(shapes, density)
        return {name: (int(shape[1]) * fo[name] if name in fo else int(torch.Size(shape).numel()))
                for name, shape in shapes.items()}

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        shapes = {n: p.shape for n, p in ctx.params.items()}
        fan_outs = self.fan_outs(shapes, ctx.density)
        self._check_target(shapes, fan_outs, ctx.density)
        out = {}
        for name, shape in shapes.items():
            if name not in fan_outs:
                out[name] = torch.ones(shape)
                continue
            if not bool(ctx.mask[name].all()):
                raise ScoreError(
                    f"{name!r} already carries a mask; Dey patterns are pre-defined on dense "
                    "junctions (remove the masks with paizoo.remove_masks first)")
            n, p = int(shape[0]), int(shape[1])
            out[name] = self.adjacency(n, p, fan_outs[name], ctx.generator, name).float()
        return out

    def _check_target(self, shapes: dict[str, torch.Size], fan_outs: dict[str, int],
                      density: float) -> None:
        """Raise (or, with ``allow_off_target``, warn) when the mask misses ``density``."""
        total = sum(torch.Size(s).numel() for s in shapes.values())
        kept = sum(self.budgets(shapes, density).values())
        if not off_target(kept, total, density):
            return
        dense = [n for n in shapes if n not in fan_outs]
        reasons = []
        if dense:
            reasons.append(
                f"Dey patterns apply to Linear junctions only: {len(dense)} other prunable "
                f"weight(s) ({', '.join(dense[:3])}{', ...' if len(dense) > 3 else ''}) stay "
                "dense; restrict pruning to the Linear layers (include=/exclude=) or use "
                "another pruner for conv layers")
        coarse = [f"{n} ({tuple(shapes[n])}: fan-out {fo} of {int(shapes[n][0])}, density "
                  f"{fo / int(shapes[n][0]):.4g})" for n, fo in fan_outs.items()
                  if abs(fo - density * int(shapes[n][0])) >= 1]
        if coarse:
            reasons.append(
                "a junction (n, p) needs a fan-out fo with p * fo / n whole, and the closest to "
                f"the request is far from it in {', '.join(coarse[:3])}"
                + (", ..." if len(coarse) > 3 else ""))
        why = "; ".join(reasons)
        if not self.allow_off_target:
            requested = kept_count(density, total)
            raise SparsityError(
                f"dey cannot reach density {density:.4g} on this model: its patterns keep "
                f"{kept} of {total} weights (sparsity {1 - kept / total:.4g}), not "
                f"{requested}: {why}. Ask for a reachable density, or pass "
                "allow_off_target=True to accept the closest pattern")
        warn_off_target(self.name, kept, kept_count(density, total), total, why, stacklevel=5)

    def adjacency(self, n: int, p: int, fo: int, generator: torch.Generator,
                  name: str = "junction") -> torch.Tensor:
        """The ``(n, p)`` boolean pattern of one junction with fan-out ``fo``."""
        if self.pattern == "basic":
            return basic_pattern(n, p, fo, generator)
        if self.pattern == "cyclic":
            return cyclic_pattern(n, p, fo)
        if self.pattern == "random":
            return random_pattern(n, p, p * fo, generator)
        fi = p * fo // n
        z = self.z if self.z is not None else math.gcd(p, fi)
        if p % z:
            raise ValueError(f"{name}: z = {z} does not divide its p = {p} left neurons; "
                             f"divisors of {p}: {_divisors(p)} (or z=None for gcd(p, fi))")
        return clash_free_pattern(n, p, fo, z, kind=self.clash_type,
                                  memory_dither=self.memory_dither, generator=generator)
