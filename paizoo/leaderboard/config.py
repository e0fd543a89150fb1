"""Leaderboard configurations: a YAML grid of models x pruners x sparsities x seeds.

Example (``leaderboards/quick.yaml``)::

    name: quick
    dataset: fashion-mnist
    fallback_dataset: digits        # used, with a notice, when fashion-mnist is not installed
    models:
      - {name: lenet_300_100, label: LeNet-300-100}
    pruners:
      - {label: random (ERK), name: random, config: {distribution: erk}}
      - {label: magnitude, name: magnitude}
    sparsities: [0.9, 0.99]
    seeds: [0]
    train: {epochs: 2, batch_size: 128, lr: 0.1, schedule: cosine}
    pruning_data: {batch_size: 256, samples_per_class: 10}

Keys: ``name`` (default: the file name), ``description``, ``dataset``, ``fallback_dataset``
(used with a notice when ``dataset`` is not installed), ``fallback_train`` (training overrides
that apply on the fallback, e.g. more epochs for a tiny dataset), ``data_root``, ``store``
(default ``runs/paizoo.db``), ``models`` (each ``name``, optional ``label``, ``config`` = model
keyword arguments, ``train`` = overrides of the training config for this model, ``resources`` =
what one run needs on a cluster worker, ``{cpus: 1, gpus: 0.25}``, default one CPU and no GPU;
fractions of a GPU let small models share one; not part of a run's identity), ``pruners``
(each ``name``, optional ``label``, ``config`` = pruner options, which may include the
:func:`paizoo.prune` keywords ``cover``, ``include`` and ``exclude``, and ``models`` = the model
names or labels it applies to, default all; e.g. a pruner defined for Linear layers only),
``sparsities`` (in (0, 1)),
``seeds``, ``dense`` (add the unpruned baseline, default true), ``train``
(:class:`~paizoo.training.TrainConfig`), ``pruning_data``
(:class:`~paizoo.training.PruneDataConfig`), ``notes`` (a list of sentences rendered under
"Notes", e.g. the cause of an anomaly), ``order`` (the order runs are run in, see
:meth:`LeaderboardConfig.specs`: ``grid``, the default, or ``interleaved``). A model entry may
also give its architecture ``family`` (e.g. ``mlp``, ``cnn``, ``resnet``; for zoo models it must
match ``paizoo.models.MODEL_FAMILIES``, which :meth:`LeaderboardConfig.family_of` falls back
to). Unknown keys are errors.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..results.record import DENSE, RunSpec
from ..results.store import DEFAULT_STORE
from ..training.config import (
    ConfigError,
    PruneDataConfig,
    TrainConfig,
    canonical_json,
    from_mapping,
)
from .executor import Resources


@dataclass(frozen=True)
class ModelEntry:
    """A model of the grid: registry ``name``, display ``label``, keyword ``config``,
    ``train`` overrides of the grid's training configuration (e.g. another weight decay), the
    ``resources`` one of its runs asks an executor for (``{cpus: 1, gpus: 0.25}``) and its
    architecture ``family`` (optional; zoo models have one in ``paizoo.models.MODEL_FAMILIES``)."""

    name: str
    label: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, Any] = field(default_factory=dict)
    family: str = ""

    def __post_init__(self) -> None:
        _require_str(self.name, "models[].name")
        if not isinstance(self.family, str):
            raise ConfigError(f"models[{self.name}].family: expected a string, got "
                              f"{self.family!r}")
        from ..models import MODEL_FAMILIES

        known = MODEL_FAMILIES.get(self.name.lower())
        if self.family and known and self.family != known:
            raise ConfigError(f"models[{self.name}].family: {self.family!r} contradicts the "
                              f"zoo's family {known!r} for {self.name}; remove the key or use "
                              f"{known!r}")
        object.__setattr__(self, "label", str(self.label or self.name))
        _require_mapping(self.config, f"models[{self.name}].config")
        _require_mapping(self.train, f"models[{self.name}].train")
        object.__setattr__(self, "config", dict(self.config))
        object.__setattr__(self, "train", dict(self.train))
        object.__setattr__(self, "resources", _resources(self.resources,
                                                         f"models[{self.name}].resources"))


@dataclass(frozen=True)
class PrunerEntry:
    """A pruner of the grid: registry ``name``, display ``label``, constructor ``config``, and
    the ``models`` (names or labels) it runs on; empty means every model of the grid."""

    name: str
    label: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require_str(self.name, "pruners[].name")
        if self.name.lower() == DENSE:
            raise ConfigError("pruners: 'dense' is not a pruner; the unpruned baseline is added "
                              "by `dense: true` (the default)")
        object.__setattr__(self, "label", str(self.label or self.name))
        _require_mapping(self.config, f"pruners[{self.label}].config")
        object.__setattr__(self, "config", dict(self.config))
        models = self.models
        if isinstance(models, str) or not isinstance(models, (list, tuple)) or not all(
                isinstance(m, str) and m.strip() for m in models):
            raise ConfigError(f"pruners[{self.label}].models: expected a list of model names "
                              f"or labels, got {models!r}")
        object.__setattr__(self, "models", tuple(models))

    def applies_to(self, model: ModelEntry) -> bool:
        """Whether this pruner runs on ``model`` (by name or label; all models when unset)."""
        return not self.models or model.name in self.models or model.label in self.models


@dataclass(frozen=True)
class LeaderboardConfig:
    """A parsed, validated leaderboard grid (see the module docstring for the YAML keys)."""

    name: str
    dataset: str
    models: tuple[ModelEntry, ...]
    pruners: tuple[PrunerEntry, ...]
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    train: TrainConfig = field(default_factory=TrainConfig)
    pruning_data: PruneDataConfig = field(default_factory=PruneDataConfig)
    dense: bool = True
    fallback_dataset: str | None = None
    fallback_train: Mapping[str, Any] = field(default_factory=dict)
    data_root: str | None = None
    store: str = str(DEFAULT_STORE)
    description: str = ""
    notes: tuple[str, ...] = ()
    #: the YAML file it came from (``None`` when built in code) and its text
    path: Path | None = None
    source: str | None = None

    order: str = "grid"

    DENSE_LABEL = "dense"
    ORDERS = ("grid", "interleaved")

    def __post_init__(self) -> None:
        _require_str(self.name, "name")
        _require_str(self.dataset, "dataset")
        if not self.models:
            raise ConfigError("models: list at least one model")
        if not self.pruners and not self.dense:
            raise ConfigError("pruners: list at least one pruner (or keep dense: true)")
        labels = [p.label for p in self.pruners]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes or self.DENSE_LABEL in labels:
            raise ConfigError(f"pruners: labels must be unique and not 'dense'; repeated: "
                              f"{dupes or ['dense']}")
        identities = [(p.name.lower(), canonical_json(p.config)) for p in self.pruners]
        if len(set(identities)) != len(identities):
            raise ConfigError("pruners: two entries have the same name and config")
        model_labels = [m.label for m in self.models]
        if len(set(model_labels)) != len(model_labels):
            raise ConfigError(f"models: labels must be unique, got {model_labels}")
        known = {m.name for m in self.models} | set(model_labels)
        for p in self.pruners:
            missing = [m for m in p.models if m not in known]
            if missing:
                raise ConfigError(
                    f"pruners[{p.label}].models: {', '.join(map(repr, missing))} is not a model "
                    f"of this grid; use one of the names or labels {sorted(known)}")
        for s in self.sparsities:
            if not (isinstance(s, (int, float)) and not isinstance(s, bool)
                    and math.isfinite(s) and 0.0 < s < 1.0):
                raise ConfigError(f"sparsities: each must be a number in (0, 1), got {s!r}")
        if self.pruners and not self.sparsities:
            raise ConfigError("sparsities: list at least one sparsity")
        if len(set(self.sparsities)) != len(self.sparsities):
            raise ConfigError(f"sparsities: repeated values in {list(self.sparsities)}")
        object.__setattr__(self, "sparsities", tuple(sorted(float(s) for s in self.sparsities)))
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                     for s in self.seeds):
            raise ConfigError(f"seeds: a non-empty list of integers, got {list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: repeated values in {list(self.seeds)}")
        if not all(isinstance(n, str) and n.strip() for n in self.notes):
            raise ConfigError(f"notes: a list of non-empty strings, got {list(self.notes)}")
        object.__setattr__(self, "notes", tuple(" ".join(n.split()) for n in self.notes))
        if self.order not in self.ORDERS:
            raise ConfigError(f"order: must be one of {', '.join(self.ORDERS)}, got "
                              f"{self.order!r}")
        _require_mapping(self.fallback_train, "fallback_train")
        object.__setattr__(self, "fallback_train", dict(self.fallback_train))
        if self.fallback_train and not self.fallback_dataset:
            raise ConfigError("fallback_train is only used with a fallback_dataset")
        for m in self.models:  # validate the overrides now
            self.train_for(m)
            if self.fallback_dataset:
                self.train_for(m, self.fallback_dataset)

    # ---- derived --------------------------------------------------------------------------
    def train_for(self, model: ModelEntry, dataset: str | None = None) -> TrainConfig:
        """The training configuration of ``model`` on ``dataset``: the grid's ``train``, then
        ``fallback_train`` when ``dataset`` is the fallback, then the model's overrides."""
        fallback = (dataset is not None and dataset == self.fallback_dataset
                    and dataset != self.dataset)
        if not model.train and not (fallback and self.fallback_train):
            return self.train
        merged = self.train.to_dict()
        if fallback:
            merged.update(self.fallback_train)
        merged.update(model.train)
        where = f"models[{model.label}].train" + (" with fallback_train" if fallback else "")
        return TrainConfig.from_dict(merged, where=where)

    def cells(self) -> list[tuple[ModelEntry, PrunerEntry | None, float]]:
        """``(model, pruner or None for dense, sparsity)`` for every cell of the grid."""
        out: list[tuple[ModelEntry, PrunerEntry | None, float]] = []
        for m in self.models:
            if self.dense:
                out.append((m, None, 0.0))
            for s in self.sparsities:
                out.extend((m, p, s) for p in self.pruners if p.applies_to(m))
        return out

    def family_of(self, model: ModelEntry) -> str | None:
        """``model``'s architecture family: its ``family`` key, else the zoo's, else ``None``."""
        from ..models import MODEL_FAMILIES

        return model.family or MODEL_FAMILIES.get(model.name.lower())

    def run_order(self) -> list[tuple[ModelEntry, PrunerEntry | None, float]]:
        """:meth:`cells` in the order :meth:`specs` runs them within one seed.

        ``grid``: model by model (dense first, then sparsity by sparsity, every pruner).
        ``interleaved``: every model's dense run first; then one sparsity at a time, in
        :func:`spread_order` (the middle sparsity, then the ends, then the gaps between), and
        within a sparsity pruner by pruner, every model: a grid stopped part-way (or split into
        shards) has covered every model and pruner at a few sparsities, not a few models at all.
        """
        if self.order == "grid":
            return self.cells()
        out: list[tuple[ModelEntry, PrunerEntry | None, float]] = []
        if self.dense:
            out.extend((m, None, 0.0) for m in self.models)
        for s in spread_order(self.sparsities):
            for p in self.pruners:
                out.extend((m, p, s) for m in self.models if p.applies_to(m))
        return out

    def specs(self, dataset: str | None = None,
              requires_data: Mapping[str, bool] | None = None) -> list[RunSpec]:
        """Every run of the grid, seed-major (all of seed 0 first), each seed's runs in
        :meth:`run_order` (dense baselines first).

        Args:
            dataset: the dataset actually used (default :attr:`dataset`).
            requires_data: ``{pruner name: needs data}``; pruners that do not need data get
                ``prune_data=None`` in their spec. Looked up in the registry when omitted.
        """
        dataset = dataset or self.dataset
        if requires_data is None:
            requires_data = self.pruner_requirements()
        out = []
        for seed in self.seeds:
            for m, p, s in self.run_order():
                train = self.train_for(m, dataset)
                if p is None:
                    out.append(RunSpec(dataset=dataset, model=m.name, pruner=DENSE, sparsity=0.0,
                                       seed=seed, train=train, model_config=m.config))
                else:
                    needs = requires_data.get(p.name.lower(), True)
                    out.append(RunSpec(dataset=dataset, model=m.name, pruner=p.name.lower(),
                                       sparsity=s, seed=seed, train=train, model_config=m.config,
                                       pruner_config=p.config,
                                       prune_data=self.pruning_data if needs else None))
        return out

    def pruner_requirements(self) -> dict[str, bool]:
        """``{pruner name: requires data}``; raises naming every unknown pruner."""
        from ..errors import UnknownPrunerError
        from ..pruners import get_pruner_class, list_pruners

        out, unknown = {}, []
        for p in self.pruners:
            try:
                out[p.name.lower()] = bool(get_pruner_class(p.name).requires_data)
            except UnknownPrunerError:
                unknown.append(p.name)
        if unknown:
            raise ConfigError(f"{self.name}: unknown pruner(s) {unknown}; registered pruners: "
                              f"{', '.join(list_pruners())}")
        return out

    def label_of(self, spec: RunSpec) -> tuple[str, str]:
        """``(model label, pruner label)`` of a spec of this grid."""
        model = next((m.label for m in self.models if m.name == spec.model
                      and canonical_json(m.config) == canonical_json(spec.model_config)),
                     spec.model)
        if spec.is_dense:
            return model, self.DENSE_LABEL
        pruner = next((p.label for p in self.pruners if p.name.lower() == spec.pruner
                       and canonical_json(p.config) == canonical_json(spec.pruner_config)),
                      spec.pruner)
        return model, pruner

    def resources_for(self, spec: RunSpec) -> Resources:
        """The resources a run of ``spec`` asks an executor for (its model entry's)."""
        for m in self.models:
            if m.name == spec.model and canonical_json(m.config) == canonical_json(
                    spec.model_config):
                return Resources(**m.resources)
        return Resources()

    @property
    def num_runs(self) -> int:
        return len(self.cells()) * len(self.seeds)


