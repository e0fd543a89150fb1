"""Evaluating accuracy-drop regressors: feature sets x splits, importance, ranking validation.

Scores are computed on the pooled **out-of-fold** predictions of a split (every row predicted by
the model of the fold that held it out):

* ``r2``: coefficient of determination ``1 - sum (y - yhat)^2 / sum (y - mean y)^2``;
* ``mae``: mean absolute error in accuracy points;
* ``spearman``: Spearman rank correlation between predicted and actual drops.

Ranking validation (:func:`validate_ranking`), per held-out pruner ``P``: fit on every row but
``P``'s, predict all rows (``P`` unseen, the other pruners seen), average predictions and actual
drops over seeds, and compare the two rankings of the pruners with Kendall tau-b and RBO_ext
(p = 0.9), within each ``(dataset, model, config, sparsity)`` context and over the mean across
the sparsities every pruner has (the ranking ``paizoo rank`` prints). The ``(all unseen)`` row
ranks with the cross-fitted leave-one-pruner-out predictions, where every pruner is unseen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error, r2_score

from ..progress import round_progress
from .errors import TableError
from .estimator import AccuracyDropRegressor, _limit_threads
from .ranking import compare_rankings, ranked
from .schema import FEATURE_SETS, TARGET, select_features, validate_table
from .splits import SPLITS, Fold, available_splits, make_folds, pair_folds, split_kind

RANK_P = 0.9


def regression_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """R^2, MAE (points) and Spearman rho of predictions ``pred`` for targets ``y``."""
    y, pred = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    rho = stats.spearmanr(y, pred).statistic if len(y) > 2 and np.ptp(pred) > 0 else np.nan
    return {"r2": float(r2_score(y, pred)) if len(y) > 1 else float("nan"),
            "mae": float(mean_absolute_error(y, pred)),
            "spearman": float(rho)}


def cross_predict(estimator: AccuracyDropRegressor, table: pd.DataFrame,
                  folds: Sequence[Fold]) -> np.ndarray:
    """Out-of-fold predictions: row ``i`` is predicted by the model fit without ``i``'s fold."""
    y = table[TARGET].to_numpy(dtype=float)
    pred = np.full(len(table), np.nan)
    for fold in folds:
        est = clone(estimator).fit(table.iloc[fold.train], y[fold.train])
        pred[fold.test] = est.predict(table.iloc[fold.test])
    return pred


@dataclass
class Evaluation:
    """Everything ``paizoo regress eval`` reports.

    Attributes:
        scores: one row per (feature_set, split, model): ``n_features``, ``r2``, ``mae``,
            ``spearman``.
        predictions: ``{(feature_set, split, model): out-of-fold predictions}``.
        best: the feature set analysed in depth (see :func:`evaluate`'s ``main``).
        importance: permutation importance of ``best`` (MAE increase in points, mean and sd).
        ranking: per held-out pruner and context: Kendall tau, RBO, ranks of the held-out pruner.
        pairs: per (held-out architecture, held-out pruner): the pruner's predicted and actual
            rank among the pruners on that architecture (:func:`pair_ranks`).
        pair_ranking: Kendall tau / RBO per context with every (architecture, pruner) pair
            predicted by the model that saw neither.
        skipped: ``{feature_set: reason}`` for the sets absent from the table.
    """

    table: pd.DataFrame
    scores: pd.DataFrame
    predictions: dict[tuple[str, str, str], np.ndarray]
    best: str | None
    model: str
    importance: pd.DataFrame | None = None
    ranking: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    pair_ranking: pd.DataFrame | None = None
    skipped: dict[str, str] = field(default_factory=dict)


