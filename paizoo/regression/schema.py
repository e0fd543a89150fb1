"""The metrics table: one row per finished pruned run, its mask's metrics and its accuracy drop.

Schema (any table with these columns works with :mod:`paizoo.regression`, whatever produced it:
``paizoo regress build``, a published metric table, your own runs):

=================  ========  =================================================================
column             kind      meaning
=================  ========  =================================================================
dataset            id, str   e.g. ``fashion-mnist``
model              id, str   e.g. ``lenet5``
pruner             id, str   e.g. ``snip``, ``mypkg:MyPruner``
sparsity           id, num   fraction of prunable weights removed, ``0 <= s < 1``
seed               id, int   the run's seed
config             optional  a key of the training configuration (runs are only compared
                             with the dense run of the same config)
family             optional  the model's architecture family (``mlp``, ``cnn``, ``cnn-bn``,
                             ``resnet``, ``mobilenet``, ...): leave-one-family-out validation
accuracy_drop      target    dense test accuracy minus the pruned run's test accuracy, in
                             percentage points (positive = the pruned net is worse)
accuracy,          info      optional: the run's and the dense reference's test accuracy (points)
dense_accuracy,
run_key, ...
<group>.<name>     feature   numeric metric columns, e.g. ``density.global``,
                             ``density.layer.conv1.weight``, ``mge.*``, ``ramanujan.*``, ...
=================  ========  =================================================================

Two kinds of feature columns (:data:`FEATURE_SWITCHES`): **per-layer** (named) columns are
paizoo.metrics' raw values, some named after a layer (``density.fc1.weight``), useful within one
architecture; **agnostic** columns (:mod:`paizoo.regression.agnostic`: profiles over normalised
depth ``<family>@<stat>``, size-free network-level values, ``arch.*`` descriptors) exist for every
architecture. :func:`paizoo.regression.agnostic.feature_definitions` defines every column
(``paizoo regress build`` writes the definitions next to the table, ``<table>.features.json``).

Every column that is not an identifier, the target or an info column (:data:`NON_FEATURE_COLUMNS`)
is a feature and must be numeric (NaN allowed: a per-layer column is NaN for the models that do
not have that layer).

Feature **groups** select columns by name prefix; :data:`FEATURE_GROUPS` is the one table mapping
a group to its prefixes. A column ``"<g>.<metric>"`` comes from the group ``g`` of
:func:`paizoo.metrics.compute`.
:data:`FEATURE_SETS` are the combinations compared by ``paizoo regress eval``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .agnostic import STAT_SEP, is_agnostic_column
from .errors import TableError

IDENTIFIERS: tuple[str, ...] = ("dataset", "model", "pruner", "sparsity", "seed")
OPTIONAL_IDENTIFIERS: tuple[str, ...] = ("config", "family")
TARGET = "accuracy_drop"
#: columns carried along for reference, never used as features
INFO_COLUMNS: tuple[str, ...] = (
    "accuracy", "dense_accuracy", "run_key", "run_id", "mask_path", "metrics_version",
    "pruner_config", "train_config", "epochs", "notes",
)
NON_FEATURE_COLUMNS: frozenset[str] = frozenset(
    (*IDENTIFIERS, *OPTIONAL_IDENTIFIERS, TARGET, *INFO_COLUMNS))


@dataclass(frozen=True)
class FeatureGroup:
    """A named set of metric columns, selected by column-name prefix.

    Attributes:
        prefixes: a column belongs to the group when its name starts with one of these
            (a prefix without a trailing ``.`` must match the whole name).
        exclude: exact column names left out even if a prefix matches.
        description: one line for reports.
    """

    prefixes: tuple[str, ...]
    description: str
    exclude: tuple[str, ...] = ()

    def matches(self, column: str) -> bool:
        if column in self.exclude:
            return False
        return any(column.startswith(p) if p.endswith(".") else column == p
                   for p in self.prefixes)


#: group name -> columns. The names on the right follow paizoo.metrics' stable row names.
FEATURE_GROUPS: dict[str, FeatureGroup] = {
    "density.global": FeatureGroup(
        ("density.global",), "global density (fraction of weights kept)"),
    "density.layer": FeatureGroup(
        ("density.layer.", "density."),
        "per-layer densities (one column per prunable parameter)",
        exclude=("density.global", "density.kept", "density.total")),
    "ramanujan": FeatureGroup(
        ("ramanujan.", "bge."),
        "layer-wise bipartite-graph (BGE) Ramanujan / spectral-gap metrics (Hoang et al. 2023)"),
    "mge": FeatureGroup(
        ("mge.",), "end-to-end multipartite-graph (MGE) metrics of the masked network"),
    "spectral": FeatureGroup(
        ("spectral.",),
        "spectral gap / algebraic connectivity per layer and of the network (Bourely et al. 2017)"),
    "scatter": FeatureGroup(
        ("scatter.",),
        "forward/backward scatter of Linear junctions (Dey et al. 2018)"),
    "effective": FeatureGroup(
        ("effective.",),
        "effective sparsity, paths and nodes (Vysogorets & Kempe 2023; Pham et al. 2023)"),
}

#: feature-set switches: ``agnostic`` (every column defined for any architecture) and
#: ``per-layer`` (paizoo.metrics' raw columns, named after layers, for within-architecture use)
FEATURE_SWITCHES: dict[str, str] = {
    "agnostic": "architecture-agnostic columns (profiles over depth, size-free values, arch.*)",
    "agnostic-mask": "the agnostic columns of the mask only (no arch.* descriptors)",
    "per-layer": "raw paizoo.metrics columns, per-layer ones named after the layer",
}

#: shorthand names for several groups
GROUP_ALIASES: dict[str, tuple[str, ...]] = {
    "density": ("density.global", "density.layer"),
    "bge": ("ramanujan",),
}

#: the feature sets compared by ``paizoo regress eval`` (the issue's list), in report order
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "global density": ("density.global",),
    "per-layer (named)": ("per-layer",),
    "agnostic (mask only)": ("agnostic-mask",),
    "agnostic": ("agnostic",),
}

GroupSpec = str | Sequence[str] | None


def as_group_list(groups: GroupSpec) -> list[str]:
    """``None``/``"all"`` -> ``["all"]``; ``"mge,density.global"`` -> ``["mge",
    "density.global"]``."""
    if groups is None:
        return ["all"]
    if isinstance(groups, str):
        items = [g.strip() for g in groups.split(",")]
    else:
        items = [str(g).strip() for g in groups]
    items = [g for g in items if g]
    return items or ["all"]


def is_feature_column(name: str) -> bool:
    return name not in NON_FEATURE_COLUMNS


def select_features(columns: Iterable[str], groups: GroupSpec = None) -> list[str]:
    """The feature columns among ``columns`` that belong to ``groups``, in ``columns`` order.

    ``groups`` items are names of :data:`FEATURE_GROUPS` or :data:`GROUP_ALIASES`, ``"all"``
    (every feature column), or a glob pattern on column names (``"mge.paths*"``). Identifier,
    target and info columns are never selected.

    Raises:
        TableError: an unknown group name, or no column matches.
    """
    names = [str(c) for c in columns]
    feats = [c for c in names if is_feature_column(c)]
    chosen: set[str] = set()
    items = [g for item in as_group_list(groups) for g in GROUP_ALIASES.get(item, (item,))]
    for group in items:
        if group == "all":
            chosen.update(feats)
        elif group == "agnostic":
            chosen.update(c for c in feats if is_agnostic_column(c))
        elif group == "agnostic-mask":
            chosen.update(c for c in feats if is_agnostic_column(c) and not c.startswith("arch."))
        elif group == "per-layer":
            chosen.update(c for c in feats if not is_agnostic_column(c))
        elif group in FEATURE_GROUPS:
            chosen.update(c for c in feats if FEATURE_GROUPS[group].matches(c))
        elif any(ch in group for ch in "*?[") or "." in group:
            chosen.update(c for c in feats if fnmatch.fnmatchcase(c, group)
                          or (group.endswith(".") and c.startswith(group)))
        else:
            raise TableError(
                f"unknown feature group {group!r}; use one of {', '.join(FEATURE_GROUPS)}, "
                f"{', '.join(FEATURE_SWITCHES)}, "
                f"{', '.join(GROUP_ALIASES)}, 'all', or a glob pattern on column names such as "
                "'mge.*'")
    out = [c for c in feats if c in chosen]
    if not out:
        raise TableError(
            f"no feature column matches the groups {as_group_list(groups)}; the table's feature "
            f"columns are: {_preview(feats)}")
    return out


def groups_present(columns: Iterable[str]) -> dict[str, list[str]]:
    """``{group: columns}`` for the groups of :data:`FEATURE_GROUPS` present among ``columns``;
    feature columns of no known group are listed under ``"other"``."""
    feats = [str(c) for c in columns if is_feature_column(str(c))]
    out: dict[str, list[str]] = {}
    for name, group in FEATURE_GROUPS.items():
        cols = [c for c in feats if group.matches(c)]
        if cols:
            out[name] = cols
    known = {c for cols in out.values() for c in cols}
    other = [c for c in feats if c not in known]
    if other:
        out["other"] = other
    return out


def metrics_groups_for(columns: Iterable[str]) -> list[str]:
    """The :func:`paizoo.metrics.compute` groups that produce ``columns`` (sorted, unique).

    paizoo.metrics names every metric ``"<group>.<metric>"``, so a column's group is the part
    before its first dot (of the part before ``@`` for profile columns); ``arch.*`` columns come
    from the model, not from a metrics group.
    """
    return sorted({str(c).split(STAT_SEP, 1)[0].split(".", 1)[0] for c in columns
                   if not str(c).startswith("arch.")})


def finite_metrics(values: Mapping[str, float]) -> dict[str, float]:
    """``values`` with infinite entries as NaN (e.g. ``effective.paths_log10 = -inf`` when no
    input-output path is left): regressors take NaN as missing, and infinity breaks them."""
    return {k: (math.nan if math.isinf(float(v)) else float(v)) for k, v in values.items()}


def _preview(cols: Sequence[str], limit: int = 12) -> str:
    if not cols:
        return "(none)"
    shown = ", ".join(cols[:limit])
    return shown + (f", ... ({len(cols)} in all)" if len(cols) > limit else "")


def validate_table(table: pd.DataFrame, *, require_target: bool = True) -> pd.DataFrame:
    """Check ``table`` against the schema and return it with normalised dtypes.

    Raises:
        TableError: a missing identifier or target column, a non-numeric or infinite feature,
            a missing/non-finite target, duplicate column names, or no feature column.
    """
    if not isinstance(table, pd.DataFrame):
        raise TableError(f"expected a pandas DataFrame, got {type(table).__name__}")
    dup = table.columns[table.columns.duplicated()].tolist()
    if dup:
        raise TableError(f"duplicate column names: {dup}")
    missing = [c for c in IDENTIFIERS if c not in table.columns]
    if missing:
        raise TableError(
            f"the table lacks the identifier column(s) {missing}; a metrics table has columns "
            f"{', '.join(IDENTIFIERS)}, {TARGET} and numeric feature columns (add e.g. "
            "table['seed'] = 0 if your runs have no seeds)")
    if require_target and TARGET not in table.columns:
        raise TableError(
            f"the table has no target column {TARGET!r} (dense test accuracy minus the pruned "
            "run's test accuracy, in points); `paizoo regress build` writes it, or compute it "
            "from your accuracies")
    out = table.copy()
    out.columns = [str(c) for c in out.columns]
    for c in ("dataset", "model", "pruner", *(["family"] if "family" in out.columns else [])):
        out[c] = out[c].astype(str)
    for c in ("sparsity", "seed"):
        if not pd.api.types.is_numeric_dtype(out[c]):
            raise TableError(f"identifier column {c!r} must be numeric, got dtype {out[c].dtype}")
    if ((out["sparsity"] < 0) | (out["sparsity"] >= 1)).any():
        raise TableError("column 'sparsity' must lie in [0, 1) (fraction of weights removed)")
    if require_target:
        if not pd.api.types.is_numeric_dtype(out[TARGET]):
            raise TableError(f"target column {TARGET!r} must be numeric, got {out[TARGET].dtype}")
        bad = ~np.isfinite(out[TARGET].to_numpy(dtype=float))
        if bad.any():
            raise TableError(f"target column {TARGET!r} has {int(bad.sum())} missing or "
                             "non-finite value(s); drop those rows")
    feats = [c for c in out.columns if is_feature_column(c)]
    if not feats:
        raise TableError("the table has no feature column (metric columns such as "
                         "'density.global', 'mge.*')")
    non_numeric = [c for c in feats if not pd.api.types.is_numeric_dtype(out[c])]
    if non_numeric:
        raise TableError(
            f"non-numeric feature column(s) {non_numeric}: every column other than "
            f"{sorted(NON_FEATURE_COLUMNS)} is a feature and must hold numbers (NaN allowed). "
            "Drop or convert them, or rename identifiers to the schema's names")
    values = out[feats].to_numpy(dtype=float)
    if np.isinf(values).any():
        cols = [c for c, bad in zip(feats, np.isinf(values).any(axis=0), strict=True) if bad]
        raise TableError(f"infinite values in feature column(s) {cols}; replace them by NaN or "
                         "a finite value")
    return out


def load_table(path: str | Path, *, require_target: bool = True) -> pd.DataFrame:
    """Read a metrics table (``.csv`` or ``.parquet``) and validate it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics table at {path}; build one with `paizoo regress "
                                "build` or pass a CSV following paizoo.regression.schema")
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, dtype={"dataset": str, "model": str, "pruner": str,
                                         "family": str})
    return validate_table(table, require_target=require_target)
