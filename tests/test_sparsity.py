"""paizoo.sparsity: density resolution, kept counts, schedules, top-k, select, allocate_exact.

Each function is checked against an independent computation: exact rational arithmetic
(``fractions.Fraction``), brute-force sorting, or a hand-derived value.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from paizoo.errors import ScoreError, SparsityError
from paizoo.sparsity import (
    _banded_threshold,
    _top_k_candidates,
    allocate_exact,
    density_schedule,
    kept_count,
    resolve_density,
    select,
    select_scored,
    top_k_flat,
)

# ---- resolve_density ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"sparsity": 0.0}, 1.0),
    ({"sparsity": 0.9}, 1.0 - 0.9),
    ({"sparsity": 0.999}, 1.0 - 0.999),
    ({"density": 1.0}, 1.0),
    ({"density": 0.05}, 0.05),
    ({"compression": 0.0}, 1.0),
    ({"compression": 2.0}, 0.01),
    ({"compression": 1.5}, 10 ** -1.5),
    ({"sparsity": 1 - 2**-20}, 2**-20),
])
def test_resolve_density_values(kwargs: dict[str, float], expected: float) -> None:
    assert resolve_density(**kwargs) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sparsity": 1.0}, r"sparsity=1\.0 is out of range.*remove every weight"),
    ({"sparsity": -0.1}, r"sparsity=-0\.1 is out of range"),
    ({"sparsity": float("nan")}, r"sparsity is NaN"),
    ({"density": 0.0}, r"density=0\.0 is out of range"),
    ({"density": 1.5}, r"density=1\.5 is out of range"),
    ({"density": float("nan")}, r"density is NaN"),
    ({"compression": -1.0}, r"compression=-1\.0 is out of range"),
    ({"compression": math.inf}, r"compression=inf is out of range"),
    ({"sparsity": "lots"}, r"sparsity must be a number"),
    ({"sparsity": 0.5, "density": 0.5}, r"exactly one of .*got sparsity, density"),
    ({"sparsity": 0.5, "compression": 1.0}, r"exactly one of .*got sparsity, compression"),
    ({}, r"exactly one of .*got none"),
])
def test_resolve_density_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(SparsityError, match=message):
        resolve_density(**kwargs)  # type: ignore[arg-type]


def test_sparsity_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        resolve_density(sparsity=2.0)


# ---- kept_count -------------------------------------------------------------------------------


@pytest.mark.parametrize(("density", "n", "expected"), [
    (0.5, 3, 2),      # 1.5 rounds half up
    (0.25, 2, 1),     # 0.5 rounds half up
    (0.1, 4, 0),      # 0.4 rounds down
    (0.1, 5, 1),      # 0.5 up
    (1.0, 7, 7),
    (0.0, 7, 0),
    (0.3, 10, 3),
    (1.0, 0, 0),
])
def test_kept_count_table(density: float, n: int, expected: int) -> None:
    assert kept_count(density, n) == expected


@given(st.integers(0, 10**6), st.integers(1, 10**4), st.integers(0, 10**9))
def test_kept_count_is_round_half_up(num: int, den: int, n: int) -> None:
    """Against exact rational arithmetic on the intended density num/den; the float product may
    land on the other side only within float round-off of an exact half."""
    density = Fraction(min(num, den), den)
    product = density * n
    exact = math.floor(product + Fraction(1, 2))
    got = kept_count(float(density), n)
    if abs(product - math.floor(product) - Fraction(1, 2)) > Fraction(1, 10**6):
        assert got == exact
    else:
        assert got in (exact - 1, exact)


@given(st.floats(0, 1), st.floats(0, 1), st.integers(0, 10**7))
def test_kept_count_monotone_in_density(d1: float, d2: float, n: int) -> None:
    lo, hi = sorted((d1, d2))
    assert 0 <= kept_count(lo, n) <= kept_count(hi, n) <= n


# ---- density_schedule -------------------------------------------------------------------------


def test_density_schedule_exponential_and_linear() -> None:
    assert density_schedule(0.01, 2) == pytest.approx([0.1, 0.01])
    assert density_schedule(0.2, 4, "linear") == pytest.approx([0.8, 0.6, 0.4, 0.2])
    assert density_schedule(0.3, 1) == [0.3]


@given(st.floats(1e-6, 1.0), st.integers(1, 200), st.sampled_from(["exponential", "linear"]))
def test_density_schedule_ends_exactly_and_decreases(final: float, rounds: int, kind: str) -> None:
    out = density_schedule(final, rounds, kind)  # type: ignore[arg-type]
    assert len(out) == rounds and out[-1] == final
    assert all(a >= b - 1e-15 for a, b in zip([1.0, *out], out, strict=False))
    if kind == "exponential":
        assert out == pytest.approx([final ** (r / rounds) for r in range(1, rounds + 1)])


def test_density_schedule_errors() -> None:
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        density_schedule(0.1, 0)
    with pytest.raises(ValueError, match="unknown schedule"):
        density_schedule(0.1, 3, "cosine")  # type: ignore[arg-type]


# ---- top_k_flat -------------------------------------------------------------------------------


def _brute_top_k(values: list[float], k: int) -> list[bool]:
    """Stable sort by descending score: among ties the lower index wins."""
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    chosen = set(order[:max(k, 0)])
    return [i in chosen for i in range(len(values))]


@settings(max_examples=300)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=60), st.integers(-2, 65))
def test_top_k_flat_matches_stable_sort_with_many_ties(values: list[int], k: int) -> None:
    scores = torch.tensor(values, dtype=torch.float32)
    keep = top_k_flat(scores, k)
    assert keep.tolist() == _brute_top_k([float(v) for v in values], k)
    assert int(keep.sum()) == min(max(k, 0), len(values))


@given(st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=40), st.data())
def test_top_k_flat_matches_stable_sort_any_floats(values: list[float],
                                                   data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(values)))
    keep = top_k_flat(torch.tensor(values, dtype=torch.float32), k)
    assert keep.tolist() == _brute_top_k(values, k)


def test_top_k_flat_all_tied_keeps_first_indices() -> None:
    assert top_k_flat(torch.zeros(6), 4).tolist() == [True] * 4 + [False] * 2


# ---- select -----------------------------------------------------------------------------------


def _two_layers() -> dict[str, torch.Tensor]:
    return {"a": torch.tensor([[5.0, 1.0], [3.0, 3.0]]), "b": torch.tensor([4.0, 3.0, 0.0])}


def test_select_global_ties_broken_by_parameter_order() -> None:
    # flattened in parameter order: a = 5 1 3 3, b = 4 3 0; the three 3s are a[1,0], a[1,1], b[1]
    out = select(_two_layers(), 3)  # 5, 4 and the first 3
    assert out["a"].tolist() == [[True, False], [True, False]]
    assert out["b"].tolist() == [True, False, False]
    out = select(_two_layers(), 5)  # 5, 4 and all three 3s
    assert out["a"].tolist() == [[True, False], [True, True]]
    assert out["b"].tolist() == [True, True, False]


def test_select_per_layer_budgets() -> None:
    out = select(_two_layers(), {"a": 1, "b": 2})
    assert out["a"].tolist() == [[True, False], [False, False]]
    assert out["b"].tolist() == [True, True, False]


def test_select_respects_eligible_global_and_per_layer() -> None:
    scores = _two_layers()
    eligible = {"a": torch.tensor([[False, True], [True, True]]),
                "b": torch.tensor([False, True, True])}
    out = select(scores, 3, eligible)
    assert out["a"].tolist() == [[False, False], [True, True]]
    assert out["b"].tolist() == [False, True, False]
    out = select(scores, {"a": 1, "b": 2}, eligible)
    assert out["a"].tolist() == [[False, False], [True, False]]
    assert out["b"].tolist() == [False, True, True]


@given(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=12), min_size=1, max_size=4),
       st.data())
def test_select_global_equals_brute_force_over_concatenation(layers: list[list[int]],
                                                             data: st.DataObject) -> None:
    scores = {f"l{i}": torch.tensor(v, dtype=torch.float32) for i, v in enumerate(layers)}
    flat = [float(x) for v in layers for x in v]
    eligible_flat = data.draw(st.lists(st.booleans(), min_size=len(flat), max_size=len(flat)))
    k = data.draw(st.integers(0, sum(eligible_flat)))
    eligible, offset = {}, 0
    for i, v in enumerate(layers):
        eligible[f"l{i}"] = torch.tensor(eligible_flat[offset:offset + len(v)])
        offset += len(v)
    out = select(scores, k, eligible)
    got = [bool(x) for name in scores for x in out[name].tolist()]
    # brute force: ineligible weights can never be kept
    masked = [s if e else -math.inf for s, e in zip(flat, eligible_flat, strict=True)]
    expected = _brute_top_k(masked, k)
    assert got == expected


def _slice_ids(shape: tuple[int, int], dim: int) -> list[int]:
    """The slice (weight-norm convention: -1 = one slice) of each entry of a row-major 2-D
    tensor, by explicit index arithmetic."""
    rows, cols = shape
    return [0 if dim == -1 else (i // cols if dim == 0 else i % cols) for i in range(rows * cols)]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([0, 1, -1]), st.integers(0, 3),
       st.booleans(), st.data())
def test_select_keep_one_is_the_constrained_optimum_by_brute_force(
        rows: int, cols: int, dim: int, extra: int, per_layer: bool, data: st.DataObject) -> None:
    """Distinct scores, so the best kept set under "every slice of a keeps a weight" is unique:
    found by enumerating every subset of the right size."""
    na = rows * cols
    n = na + extra
    values = data.draw(st.permutations(list(range(n))))
    ok = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    slice_of = _slice_ids((rows, cols), dim)
    for sl in set(slice_of):  # every slice has an eligible weight (the other case raises)
        if not any(ok[i] for i in range(na) if slice_of[i] == sl):
            ok[next(i for i in range(na) if slice_of[i] == sl)] = True
    needed = len(set(slice_of))
    scores = {"a": torch.tensor(values[:na], dtype=torch.float32).reshape(rows, cols),
              "b": torch.tensor(values[na:], dtype=torch.float32)}
    eligible = {"a": torch.tensor(ok[:na]).reshape(rows, cols), "b": torch.tensor(ok[na:])}
    if per_layer:
        ka = data.draw(st.integers(needed, sum(ok[:na])))
        kb = data.draw(st.integers(0, sum(ok[na:])))
        budget: int | dict[str, int] = {"a": ka, "b": kb}
    else:
        budget = data.draw(st.integers(needed, sum(ok)))
    out = select(scores, budget, eligible, keep_one={"a": dim})
    got = [bool(x) for name in scores for x in out[name].reshape(-1).tolist()]

    def feasible(chosen: set[int]) -> bool:
        return {slice_of[i] for i in chosen if i < na} == set(slice_of)

    candidates = [i for i in range(n) if ok[i]]
    if per_layer:  # per-layer top-k: a under its constraint, b on its own
        best_a = max((set(c) for c in itertools.combinations(
            [i for i in candidates if i < na], budget["a"]) if feasible(set(c))),
                     key=lambda c: sum(values[i] for i in c))
        best = best_a | {i for i, keep in zip(range(na, n), _brute_top_k(
            [values[i] if ok[i] else -math.inf for i in range(na, n)], budget["b"]),
            strict=True) if keep}
    else:
        best = max((set(c) for c in itertools.combinations(candidates, budget)
                    if feasible(set(c))), key=lambda c: sum(values[i] for i in c))
    assert got == [i in best for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=6, max_size=6), st.integers(0, 6),
       st.sampled_from([0, 1, -1]))
def test_select_keep_one_equals_plain_top_k_when_that_keeps_one_per_slice(
        values: list[int], k: int, dim: int) -> None:
    """With ties: whenever the plain top-k already keeps a weight in every slice, the
    constrained selection is the same mask (the same tie-break)."""
    scores = {"a": torch.tensor(values, dtype=torch.float32).reshape(2, 3)}
    plain = select(scores, k)
    if not all(any(keep for keep, sl in zip(plain["a"].reshape(-1).tolist(),
                                            _slice_ids((2, 3), dim), strict=True) if sl == s)
               for s in set(_slice_ids((2, 3), dim))):
        return
    assert torch.equal(select(scores, k, keep_one={"a": dim})["a"], plain["a"])


def test_select_keep_one_hand_example_and_refusals() -> None:
    # rows of a: [9 8 7] [1 0 2]; global k = 3: plain top-3 is 9, 8, 7 (row 1 empty); the
    # constraint keeps row 1's best (2) and the best two of the rest (9, 8)
    scores = {"a": torch.tensor([[9.0, 8.0, 7.0], [1.0, 0.0, 2.0]]), "b": torch.tensor([5.0])}
    out = select(scores, 3, keep_one={"a": 0})
    assert out["a"].tolist() == [[True, True, False], [False, False, True]]
    assert out["b"].tolist() == [False]
    with pytest.raises(SparsityError, match=r"all layers: 1 kept for 2 slices.*lower sparsity"):
        select(scores, 1, keep_one={"a": 0})
    with pytest.raises(SparsityError, match=r"'a': 1 kept for 2 slices"):
        select(scores, {"a": 1, "b": 1}, keep_one={"a": 0})
    eligible = {"a": torch.tensor([[True, True, True], [False, False, False]]),
                "b": torch.tensor([True])}
    with pytest.raises(SparsityError, match=r"1 slice\(s\) of 'a' along dim 0 have no weight"):
        select(scores, 3, eligible, keep_one={"a": 0})


def test_select_keeps_float64_precision() -> None:
    base = 1.0
    scores = {"a": torch.tensor([base, base + 1e-12], dtype=torch.float64),
              "b": torch.tensor([base + 2e-12], dtype=torch.float64)}
    out = select(scores, 2)
    assert out["a"].tolist() == [False, True] and out["b"].tolist() == [True]


def test_select_mixed_dtypes_compares_in_the_wider_one() -> None:
    # the float64 threshold 1 + 2^-40 must not be rounded to float32's 1.0 when it is compared
    # with the float32 layer: 1.0 < 1 + 2^-40, so the float32 weight is not tied with it
    scores = {"a": torch.tensor([1.0, 0.5], dtype=torch.float32),
              "b": torch.tensor([1.0 + 2.0 ** -40, 3.0], dtype=torch.float64)}
    out = select(scores, 2)
    assert out["a"].tolist() == [False, False] and out["b"].tolist() == [True, True]
    out = select(scores, 3)
    assert out["a"].tolist() == [True, False] and out["b"].tolist() == [True, True]


def test_select_integer_scores_are_compared_exactly() -> None:
    # 2^24 + 1 has no float32: compared in float32 it ties with 2^24 and the tie-break keeps
    # the first, the smaller score; 2^53 + 1 has no float64 either
    big = 2 ** 24
    scores = {"a": torch.tensor([big, big + 1]), "b": torch.tensor([2 ** 53, 2 ** 53 + 1])}
    values = [big, big + 1, 2 ** 53, 2 ** 53 + 1]  # Python ints: exact
    for k in range(5):
        out = select(scores, k)
        assert out["a"].tolist() + out["b"].tolist() == _brute_top_k(values, k)
    assert select(scores, {"a": 1, "b": 1})["a"].tolist() == [False, True]
    assert select(scores, {"a": 1, "b": 1})["b"].tolist() == [False, True]
    assert top_k_flat(scores["a"], 1).tolist() == [False, True]
    # integers next to floats: compared in float64 (exact for integers up to 2^53)
    mixed = {"a": torch.tensor([big + 0.5], dtype=torch.float32), "b": torch.tensor([big, big + 1])}
    assert select(mixed, 1)["b"].tolist() == [False, True]  # float32(2^24 + 0.5) = 2^24
    assert select(mixed, 2)["a"].tolist() == [True]  # 2^24 tied with b[0], first in order
    # keep_one on integer scores: rows [3 9] [1 2], k = 2 -> 9 and 2
    rows = {"w": torch.tensor([[3, 9], [1, 2]])}
    assert select(rows, 2, keep_one={"w": 0})["w"].tolist() == [[False, True], [False, True]]
    rows = {"w": torch.tensor([[3, 9], [1, 2]]), "c": torch.tensor([5])}
    out = select(rows, 3, keep_one={"w": 0})  # plain top-3 (9 5 3) empties row 1
    assert out["w"].tolist() == [[False, True], [False, True]] and out["c"].tolist() == [True]


_EXACT_EVERYWHERE = [-math.inf, -2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, math.inf]  # in fp16 too


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([torch.float16, torch.bfloat16, torch.float32,
                                           torch.float64, torch.int32]),
                          st.integers(0, 12), st.booleans()), min_size=1, max_size=4),
       st.data())
def test_select_mixed_dtypes_layouts_and_specials_equal_brute_force(
        layers: list[tuple[torch.dtype, int, bool]], data: st.DataObject) -> None:
    """Layers of different dtypes, transposed (non-contiguous) score views, +-inf, -0.0 next
    to 0.0, NaN where a weight is not eligible, empty layers: the global and per-layer
    selections equal a stable sort of the concatenation, and the inputs are left as given."""
    scores, eligible, flat, flags = {}, {}, [], []
    for i, (dtype, n, transposed) in enumerate(layers):
        pool = [-2.0, -1.0, 0.0, 1.0, 3.0] if not dtype.is_floating_point else _EXACT_EVERYWHERE
        values = data.draw(st.lists(st.sampled_from(pool), min_size=2 * n, max_size=2 * n))
        ok = data.draw(st.lists(st.booleans(), min_size=2 * n, max_size=2 * n))
        if dtype.is_floating_point:
            values = [v if e else math.nan for v, e in zip(values, ok, strict=True)]
        t = torch.tensor(values, dtype=torch.float64).to(dtype)
        if transposed:  # the same row-major values, held column-major
            t = t.reshape(n, 2).t().contiguous().t()
            assert n < 2 or not t.is_contiguous()
        else:
            t = t.reshape(n, 2)
        scores[f"l{i}"], eligible[f"l{i}"] = t, torch.tensor(ok, dtype=torch.bool).reshape(n, 2)
        flat += values
        flags += ok
    before = {n: (t.clone(), eligible[n].clone()) for n, t in scores.items()}

    def brute(values: list[float], ok: list[bool], k: int) -> list[bool]:
        # a stable sort of the eligible entries only (an eligible -inf still beats none)
        order = sorted((i for i in range(len(values)) if ok[i]), key=lambda i: (-values[i], i))
        return [i in set(order[:k]) for i in range(len(values))]

    k = data.draw(st.integers(0, sum(flags)))
    out = select(scores, k, eligible)
    got = [bool(x) for n in scores for x in out[n].reshape(-1).tolist()]
    assert got == brute(flat, flags, k)
    budget = {n: data.draw(st.integers(0, int(eligible[n].sum()))) for n in scores}
    out = select(scores, budget, eligible)
    offset = 0
    for n, t in scores.items():
        end = offset + t.numel()
        assert out[n].reshape(-1).tolist() == brute(flat[offset:end], flags[offset:end],
                                                    budget[n])
        offset = end
    for n, (t, e) in before.items():
        assert torch.equal(scores[n].nan_to_num(7.0), t.nan_to_num(7.0))
        assert torch.equal(eligible[n], e) and scores[n].stride() == t.stride()


def test_select_of_no_layers_is_empty() -> None:
    assert select({}, 0) == {}
    assert select_scored({}, {}).masks == {}
    with pytest.raises(ValueError, match="exceeds the 0 candidates"):
        select({}, 1)


def test_select_ignores_scores_of_ineligible_weights() -> None:
    scores = {"a": torch.tensor([float("nan"), 2.0, 1.0]), "b": torch.tensor([float("inf"), 0.5])}
    eligible = {"a": torch.tensor([False, True, True]), "b": torch.tensor([False, True])}
    out = select(scores, 2, eligible)
    assert out["a"].tolist() == [False, True, True] and out["b"].tolist() == [False, False]
    with pytest.raises(ScoreError, match="NaN scores for 'a'"):
        select(scores, 2)


def test_select_scored_names_all_zero_layers() -> None:
    scores = {"a": torch.tensor([0.0, 0.0, 3.0]), "b": torch.tensor([0.0, -0.0]),
              "c": torch.tensor([1.0, -2.0]), "d": torch.tensor([5.0])}
    eligible = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, True]),
                "c": torch.tensor([True, True]), "d": torch.tensor([False])}
    result = select_scored(scores, 2, eligible)
    assert result.zero_layers == ["a", "b", "d"]  # d: no candidate at all
    # the two largest candidates: c's 1.0 and the first of the tied zeros (a[0])
    assert result.masks["c"].tolist() == [True, False]
    assert result.masks["a"].tolist() == [True, False, False]
    per_layer = select_scored(scores, {"a": 1, "b": 0, "c": 1, "d": 0}, eligible)
    assert per_layer.zero_layers == ["a", "b", "d"]
    assert per_layer.masks["a"].tolist() == [True, False, False]
    assert per_layer.masks["c"].tolist() == [True, False]


def test_select_does_not_modify_the_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(1000, generator=gen, dtype=torch.float64),
              "b": torch.rand(50, 20, generator=gen)}
    before = {n: s.clone() for n, s in scores.items()}
    select(scores, 700)
    select(scores, {"a": 10, "b": 999})
    top_k_flat(scores["a"], 3)
    assert all(torch.equal(scores[n], before[n]) for n in scores)


def test_select_errors() -> None:
    with pytest.raises(ScoreError, match="NaN scores for 'a'"):
        select({"a": torch.tensor([1.0, float("nan")])}, 1)
    with pytest.raises(ValueError, match="exceeds"):
        select({"a": torch.ones(3)}, 4)
    with pytest.raises(ValueError, match="budget 4 for 'a' exceeds its 3 candidates"):
        select({"a": torch.ones(3)}, {"a": 4})


# ---- allocate_exact ---------------------------------------------------------------------------


def _reference_allocation(weights: list[int], capacities: list[int], total: int) -> list[int]:
    """RigL's procedure in exact rationals: while the densest layer would exceed density 1, make
    (all layers tied with) it dense and re-solve; then largest-remainder rounding, earlier layer
    first among equal remainders."""
    n = len(weights)
    dense: set[int] = set()
    while True:
        free = total - sum(capacities[i] for i in dense)
        free_weight = sum(weights[i] for i in range(n) if i not in dense)
        if free_weight == 0:
            eps = Fraction(0)
            break
        eps = Fraction(free, free_weight)
        densities: dict[int, Fraction | float] = {
            i: eps * weights[i] / capacities[i] if capacities[i] else
            (math.inf if weights[i] else 0.0)  # an empty layer with a positive share overflows
            for i in range(n) if i not in dense}
        top = max(densities.values(), default=0.0)
        if top <= 1:
            break
        dense |= {i for i, d in densities.items() if d == top}
    shares = [Fraction(capacities[i]) if i in dense else eps * weights[i] for i in range(n)]
    counts = [math.floor(s) for s in shares]
    if eps == 0:  # all remaining weights are 0: fill the free capacity in layer order
        for i in range(n):
            while counts[i] < capacities[i] and sum(counts) < total:
                counts[i] += 1
        return counts
    order = sorted(range(n), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 400)), min_size=1, max_size=7),
       st.data())
def test_allocate_exact_equals_exact_rational_reference(layers: list[tuple[int, int]],
                                                        data: st.DataObject) -> None:
    weights = [w for w, _ in layers]
    capacities = [c for _, c in layers]
    total = data.draw(st.integers(0, sum(capacities)))
    got = allocate_exact([float(w) for w in weights], capacities, total)
    assert sum(got) == total
    assert all(0 <= g <= c for g, c in zip(got, capacities, strict=True))
    assert got == _reference_allocation(weights, capacities, total)


def test_allocate_exact_hand_example() -> None:
    # weights 1:2:7 of 100 over capacities 50, 50, 20: the third layer (share 70) is made dense,
    # the remaining 80 split 1:2 -> 26.67, 53.33 -> the second exceeds 50 and is made dense, the
    # first gets the remaining 30.
    assert allocate_exact([1.0, 2.0, 7.0], [50, 50, 20], 100) == [30, 50, 20]
    assert allocate_exact([1.0, 2.0, 7.0], [50, 50, 20], 80) == [20, 40, 20]  # one re-solve
    assert allocate_exact([1.0, 1.0, 1.0], [10, 10, 10], 10) == [4, 3, 3]  # ties: earlier first
    assert allocate_exact([1.0, 1.0], [5, 5], 10) == [5, 5]
    assert allocate_exact([0.0, 1.0], [5, 5], 3) == [0, 3]


def test_allocate_exact_float_weights_tie_exactly() -> None:
    # shares 155/93 and 7130/93 have the same fractional part 62/93; in floats the larger share's
    # remainder came out larger, so the tie went to a later layer (fixed by exact arithmetic)
    assert allocate_exact([1.0, 46.0, 46.0], [2, 77, 77], 155) == [2, 77, 76]
    assert allocate_exact([0.1, 0.2, 0.3], [100, 100, 100], 60) == [10, 20, 30]


def test_allocate_exact_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="cannot keep 11 weights out of 10"):
        allocate_exact([1.0, 1.0], [5, 5], 11)
    with pytest.raises(ValueError, match="cannot keep -1"):
        allocate_exact([1.0, 1.0], [5, 5], -1)
    with pytest.raises(ValueError, match="finite and >= 0"):
        allocate_exact([1.0, float("nan")], [5, 5], 3)
    with pytest.raises(ValueError, match="finite and >= 0"):
        allocate_exact([1.0, -1.0], [5, 5], 3)
    with pytest.raises(ValueError, match="2 weights but 1 capacities"):
        allocate_exact([1.0, 1.0], [5], 3)


def test_allocate_exact_many_layers_is_fast() -> None:
    import time

    weights = [float(3 ** (i % 7)) for i in range(400)]
    capacities = [1000 - 2 * i for i in range(400)]
    start = time.perf_counter()
    counts = allocate_exact(weights, capacities, sum(capacities) // 2)
    assert sum(counts) == sum(capacities) // 2
    assert time.perf_counter() - start < 5.0


# ---- the banded threshold search (large inputs) -----------------------------------------------


def _layers_and_flags(draw_values: list[list[float]], eligible_flat: list[bool] | None):
    flats = {f"l{i}": torch.tensor(v, dtype=torch.float64) for i, v in enumerate(draw_values)}
    flags: dict[str, torch.Tensor | None] = {n: None for n in flats}
    if eligible_flat is not None:
        offset = 0
        for n, f in flats.items():
            flags[n] = torch.tensor(eligible_flat[offset:offset + f.numel()], dtype=torch.bool)
            offset += f.numel()
    return flats, flags


@settings(max_examples=200)
@given(st.lists(st.lists(st.integers(-3, 40), min_size=1, max_size=200), min_size=1, max_size=5),
       st.data())
def test_banded_selection_equals_brute_force(layers: list[list[int]], data: st.DataObject) -> None:
    # sample=16: the banded search runs from 128 scores on (in use: from 8 x 65,536)
    flat = [float(x) for v in layers for x in v]
    use_flags = data.draw(st.booleans())
    eligible_flat = (data.draw(st.lists(st.booleans(), min_size=len(flat), max_size=len(flat)))
                     if use_flags else None)
    flats, flags = _layers_and_flags([[float(x) for x in v] for v in layers], eligible_flat)
    total = sum(eligible_flat) if eligible_flat is not None else len(flat)
    k = data.draw(st.integers(0, total))
    zero: list[str] = []
    keep = _top_k_candidates(flats, flags, k, zero, "", sample=16)
    got = [bool(x) for n in flats for x in keep[n].tolist()]
    masked = flat if eligible_flat is None else [
        s if e else -math.inf for s, e in zip(flat, eligible_flat, strict=True)]
    assert got == _brute_top_k(masked, k)
    expected_zero = [n for n, f in flats.items()
                     if not bool(((f != 0) & (flags[n] if flags[n] is not None
                                              else torch.ones_like(f, dtype=torch.bool))).any())]
    assert zero == expected_zero


def test_banded_threshold_is_used_and_exact_on_large_random_scores() -> None:
    gen = torch.Generator().manual_seed(0)
    flats = {"a": torch.rand(50_000, generator=gen, dtype=torch.float64),
             "b": torch.rand(30_000, generator=gen, dtype=torch.float64).round(decimals=3)}
    flags = {"a": torch.rand(50_000, generator=gen) < 0.7, "b": None}
    counts = {"a": int(flags["a"].sum()), "b": 30_000}
    total = sum(counts.values())
    for k in (1, 17, total // 3, total - 5, total - 1):
        banded = _banded_threshold(flats, flags, counts, k, [], sample=1024)
        assert banded is not None  # the band holds the threshold: this path is exercised
        candidates = torch.cat([flats["a"][flags["a"]], flats["b"]])
        assert float(banded) == float(torch.sort(candidates, descending=True).values[k - 1])


def test_banded_threshold_falls_back_when_the_sample_misleads() -> None:
    # every sampled position (stride 8) holds a 0, every other position a 1: the sample says
    # the threshold is 0, the band [0, 0] holds no candidate above it, the search gives up
    values = torch.ones(800, dtype=torch.float64)
    values[::8] = 0.0
    flats, flags = {"a": values}, {"a": None}
    assert _banded_threshold(flats, flags, {"a": 800}, 300, [], sample=100) is None
    keep = _top_k_candidates(flats, flags, 300, [], "", sample=100)["a"]
    assert keep.tolist() == _brute_top_k(values.tolist(), 300)