def evaluate(
    table: pd.DataFrame,
    *,
    feature_sets: Mapping[str, Sequence[str]] = FEATURE_SETS,
    splits: Sequence[str] = tuple(SPLITS),
    models: Sequence[str] = ("hgb",),
    n_splits: int = 5,
    random_state: int = 0,
    importance: bool = True,
    ranking: bool = True,
    pairs: bool = True,
    main: str | None = "agnostic",
    progress: bool | None = None,
) -> Evaluation:
    """Compare feature sets and models under each split; see the module docstring.

    The first of ``models`` is the default model used for the best set, importance and ranking;
    ``best`` is the feature set ``main`` (the one the shipped predictor uses) when the table has
    it, else the one with the highest leave-one-architecture-out R^2 (leave one pruner out when
    the table has one architecture); importance, ranking and ``pairs`` (the (held-out
    architecture x held-out pruner) ranks of :func:`pair_ranks`, >= 2 architectures) use it.
    """
    table = validate_table(table).reset_index(drop=True)
    kinds = available_splits(table, tuple(map(split_kind, splits)))
    folds = {k: make_folds(table, k, n_splits=n_splits, random_state=random_state)
             for k in kinds}
    y = table[TARGET].to_numpy(dtype=float)
    rows, preds, skipped = [], {}, {}
    usable: dict[str, list[str]] = {}
    for name, groups in feature_sets.items():
        try:
            usable[name] = select_features(table.columns, groups)
        except TableError as exc:
            skipped[name] = str(exc).split(";")[0]
    jobs = [(fs, k, m) for fs in usable for k in kinds for m in models]
    for fs, kind, model in round_progress(list(jobs), "regress eval", progress):
        est = AccuracyDropRegressor(groups=feature_sets[fs], model=model,
                                    random_state=random_state)
        pred = cross_predict(est, table, folds[kind])
        preds[(fs, kind, model)] = pred
        rows.append({"feature_set": fs, "split": kind, "model": model,
                     "n_features": len(usable[fs]), **regression_scores(y, pred)})
    scores = pd.DataFrame(rows, columns=["feature_set", "split", "model", "n_features", "r2",
                                         "mae", "spearman"])
    default_model = models[0]
    best = main if main in usable else _best_set(scores, default_model)
    ev = Evaluation(table=table, scores=scores, predictions=preds, best=best,
                    model=default_model, skipped=skipped)
    if best is not None and importance:
        kind = next((k for k in ("loao", "lopo") if k in kinds), kinds[0])
        ev.importance = permutation_importance_cv(
            AccuracyDropRegressor(groups=feature_sets[best], model=default_model,
                                  random_state=random_state),
            table, folds[kind], random_state=random_state)
    if best is not None and ranking and table["pruner"].nunique() >= 2:
        ev.ranking = validate_ranking(
            table, lambda: AccuracyDropRegressor(groups=feature_sets[best], model=default_model,
                                                 random_state=random_state),
            progress=progress)
    if best is not None and pairs and table["model"].nunique() >= 2 \
            and table["pruner"].nunique() >= 2:
        ev.pairs, ev.pair_ranking = pair_ranks(
            table, lambda: AccuracyDropRegressor(groups=feature_sets[best], model=default_model,
                                                 random_state=random_state),
            progress=progress)
    return ev


