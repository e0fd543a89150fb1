"""Building the metrics table: finished runs joined with the cached metrics of their masks.

Runs (one row each) carry ``run_key, dataset, model, pruner, sparsity, seed, accuracy`` (test
accuracy in points), optionally ``config`` (a key of the training configuration) and whatever the
``metrics_for`` function needs (:class:`StoreMetrics`: the run's model, configs, seed and
``mask_path``; a mask file that is absent, as in a committed store, is pruned again). Dense runs
(pruner ``dense``/``none`` or sparsity 0) are the references: the target of a pruned run is

    accuracy_drop = mean test accuracy of the dense runs of the same (dataset, model, config)
                    - the run's test accuracy                                     (points)

Metrics are computed once per (run, metrics version, groups) and cached in the store's SQLite
database, in the table ``mask_metrics`` (long format, owned by paizoo.regression)::

    CREATE TABLE mask_metrics (
        run_key         TEXT NOT NULL,  -- the results store's key of the run
        metrics_version TEXT NOT NULL,  -- paizoo.metrics.VERSION when computed
        groups          TEXT NOT NULL,  -- the metric groups asked for, sorted, ',' joined, or 'all'
        name            TEXT NOT NULL,  -- metric column name, e.g. 'mge.paths.log10'
        value           REAL,           -- NULL for NaN
        computed_at     TEXT NOT NULL,  -- ISO 8601 UTC
        PRIMARY KEY (run_key, metrics_version, groups, name))
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..progress import round_progress
from .errors import RegressionError
from .schema import IDENTIFIERS, TARGET

DENSE_PRUNERS: frozenset[str] = frozenset({"dense", "none"})
RUN_COLUMNS: tuple[str, ...] = ("run_key", *IDENTIFIERS, "accuracy")

CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS mask_metrics (
    run_key         TEXT NOT NULL,
    metrics_version TEXT NOT NULL,
    groups          TEXT NOT NULL,
    name            TEXT NOT NULL,
    value           REAL,
    computed_at     TEXT NOT NULL,
    PRIMARY KEY (run_key, metrics_version, groups, name)
)
"""


def groups_key(groups: Sequence[str] | None) -> str:
    """The cache key of a group selection: ``"all"`` or the sorted names joined by ``,``."""
    return "all" if not groups else ",".join(sorted(set(groups)))