def spread_order(values: tuple[float, ...]) -> list[float]:
    """``values`` (sorted) reordered so every prefix spreads over the range: the middle one
    (lower middle for an even count), then repeatedly the one farthest, in position, from those
    already taken (the lower one on ties). ``[0.5, 0.8, 0.9, 0.95, 0.99]`` ->
    ``[0.9, 0.5, 0.99, 0.8, 0.95]``."""
    n = len(values)
    if n == 0:
        return []
    taken = [(n - 1) // 2]
    while len(taken) < n:
        rest = [i for i in range(n) if i not in taken]
        taken.append(max(rest, key=lambda i: (min(abs(i - j) for j in taken), -i)))
    return [values[i] for i in taken]


# ---- parsing -------------------------------------------------------------------------------
_TOP_KEYS = ("name", "description", "dataset", "fallback_dataset", "fallback_train", "data_root",
             "store",
             "models", "pruners", "sparsities", "seeds", "dense", "train", "pruning_data", "notes",
             "order")


def parse_config(data: Mapping[str, Any], *, name: str | None = None, path: Path | None = None,
                 source: str | None = None) -> LeaderboardConfig:
    """Build a :class:`LeaderboardConfig` from a parsed YAML mapping."""
    where = str(path) if path else "leaderboard config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, got "
                          f"{type(data).__name__}")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys "
                          f"are {', '.join(_TOP_KEYS)}")
    for key in ("dataset", "models"):
        if key not in data:
            raise ConfigError(f"{where}: missing required key {key!r}")
    models = tuple(_entry(ModelEntry, m, f"models[{i}]")
                   for i, m in enumerate(_as_list(data["models"], "models")))
    pruners = tuple(_entry(PrunerEntry, p, f"pruners[{i}]")
                    for i, p in enumerate(_as_list(data.get("pruners") or [], "pruners")))
    dense = data.get("dense", True)
    if not isinstance(dense, bool):
        raise ConfigError(f"{where}: dense must be true or false, got {dense!r}")
    return LeaderboardConfig(
        name=str(data.get("name") or name or "leaderboard"),
        description=str(data.get("description") or "").strip(),
        notes=tuple(_as_list(data.get("notes") or [], "notes")),
        dataset=data["dataset"],
        fallback_dataset=data.get("fallback_dataset"),
        fallback_train=data.get("fallback_train") or {},
        data_root=_expand(data.get("data_root")),
        store=_expand(data.get("store")) or str(DEFAULT_STORE),
        models=models,
        pruners=pruners,
        sparsities=tuple(_as_list(data.get("sparsities") or [], "sparsities")),
        seeds=tuple(_as_list(data.get("seeds", [0]), "seeds")),
        dense=dense,
        order=str(data.get("order", "grid")),
        train=TrainConfig.from_dict(data.get("train"), where="train"),
        pruning_data=PruneDataConfig.from_dict(data.get("pruning_data"), where="pruning_data"),
        path=path,
        source=source,
    )


