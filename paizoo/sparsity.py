"""Sparsity arithmetic: resolving the requested level, kept counts, schedules and top-k selection.

Conventions (used everywhere in paizoo):

* ``density`` d is the fraction of prunable weights kept, ``sparsity`` s = 1 - d the fraction
  removed, ``compression`` x the exponent with d = 10^-x (the SynFlow paper's axis).
* The number kept out of n weights is exactly ``kept_count(d, n) = floor(d * n + 1/2)``
  (round half up), globally for global scope and per layer for layer scope.
* Ties at the threshold are broken deterministically: among equal scores the weight that comes
  first (parameter order, then row-major position) is kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Literal, NamedTuple

import numpy as np
import torch

from .errors import ScoreError, SparsityError

Schedule = Literal["exponential", "linear"]


def resolve_density(
    sparsity: float | None = None,
    density: float | None = None,
    compression: float | None = None,
) -> float:
    """Turn exactly one of ``sparsity``, ``density`` or ``compression`` into a density in (0, 1].

    Raises:
        SparsityError: none or several are given, a value is NaN or out of range
            (sparsity must satisfy 0 <= s < 1, density 0 < d <= 1, compression x >= 0).
    """
    given = {k: v for k, v in (("sparsity", sparsity), ("density", density),
                               ("compression", compression)) if v is not None}
    if len(given) != 1:
        names = ", ".join(given) or "none"
        raise SparsityError(
            "give exactly one of sparsity= (fraction removed, 0 <= s < 1), density= (fraction "
            f"kept, 0 < d <= 1) or compression= (density = 10^-x, x >= 0); got {names}"
        )
    (kind, value), = given.items()
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise SparsityError(f"{kind} must be a number, got {value!r}") from exc
    if math.isnan(value):
        raise SparsityError(f"{kind} is NaN; give a number")
    if kind == "sparsity":
        if not 0.0 <= value < 1.0:
            raise SparsityError(
                f"sparsity={value} is out of range: it is the fraction of weights removed and "
                "must satisfy 0 <= sparsity < 1 (sparsity 1 would remove every weight)"
            )
        return 1.0 - value
    if kind == "density":
        if not 0.0 < value <= 1.0:
            raise SparsityError(
                f"density={value} is out of range: it is the fraction of weights kept and must "
                "satisfy 0 < density <= 1"
            )
        return value
    if not (0.0 <= value < math.inf):
        raise SparsityError(f"compression={value} is out of range: it must be finite and >= 0")
    density = 10.0 ** (-value)
    if density == 0.0:
        raise SparsityError(
            f"compression={value:g} asks for density 10^-{value:g}, which underflows to 0 in "
            "floating point (and would keep no weight): use a smaller compression, e.g. 3 for "
            "density 0.001")
    return density


def kept_count(density: float, n: int) -> int:
    """Number of weights kept out of ``n`` at ``density``: ``floor(density * n + 1/2)``."""
    return min(n, max(0, math.floor(density * n + 0.5)))


#: a mask is "off target" when it keeps more than this fraction (or one weight, whichever is
#: more) more or fewer weights than kept_count(density, N); exact-sparsity pruners never are
OFF_TARGET_TOLERANCE = 0.01


def off_target(kept: int, total: int, density: float) -> bool:
    """Whether a mask keeping ``kept`` of ``total`` weights misses ``density`` (see
    :data:`OFF_TARGET_TOLERANCE`): the leaderboard's § mark and the pruners' refusal."""
    if density >= 1.0 or total <= 0:
        return False
    expected = kept_count(density, total)
    return abs(kept - expected) > max(1.0, OFF_TARGET_TOLERANCE * expected)


def density_schedule(
    final_density: float, rounds: int, kind: Schedule = "exponential"
) -> list[float]:
    """Densities after each of ``rounds`` pruning rounds, ending exactly at ``final_density``.

    * exponential (SynFlow, Tanaka et al. 2020): d_r = d^(r/R), r = 1..R;
    * linear: d_r = 1 - (1 - d) r / R.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if kind == "exponential":
        out = [final_density ** (r / rounds) for r in range(1, rounds + 1)]
    elif kind == "linear":
        out = [1.0 - (1.0 - final_density) * r / rounds for r in range(1, rounds + 1)]
    else:
        raise ValueError(f"unknown schedule {kind!r}; use 'exponential' or 'linear'")
    out[-1] = final_density
    return out


