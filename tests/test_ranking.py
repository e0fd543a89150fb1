"""Tests of ranking comparisons (Kendall tau, RBO) and of ranking pruners without training."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import paizoo
from paizoo import Mask, PruneContext, Pruner
from paizoo.regression import (
    AccuracyDropRegressor,
    Predictor,
    compare_rankings,
    kendall_tau,
    rank_pruners,
    ranked,
    rbo_ext,
)
from paizoo.regression.evaluate import ranking_rows, ranking_summary


# ---- Kendall tau -----------------------------------------------------------------------------
def _tau_b_brute_force(x: list[float], y: list[float]) -> float:
    """tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2)) by enumerating all pairs."""
    c = d = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if sx == 0:
            tx += 1
        if sy == 0:
            ty += 1
        if sx * sy > 0:
            c += 1
        elif sx * sy < 0:
            d += 1
    n0 = len(x) * (len(x) - 1) // 2
    return (c - d) / math.sqrt((n0 - tx) * (n0 - ty))


def test_kendall_tau_hand_computed() -> None:
    # one discordant pair (items 2, 3) out of 6: tau = (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3)
    # reversed: every pair discordant
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties: x = [1,2,2,3], y = [1,2,3,3]. Pairs: (1,2) C, (1,3) C, (1,4) C, (2,3) tied in x,
    # (2,4) C, (3,4) tied in y -> C = 4, D = 0, n0 = 6, n1 = n2 = 1: tau_b = 4 / sqrt(5 * 5)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1.0], [2.0]))
    with pytest.raises(ValueError, match="equal length"):
        kendall_tau([1, 2], [1, 2, 3])


def test_kendall_tau_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(3, 9))
        x = rng.integers(0, 4, size=n).astype(float).tolist()  # with ties
        y = rng.integers(0, 4, size=n).astype(float).tolist()
        if len(set(x)) < 2 or len(set(y)) < 2:
            continue
        assert kendall_tau(x, y) == pytest.approx(_tau_b_brute_force(x, y))


# ---- RBO -------------------------------------------------------------------------------------
def _rbo_ext_sets(s_list: list[str], l_list: list[str], p: Fraction) -> Fraction:
    """Eq. 32 of Webber et al. (2010) with exact fractions and prefix-set intersections."""
    if len(s_list) > len(l_list):
        s_list, l_list = l_list, s_list
    s, ell = len(s_list), len(l_list)
    x = {d: len(set(s_list[:d]) & set(l_list[:d])) for d in range(1, ell + 1)}
    total = sum(Fraction(x[d], d) * p**d for d in range(1, ell + 1))
    total += sum(Fraction(x[s] * (d - s), s * d) * p**d for d in range(s + 1, ell + 1))
    return (1 - p) / p * total + (Fraction(x[ell] - x[s], ell) + Fraction(x[s], s)) * p**ell


def test_rbo_hand_computed() -> None:
    p = 0.9
    assert rbo_ext(list("abcd"), list("abcd"), p) == pytest.approx(1.0)
    assert rbo_ext(list("abc"), list("xyz"), p) == pytest.approx(0.0)
    # S = abcd, L = badc: X_1..X_4 = 0, 2, 2, 4 (equal lengths, eq. 30)
    # (1-p)/p * (0*.9 + 2/2*.81 + 2/3*.729 + 4/4*.6561) + 4/4 * .6561
    # = 1/9 * (0.81 + 0.486 + 0.6561) + 0.6561 = 0.2169 + 0.6561 = 0.873
    assert rbo_ext(list("abcd"), list("badc"), p) == pytest.approx(0.873, abs=1e-12)
    # S = 12345, L = 23415: X = 0, 1, 2, 4, 5
    # 1/9 * (1/2*.81 + 2/3*.729 + 1*.6561 + 1*.59049) + .59049 = 0.2375100 + 0.59049 = 0.8280
    assert rbo_ext([1, 2, 3, 4, 5], [2, 3, 4, 1, 5], p) == pytest.approx(0.8280, abs=1e-12)
    # uneven (eq. 32): S = ab (s = 2), L = acb (l = 3): X_1 = 1, X_2 = 1, X_3 = 2, X_s = 1
    # sum1 = 1*.9 + 1/2*.81 + 2/3*.729 = 1.791; sum2 (d=3) = 1*(3-2)/(2*3)*.729 = 0.1215
    # 1/9 * (1.791 + 0.1215) + ((2-1)/3 + 1/2) * .729 = 0.2125 + 0.6075 = 0.82
    assert rbo_ext(list("ab"), list("acb"), p) == pytest.approx(0.82, abs=1e-12)
    assert rbo_ext(list("acb"), list("ab"), p) == pytest.approx(0.82, abs=1e-12)  # symmetric
    assert rbo_ext([], [], p) == 1.0 and rbo_ext([], ["a"], p) == 0.0
    with pytest.raises(ValueError, match="duplicate"):
        rbo_ext(["a", "a"], ["a"], p)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        rbo_ext(["a"], ["a"], 1.0)


def test_rbo_matches_exact_set_computation() -> None:
    rng = random.Random(0)
    universe = list("abcdefghij")
    for _ in range(40):
        a = rng.sample(universe, rng.randint(1, 10))
        b = rng.sample(universe, rng.randint(1, 10))
        p = rng.choice([0.5, 0.8, 0.9, 0.98])
        exact = _rbo_ext_sets(a, b, Fraction(p).limit_denominator(100))
        assert rbo_ext(a, b, p) == pytest.approx(float(exact), abs=1e-12)
        assert 0.0 <= rbo_ext(a, b, p) <= 1.0 + 1e-12


def test_ranked_and_compare() -> None:
    drops = {"snip": 2.0, "grasp": 1.0, "random": 5.0, "synflow": 1.0}
    assert ranked(drops) == ["grasp", "synflow", "snip", "random"]  # ties by name
    same = compare_rankings(drops, {k: 2 * v for k, v in drops.items()})
    assert same == {"kendall_tau": pytest.approx(1.0), "rbo": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="different items"):
        compare_rankings(drops, {"snip": 1.0})


def test_ranking_rows_against_hand_ranking() -> None:
    """Predicted order b < a < c vs actual a < b < c at one sparsity."""
    table = pd.DataFrame({
        "dataset": "d", "model": "m", "pruner": ["a", "b", "c", "a", "b", "c"],
        "sparsity": 0.9, "seed": [0, 0, 0, 1, 1, 1],
        "accuracy_drop": [1.0, 2.0, 3.0, 1.2, 2.2, 3.2]})
    pred = np.array([2.0, 1.0, 9.0, 2.0, 1.0, 9.0])
    rows = ranking_rows(table, pred, held_out="b")
    per = next(r for r in rows if r["sparsity"] != "mean")
    # one discordant pair of three: tau = (2 - 1) / 3
    assert per["kendall_tau"] == pytest.approx(1 / 3)
    # [b, a, c] vs [a, b, c]: X = 0, 2, 3 -> 1/9 (0 + .81 + .729) + .729
    assert per["rbo"] == pytest.approx((0.81 + 0.729) / 9 + 0.729)
    assert per["predicted_rank"] == 1 and per["actual_rank"] == 2


def test_ranking_summary_for_a_pruner_run_on_one_model_only() -> None:
    """A pruner with runs on model m1 only gets its rank there and "-" for m2."""
    rows = []
    for model, pruners in (("m1", ["a", "b", "c"]), ("m2", ["a", "b"])):
        for i, pruner in enumerate(pruners):
            rows.append({"dataset": "d", "model": model, "pruner": pruner, "sparsity": 0.9,
                         "seed": 0, "accuracy_drop": float(i)})
    table = pd.DataFrame(rows)
    # predicted order on m1: c < a < b (c first); on m2: a < b
    pred = np.array([2.0, 3.0, 1.0, 1.0, 2.0])
    summary = ranking_summary(pd.DataFrame(ranking_rows(table, pred, held_out="c")))
    row = summary.set_index("held_out").loc["c"]
    assert row["rank_predicted"] == "1/-" and row["rank_actual"] == "3/-"
    assert row["contexts"] == 2


# ---- rank_pruners end to end (fake metrics; the digits CLI test is in test_ranking_cli) ------
class ReverseMagnitude(Pruner):
    """Keeps the smallest |w| (a deliberately bad pruner for the test)."""

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        return {n: -p.detach().abs() for n, p in ctx.params.items()}


class FirstLayerHeavy(Pruner):
    """Layer-wise: the same density in every layer."""

    default_scope = "layer"

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        return {n: p.detach().abs() for n, p in ctx.params.items()}


def _tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 10))


def _metrics(model: nn.Module, mask: Mask, input_shape: tuple[int, ...],
             groups: list[str] | None) -> dict[str, float]:
    """Densities and the kept |w| mass as a stand-in 'mge' metric."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    mass = sum(float((params[n].abs() * mask[n]).sum()) for n in mask)
    total = sum(float(params[n].abs().sum()) for n in mask)
    return {"density.global": mask.density,
            **{f"density.{n}": d for n, d in mask.layer_densities().items()},
            "mge.kept_mass": mass / total}


