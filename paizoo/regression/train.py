"""Training a predictor on a metrics table and recording its range of validity."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .estimator import AccuracyDropRegressor
from .evaluate import cross_predict, regression_scores
from .persistence import Predictor, save_predictor
from .schema import TARGET, GroupSpec, as_group_list, validate_table
from .splits import SPLITS, available_splits, make_folds

#: the command that retrains the shipped predictor (``paizoo/regression/predictors/``)
RETRAIN_COMMAND = ("paizoo regress train --table leaderboards/fashion-mnist-metrics.csv "
                   "--out paizoo/regression/predictors/default.skops")


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_table(table: pd.DataFrame, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """What a predictor was trained on: sizes, datasets, models, pruners, sparsity range."""
    info: dict[str, Any] = {
        "rows": len(table),
        "datasets": sorted(map(str, table["dataset"].unique())),
        "models": sorted(map(str, table["model"].unique())),
        "pruners": sorted(map(str, table["pruner"].unique())),
        "sparsity_range": [float(table["sparsity"].min()), float(table["sparsity"].max())],
        "accuracy_drop_range": [float(table[TARGET].min()), float(table[TARGET].max())],
        "seeds": int(table["seed"].nunique()),
    }
    if "metrics_version" in table.columns:
        info["metrics_versions"] = sorted(map(str, table["metrics_version"].dropna().unique()))
    if path is not None:
        info["table"] = str(path)
        info["table_sha256"] = file_sha256(path)
    return info


def train_predictor(
    table: pd.DataFrame,
    *,
    groups: GroupSpec = "all",
    model: str = "hgb",
    random_state: int = 0,
    table_path: str | os.PathLike | None = None,
    command: str = "",
    validate: Sequence[str] = ("lopo", "kfold"),
    out: str | os.PathLike | None = None,
) -> Predictor:
    """Fit an :class:`AccuracyDropRegressor` on all of ``table``, measure its error by
    cross-validation (``validate`` splits, pooled out-of-fold scores) and optionally save it.

    The info records the training data (:func:`describe_table`), the validated R^2 / MAE /
    Spearman per split, the groups, model and the retraining ``command``.
    """
    import sklearn

    from .. import __version__

    table = validate_table(table).reset_index(drop=True)
    est = AccuracyDropRegressor(groups=as_group_list(groups), model=model,
                                random_state=random_state)
    validation: dict[str, dict[str, float]] = {}
    for kind in available_splits(table, tuple(validate)):
        pred = cross_predict(est, table, make_folds(table, kind, random_state=random_state))
        validation[SPLITS[kind]] = regression_scores(table[TARGET].to_numpy(float), pred)
    est.fit(table)
    info = {
        "trained_on": describe_table(table, table_path),
        "validation": validation,
        "groups": as_group_list(groups),
        "model": model,
        "n_features": int(est.n_features_in_),
        "metrics_groups": est.metrics_groups_,
        "command": command,
        "paizoo_version": __version__,
        "sklearn_version": sklearn.__version__,
    }
    predictor = Predictor(estimator=est, info=info)
    if out is not None:
        predictor.path = save_predictor(est, out, info)
        predictor.path = Path(predictor.path)
    return predictor
