"""Ablation of the accuracy-drop regressor across architectures: feature sets x model settings.

Usage: python benchmarks/regression_ablation.py --table A.csv [--table B.csv ...] [--pairs]

Scores on the pooled out-of-fold predictions of leave one architecture out (loao) and leave one
family out (lofo): R^2, MAE (points), Spearman rho; with --pairs also the mean absolute rank error
of a held-out pruner on a held-out architecture (paizoo.regression.evaluate.pair_ranks, slow).
Rows:

* the baselines of leaderboards/regression.md (global density, per-layer named, agnostic mask
  only) with the shipped HGB settings (paizoo.regression.estimator.HGB_PARAMS);
* agnostic with scikit-learn's HGB defaults (unlimited depth, 0.1 x 100, no L2; the previous
  default) and with the shipped settings; agnostic with ridge;
* agnostic, settings chosen by nested cross-validation: inside each outer fold, the setting
  (sklearn defaults or shipped) with the higher inner R^2 of the same split over the training
  architectures is refit on the fold (the picks are printed).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from paizoo.regression import AccuracyDropRegressor, load_table, make_folds
from paizoo.regression.evaluate import cross_predict, pair_ranks, regression_scores
from paizoo.regression.report import markdown_table
from paizoo.regression.schema import TARGET
from paizoo.regression.splits import GROUP_COLUMN

SKLEARN_DEFAULTS = {"max_depth": None, "learning_rate": 0.1, "max_iter": 100,
                    "l2_regularization": 0.0}
SETTINGS = {"sklearn defaults": SKLEARN_DEFAULTS, "shipped": None}
SPLITS = ("loao", "lofo")

Make = Callable[[], AccuracyDropRegressor]
VARIANTS: dict[str, Make] = {
    "global density": lambda: AccuracyDropRegressor(groups="density.global"),
    "per-layer (named)": lambda: AccuracyDropRegressor(groups="per-layer"),
    "agnostic (mask only)": lambda: AccuracyDropRegressor(groups="agnostic-mask"),
    "agnostic, HGB sklearn defaults": lambda: AccuracyDropRegressor(
        groups="agnostic", model_params=SKLEARN_DEFAULTS),
    "agnostic, HGB shipped": lambda: AccuracyDropRegressor(groups="agnostic"),
    "agnostic, ridge": lambda: AccuracyDropRegressor(groups="agnostic", model="ridge"),
}


def nested(table: pd.DataFrame, split: str) -> tuple[np.ndarray, list[str]]:
    """Out-of-fold predictions with the HGB setting picked by inner cross-validation."""
    y = table[TARGET].to_numpy(float)
    pred = np.full(len(table), np.nan)
    picks = []
    for fold in make_folds(table, split):
        train = table.iloc[fold.train].reset_index(drop=True)
        best, best_r2 = "shipped", -np.inf
        if train[GROUP_COLUMN[split]].nunique() >= 2:
            inner = make_folds(train, split)
            for name, params in SETTINGS.items():
                est = AccuracyDropRegressor(groups="agnostic", model_params=params)
                r2 = regression_scores(y[fold.train], cross_predict(est, train, inner))["r2"]
                if r2 > best_r2:
                    best, best_r2 = name, r2
        picks.append(f"{fold.label}: {best}")
        est = AccuracyDropRegressor(groups="agnostic", model_params=SETTINGS[best])
        pred[fold.test] = est.fit(train, y[fold.train]).predict(table.iloc[fold.test])
    return pred, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="append", required=True, help="metrics table (.csv)")
    parser.add_argument("--pairs", action="store_true",
                        help="also the held-out pruner's rank error on held-out architectures")
    args = parser.parse_args()
    table = pd.concat([load_table(t) for t in args.table], ignore_index=True, sort=False)
    y = table[TARGET].to_numpy(float)
    folds = {k: make_folds(table, k) for k in SPLITS}
    print(f"{len(table)} runs from {', '.join(args.table)}: "
          + ", ".join(f"{m} {n}" for m, n in table["model"].value_counts().items()))
    rows = []
    for name, make in [*VARIANTS.items(), ("agnostic, HGB nested choice", None)]:
        t0 = time.perf_counter()
        row: dict[str, object] = {"variant": name}
        for split in SPLITS:
            if make is None:
                pred, picks = nested(table, split)
                print(f"nested picks ({split}): {'; '.join(picks)}")
            else:
                pred = cross_predict(make(), table, folds[split])
            s = regression_scores(y, pred)
            row.update({f"{split} R2": s["r2"], f"{split} MAE": s["mae"],
                        f"{split} rho": s["spearman"]})
        if args.pairs and make is not None:
            pairs, _ = pair_ranks(table, make, progress=False)
            row["pair rank error"] = pairs["abs_error"].mean()
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1,
                                            float_format=lambda v: f"{v:.3f}"), flush=True)
    print()
    print(markdown_table(pd.DataFrame(rows)))


if __name__ == "__main__":
    main()