def pair_ranks(table: pd.DataFrame, make_estimator: Callable[[], AccuracyDropRegressor], *,
               p: float = RANK_P, progress: bool | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The held-out pruner's rank on a held-out architecture, for every (architecture, pruner).

    For each pair ``(A, P)`` (:func:`paizoo.regression.splits.pair_folds`) the regressor is fit
    on the rows of neither ``A`` nor ``P`` and predicts every row of ``A``; the pruners on ``A``
    are ranked by their drop averaged over seeds and over the sparsities every pruner on ``A``
    has (what ``paizoo rank`` prints), by prediction and by the actual drops.

    Returns:
        ``pairs``: one row per pair: ``model``, ``pruner``, ``n_pruners``, ``predicted_rank``,
        ``actual_rank``, ``abs_error``; ``ranking``: Kendall tau / RBO per context (as in
        :func:`ranking_rows`) of the cross-fitted predictions, where each row was predicted by
        the model that saw neither its architecture nor its pruner.
    """
    table = table.reset_index(drop=True)
    y = table[TARGET].to_numpy(dtype=float)
    model = table["model"].astype(str).to_numpy()
    crossfit = np.full(len(table), np.nan)
    rows: list[dict[str, object]] = []
    for fold in round_progress(list(pair_folds(table)), "arch x pruner", progress):
        arch, pruner = fold.label.split(" x ", 1)
        on_arch = np.flatnonzero(model == arch)
        est = make_estimator().fit(table.iloc[fold.train], y[fold.train])
        pred = np.full(len(table), np.nan)
        pred[on_arch] = est.predict(table.iloc[on_arch])
        crossfit[fold.test] = pred[fold.test]
        sub = table.iloc[on_arch]
        for r in ranking_rows(sub, pred[on_arch], pruner, p):
            if r.get("sparsity") == "mean" and "predicted_rank" in r:
                rows.append({"model": arch, "pruner": pruner, "n_pruners": r["n_pruners"],
                             "predicted_rank": r["predicted_rank"],
                             "actual_rank": r["actual_rank"],
                             "abs_error": abs(int(r["predicted_rank"])  # type: ignore[call-overload]
                                              - int(r["actual_rank"]))})  # type: ignore[call-overload]
    ok = np.isfinite(crossfit)
    ranking = pd.DataFrame(ranking_rows(table[ok].reset_index(drop=True), crossfit[ok],
                                        "(all unseen, new architecture)", p))
    return pd.DataFrame(rows), ranking


def _best_set(scores: pd.DataFrame, model: str) -> str | None:
    sub = scores[scores["model"] == model]
    if sub.empty:
        return None
    split = next((k for k in ("loao", "lopo") if (sub["split"] == k).any()),
                 sub["split"].iloc[0])
    sub = sub[sub["split"] == split].sort_values(["r2", "n_features"], ascending=[False, True])
    return str(sub["feature_set"].iloc[0])


def batched_permutation_importance(
    predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray, *,
    n_repeats: int = 5, random_state: int = 0, max_cells: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Permutation importance as MAE increase: mean and sd over repeats, per column of ``X``.

    ``importance_j = MAE(y, f(X with column j permuted)) - MAE(y, f(X))`` (Breiman 2001), with
    exactly the permutations of :func:`sklearn.inspection.permutation_importance` for the same
    ``random_state`` (one seed shared by all columns, repeats compounding), but all permuted
    copies are stacked and predicted in a few large calls instead of one call per copy.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, f = X.shape
    rs = np.random.RandomState(
        np.random.RandomState(random_state).randint(np.iinfo(np.int32).max + 1))
    shuffling = np.arange(n)
    perms = np.empty((n_repeats, n), dtype=np.int64)
    current = np.arange(n)
    for r in range(n_repeats):
        rs.shuffle(shuffling)
        current = current[shuffling]
        perms[r] = current
    base = float(np.mean(np.abs(y - predict(X))))
    scores = np.empty((f, n_repeats))
    chunk = max(1, max_cells // max(1, n_repeats * n * f))  # columns per predict call
    for start in range(0, f, chunk):
        cols = np.arange(start, min(f, start + chunk))
        big = np.broadcast_to(X, (len(cols), n_repeats, n, f)).copy()
        # big[c, r, :, cols[c]] = X[perms[r], cols[c]]
        big[np.arange(len(cols))[:, None, None], np.arange(n_repeats)[None, :, None],
            np.arange(n)[None, None, :], cols[:, None, None]] = X[perms[None, :, :],
                                                                 cols[:, None, None]]
        pred = predict(big.reshape(-1, f)).reshape(len(cols), n_repeats, n)
        scores[cols] = np.mean(np.abs(y[None, None, :] - pred), axis=2)
    imp = scores - base
    return imp.mean(axis=1), imp.std(axis=1)


def permutation_importance_cv(estimator: AccuracyDropRegressor, table: pd.DataFrame,
                              folds: Sequence[Fold], *, n_repeats: int = 5,
                              random_state: int = 0) -> pd.DataFrame:
    """Permutation importance on held-out folds: increase of MAE (points) when one feature is
    shuffled (:func:`batched_permutation_importance` on each test fold), averaged over folds
    weighted by fold size; ``sd`` is the size-weighted root mean of the per-fold variances."""
    y = table[TARGET].to_numpy(dtype=float)
    total: pd.Series | None = None
    sq: pd.Series | None = None
    weight = 0
    for fold in folds:
        est = clone(estimator).fit(table.iloc[fold.train], y[fold.train])
        cols = list(est.feature_names_in_)
        with _limit_threads(est.n_jobs):
            mean_j, sd_j = batched_permutation_importance(
                est.model_.predict, est.feature_matrix(table.iloc[fold.test]), y[fold.test],
                n_repeats=n_repeats, random_state=random_state)
        mean = pd.Series(mean_j, index=cols) * len(fold.test)
        var = pd.Series(sd_j ** 2, index=cols) * len(fold.test)
        total = mean if total is None else total.add(mean, fill_value=0.0)
        sq = var if sq is None else sq.add(var, fill_value=0.0)
        weight += len(fold.test)
    if total is None or sq is None:
        return pd.DataFrame(columns=["feature", "importance", "sd"])
    out = pd.DataFrame({"feature": total.index, "importance": (total / weight).to_numpy(),
                        "sd": np.sqrt((sq / weight).to_numpy())})
    return out.sort_values("importance", ascending=False, ignore_index=True)


def _context_columns(table: pd.DataFrame) -> list[str]:
    return ["dataset", "model"] + (["config"] if "config" in table.columns else [])


def seed_rank_noise(table: pd.DataFrame) -> pd.DataFrame:
    """How far a pruner's rank moves between seeds of the same runs (the noise of the actual
    ranks the rank errors are measured against).

    Per (dataset, model, config) context with at least two seeds, and per seed ``s``: the
    pruners are ranked (:func:`~paizoo.regression.ranking.ranked`) by their drop averaged over
    ``s``'s runs and by their drop averaged over the other seeds' runs (per sparsity first, then
    over the sparsities where every pruner of the context has runs of ``s`` and of another
    seed). One row per (context, seed, pruner) with ``abs_rank_diff``.
    """
    ctx = _context_columns(table)
    rows: list[dict[str, object]] = []
    for key, g in table.groupby(ctx, dropna=False):
        seeds = sorted(g["seed"].unique())
        pruners = set(g["pruner"])
        if len(seeds) < 2 or len(pruners) < 2:
            continue
        for s in seeds:
            one = g[g["seed"] == s].groupby(["sparsity", "pruner"])[TARGET].mean()
            rest = g[g["seed"] != s].groupby(["sparsity", "pruner"])[TARGET].mean()
            common = [sp for sp in sorted(set(g["sparsity"]))
                      if all((sp, p) in one.index and (sp, p) in rest.index for p in pruners)]
            if not common:
                continue
            by_one = {p: float(np.mean([one[(sp, p)] for sp in common])) for p in pruners}
            by_rest = {p: float(np.mean([rest[(sp, p)] for sp in common])) for p in pruners}
            r1, r2 = ranked(by_one), ranked(by_rest)
            for p in sorted(pruners):
                rows.append({**dict(zip(ctx, key, strict=True)), "seed": s, "pruner": p,
                             "abs_rank_diff": abs(r1.index(p) - r2.index(p))})
    return pd.DataFrame(rows)


def ranking_rows(table: pd.DataFrame, pred: np.ndarray, held_out: str,
                 p: float = RANK_P) -> list[dict[str, object]]:
    """Kendall tau and RBO between the pruner rankings by ``pred`` and by the actual drops,
    per ``(dataset, model, config, sparsity)`` context and over the mean across sparsities."""
    ctx = _context_columns(table)
    df = table[[*ctx, "pruner", "sparsity", TARGET]].copy()
    df["sparsity"] = df["sparsity"].round(6)
    df["predicted"] = pred
    means = df.groupby([*ctx, "sparsity", "pruner"], as_index=False, dropna=False)[
        ["predicted", TARGET]].mean()
    out: list[dict[str, object]] = []

    def add(key: dict[str, object], sub: pd.DataFrame) -> None:
        if sub["pruner"].nunique() < 2:
            return
        predicted = dict(zip(sub["pruner"], sub["predicted"], strict=True))
        actual = dict(zip(sub["pruner"], sub[TARGET], strict=True))
        cmp = compare_rankings(predicted, actual, p)
        order_p, order_a = ranked(predicted), ranked(actual)
        row: dict[str, object] = {"held_out": held_out, **key, "n_pruners": len(predicted),
                                  **cmp}
        if held_out in predicted:
            row["predicted_rank"] = order_p.index(held_out) + 1
            row["actual_rank"] = order_a.index(held_out) + 1
        out.append(row)

    for key, sub in means.groupby([*ctx, "sparsity"], dropna=False):
        add(dict(zip([*ctx, "sparsity"], key, strict=True)), sub)
    for key, sub in means.groupby(ctx, dropna=False):
        counts = sub.groupby("sparsity")["pruner"].nunique()
        common = counts[counts == sub["pruner"].nunique()].index
        overall = (sub[sub["sparsity"].isin(common)]
                   .groupby("pruner", as_index=False)[["predicted", TARGET]].mean())
        if len(common):
            add({**dict(zip(ctx, key, strict=True)), "sparsity": "mean"}, overall)
    return out


def validate_ranking(table: pd.DataFrame, make_estimator: Callable[[], AccuracyDropRegressor],
                     *, p: float = RANK_P, progress: bool | None = None) -> pd.DataFrame:
    """Rank the pruners with a regressor that never saw one of them, for each pruner in turn.

    Returns one row per (held-out pruner, context) with ``kendall_tau``, ``rbo``,
    ``predicted_rank`` and ``actual_rank`` of the held-out pruner; the ``(all unseen)`` rows
    use the cross-fitted leave-one-pruner-out predictions for every pruner.
    """
    table = table.reset_index(drop=True)
    y = table[TARGET].to_numpy(dtype=float)
    folds = make_folds(table, "lopo")
    crossfit = np.full(len(table), np.nan)
    rows: list[dict[str, object]] = []
    for fold in round_progress(list(folds), "ranking validation", progress):
        est = make_estimator().fit(table.iloc[fold.train], y[fold.train])
        pred = est.predict(table)
        crossfit[fold.test] = pred[fold.test]
        rows.extend(ranking_rows(table, pred, fold.label, p))
    rows.extend(ranking_rows(table, crossfit, "(all unseen)", p))
    return pd.DataFrame(rows)


def _rank_text(rank: object) -> str:
    return "-" if pd.isna(rank) else str(int(rank))  # type: ignore[call-overload]


def ranking_summary(ranking: pd.DataFrame) -> pd.DataFrame:
    """Per held-out pruner: mean tau/RBO over the per-sparsity contexts, and tau/RBO and the
    held-out pruner's predicted/actual rank in the mean-over-sparsities ranking."""
    per = ranking[ranking["sparsity"] != "mean"]
    overall = ranking[ranking["sparsity"] == "mean"]
    rows = []
    for held, sub in per.groupby("held_out", sort=False):
        row = {"held_out": held, "contexts": len(sub),
               "tau_per_sparsity": sub["kendall_tau"].mean(),
               "rbo_per_sparsity": sub["rbo"].mean()}
        o = overall[overall["held_out"] == held]
        if len(o):
            row["tau_mean_ranking"] = o["kendall_tau"].mean()
            row["rbo_mean_ranking"] = o["rbo"].mean()
            if "predicted_rank" in o and o["predicted_rank"].notna().any():
                # one entry per (dataset, model); "-" where the pruner has no runs there
                row["rank_predicted"] = "/".join(_rank_text(v) for v in o["predicted_rank"])
                row["rank_actual"] = "/".join(_rank_text(v) for v in o["actual_rank"])
        rows.append(row)
    return pd.DataFrame(rows)