class MetricsCache:
    """The ``mask_metrics`` table of a results database (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(str(self.path), timeout=60)
        self._conn.execute(CACHE_SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> MetricsCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, run_key: str, version: str, groups: str) -> dict[str, float] | None:
        """The cached metrics of one run, or ``None`` if never computed."""
        rows = self._conn.execute(
            "SELECT name, value FROM mask_metrics WHERE run_key = ? AND metrics_version = ? "
            "AND groups = ?", (run_key, version, groups)).fetchall()
        if not rows:
            return None
        return {name: (math.nan if value is None else float(value)) for name, value in rows}

    def get_many(self, version: str, groups: str) -> dict[str, dict[str, float]]:
        """``{run_key: metrics}`` of every run cached for ``version`` and ``groups``."""
        out: dict[str, dict[str, float]] = {}
        for key, name, value in self._conn.execute(
                "SELECT run_key, name, value FROM mask_metrics WHERE metrics_version = ? AND "
                "groups = ?", (version, groups)):
            out.setdefault(key, {})[name] = math.nan if value is None else float(value)
        return out

    def put(self, run_key: str, version: str, groups: str, values: Mapping[str, float]) -> None:
        """Store (replace) the metrics of one run."""
        if not values:
            raise RegressionError(f"no metric values to cache for run {run_key!r}")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._conn:
            self._conn.execute("DELETE FROM mask_metrics WHERE run_key = ? AND "
                               "metrics_version = ? AND groups = ?", (run_key, version, groups))
            self._conn.executemany(
                "INSERT INTO mask_metrics VALUES (?, ?, ?, ?, ?, ?)",
                [(run_key, version, groups, str(k), _sql_float(v), now)
                 for k, v in values.items()])


def _sql_float(v: object) -> float | None:
    f = float(v)  # type: ignore[arg-type]
    return None if math.isnan(f) else f


def is_dense(runs: pd.DataFrame) -> pd.Series:
    """Dense reference runs: pruner ``dense``/``none`` or sparsity 0."""
    return runs["pruner"].astype(str).str.lower().isin(DENSE_PRUNERS) | (runs["sparsity"] == 0)


def accuracy_drops(runs: pd.DataFrame) -> pd.DataFrame:
    """The pruned runs with ``dense_accuracy`` and ``accuracy_drop`` (points) added.

    Pruned runs without a dense run of the same (dataset, model, config) are dropped with a
    warning naming them.
    """
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise RegressionError(f"the runs lack column(s) {missing}; expected {list(RUN_COLUMNS)}")
    key = ["dataset", "model"] + (["config"] if "config" in runs.columns else [])
    dense = is_dense(runs)
    refs = (runs[dense].groupby(key, dropna=False)["accuracy"].mean()
            .rename("dense_accuracy").reset_index())
    pruned = runs[~dense].merge(refs, on=key, how="left")
    lacking = pruned[pruned["dense_accuracy"].isna()]
    if len(lacking):
        combos = sorted({" / ".join(map(str, t)) for t in lacking[key].itertuples(index=False)})
        warnings.warn(
            f"{len(lacking)} pruned run(s) have no dense run of the same {'/'.join(key)} and are "
            f"left out: {'; '.join(combos[:10])}. Run the dense baselines to include them.",
            stacklevel=2)
        pruned = pruned[pruned["dense_accuracy"].notna()]
    pruned = pruned.assign(**{TARGET: pruned["dense_accuracy"] - pruned["accuracy"]})
    return pruned.reset_index(drop=True)


MetricsForRun = Callable[[Mapping[str, Any], "Sequence[str] | None"], Mapping[str, float]]


def build_table(
    runs: pd.DataFrame,
    metrics_for: MetricsForRun,
    *,
    cache: MetricsCache | None = None,
    version: str = "0",
    groups: Sequence[str] | None = None,
    recompute: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per pruned run: identifiers, target, info and the metrics of its mask.

    Args:
        runs: finished runs (see the module docstring), dense references included.
        metrics_for: ``fn(run_row, groups) -> {metric: value}`` computing a run's mask metrics.
        cache: where metrics are looked up first and stored after computing.
        version: the metrics version (part of the cache key).
        groups: metric groups to compute (``None``: all).
        recompute: ignore the cache (and overwrite it).
    """
    table = accuracy_drops(runs)
    gkey = groups_key(groups)
    cached = cache.get_many(version, gkey) if (cache is not None and not recompute) else {}
    rows = table.to_dict("records")
    todo = [row for row in rows if str(row["run_key"]) not in cached]
    computed: dict[str, Mapping[str, float]] = {}
    # a bar on a terminal, a line with an ETA every 10 s in a log (paizoo.progress)
    for row in round_progress(todo, "mask metrics", progress):
        key = str(row["run_key"])
        values = dict(metrics_for(row, list(groups) if groups else None))
        if cache is not None:
            cache.put(key, version, gkey, values)
        computed[key] = values
    metrics = [cached[key] if key in cached else computed[key]
               for key in (str(row["run_key"]) for row in rows)]
    feats = pd.DataFrame(metrics, index=table.index)
    feats = feats[sorted(feats.columns)] if len(feats.columns) else feats
    values = feats.to_numpy(dtype=float)
    infinite = np.isinf(values).any(axis=0)
    if infinite.any():
        cols = [c for c, bad in zip(feats.columns, infinite, strict=True) if bad]
        warnings.warn(f"infinite metric values in {cols} are stored as NaN (missing)",
                      stacklevel=2)
        feats = feats.mask(np.isinf(values))
    clash = [c for c in feats.columns if c in table.columns]
    if clash:
        raise RegressionError(f"metric names {clash} clash with run columns")
    first = [c for c in (*IDENTIFIERS, "config", TARGET, "accuracy", "dense_accuracy", "run_key")
             if c in table.columns]
    out = pd.concat([table[first], feats], axis=1)
    out.insert(len(first), "metrics_version", version)
    sort = [c for c in ("dataset", "model", "pruner", "sparsity", "seed") if c in out.columns]
    return out.sort_values(sort, kind="stable", ignore_index=True)


# ---- the results store (paizoo.results, table ``runs``) -------------------------------------
#: the columns of the store's ``runs`` table read here (paizoo.results.store.MIGRATIONS[0])
STORE_COLUMNS: tuple[str, ...] = (
    "run_key", "dataset", "model", "model_config", "pruner", "pruner_config",
    "prune_data_config", "sparsity", "seed", "train_hash", "train_config", "final_test_acc",
    "kept", "mask_path")