def load_config(path: str | os.PathLike) -> LeaderboardConfig:
    """Read and validate a leaderboard YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no leaderboard config at {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, name=path.stem, path=path, source=text)


def resolve_config_path(name_or_path: str, directory: str | os.PathLike = "leaderboards"
                        ) -> Path:
    """``fashion-mnist`` -> ``leaderboards/fashion-mnist.yaml``; a path to a file is kept."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return candidate
    for suffix in (".yaml", ".yml"):
        path = Path(directory) / f"{name_or_path}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"no leaderboard named {name_or_path!r}: looked for "
                            f"{Path(directory) / (name_or_path + '.yaml')}; pass a config path "
                            "or --config")


# ---- helpers -------------------------------------------------------------------------------
def _entry(cls: type, item: Any, where: str) -> Any:
    if isinstance(item, str):
        return cls(name=item)
    return from_mapping(cls, item, where)


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def _require_str(value: Any, where: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")


def _resources(value: Any, where: str) -> dict[str, float]:
    """Validate ``{cpus: 1, gpus: 0.25}``: cpus > 0, gpus >= 0 and a whole number above 1."""
    _require_mapping(value, where)
    unknown = sorted(set(value) - {"cpus", "gpus"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; use cpus and gpus, e.g. "
                          "{cpus: 1, gpus: 0.25}")
    out = {"cpus": value.get("cpus", 1), "gpus": value.get("gpus", 0)}
    for name, number in out.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or \
                not math.isfinite(number) or number < 0 or (name == "cpus" and number == 0):
            raise ConfigError(f"{where}.{name}: expected a number "
                              f"{'> 0' if name == 'cpus' else '>= 0'}, got {number!r}")
    if out["gpus"] > 1 and out["gpus"] != int(out["gpus"]):
        raise ConfigError(f"{where}.gpus: a run uses a fraction of one GPU or whole GPUs, got "
                          f"{out['gpus']!r}")
    return {k: float(v) for k, v in out.items()}


def _require_mapping(value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")


def _expand(value: Any) -> str | None:
    return os.path.expanduser(os.path.expandvars(str(value))) if value else None
