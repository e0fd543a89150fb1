"""Cross-validation splits of a metrics table.

* ``kfold``: random K-fold over rows (shuffled, seeded). Rows of the same pruner/sparsity with
  other seeds fall on both sides, so this is the optimistic, interpolation split.
* ``lopo`` (leave one pruner out): each fold holds out every row of one pruner, i.e. can the
  regressor predict a pruner it never saw?
* ``loao`` (leave one architecture out): each fold holds out every row of one model label
  (``lomo``, leave one model out, is the same split under its old name);
* ``lofo`` (leave one family out): each fold holds out every row of one architecture family
  (the table's ``family`` column);
* ``pair`` (:func:`pair_folds`): each fold holds out one (architecture, pruner) pair and trains
  on the rows of neither that architecture nor that pruner.

Each split is a list of :class:`Fold` (label, train row positions, test row positions) usable
directly as ``cv=`` in scikit-learn (``cross_val_score(est, X, y, cv=[(f.train, f.test) ...])``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from .errors import TableError

SPLITS: dict[str, str] = {
    "kfold": "random K-fold",
    "lopo": "leave one pruner out",
    "loao": "leave one architecture out",
    "lofo": "leave one family out",
}
GROUP_COLUMN = {"lopo": "pruner", "loao": "model", "lofo": "family"}
#: old split names still accepted
ALIASES = {"lomo": "loao"}


def split_kind(kind: str) -> str:
    """``kind`` with old names (``lomo``) mapped to the current ones."""
    return ALIASES.get(kind, kind)


@dataclass(frozen=True)
class Fold:
    """One train/test split; ``label`` is the held-out pruner/model, or ``"fold i"``."""

    label: str
    train: np.ndarray
    test: np.ndarray


def leave_one_group_out(groups: pd.Series | np.ndarray) -> list[Fold]:
    """One fold per distinct value of ``groups`` (sorted), holding out all its rows."""
    values = np.asarray(groups).astype(str)
    out = []
    for g in sorted(set(values.tolist())):
        held = values == g
        out.append(Fold(g, np.flatnonzero(~held), np.flatnonzero(held)))
    return out


def make_folds(table: pd.DataFrame, kind: str, *, n_splits: int = 5,
               random_state: int = 0) -> list[Fold]:
    """The folds of split ``kind`` (:data:`SPLITS`) over the rows of ``table``.

    Raises:
        TableError: an unknown split, fewer than 2 groups for a leave-one-out split, or fewer
            rows than folds.
    """
    kind = split_kind(kind)
    if kind == "kfold":
        if len(table) < n_splits or n_splits < 2:
            raise TableError(f"random {n_splits}-fold needs at least {max(n_splits, 2)} rows, "
                             f"the table has {len(table)}")
        kf = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        return [Fold(f"fold {i + 1}", tr, te)
                for i, (tr, te) in enumerate(kf.split(np.zeros(len(table))))]
    if kind in GROUP_COLUMN:
        col = GROUP_COLUMN[kind]
        if col not in table.columns:
            raise TableError(f"{SPLITS[kind]} needs a {col!r} column; `paizoo regress build` "
                             "writes it")
        n = table[col].nunique()
        if n < 2:
            raise TableError(f"{SPLITS[kind]} needs at least two distinct values of {col!r}, the "
                             f"table has {n}")
        return leave_one_group_out(table[col])
    raise TableError(f"unknown split {kind!r}; use one of {', '.join(SPLITS)}")


def available_splits(table: pd.DataFrame, kinds: tuple[str, ...] = tuple(SPLITS)) -> list[str]:
    """The split kinds of ``kinds`` that ``table`` supports (e.g. no ``lomo`` with one model)."""
    out = []
    for kind in map(split_kind, kinds):
        col = GROUP_COLUMN.get(kind)
        if col is None or (col in table.columns and table[col].nunique() >= 2):
            if kind not in out:
                out.append(kind)
    return out


def pair_folds(table: pd.DataFrame) -> list[Fold]:
    """One fold per (model, pruner) pair present: test = the pair's rows, train = the rows of
    other models *and* other pruners (both unseen, as for a new pruner on a new network)."""
    model = table["model"].astype(str).to_numpy()
    pruner = table["pruner"].astype(str).to_numpy()
    out = []
    for m, p in sorted(set(zip(model.tolist(), pruner.tolist(), strict=True))):
        test = np.flatnonzero((model == m) & (pruner == p))
        train = np.flatnonzero((model != m) & (pruner != p))
        if len(train):
            out.append(Fold(f"{m} x {p}", train, test))
    return out
