"""What identifies a run (:class:`RunSpec`) and what a finished run records (:class:`RunRecord`)."""

from __future__ import annotations

import functools
import json
import math
import platform
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..training.config import PruneDataConfig, TrainConfig, canonical_json, short_hash

#: pruner name of the unpruned baseline (sparsity 0); handled by the runner, not a registry pruner
DENSE = "dense"


def _normalise_sparsity(sparsity: float) -> float:
    value = float(sparsity)
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return round(value, 10)


@dataclass(frozen=True)
class RunSpec:
    """One cell x seed of a leaderboard: everything that determines a run's result.

    Two specs with equal fields are the same run, and :attr:`key` (a hash of them) is its
    primary key in the results store. ``prune_data`` is ``None`` for data-free pruners and the
    dense baseline, so changing the pruning-data settings does not invalidate their runs.
    """

    dataset: str
    model: str
    pruner: str
    sparsity: float
    seed: int
    train: TrainConfig
    model_config: Mapping[str, Any] = field(default_factory=dict)
    pruner_config: Mapping[str, Any] = field(default_factory=dict)
    prune_data: PruneDataConfig | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", _normalise_sparsity(self.sparsity))
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "model_config", dict(self.model_config))
        object.__setattr__(self, "pruner_config", dict(self.pruner_config))
        if self.pruner == DENSE and self.sparsity != 0.0:
            raise ValueError("the dense baseline has sparsity 0")
        if self.pruner != DENSE and self.sparsity == 0.0:
            raise ValueError(f"pruner {self.pruner!r} needs a sparsity > 0 (use pruner 'dense' "
                             "for the unpruned baseline)")

    @property
    def is_dense(self) -> bool:
        return self.pruner == DENSE

    def identity(self) -> dict[str, Any]:
        """The canonical fields that define the run (hashed into :attr:`key`)."""
        return {
            "dataset": self.dataset,
            "model": self.model,
            "model_config": self.model_config,
            "pruner": self.pruner,
            "pruner_config": self.pruner_config,
            "prune_data": self.prune_data.to_dict() if self.prune_data else None,
            "sparsity": self.sparsity,
            "seed": self.seed,
            "train_hash": self.train.hash(),
        }

    @property
    def key(self) -> str:
        """16-hex-digit run key (SHA-256 of :meth:`identity`); also names the mask file."""
        return short_hash(self.identity(), 16)

    def dense_reference(self) -> RunSpec:
        """The dense run this run is compared with (same dataset, model, seed and training)."""
        return RunSpec(dataset=self.dataset, model=self.model, pruner=DENSE, sparsity=0.0,
                       seed=self.seed, train=self.train, model_config=self.model_config)

    def describe(self) -> str:
        extra = f" {canonical_json(self.pruner_config)}" if self.pruner_config else ""
        level = "" if self.is_dense else f" s={self.sparsity:g}"
        return f"{self.dataset}/{self.model} {self.pruner}{extra}{level} seed={self.seed}"


@dataclass
class RunRecord:
    """One finished run, as stored in the ``runs`` table (accuracies are fractions in [0, 1]).

    ``dense_test_acc`` is the final test accuracy of the matching dense run
    (:meth:`RunSpec.dense_reference`) when it was in the store as this run finished (the
    runner trains the dense baselines first), else ``None``.

    ``status`` is ``"ok"``, or ``"diverged"`` when the training loss became NaN/inf: training
    stopped at ``diverged_epoch`` / ``diverged_step`` (1-based; the step counts optimiser steps
    across epochs), and the losses of that epoch are ``None`` (SQLite stores no NaN).
    """

    run_key: str
    dataset: str
    model: str
    model_config: dict[str, Any]
    pruner: str
    pruner_config: dict[str, Any]
    prune_data_config: dict[str, Any] | None
    sparsity: float
    seed: int
    train_hash: str
    train_config: dict[str, Any]
    final_test_acc: float
    best_test_acc: float
    best_epoch: int
    final_train_acc: float
    final_train_loss: float
    final_test_loss: float
    dense_test_acc: float | None
    density: float
    kept: int
    total: int
    layer_densities: dict[str, float]
    layer_collapse: bool
    collapsed_layers: list[str]
    prune_time_s: float
    train_time_s: float
    eval_time_s: float
    epochs: int
    history: list[dict[str, Any]]
    mask_path: str | None
    log_path: str | None
    device: str
    versions: dict[str, str]
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))
    status: str = "ok"
    diverged_epoch: int | None = None
    diverged_step: int | None = None

    JSON_FIELDS = ("model_config", "pruner_config", "prune_data_config", "train_config",
                   "layer_densities", "collapsed_layers", "history", "versions")

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        for name in self.JSON_FIELDS:
            row[name] = canonical_json(row[name]) if name in (
                "model_config", "pruner_config", "prune_data_config") else json.dumps(
                row[name], sort_keys=True, default=str)
        row["layer_collapse"] = int(self.layer_collapse)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        data = {k: row[k] for k in row.keys() if k in names}
        for name in cls.JSON_FIELDS:
            data[name] = json.loads(data[name]) if data.get(name) is not None else None
        data["layer_collapse"] = bool(data["layer_collapse"])
        return cls(**data)

    @property
    def diverged(self) -> bool:
        """Whether training stopped on a non-finite loss (see ``status``)."""
        return self.status == "diverged"

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """Versions of paizoo, torch, numpy, Python and the platform (plus the git commit of the
    paizoo source tree when it is a git checkout)."""
    import numpy
    import torch

    from .. import __version__

    out = {"paizoo": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
           "python": platform.python_version(), "platform": platform.platform(terse=True)}
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True, timeout=10, check=False)
            if commit.returncode == 0 and commit.stdout.strip():
                out["git"] = commit.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return out
