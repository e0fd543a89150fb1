"""The results store: one SQLite database (stdlib ``sqlite3``), one row per finished run.

Guarantees:

* **All or nothing.** A run is written by a single ``INSERT`` in its own transaction when it has
  finished; a run that crashes or is interrupted before that leaves no row, and SQLite's journal
  (WAL mode) keeps the database consistent even if the process is killed mid-commit.
* **No duplicates.** ``run_key`` is the primary key and the identifying columns (dataset, model
  + config, pruner + config, pruning data, sparsity, seed, training-config hash) are ``UNIQUE``;
  inserting a finished run twice keeps the first row (:meth:`ResultStore.add` returns ``False``).
* **Versioned schema.** ``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS`
  lists the SQL that upgrades version ``i`` to ``i + 1``. Other parts of paizoo may add their
  own tables by appending a migration (or with ``CREATE TABLE IF NOT EXISTS`` through
  :meth:`ResultStore.connection`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import PaizooError
from .record import RunRecord

DEFAULT_STORE = Path("runs") / "paizoo.db"

#: ``MIGRATIONS[i]`` upgrades a database at schema version ``i`` to ``i + 1``
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        run_key           TEXT PRIMARY KEY,
        dataset           TEXT NOT NULL,
        model             TEXT NOT NULL,
        model_config      TEXT NOT NULL,
        pruner            TEXT NOT NULL,
        pruner_config     TEXT NOT NULL,
        prune_data_config TEXT NOT NULL,
        sparsity          REAL NOT NULL CHECK (sparsity >= 0 AND sparsity < 1),
        seed              INTEGER NOT NULL,
        train_hash        TEXT NOT NULL,
        train_config      TEXT NOT NULL,
        final_test_acc    REAL NOT NULL,
        best_test_acc     REAL NOT NULL,
        best_epoch        INTEGER NOT NULL,
        final_train_acc   REAL NOT NULL,
        final_train_loss  REAL,
        final_test_loss   REAL,
        dense_test_acc    REAL,
        density           REAL NOT NULL,
        kept              INTEGER NOT NULL,
        total             INTEGER NOT NULL,
        layer_densities   TEXT NOT NULL,
        layer_collapse    INTEGER NOT NULL CHECK (layer_collapse IN (0, 1)),
        collapsed_layers  TEXT NOT NULL,
        prune_time_s      REAL NOT NULL,
        train_time_s      REAL NOT NULL,
        eval_time_s       REAL NOT NULL,
        epochs            INTEGER NOT NULL,
        history           TEXT NOT NULL,
        mask_path         TEXT,
        log_path          TEXT,
        device            TEXT NOT NULL,
        versions          TEXT NOT NULL,
        created_at        TEXT NOT NULL,
        UNIQUE (dataset, model, model_config, pruner, pruner_config, prune_data_config,
                sparsity, seed, train_hash)
    );
    CREATE INDEX runs_cell ON runs (dataset, model, pruner, sparsity);
    """,
    # 1 -> 2: a run whose training loss became NaN/inf is recorded as diverged (where it
    # stopped) instead of failing; the runs stored before are all 'ok'
    """
    ALTER TABLE runs ADD COLUMN status TEXT NOT NULL DEFAULT 'ok'
        CHECK (status IN ('ok', 'diverged'));
    ALTER TABLE runs ADD COLUMN diverged_epoch INTEGER;
    ALTER TABLE runs ADD COLUMN diverged_step INTEGER;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(PaizooError, RuntimeError):
    """The results database cannot be opened or has an unknown schema."""


class ResultStore:
    """A results database at ``path`` (created with its folders when missing).

    Example::

        store = ResultStore("runs/paizoo.db")
        if spec.key not in store:
            store.add(run_experiment(spec, ...))
        df = store.dataframe(dataset="fashion-mnist")
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_STORE, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the results database {self.path}: {exc}") from exc
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # ---- schema -------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {version}, newer than this paizoo "
                    f"understands ({SCHEMA_VERSION}); upgrade paizoo")
            for target in range(version, SCHEMA_VERSION):
                for statement in _split_sql(MIGRATIONS[target]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target + 1}")

    # ---- connections and transactions ----------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (KeyboardInterrupt
        included)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @property
    def masks_dir(self) -> Path:
        """``<store folder>/masks``: each run's mask, as ``<run key>.safetensors``."""
        return self.path.parent / "masks"

    @property
    def logs_dir(self) -> Path:
        """``<store folder>/logs``: where runners write each run's ``<run key>.jsonl`` log."""
        return self.path.parent / "logs"

    def mask_file(self, record: RunRecord) -> Path | None:
        """The mask file of ``record`` (``None`` for dense runs): its recorded path if that
        exists, else ``<masks_dir>/<run key>.safetensors`` (the store was moved or the run was
        made from another working directory)."""
        if record.mask_path is None:
            return None
        recorded = Path(record.mask_path)
        if recorded.is_file():
            return recorded
        return self.masks_dir / f"{record.run_key}.safetensors"

    def connection(self) -> sqlite3.Connection:
        """The underlying connection (autocommit mode; use :meth:`transaction` for writes)."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing -------------------------------------------------------------------------------
    def add(self, record: RunRecord) -> bool:
        """Insert one finished run in its own transaction; ``False`` if it was already there."""
        row = record.to_row()
        names = list(row)
        sql = (f"INSERT INTO runs ({', '.join(names)}) VALUES "
               f"({', '.join('?' for _ in names)}) ON CONFLICT DO NOTHING")
        with self.transaction() as conn:
            cursor = conn.execute(sql, [row[n] for n in names])
            return cursor.rowcount == 1

    def delete(self, run_keys: Iterable[str]) -> int:
        """Remove runs by key (one transaction); returns how many were removed."""
        keys = list(run_keys)
        with self.transaction() as conn:
            removed = 0
            for key in keys:
                removed += conn.execute("DELETE FROM runs WHERE run_key = ?", (key,)).rowcount
            return removed

    # ---- reading -------------------------------------------------------------------------------
    def __contains__(self, run_key: object) -> bool:
        row = self._conn.execute("SELECT 1 FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def keys(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT run_key FROM runs")}

    def get(self, run_key: str) -> RunRecord | None:
        row = self._conn.execute("SELECT * FROM runs WHERE run_key = ?", (run_key,)).fetchone()
        return RunRecord.from_row(row) if row is not None else None

    def get_many(self, run_keys: Iterable[str]) -> dict[str, RunRecord]:
        """``{key: record}`` for the keys that are in the store."""
        wanted = list(dict.fromkeys(run_keys))
        out: dict[str, RunRecord] = {}
        for start in range(0, len(wanted), 500):  # stay under SQLite's host-parameter limit
            chunk = wanted[start:start + 500]
            rows = self._conn.execute(
                f"SELECT * FROM runs WHERE run_key IN ({', '.join('?' for _ in chunk)})", chunk)
            for row in rows:
                out[row["run_key"]] = RunRecord.from_row(row)
        return out

    def records(self, **where: Any) -> list[RunRecord]:
        """All runs whose columns equal the given values, e.g. ``records(dataset="digits")``."""
        columns = set(RunRecord.columns())
        unknown = sorted(set(where) - columns)
        if unknown:
            raise StoreError(f"unknown column(s) {unknown}; columns are {sorted(columns)}")
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = "SELECT * FROM runs" + (f" WHERE {clause}" if clause else "") + " ORDER BY rowid"
        return [RunRecord.from_row(r) for r in self._conn.execute(sql, list(where.values()))]

    def dataframe(self, **where: Any) -> Any:
        """:meth:`records` as a ``pandas.DataFrame`` (JSON columns decoded)."""
        import pandas as pd

        rows = [r.to_row() | {n: getattr(r, n) for n in RunRecord.JSON_FIELDS}
                | {"layer_collapse": r.layer_collapse} for r in self.records(**where)]
        return pd.DataFrame(rows, columns=RunRecord.columns())


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no ';' inside our literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
