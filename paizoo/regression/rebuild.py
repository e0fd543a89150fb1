"""Rebuilding the regression from the committed stores in one call (``paizoo regress rebuild``).

:func:`rebuild` runs, in order, what ``paizoo regress build``, ``eval`` and ``train`` do one at a
time:

1. for each :class:`Source` (a results store, its dataset and the metrics table it gives): build
   the metrics table (mask metrics cached in the store's ``mask_metrics`` table, so a second
   rebuild only computes the runs that are new) and write it with its column definitions; the
   next steps read the tables back as written (8 significant digits), so ``paizoo regress eval``
   / ``train`` on the written tables give the same numbers;
2. evaluate on the concatenated tables (leave one architecture / family / pruner out, random
   K-fold, ranks of held-out pruners on held-out architectures) and write the report, headed by
   the command;
3. train the shipped predictor on the same rows, with its validity domain and the interval
   calibration of each split, and save it.

:data:`DEFAULT_SOURCES` are the stores of the committed leaderboards: the multi-architecture
corpus (``leaderboards/fashion-mnist-archs.yaml``) and the 2-architecture Fashion-MNIST
leaderboard (another recipe; the target is always the drop against the dense run of the same
recipe).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import RegressionError


@dataclass(frozen=True)
class Source:
    """A results store, the dataset of its runs, and the metrics table written from it."""

    store: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, text: str) -> Source:
        """``STORE:DATASET:TABLE`` (as ``paizoo regress rebuild --source`` takes it)."""
        parts = text.split(":")
        if len(parts) != 3 or not all(parts):
            raise RegressionError(
                f"--source {text!r}: expected STORE:DATASET:TABLE, e.g. "
                "leaderboards/fashion-mnist-archs.db:fashion-mnist:"
                "leaderboards/fashion-mnist-archs-metrics.csv")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.store}:{self.dataset}:{self.table}"


DEFAULT_SOURCES: tuple[Source, ...] = (
    Source("leaderboards/fashion-mnist-archs.db", "fashion-mnist",
           "leaderboards/fashion-mnist-archs-metrics.csv"),
    Source("leaderboards/fashion-mnist.db", "fashion-mnist",
           "leaderboards/fashion-mnist-metrics.csv"),
)
DEFAULT_REPORT = "leaderboards/regression.md"
DEFAULT_PREDICTOR = "paizoo/regression/predictors/default.skops"


def write_table(table: pd.DataFrame, out_path: str | os.PathLike) -> Path:
    """Write a metrics table (``.csv``) and its column definitions (``<table>.features.json``,
    :func:`paizoo.regression.agnostic.feature_definitions`); returns the definitions' path."""
    from .agnostic import feature_definitions, layouts_for_table

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False, float_format="%.8g")
    layers = [p for lay in layouts_for_table(table).values() for p in lay.params]
    side = out.with_suffix(".features.json")
    side.write_text(json.dumps(feature_definitions(table.columns, layers), indent=1) + "\n")
    return side


@dataclass
class RebuildResult:
    """What :func:`rebuild` wrote, and the seconds each step took."""

    tables: list[Path]
    report: Path
    predictor: Path | None
    seconds: dict[str, float] = field(default_factory=dict)


def rebuild(
    sources: Sequence[Source] = DEFAULT_SOURCES,
    *,
    report: str | os.PathLike = DEFAULT_REPORT,
    predictor: str | os.PathLike | None = DEFAULT_PREDICTOR,
    command: str = "paizoo regress rebuild",
    note: str = "",
    data_root: str | None = None,
    progress: bool | None = None,
    log: bool = True,
) -> RebuildResult:
    """Build every source's metrics table, write the report and train the predictor (see the
    module docstring). ``command`` heads the report and is stored in the predictor as the command
    that retrains it; ``note`` is put after the report's data summary and stored in the
    predictor's validity domain."""
    from .build import build_from_store
    from .evaluate import evaluate
    from .report import write_report
    from .schema import load_table
    from .train import train_predictor

    if not sources:
        raise RegressionError("give at least one source (STORE:DATASET:TABLE)")
    seconds: dict[str, float] = {}
    tables, paths = [], []
    for src in sources:
        t0 = time.perf_counter()
        table = build_from_store(src.store, datasets=[src.dataset], data_root=data_root,
                                 progress=progress)
        write_table(table, src.table)
        seconds[f"build {src.table}"] = time.perf_counter() - t0
        # evaluate and train on the tables as written, so that `paizoo regress eval/train` on
        # the committed tables reproduce the report and the predictor exactly
        tables.append(load_table(src.table))
        paths.append(Path(src.table))
        _say(log, f"{len(table)} runs from {src.store} -> {src.table} "
                  f"({seconds[f'build {src.table}']:.0f} s)")
    table = pd.concat(tables, ignore_index=True, sort=False)
    t0 = time.perf_counter()
    ev = evaluate(table, progress=progress)
    report = write_report(ev, report, plot_path=Path(report).with_suffix(".png"),
                          source=", ".join(map(str, paths)), command=command,
                          preamble=[note] if note else ())
    seconds["evaluate + report"] = time.perf_counter() - t0
    _say(log, f"report written to {report} ({seconds['evaluate + report']:.0f} s)")
    out = None
    if predictor is not None:
        t0 = time.perf_counter()
        pred = train_predictor(table, groups="agnostic", table_path=[str(p) for p in paths],
                               command=command, note=note, out=predictor)
        out = pred.path
        seconds["train"] = time.perf_counter() - t0
        _say(log, f"predictor written to {out} ({seconds['train']:.0f} s)")
    return RebuildResult(tables=paths, report=Path(report), predictor=out, seconds=seconds)


def _say(log: bool, text: str) -> None:
    if log:
        print(text, flush=True)