def _toy_predictor(pruners: list[str], sparsities: list[float]) -> Predictor:
    """Fit on rows made by the same pipeline with drop = 100 * (1 - kept_mass)."""
    rows = []
    for seed in (1, 2, 3):
        for pruner in pruners:
            for s in sparsities:
                net = _tiny(seed)
                from paizoo import prune

                mask = prune(net, pruner, sparsity=s, input_shape=(1, 4, 4), seed=seed)
                m = _metrics(net, mask, (1, 4, 4), None)
                rows.append({"dataset": "toy", "model": "_tiny", "pruner": pruner,
                             "sparsity": s, "seed": seed, **m,
                             "accuracy_drop": 100 * (1 - m["mge.kept_mass"])})
    table = pd.DataFrame(rows)
    est = AccuracyDropRegressor(groups="mge,density", model="ridge").fit(table)
    return Predictor(est, info={"trained_on": {
        "rows": len(table), "datasets": ["toy"], "models": ["_tiny"], "pruners": pruners,
        "sparsity_range": [min(sparsities), max(sparsities)]}})


def test_rank_pruners_end_to_end() -> None:
    bad = f"{ReverseMagnitude.__module__}:ReverseMagnitude"
    layer = f"{FirstLayerHeavy.__module__}:FirstLayerHeavy"
    sparsities = [0.5, 0.8, 0.9]
    predictor = _toy_predictor(["magnitude", bad], sparsities)
    result = rank_pruners(_tiny, ["magnitude", bad, layer], [0.5, 0.9, 0.95],
                          predictor=predictor, input_shape=(1, 4, 4), seeds=(0,),
                          metrics_fn=_metrics, progress=False)
    assert len(result.rows) == 9
    # the predictions rank exactly as the truth the toy predictor learned (linear in kept mass)
    truth = 100 * (1 - result.rows["mge.kept_mass"])
    assert np.corrcoef(truth, result.rows["predicted_drop"])[0, 1] > 0.99
    assert result.ranking["pruner"].tolist()[0] == "magnitude"
    assert result.ranking["pruner"].tolist()[-1] == bad
    assert result.ranking["rank"].tolist() == [1, 2, 3]
    mean = result.rows.groupby("pruner")["predicted_drop"].mean()
    assert result.ranking.set_index("pruner")["mean"].to_dict() == pytest.approx(mean.to_dict())
    text = result.format()
    assert "predicted accuracy drop in points" in text and "s=0.95" in text
    assert "sparsities 0.95 lie outside the trained range 0.5..0.9; predictions extrapolate" in text
    assert f"pruners not in the training data: {layer}" in text
    assert "validity domain:" in text
    assert "unreliable" not in text  # no validation recorded: no claim either way
    predictor.info["validation"] = {"leave one pruner out": {"r2": 0.2, "mae": 9.0,
                                                             "spearman": 0.5}}
    notes = rank_pruners(_tiny, ["magnitude"], [0.5], predictor=predictor,
                         input_shape=(1, 4, 4), metrics_fn=_metrics, progress=False).notes
    assert any("leave one pruner out R^2 is 0.20: rankings by it are unreliable" in n
               for n in notes)