def config_label(name: str, config: Mapping[str, Any] | str | None,
                 implied: tuple[str, ...] = ()) -> str:
    """``name`` plus its config as compact sorted JSON (``random{"distribution":"erk"}``),
    leaving out an empty config and the ``implied`` keys."""
    if isinstance(config, str):
        config = json.loads(config) if config else {}
    config = {k: v for k, v in (config or {}).items() if k not in implied}
    if not config:
        return name
    return name + json.dumps(config, sort_keys=True, separators=(",", ":"))


def runs_from_store(path: str | os.PathLike,
                    datasets: Iterable[str] | None = None) -> pd.DataFrame:
    """The finished runs of a results store, opened **read-only**, as :func:`build_table` wants.

    Accuracies become points (the store holds fractions). ``model`` carries its config when it
    has one (``resnet20{"width":2}``; ``input_size`` left out, the dataset implies it);
    ``pruner`` carries its config when it has one (``random{"distribution":"erk"}``, the label
    ``paizoo rank -o random.distribution=erk`` gives); ``config`` is the training-config hash.
    Extra columns:
    ``model_name``, ``pruner_name``, the decoded configs, ``kept`` and ``mask_path`` for
    :class:`StoreMetrics`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no results store at {path}; run a leaderboard first "
                                "(`paizoo leaderboard run ...`) or pass --db")
    conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=60)
    try:
        have = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        lacking = [c for c in STORE_COLUMNS if c not in have]
        if lacking:
            raise RegressionError(f"{path} has no 'runs' table with columns {lacking}; is it a "
                                  "paizoo results store?")
        sql = f"SELECT {', '.join(STORE_COLUMNS)} FROM runs"
        params: list[str] = []
        if datasets:
            params = list(datasets)
            sql += f" WHERE dataset IN ({', '.join('?' for _ in params)})"
        runs = pd.DataFrame(conn.execute(sql + " ORDER BY rowid", params).fetchall(),
                            columns=list(STORE_COLUMNS))
    finally:
        conn.close()
    if runs.empty:
        where = f" for dataset(s) {', '.join(datasets)}" if datasets else ""
        raise RegressionError(f"{path} holds no finished run{where}")
    runs["model_name"], runs["pruner_name"] = runs["model"], runs["pruner"]
    runs["model"] = [config_label(m, c, implied=("input_size",))  # the dataset implies the size
                     for m, c in zip(runs["model"], runs["model_config"], strict=True)]
    runs["pruner"] = [config_label(p, c) for p, c in zip(runs["pruner"], runs["pruner_config"],
                                                     strict=True)]
    for col in ("model_config", "pruner_config", "prune_data_config", "train_config"):
        runs[col] = [json.loads(c) if isinstance(c, str) and c else None for c in runs[col]]
    runs["accuracy"] = 100.0 * runs.pop("final_test_acc").astype(float)
    runs = runs.rename(columns={"train_hash": "config"})
    runs["mask_path"] = [_resolve_mask(p, path.parent) for p in runs["mask_path"]]
    return runs


def _resolve_mask(mask_path: object, store_dir: Path) -> str | None:
    """The mask file as written by the runner (relative to where it ran), or beside the store."""
    if not isinstance(mask_path, str) or not mask_path:
        return None
    p = Path(mask_path)
    for candidate in (p, store_dir / "masks" / p.name, store_dir / p):
        if candidate.is_file():
            return str(candidate)
    return str(p)


class _LazyData:
    """What :func:`paizoo.training.experiment.prune_for` reads of the experiment data: the
    dataset's info always, its training split only for data-driven pruners (loaded once)."""

    def __init__(self, name: str, root: str | None) -> None:
        from ..data import dataset_info

        self.name, self.root, self.info = name, root, dataset_info(name)
        self._train: Any = None

    @property
    def train(self) -> Any:
        if self._train is None:
            from ..data import load_dataset

            self._train = load_dataset(self.name, split="train", root=self.root)
        return self._train