def top_k_flat(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest entries of a 1-D tensor, ties kept in index order.

    Runs in O(n) (see :func:`select_scored`); ``k`` is clipped to [0, n]; ``scores`` is not
    modified.
    """
    k = min(max(int(k), 0), scores.numel())
    return _top_k_candidates({"": scores.reshape(-1)}, {"": None}, k, [], "")[""]


def _flat_nonzero(flags: torch.Tensor) -> torch.Tensor:
    """Indices of the True entries of the flattened ``flags`` (``np.flatnonzero`` on the CPU)."""
    flat = flags.reshape(-1)
    if flat.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(flat.detach().numpy()))
    return torch.nonzero(flat, as_tuple=True)[0]


def check_scores(scores: Mapping[str, torch.Tensor], shapes: Mapping[str, torch.Size]) -> None:
    """Raise :class:`ScoreError` if a layer's scores are missing, not a real-valued tensor or
    misshapen (NaN candidates are found by :func:`select_scored`)."""
    missing = [n for n in shapes if n not in scores]
    if missing:
        raise ScoreError(f"the pruner returned no scores for {missing}")
    for name, shape in shapes.items():
        s = scores[name]
        if not isinstance(s, torch.Tensor):
            raise ScoreError(
                f"scores for {name!r} are a {type(s).__module__}.{type(s).__qualname__}, not a "
                "torch.Tensor; return torch tensors from score() (e.g. torch.as_tensor(x))")
        if s.is_complex():
            raise ScoreError(
                f"scores for {name!r} are complex ({s.dtype}); scores are compared, so they "
                "must be real: return e.g. their magnitude (.abs())")
        if s.shape != shape:
            raise ScoreError(
                f"scores for {name!r} have shape {tuple(s.shape)}, expected {tuple(shape)}")


def select(
    scores: Mapping[str, torch.Tensor],
    budget: int | Mapping[str, int],
    eligible: Mapping[str, torch.Tensor] | None = None,
    keep_one: Mapping[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Turn scores (higher = keep) into boolean masks with exact kept counts.

    Args:
        scores: ``{name: tensor}``; float or integer scores (compared exactly, see
            :func:`_common_dtype`), no NaN among the candidates.
        budget: an int k for one global top-k over all layers, or ``{name: k_name}`` for a
            per-layer top-k.
        eligible: optional ``{name: bool tensor}``; only eligible weights may be kept (used by
            iterative pruning, where a pruned weight stays pruned). The budget must not exceed
            the number of eligible weights. Scores of ineligible weights are never read (they
            may be anything, NaN included).
        keep_one: optional ``{name: dim}``: every slice of ``name`` along ``dim`` (the whole
            tensor for ``dim=-1``) keeps at least one weight (the rows of a weight-normed
            weight, which weight norm divides by their norm). The result is the constrained
            top-k: each such slice's best eligible weight (the first on ties), then the top-k
            of the rest for the remaining budget, which maximises the kept scores under the
            constraint and equals the plain top-k whenever that already keeps one per slice.
    Returns:
        ``{name: bool tensor}`` with the shapes of ``scores``. Ties at the threshold are broken
        in favour of the lower position in the concatenation of the flattened tensors in the
        order of ``scores`` (global budget) or of the layer's flattened tensor (per layer).

    Raises:
        SparsityError: ``keep_one`` needs more weights than the budget, or a slice has no
            eligible weight.
    """
    return select_scored(scores, budget, eligible, keep_one=keep_one).masks


class Selection(NamedTuple):
    """What :func:`select_scored` returns."""

    #: ``{name: bool tensor}``, as :func:`select` returns it
    masks: dict[str, torch.Tensor]
    #: the layers whose candidate scores are all zero (or that have no candidate)
    zero_layers: list[str]


def select_scored(
    scores: Mapping[str, torch.Tensor],
    budget: int | Mapping[str, int],
    eligible: Mapping[str, torch.Tensor] | None = None,
    keep_one: Mapping[str, int] | None = None,
) -> Selection:
    """:func:`select`, also naming the layers whose candidate scores are all zero (among the
    eligible weights).

    The threshold is the k-th largest candidate (eligible score): found in a band bracketed by
    a strided sample of the scores (one comparison pass per layer, only the band's few
    candidates gathered and selected; :func:`_banded_threshold`), or, for small inputs or when
    the band misses, by gathering every candidate into one buffer and selecting in place. One
    more pass per layer compares the scores with the threshold; the candidates exactly equal to
    it are looked at again, in order, only when the budget needs some of them. No index arrays
    are built. The same passes check for NaN candidates and all-zero layers.
    """
    if keep_one:
        plain = select_scored(scores, budget, eligible)
        if all(bool(as_slices(plain.masks[n], d).any(1).all()) for n, d in keep_one.items()):
            return plain
        return Selection(_select_keeping_one(scores, budget, eligible, keep_one),
                         plain.zero_layers)
    shapes = {n: s.shape for n, s in scores.items()}
    names = list(scores)
    flats = {n: scores[n].detach().reshape(-1) for n in names}
    flags: dict[str, torch.Tensor | None] = {
        n: None if eligible is None
        else eligible[n].detach().reshape(-1).to(device=flats[n].device, dtype=torch.bool)
        for n in names}
    masks: dict[str, torch.Tensor] = {}
    zero: list[str] = []
    if isinstance(budget, Mapping):
        for name in names:
            k = int(budget[name])
            masks.update(_top_k_candidates({name: flats[name]}, {name: flags[name]}, k, zero,
                                           f"budget {k} for {name!r} exceeds its {{n}} "
                                           "candidates"))
    else:
        masks = _top_k_candidates(flats, flags, int(budget), zero,
                                  f"global budget {int(budget)} exceeds the {{n}} candidates")
    return Selection({n: masks[n].reshape(shapes[n]) for n in names}, zero)


#: the banded threshold search samples about this many scores (and needs 8x as many in all)
BAND_SAMPLE = 1 << 16


def _top_k_candidates(flats: Mapping[str, torch.Tensor],
                      flags: Mapping[str, torch.Tensor | None], k: int, zero: list[str],
                      too_many: str, *, sample: int | None = None) -> dict[str, torch.Tensor]:
    """Keep flags of the ``k`` largest eligible entries of the concatenated ``flats`` (ties to
    the lower position); appends the all-zero layers to ``zero``.

    The threshold (the ``k``-th largest candidate) comes from :func:`_banded_threshold` when
    there are at least ``8 * sample`` (default :data:`BAND_SAMPLE`, read at call time) scores
    of one float dtype, else (or when its band misses) from :func:`_gathered_threshold`; both
    give the same value.
    """
    sample = BAND_SAMPLE if sample is None else sample
    names = list(flats)
    counts = {n: flats[n].numel() if flags[n] is None else int(torch.count_nonzero(flags[n]))
              for n in names}
    total = sum(counts.values())
    if k > total:
        raise ValueError(too_many.format(n=total))
    if not flats:
        return {}
    dtype = _common_dtype([f.dtype for f in flats.values()])
    device = next(iter(flats.values())).device
    threshold = None
    if 0 < k < total and dtype.is_floating_point and all(f.dtype == dtype for f in flats.values()) \
            and sum(f.numel() for f in flats.values()) >= 8 * sample:
        threshold = _banded_threshold(flats, flags, counts, k, zero, sample)
    if threshold is None:
        threshold = _gathered_threshold(flats, flags, counts, k, zero, dtype)
    if k <= 0:
        return {n: torch.zeros(f.numel(), dtype=torch.bool, device=device)
                for n, f in flats.items()}
    if k >= total:
        return {n: (torch.ones(f.numel(), dtype=torch.bool, device=device) if flags[n] is None
                    else flags[n].clone()) for n, f in flats.items()}  # type: ignore[union-attr]
    assert threshold is not None
    keep: dict[str, torch.Tensor] = {}
    kept = 0
    for name in names:
        flat, flag = flats[name], flags[name]
        above = flat.to(dtype) > threshold
        if flag is not None:
            above.logical_and_(flag)
        keep[name] = above
        kept += int(torch.count_nonzero(above))
    missing = k - kept
    scratch = _scratch(flats) if missing > 0 else None
    for name in names:  # the entries equal to the threshold, in order, while some are missing
        if missing <= 0:
            break
        flat, flag = flats[name], flags[name]
        assert scratch is not None
        tied = torch.eq(flat.to(dtype), threshold,
                        out=scratch[:flat.numel()])
        if flag is not None:
            tied.logical_and_(flag)
        index = _flat_nonzero(tied)[:missing]
        keep[name][index] = True
        missing -= index.numel()
    return keep


def _gathered_threshold(flats: Mapping[str, torch.Tensor],
                        flags: Mapping[str, torch.Tensor | None], counts: Mapping[str, int],
                        k: int, zero: list[str], dtype: torch.dtype) -> torch.Tensor | None:
    """Gather every candidate into one buffer (checking NaN and all-zero layers on the way) and
    select the ``k``-th largest in it; None when ``k`` is 0 or all candidates are kept."""
    total = sum(counts.values())
    device = next(iter(flats.values())).device
    candidates = torch.empty(total, dtype=dtype, device=device)
    offset = 0
    for name, flat in flats.items():
        flag, count = flags[name], counts[name]
        part = candidates[offset:offset + count]
        offset += count
        if flag is None:
            part.copy_(flat)
        elif flat.dtype == dtype and device.type == "cpu":  # NumPy's compress: ~10x faster
            np.compress(flag.numpy(), flat.numpy(), out=part.numpy())
        elif flat.dtype == dtype:
            torch.masked_select(flat, flag, out=part)
        else:
            part.copy_(flat[flag])
        if count == 0:
            zero.append(name)
            continue
        lo, hi = torch.aminmax(part)  # NaN propagates into both
        lo_v, hi_v = float(lo), float(hi)
        if math.isnan(lo_v) or math.isnan(hi_v):
            raise ScoreError(_nan_message(name))
        if lo_v == 0.0 and hi_v == 0.0:
            zero.append(name)
    if not 0 < k < total:
        return None
    return _kth_smallest_inplace(candidates, total - k + 1)


def _banded_threshold(flats: Mapping[str, torch.Tensor],
                      flags: Mapping[str, torch.Tensor | None], counts: Mapping[str, int],
                      k: int, zero: list[str], sample: int) -> torch.Tensor | None:
    """The ``k``-th largest candidate (0 < k < number of candidates) without gathering them.

    A strided sample of about ``sample`` candidates brackets the threshold: ``hi`` and ``lo``
    are sample order statistics about 5 standard deviations of the sample quantile above and
    below its estimate. One pass per layer counts the candidates above ``hi`` and gathers the
    (few) ones in [lo, hi]; when the threshold is provably in that band (more than ``k`` - 1
    above ``lo``'s side, fewer than ``k`` above ``hi``) it is selected there, exactly. Returns
    None when the band misses (the caller falls back to gathering everything). Also checks for
    NaN candidates and appends the all-zero layers to ``zero`` (only when it succeeds).
    """
    total = sum(counts.values())
    size = sum(f.numel() for f in flats.values())
    step = max(1, size // sample)
    parts = []
    for name, flat in flats.items():
        flag = flags[name]
        sub = flat[::step]
        parts.append(sub if flag is None else sub[flag[::step]])
    drawn = torch.cat(parts)
    if drawn.numel() < 8 or bool(torch.isnan(drawn).any()):
        return None  # too few to bracket, or NaN (the gathering path names the layer)
    drawn = torch.sort(drawn, descending=True).values
    m = drawn.numel()
    frac = k / total
    centre = frac * m
    margin = 5.0 * math.sqrt(m * frac * (1.0 - frac)) + 8.0
    hi_rank, lo_rank = math.floor(centre - margin), math.ceil(centre + margin)
    hi = drawn[hi_rank] if hi_rank >= 0 else drawn.new_tensor(math.inf)
    lo = drawn[lo_rank] if lo_rank < m else drawn.new_tensor(-math.inf)
    above = 0
    bands: list[torch.Tensor] = []
    found_zero: list[str] = []
    # two flag buffers reused by every layer: a fresh 25M-entry tensor per comparison costs
    # more in page faults than the comparison itself
    over_buf, inside_buf = (_scratch(flats), _scratch(flats))
    for name, flat in flats.items():
        flag = flags[name]
        if not bool(torch.isfinite(flat.sum())):  # NaN or inf somewhere: look closer
            nan = torch.isnan(flat)
            if flag is not None:
                nan.logical_and_(flag)
            if bool(nan.any()):
                raise ScoreError(_nan_message(name))
        over = torch.gt(flat, hi, out=over_buf[:flat.numel()])
        if flag is not None:
            over.logical_and_(flag)
        n_over = int(torch.count_nonzero(over))
        above += n_over
        inside = torch.ge(flat, lo, out=inside_buf[:flat.numel()])
        inside.logical_and_(torch.le(flat, hi, out=over))  # over is not needed any more
        if flag is not None:
            inside.logical_and_(flag)
        band = (torch.from_numpy(np.compress(inside.numpy(), flat.numpy()))
                if flat.device.type == "cpu" else flat[inside])
        bands.append(band)
        if counts[name] == 0:
            found_zero.append(name)
        elif not ((n_over > 0 and float(hi) >= 0.0) or bool(band.ne(0).any())):
            nonzero = torch.ne(flat, 0, out=over)  # undecided by the band: the full check
            if flag is not None:
                nonzero.logical_and_(flag)
            if not bool(nonzero.any()):
                found_zero.append(name)
    need = k - above  # the need-th largest of the band is the threshold, if it is there
    band = torch.cat(bands)
    if not 0 < need <= band.numel():
        return None
    zero.extend(found_zero)
    return _kth_smallest_inplace(band, band.numel() - need + 1)


def _scratch(flats: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A bool buffer as long as the longest of ``flats`` (sliced per layer)."""
    first = next(iter(flats.values()))
    return torch.empty(max(f.numel() for f in flats.values()), dtype=torch.bool,
                       device=first.device)


def _kth_smallest_inplace(values: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest entry (1-based) of a 1-D tensor the caller no longer needs: its
    entries are reordered in place (NumPy's introselect on the CPU, no copy)."""
    if values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64):
        array = values.numpy()
        array.partition(k - 1)
        return torch.as_tensor(array[k - 1])
    return torch.kthvalue(values, k).values


def _nan_message(name: str) -> str:
    return (f"the pruner produced NaN scores for {name!r}; check the model's initialisation "
            "and the data (for SynFlow on deep nets use precision='float64')")


def as_slices(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``t`` as a 2-D ``(slices, entries)`` view: one row per index along ``dim`` (one row for
    ``dim=-1``, weight norm's whole-tensor convention)."""
    if dim == -1:
        return t.reshape(1, -1)
    return t.movedim(dim, 0).reshape(t.shape[dim], -1)


def _from_slices(rows: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    """Inverse of :func:`as_slices`."""
    if dim == -1:
        return rows.reshape(like.shape)
    return rows.reshape(like.movedim(dim, 0).shape).movedim(0, dim)


def _select_keeping_one(
    scores: Mapping[str, torch.Tensor],
    budget: int | Mapping[str, int],
    eligible: Mapping[str, torch.Tensor] | None,
    keep_one: Mapping[str, int],
) -> dict[str, torch.Tensor]:
    """:func:`select` with every slice of ``keep_one`` keeping its best eligible weight."""
    forced: dict[str, torch.Tensor] = {}
    for name, dim in keep_one.items():
        s = scores[name].detach()
        ok = (eligible[name].to(s.device).bool() if eligible is not None
              else torch.ones_like(s, dtype=torch.bool))
        rows, ok_rows = as_slices(s, dim), as_slices(ok, dim)
        if not bool(ok_rows.any(1).all()):
            empty = int((~ok_rows.any(1)).sum())
            raise SparsityError(
                f"{empty} slice(s) of {name!r} along dim {dim} have no weight left to keep, and "
                "each must keep one (weight norm divides each slice by its norm); start from a "
                "mask that keeps a weight in every slice")
        if s.dtype == torch.bool:
            rows = rows.to(torch.uint8)
        lowest = -math.inf if rows.is_floating_point() else torch.iinfo(rows.dtype).min
        best = rows.masked_fill(~ok_rows, lowest).amax(1, keepdim=True)
        first = (ok_rows & (rows == best)).int().argmax(1)  # argmax: the first maximum
        one = torch.zeros_like(ok_rows)
        one[torch.arange(rows.shape[0], device=s.device), first] = True
        forced[name] = _from_slices(one, s, dim)
    rest: dict[str, torch.Tensor] = {}  # what the top-k of the remaining budget may keep
    for n in scores:
        ok = (eligible[n].bool() if eligible is not None
              else torch.ones_like(scores[n], dtype=torch.bool))
        rest[n] = ok & ~forced[n].to(ok.device) if n in forced else ok
    count = {n: int(t.sum()) for n, t in forced.items()}
    check_keep_one(budget, count)
    remaining: int | dict[str, int]
    if isinstance(budget, Mapping):
        remaining = {n: int(budget[n]) - count.get(n, 0) for n in scores}
    else:
        remaining = int(budget) - sum(count.values())
    out = select(scores, remaining, rest)
    return {n: out[n] | forced[n].to(out[n].device) if n in forced else out[n] for n in out}


def slice_counts(shapes: Mapping[str, torch.Size], keep_one: Mapping[str, int]) -> dict[str, int]:
    """How many slices of each ``keep_one`` parameter must keep a weight (see :func:`select`)."""
    return {n: 1 if d == -1 else int(shapes[n][d]) for n, d in keep_one.items()}


def check_keep_one(budget: int | Mapping[str, int], counts: Mapping[str, int]) -> None:
    """Raise :class:`SparsityError` if ``budget`` keeps fewer weights than the slices that must
    each keep one (``counts`` from :func:`slice_counts`), globally or in some layer."""
    if isinstance(budget, Mapping):
        short = {repr(n): (int(budget[n]), c) for n, c in counts.items() if int(budget[n]) < c}
    elif int(budget) < sum(counts.values()):
        short = {"all layers": (int(budget), sum(counts.values()))}
    else:
        short = {}
    if not short:
        return
    where = ", ".join(f"{n}: {k} kept for {need} slices" for n, (k, need) in short.items())
    raise SparsityError(
        f"this sparsity keeps fewer weights than there are weight-normed slices, which must "
        f"each keep one ({where}; weight norm divides each slice by its norm, 0/0 for an empty "
        "one); use a lower sparsity, exclude the weight-normed weights, or remove the weight "
        "norm (torch.nn.utils.parametrize.remove_parametrizations(module, 'weight'))")


def _rank(dtype: torch.dtype) -> int:
    return {torch.float16: 0, torch.bfloat16: 0, torch.float32: 1, torch.float64: 2}.get(dtype, 1)


def _common_dtype(dtypes: Sequence[torch.dtype]) -> torch.dtype:
    """The dtype scores are compared in, exactly: int64 when every layer's scores are integers
    (or bool), the widest float (float32 at least) when all are floats, float64 when both kinds
    are mixed (exact for integers up to 2^53)."""
    floats = [d for d in dtypes if d.is_floating_point]
    if not floats:
        return torch.int64
    if len(floats) < len(dtypes):
        return torch.float64
    return torch.promote_types(torch.float32, max(floats, key=_rank))


def allocate_exact(weights: Sequence[float], capacities: Sequence[int], total: int) -> list[int]:
    """Split ``total`` kept weights over layers in proportion to ``weights``, capped by capacity.

    Layers whose share would exceed their capacity are made dense and the rest re-solved
    (the ER/ERK procedure of Evci et al. 2020), then the fractional shares are rounded by the
    largest-remainder method so the counts sum to ``total`` exactly. Ties in remainders go to the
    earlier layer. All of it runs in exact rational arithmetic (``fractions.Fraction`` of the
    given floats), so a share that is exactly at capacity or two exactly equal remainders are
    recognised as such, not decided by float round-off.
    """
    if len(weights) != len(capacities):
        raise ValueError(f"{len(weights)} weights but {len(capacities)} capacities")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"weights must be finite and >= 0, got {list(weights)}")
    if any(c < 0 for c in capacities):
        raise ValueError(f"capacities must be >= 0, got {list(capacities)}")
    if not 0 <= total <= sum(capacities):
        raise ValueError(f"cannot keep {total} weights out of {sum(capacities)}")
    n = len(weights)
    exact = [Fraction(w) for w in weights]
    dense = [False] * n
    while True:
        free_total = total - sum(c for c, d in zip(capacities, dense, strict=True) if d)
        free_weight = sum((w for w, d in zip(exact, dense, strict=True) if not d), Fraction(0))
        shares = [
            Fraction(capacities[i]) if dense[i]
            else (free_total * exact[i] / free_weight if free_weight > 0 else Fraction(0))
            for i in range(n)
        ]
        over = [i for i in range(n) if not dense[i] and shares[i] > capacities[i]]
        if not over:
            break
        for i in over:
            dense[i] = True
    counts = [math.floor(share) for share in shares]
    remainder = total - sum(counts)
    if free_weight > 0:
        # the exact shares sum to ``total``, so ``remainder`` is less than the number of layers
        # with a fractional share, and ceil(share) <= capacity for each of them
        order = sorted(range(n), key=lambda i: (-(shares[i] - counts[i]), i))
        for i in order[:remainder]:
            counts[i] += 1
    else:  # every non-dense layer has weight 0: no proportion to follow, fill in layer order
        for i in range(n):
            step = min(capacities[i] - counts[i], remainder)
            counts[i] += step
            remainder -= step
    return counts