def test_predicted_drops_and_intervals_are_clipped_to_the_feasible_range() -> None:
    """An accuracy lies in [0, 100], so a drop lies in [d - 100, d] for a dense accuracy d
    (in [-100, 100] when d is not given): half-widths of 500 points are cut there."""
    from paizoo.regression import RegressionError
    from paizoo.regression.conformal import Calibration, feasible_drop_range

    assert feasible_drop_range() == (-100.0, 100.0)
    assert feasible_drop_range(80.0) == (-20.0, 80.0)
    predictor = _toy_predictor(["magnitude"], [0.5, 0.9])
    predictor.info["calibration"] = {
        "lopo": Calibration("lopo", 0.9, [], [[500.0] * 30]).to_dict()}
    kwargs = {"predictor": predictor, "input_shape": (1, 4, 4), "metrics_fn": _metrics,
              "progress": False}
    unclipped = rank_pruners(_tiny, ["magnitude"], [0.5, 0.9], **kwargs)
    rows = unclipped.rows
    assert (rows["predicted_low"] == -100.0).all() and (rows["predicted_high"] == 100.0).all()
    assert "clipped to the drops an accuracy in [0, 100] allows, [-100, 100]" in (
        unclipped.format())
    clipped = rank_pruners(_tiny, ["magnitude"], [0.5, 0.9], dense_accuracy=30.0, **kwargs)
    rows = clipped.rows
    assert (rows["predicted_low"] == -70.0).all() and (rows["predicted_high"] == 30.0).all()
    expected = unclipped.rows["predicted_drop"].clip(-70.0, 30.0)
    np.testing.assert_array_equal(rows["predicted_drop"], expected)
    assert clipped.ranking.loc[0, "low"] == -70.0 and clipped.ranking.loc[0, "high"] == 30.0
    assert "[-70, 30]" in clipped.format()
    with pytest.raises(RegressionError, match=r"0\.\.100; got 130.*in percent"):
        rank_pruners(_tiny, ["magnitude"], [0.5], dense_accuracy=130.0, **kwargs)


