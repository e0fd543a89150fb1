"""Training a predictor on a metrics table and recording its range of validity."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .conformal import DEFAULT_COVERAGE, calibrate
from .estimator import AccuracyDropRegressor
from .evaluate import cross_predict, regression_scores
from .persistence import Predictor, save_predictor
from .schema import TARGET, GroupSpec, as_group_list, validate_table
from .splits import SPLITS, available_splits, make_folds, split_kind

#: the command that rebuilds the metrics tables, the report and the shipped predictor
#: (``paizoo/regression/predictors/``) from the committed stores (:mod:`.rebuild`)
RETRAIN_COMMAND = "paizoo regress rebuild"


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe_table(table: pd.DataFrame,
                   path: str | os.PathLike | Sequence[str | os.PathLike] | None = None
                   ) -> dict[str, Any]:
    """What a predictor was trained on: sizes, datasets, models, pruners, sparsity range, and
    (from ``arch.*`` columns) each model's architecture descriptors."""
    info: dict[str, Any] = {
        "rows": len(table),
        "datasets": sorted(map(str, table["dataset"].unique())),
        "models": sorted(map(str, table["model"].unique())),
        "pruners": sorted(map(str, table["pruner"].unique())),
        "sparsity_range": [float(table["sparsity"].min()), float(table["sparsity"].max())],
        "accuracy_drop_range": [float(table[TARGET].min()), float(table[TARGET].max())],
        "seeds": int(table["seed"].nunique()),
    }
    if "family" in table.columns:
        info["families"] = sorted(map(str, table["family"].unique()))
    arch = sorted(c for c in table.columns if str(c).startswith("arch."))
    if arch:  # what `paizoo rank` compares a request's model with (same name, same network?)
        info["architectures"] = model_architectures(table, arch)
    shapes = {}
    for ds in info["datasets"]:
        try:
            from ..data import dataset_info

            shapes[ds] = list(dataset_info(ds).input_shape)
        except Exception:  # a dataset paizoo does not know: shape unknown
            shapes[ds] = None
    info["input_shapes"] = shapes
    if "metrics_version" in table.columns:
        info["metrics_versions"] = sorted(map(str, table["metrics_version"].dropna().unique()))
    if path is not None:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        info["table"] = ", ".join(map(str, paths))
        info["table_sha256"] = ", ".join(file_sha256(p) for p in paths)
    return info


def model_architectures(table: pd.DataFrame, arch: Sequence[str]
                        ) -> dict[str, dict[str, float] | list[dict[str, float]]]:
    """Each model's ``arch.*`` descriptors: one dict, or a list of the distinct ones when the
    table holds several networks under one model label (e.g. the same zoo model built for two
    datasets' input sizes); NaN values are left out."""
    out: dict[str, dict[str, float] | list[dict[str, float]]] = {}
    for model, rows in table.groupby("model", sort=True):
        distinct: list[dict[str, float]] = []
        for row in rows[list(arch)].drop_duplicates().itertuples(index=False):
            d = {c: float(v) for c, v in zip(arch, row, strict=True) if pd.notna(v)}
            if d not in distinct:
                distinct.append(d)
        out[str(model)] = distinct[0] if len(distinct) == 1 else distinct
    return out


def rank_scores(table: pd.DataFrame, pred: Any) -> dict[str, float]:
    """How well out-of-fold predictions ``pred`` order the pruners (the ranking ``paizoo rank``
    prints), where R^2 / Spearman over all rows mostly measure the order of the sparsities:
    ``rank_tau_mean``, Kendall tau-b between the pruners ranked by predicted and by actual drop
    averaged over the sparsities every pruner has, mean over (dataset, model, config);
    ``rank_tau_per_sparsity``, the same per sparsity, mean over (dataset, model, config,
    sparsity) (:func:`paizoo.regression.evaluate.ranking_rows`); ``{}`` with one pruner."""
    import numpy as np

    from .evaluate import ranking_rows

    pred = np.asarray(pred, dtype=float)
    ok = np.isfinite(pred)
    rows = pd.DataFrame(ranking_rows(table[ok].reset_index(drop=True), pred[ok], "-"))
    if not len(rows):
        return {}
    mean = rows["sparsity"].astype(str) == "mean"
    return {"rank_tau_mean": float(rows.loc[mean, "kendall_tau"].mean()),
            "rank_tau_per_sparsity": float(rows.loc[~mean, "kendall_tau"].mean())}


def train_predictor(
    table: pd.DataFrame,
    *,
    groups: GroupSpec = "all",
    model: str = "hgb",
    random_state: int = 0,
    table_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    command: str = "",
    validate: Sequence[str] = ("lopo", "loao", "lofo", "kfold"),
    coverage: float = DEFAULT_COVERAGE,
    note: str = "",
    out: str | os.PathLike | None = None,
) -> Predictor:
    """Fit an :class:`AccuracyDropRegressor` on all of ``table``, measure its error by
    cross-validation (``validate`` splits, pooled out-of-fold scores) and optionally save it.

    The info records the training data and validity domain (:func:`describe_table`, plus the
    date and ``note``), the validated R^2 / MAE / Spearman per split (with
    :func:`rank_scores`, how well it orders the pruners), the interval calibration of each split
    (:func:`paizoo.regression.conformal.calibrate` on its out-of-fold residuals, at
    ``coverage``), the groups, model and the retraining ``command``.
    """
    from datetime import datetime, timezone

    import sklearn

    from .. import __version__

    table = validate_table(table).reset_index(drop=True)
    est = AccuracyDropRegressor(groups=as_group_list(groups), model=model,
                                random_state=random_state)
    validation: dict[str, dict[str, float]] = {}
    calibration: dict[str, dict[str, Any]] = {}
    y = table[TARGET].to_numpy(float)
    for kind in available_splits(table, tuple(map(split_kind, validate))):
        pred = cross_predict(est, table, make_folds(table, kind, random_state=random_state))
        validation[SPLITS[kind]] = {**regression_scores(y, pred), **rank_scores(table, pred)}
        calibration[kind] = calibrate(y, pred, split=kind, coverage=coverage).to_dict()
    est.fit(table)
    trained_on = describe_table(table, table_path)
    trained_on["date"] = datetime.now(timezone.utc).date().isoformat()
    if note:
        trained_on["note"] = note
    info = {
        "trained_on": trained_on,
        "calibration": calibration,
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