class StoreMetrics:
    """``metrics_for`` of stored runs: rebuild the model each run pruned (the runner's own
    :func:`paizoo.training.experiment.build_model`: same model, config and seed, hence the same
    initial weights), take its saved mask (or, if the mask file is absent, prune again with the
    runner's :func:`~paizoo.training.experiment.prune_for` from the run's spec; pruning is
    deterministic given the seed, and the rebuilt spec must have the run's key and the mask its
    kept count), and compute :func:`paizoo.metrics.compute`.
    """

    def __init__(self, data_root: str | None = None) -> None:
        self.data_root = data_root
        self._data: dict[str, _LazyData] = {}
        self.repruned = 0

    def data(self, name: str) -> _LazyData:
        if name not in self._data:
            self._data[name] = _LazyData(name, self.data_root)
        return self._data[name]

    def __call__(self, row: Mapping[str, Any], groups: Sequence[str] | None) -> dict[str, float]:
        from types import SimpleNamespace

        from .. import metrics
        from ..masks import Mask
        from ..training.experiment import build_model

        data = self.data(str(row["dataset"]))
        spec = SimpleNamespace(model=str(row.get("model_name", row["model"])),
                               seed=int(row["seed"]),
                               model_config=dict(row.get("model_config") or {}))
        model = build_model(spec, data.info)  # type: ignore[arg-type]  # model/seed/config
        path = row.get("mask_path")
        if isinstance(path, str) and Path(path).is_file():
            mask = Mask.load(path, model)
        else:
            mask = self.reprune(row, model, data)
        shape = tuple(data.info.input_shape)
        if groups:
            return metrics.compute(model, mask, shape, groups=list(groups))
        return metrics.compute(model, mask, shape)

    def reprune(self, row: Mapping[str, Any], model: Any, data: _LazyData) -> Any:
        """The run's mask, pruned again from its spec (checked against the run's key and kept
        count)."""
        from ..results import RunSpec
        from ..training.config import PruneDataConfig, TrainConfig
        from ..training.experiment import prune_for

        prune_data = row.get("prune_data_config")
        spec = RunSpec(
            dataset=str(row["dataset"]), model=str(row.get("model_name", row["model"])),
            pruner=str(row.get("pruner_name", row["pruner"])), sparsity=float(row["sparsity"]),
            seed=int(row["seed"]), train=TrainConfig.from_dict(row.get("train_config") or {}),
            model_config=dict(row.get("model_config") or {}),
            pruner_config=dict(row.get("pruner_config") or {}),
            prune_data=PruneDataConfig.from_dict(prune_data) if prune_data else None)
        if spec.key != row["run_key"]:
            raise RegressionError(
                f"the mask of run {row['run_key']} is missing and its spec cannot be rebuilt "
                f"from the store (rebuilt key {spec.key}); restore the mask file "
                f"{row.get('mask_path')}")
        mask, _ = prune_for(spec, model, data)  # type: ignore[arg-type]  # reads train/info
        kept = row.get("kept")
        if kept is not None and not (isinstance(kept, float) and math.isnan(kept)) \
                and mask.num_kept != int(kept):
            raise RegressionError(
                f"run {row['run_key']}: pruning again kept {mask.num_kept} weights, the run "
                f"kept {int(kept)}; the pruner changed since the run, restore its mask file")
        self.repruned += 1
        return mask


def metrics_version() -> str:
    """``paizoo.metrics.VERSION`` if the metrics package defines one, else paizoo's version."""
    from .. import __version__

    try:
        from .. import metrics
    except ImportError:  # pragma: no cover - the metrics package ships with paizoo
        return __version__
    return str(getattr(metrics, "VERSION", __version__))


def build_from_store(
    db: str | os.PathLike,
    *,
    datasets: Iterable[str] | None = None,
    groups: Sequence[str] | None = None,
    recompute: bool = False,
    metrics_for: MetricsForRun | None = None,
    version: str | None = None,
    data_root: str | None = None,
    progress: bool | None = None,
    agnostic: bool = True,
) -> pd.DataFrame:
    """``paizoo regress build``: every finished run of the store joined with its mask metrics
    (computed once, cached in the store's ``mask_metrics`` table; see :class:`StoreMetrics`),
    plus the architecture-agnostic columns and ``family`` (:func:`with_agnostic`) unless
    ``agnostic=False``."""
    runs = runs_from_store(db, datasets)
    version = version or metrics_version()
    with MetricsCache(db) as cache:
        table = build_table(runs, metrics_for or StoreMetrics(data_root), cache=cache,
                            version=version, groups=groups, recompute=recompute,
                            progress=progress)
    return with_agnostic(table) if agnostic else table


def with_agnostic(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (rows of zoo models) with the architecture-agnostic columns of
    :mod:`paizoo.regression.agnostic` and a ``family`` column added; each model label is built
    once for its dataset to read its layer order and descriptors."""
    from .agnostic import add_agnostic_columns, layouts_for_table

    return add_agnostic_columns(table, layouts_for_table(table))