def test_rank_pruners_missing_columns() -> None:
    predictor = _toy_predictor(["magnitude"], [0.5, 0.9])

    def fewer(model, mask, shape, groups):  # type: ignore[no-untyped-def]
        out = _metrics(model, mask, shape, groups)
        del out["mge.kept_mass"]
        return out

    from paizoo.regression import TableError

    with pytest.raises(TableError, match=r"yet now missing:\n- mge\.kept_mass"):
        rank_pruners(_tiny, ["magnitude"], [0.5], predictor=predictor, input_shape=(1, 4, 4),
                     metrics_fn=fewer, progress=False)
    res = rank_pruners(_tiny, ["magnitude"], [0.5], predictor=predictor, input_shape=(1, 4, 4),
                       metrics_fn=fewer, allow_missing=True, progress=False)
    assert np.isfinite(res.rows["predicted_drop"]).all()
    assert not predictor.estimator.allow_missing  # the loaded predictor is left untouched


def test_rank_labels_carry_options_like_the_store() -> None:
    """`-o magnitude.scope=layer` ranks as 'magnitude{"scope":"layer"}', the label
    `regress build` gives a stored run with that pruner config."""
    from paizoo.regression import RegressionError
    from paizoo.regression.build import config_label

    predictor = _toy_predictor(["magnitude"], [0.5, 0.9])
    res = rank_pruners(_tiny, ["magnitude", "random"], [0.5], predictor=predictor,
                       input_shape=(1, 4, 4), metrics_fn=_metrics, progress=False,
                       pruner_options={"magnitude": {"scope": "layer"}})
    assert set(res.ranking["pruner"]) == {'magnitude{"scope":"layer"}', "random"}
    assert config_label("magnitude", '{"scope": "layer"}') == 'magnitude{"scope":"layer"}'
    assert config_label("lenet5", {"input_size": [8, 8]}, implied=("input_size",)) == "lenet5"
    with pytest.raises(RegressionError, match="listed twice"):
        rank_pruners(_tiny, ["random", "random"], [0.5], predictor=predictor,
                     input_shape=(1, 4, 4), metrics_fn=_metrics, progress=False)


def test_rank_cli_without_default_predictor(tmp_path, monkeypatch, capsys) -> None:
    from paizoo.cli import main
    from paizoo.regression import persistence

    monkeypatch.setattr(persistence, "default_predictor_path",
                        lambda: tmp_path / "default.skops")
    assert main(["rank", "--model", "lenet_300_100", "--dataset", "digits", "--sparsities",
                 "0.9", "--pruners", "magnitude"]) == 2
    err = capsys.readouterr().err
    assert "no default predictor" in err and "`paizoo regress rebuild`" in err


def test_rank_notes_pruners_that_miss_the_sparsity() -> None:
    """expander cannot reach 0.95 on the tiny net (16 weights for 22 outputs): ranked at the
    sparsity it reaches, and said in the notes, instead of failing the whole ranking."""
    predictor = _toy_predictor(["magnitude"], [0.5, 0.9])
    with pytest.raises(paizoo.SparsityError, match="fewer edges than outputs"):
        paizoo.prune(_tiny(0), "expander", sparsity=0.95)
    result = rank_pruners(_tiny, ["magnitude", "expander"], [0.5, 0.95], predictor=predictor,
                          input_shape=(1, 4, 4), metrics_fn=_metrics, progress=False)
    assert any(n.startswith("off target: expander at sparsity 0.95 (seed 0) reaches 0.92")
               for n in result.notes), result.notes
    assert not any("magnitude" in n and "off target" in n for n in result.notes)
