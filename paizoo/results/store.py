"""The results store: one row per finished run, in SQLite (the embedded default) or PostgreSQL.

:func:`open_store` takes a path (a SQLite file, :class:`ResultStore`) or a ``postgresql://`` URL
(:class:`~paizoo.results.postgres.PostgresStore`); both are :class:`BaseStore` s with the same
schema, the same SQL and the same guarantees:

* **All or nothing.** A run is written by a single ``INSERT`` in its own transaction when it has
  finished; a run that crashes or is interrupted before that leaves no row (SQLite's WAL journal
  and PostgreSQL's transactions keep the database consistent even if the process is killed
  mid-commit).
* **No duplicates.** ``run_key`` is the primary key and the identifying columns (dataset, model
  + config, pruner + config, pruning data, sparsity, seed, training-config hash) are ``UNIQUE``;
  inserting a finished run twice keeps the first row (:meth:`BaseStore.add` returns ``False``).
* **Leases.** Before training a run, a runner :meth:`~BaseStore.claim` s it: a row of the
  ``leases`` table (run key, owner, expiry on the database's clock) that no other owner can take
  until it expires. Owners renew their leases while they work (:class:`~paizoo.results.leases.
  LeaseKeeper`); a killed runner's leases expire and are taken over; :meth:`~BaseStore.add`
  removes the run's lease in the transaction that records it. So several runners, on one
  machine or many, share one grid without training a run twice.
* **Versioned schema.** SQLite's ``PRAGMA user_version`` (PostgreSQL: the ``paizoo_schema``
  table) holds the schema version; :data:`MIGRATIONS` lists the SQL that upgrades version ``i``
  to ``i + 1``. Each migration is portable SQL (``REAL``/``INTEGER``/``BLOB`` become ``DOUBLE
  PRECISION``/``BIGINT``/``BYTEA`` on PostgreSQL) or a ``{"sqlite": ..., "postgresql": ...}``
  mapping where the dialects differ. Other parts of paizoo add their tables by appending a
  migration.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..errors import PaizooError
from .record import RunRecord

DEFAULT_STORE = Path("runs") / "paizoo.db"

#: one migration: portable SQL, or SQL per dialect (``"sqlite"``, ``"postgresql"``)
Migration = str | Mapping[str, str]

#: ``MIGRATIONS[i]`` upgrades a database at schema version ``i`` to ``i + 1``
MIGRATIONS: list[Migration] = [
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
    # leases (who trains which run until when) and the files of runs kept in the database
    # (PostgreSQL stores keep each run's mask and log there; SQLite stores keep them as files).
    # ``rowid``: SQLite's implicit insertion order, made explicit on PostgreSQL.
    {
        "sqlite": """
            CREATE TABLE IF NOT EXISTS leases (
                run_key    TEXT PRIMARY KEY,
                owner      TEXT NOT NULL,
                claimed_at REAL NOT NULL,
                expires_at REAL NOT NULL
            );
            CREATE TABLE IF NOT EXISTS run_files (
                run_key TEXT NOT NULL,
                kind    TEXT NOT NULL,
                data    BLOB NOT NULL,
                PRIMARY KEY (run_key, kind)
            );
        """,
        "postgresql": """
            CREATE TABLE IF NOT EXISTS leases (
                run_key    TEXT PRIMARY KEY,
                owner      TEXT NOT NULL,
                claimed_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL
            );
            CREATE TABLE IF NOT EXISTS run_files (
                run_key TEXT NOT NULL,
                kind    TEXT NOT NULL,
                data    BYTEA NOT NULL,
                PRIMARY KEY (run_key, kind)
            );
            ALTER TABLE runs ADD COLUMN IF NOT EXISTS rowid BIGSERIAL;
        """,
    },
    # 2 -> 3: a run whose training loss became NaN/inf is recorded as diverged (where it
    # stopped) instead of failing; the runs stored before are all 'ok'
    """
    ALTER TABLE runs ADD COLUMN status TEXT NOT NULL DEFAULT 'ok'
        CHECK (status IN ('ok', 'diverged'));
    ALTER TABLE runs ADD COLUMN diverged_epoch INTEGER;
    ALTER TABLE runs ADD COLUMN diverged_step INTEGER;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

#: what :meth:`BaseStore.add_reliably` did with a record
Delivery = Literal["added", "present", "pending"]


class StoreError(PaizooError, RuntimeError):
    """The results database cannot be opened or written, or has an unknown schema."""


class StoreUnavailableError(StoreError):
    """The database is locked, busy or unreachable right now (a retry may succeed)."""


class BaseStore:
    """What every results store does, in SQL shared by the backends.

    Subclasses connect (``self._conn``, a DB-API connection in autocommit mode), say which
    ``dialect`` they speak, and implement the few statements that differ (:meth:`_begin`,
    schema version, the database clock :attr:`_now`, errors).

    Example::

        store = open_store("runs/paizoo.db")          # or "postgresql://host/paizoo"
        owner = owner_id()
        if store.claim(spec.key, owner, ttl_s=120):
            store.add(run_experiment(spec, ...))      # also ends the lease
        df = store.dataframe(dataset="fashion-mnist")
    """

    dialect: str = ""
    #: the database's clock in seconds since the epoch, as an SQL expression
    _now: str = ""
    _conn: Any

    # ---- to implement per backend ---------------------------------------------------------------
    @property
    def location(self) -> str:
        """Where the store is, for messages (a path, or a URL without its password)."""
        raise NotImplementedError

    @property
    def files_dir(self) -> Path:
        """The local folder of the store's files (``masks/``, ``logs/``, pending records)."""
        raise NotImplementedError

    @property
    def schema_version(self) -> int:
        raise NotImplementedError

    def _set_schema_version(self, conn: Any, version: int) -> None:
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        raise NotImplementedError

    def _lock_run(self, conn: Any, run_key: str) -> None:
        """Serialise writers of one run inside a transaction (SQLite: the write lock does)."""

    def _translate(self, exc: Exception) -> Exception:
        """The paizoo error for a database exception (or ``exc`` itself)."""
        return exc

    def _keep_files(self, conn: Any, record: RunRecord) -> None:
        """Store the run's files with its row (PostgreSQL); SQLite keeps them as files."""

    def connection(self) -> Any:
        """The underlying DB-API connection (autocommit mode; use :meth:`transaction` for
        writes)."""
        return self._conn

    def close(self) -> None:
        self._conn.close()

    def reopen(self) -> BaseStore:
        """A new, independent connection to the same store (e.g. for another thread)."""
        raise NotImplementedError

    # ---- SQL helpers ----------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql.replace("{now}", self._now)

    def _exec(self, conn: Any, sql: str, params: Iterable[Any] = ()) -> Any:
        return conn.execute(self._sql(sql), tuple(params))

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[Any]:
        for attempt in (1, 2):  # reads are retried once on a new connection if it broke
            try:
                return list(self._exec(self._conn, sql, params).fetchall())
            except Exception as exc:
                error = self._translate(exc)
                if attempt == 1 and isinstance(error, StoreUnavailableError) and (
                        self.reconnect_if_broken()):
                    continue
                raise error from exc
        raise AssertionError("unreachable")

    def _scalar(self, sql: str, params: Iterable[Any] = ()) -> Any:
        rows = self._query(sql, params)
        return _first(rows[0]) if rows else None

    def _migrate(self) -> None:
        with self.transaction() as conn:
            version = self._read_version(conn)
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.location} has schema version {version}, newer than this paizoo "
                    f"understands ({SCHEMA_VERSION}); upgrade paizoo")
            for target in range(version, SCHEMA_VERSION):
                for statement in _split_sql(migration_sql(MIGRATIONS[target], self.dialect)):
                    conn.execute(statement)
                self._set_schema_version(conn, target + 1)

    def _read_version(self, conn: Any) -> int:
        raise NotImplementedError

    # ---- transactions ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """``BEGIN`` (SQLite: ``IMMEDIATE``) ... ``COMMIT``, rolled back on any exception
        (KeyboardInterrupt included). Database errors become :class:`StoreError` s."""
        try:
            self._begin(self._conn)
        except Exception as exc:
            error = self._translate(exc)
            if not (isinstance(error, StoreUnavailableError) and self.reconnect_if_broken()):
                raise error from exc
            try:  # a new connection, the old one broke (e.g. the server restarted)
                self._begin(self._conn)
            except Exception as exc2:
                raise self._translate(exc2) from exc2
        conn = self._conn
        try:
            yield conn
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            if isinstance(exc, Exception) and not isinstance(exc, PaizooError):
                translated = self._translate(exc)
                if translated is not exc:
                    raise translated from exc
            raise
        try:
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            raise self._translate(exc) from exc

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- files ----------------------------------------------------------------------------------
    @property
    def masks_dir(self) -> Path:
        """``<files_dir>/masks``: each run's mask, as ``<run key>.safetensors``."""
        return self.files_dir / "masks"

    @property
    def logs_dir(self) -> Path:
        """``<files_dir>/logs``: where runners write each run's ``<run key>.jsonl`` log."""
        return self.files_dir / "logs"

    @property
    def pending_file(self) -> Path:
        """Finished runs that could not be written (store locked or unreachable), one JSON
        object per line; :meth:`import_pending` adds them (every runner does at start)."""
        return self.files_dir / "pending.jsonl"

    def mask_file(self, record: RunRecord) -> Path | None:
        """The mask file of ``record`` (``None`` for dense runs): its recorded path if that
        exists, else ``<masks_dir>/<run key>.safetensors`` (the store was moved, the run was
        made from another working directory or, for a PostgreSQL store, on another machine:
        the file is then written there from the database)."""
        return self._file_of(record, "mask")

    def log_file(self, record: RunRecord) -> Path | None:
        """The JSON-lines training log of ``record``, as :meth:`mask_file` finds masks."""
        return self._file_of(record, "log")

    def _file_of(self, record: RunRecord, kind: str) -> Path | None:
        recorded_path = record.mask_path if kind == "mask" else record.log_path
        if recorded_path is None:
            return None
        recorded = Path(recorded_path)
        if recorded.is_file():
            return recorded
        folder, suffix = ((self.masks_dir, ".safetensors") if kind == "mask"
                          else (self.logs_dir, ".jsonl"))
        local = folder / f"{record.run_key}{suffix}"
        if not local.is_file():
            data = self._scalar("SELECT data FROM run_files WHERE run_key = ? AND kind = ?",
                                (record.run_key, kind))
            if data is not None:
                _write_atomically(local, bytes(data))
        return local

    # ---- writing --------------------------------------------------------------------------------
    def add(self, record: RunRecord) -> bool:
        """Insert one finished run in its own transaction, and end its lease in the same one;
        ``False`` if it was already there."""
        row = record.to_row()
        names = list(row)
        sql = (f"INSERT INTO runs ({', '.join(names)}) VALUES "
               f"({', '.join('?' for _ in names)}) ON CONFLICT DO NOTHING")
        with self.transaction() as conn:
            self._lock_run(conn, record.run_key)
            added = self._exec(conn, sql, [row[n] for n in names]).rowcount == 1
            if added:
                self._keep_files(conn, record)
            self._exec(conn, "DELETE FROM leases WHERE run_key = ?", (record.run_key,))
            return added

    def delete(self, run_keys: Iterable[str]) -> int:
        """Remove runs (and their stored files) by key (one transaction); returns how many
        runs were removed."""
        keys = list(run_keys)
        with self.transaction() as conn:
            removed = 0
            for key in keys:
                removed += self._exec(conn, "DELETE FROM runs WHERE run_key = ?",
                                      (key,)).rowcount
                self._exec(conn, "DELETE FROM run_files WHERE run_key = ?", (key,))
            return removed

    # ---- leases ---------------------------------------------------------------------------------
    def claim(self, run_key: str, owner: str, ttl_s: float, *,
              take_from: str | None = None) -> bool:
        """Take the lease of ``run_key`` for ``ttl_s`` seconds, atomically: ``True`` if the
        run is not finished and no other owner holds an unexpired lease on it (an expired
        lease is taken over; ``owner``'s own lease is extended). ``take_from``: also take the
        lease if that owner holds it (one known to be dead, see
        :func:`~paizoo.results.leases.owner_is_dead`)."""
        _check_ttl(ttl_s)
        with self.transaction() as conn:
            self._lock_run(conn, run_key)
            if self._exec(conn, "SELECT 1 FROM runs WHERE run_key = ?",
                          (run_key,)).fetchone() is not None:
                return False
            cursor = self._exec(
                conn,
                "INSERT INTO leases (run_key, owner, claimed_at, expires_at) "
                "VALUES (?, ?, {now}, {now} + ?) ON CONFLICT (run_key) DO UPDATE SET "
                "owner = excluded.owner, claimed_at = excluded.claimed_at, "
                "expires_at = excluded.expires_at WHERE leases.owner = excluded.owner "
                "OR leases.expires_at <= {now} OR leases.owner = ?",
                (run_key, owner, float(ttl_s), take_from or owner))
            return cursor.rowcount == 1

    def renew(self, run_key: str, owner: str, ttl_s: float) -> bool:
        """Extend ``owner``'s lease of ``run_key`` to ``ttl_s`` seconds from now; ``False`` if
        ``owner`` does not hold it (any more: it expired and was taken over, or the run was
        recorded)."""
        _check_ttl(ttl_s)
        with self.transaction() as conn:
            return self._exec(
                conn, "UPDATE leases SET expires_at = {now} + ? WHERE run_key = ? AND owner = ?",
                (float(ttl_s), run_key, owner)).rowcount == 1

    def release(self, run_key: str, owner: str) -> bool:
        """End ``owner``'s lease of ``run_key`` (e.g. the run failed); ``False`` if it held none."""
        with self.transaction() as conn:
            return self._exec(conn, "DELETE FROM leases WHERE run_key = ? AND owner = ?",
                              (run_key, owner)).rowcount == 1

    def leases(self) -> dict[str, tuple[str, float]]:
        """``{run key: (owner, seconds until expiry)}`` of every lease (negative: expired)."""
        rows = self._query("SELECT run_key, owner, expires_at - {now} AS left_s FROM leases")
        return {r["run_key"]: (r["owner"], float(r["left_s"])) for r in rows}

    # ---- writability, retries and the pending file ---------------------------------------------
    def check_writable(self) -> None:
        """Raise :class:`StoreError` unless a write can be committed (checked before training,
        so a read-only store is found before any work)."""
        probe = "__paizoo_write_check__"
        with self.transaction() as conn:
            self._exec(conn, "INSERT INTO leases (run_key, owner, claimed_at, expires_at) "
                             "VALUES (?, ?, {now}, {now}) ON CONFLICT DO NOTHING", (probe, probe))
            self._exec(conn, "DELETE FROM leases WHERE run_key = ?", (probe,))

    def add_reliably(self, record: RunRecord, *, retry_s: float = 300.0,
                     first_wait_s: float = 0.5) -> Delivery:
        """:meth:`add`, retried with exponential backoff while the store is locked or
        unreachable for up to ``retry_s`` seconds; if it still fails, the record is appended
        to :attr:`pending_file` (the next :meth:`import_pending` adds it), so a finished run
        is never lost. Returns ``"added"``, ``"present"`` (already recorded) or ``"pending"``."""
        deadline = time.monotonic() + retry_s
        wait = first_wait_s
        while True:
            try:
                return "added" if self.add(record) else "present"
            except StoreUnavailableError:
                if time.monotonic() + wait > deadline:
                    break
                time.sleep(wait)
                wait = min(wait * 2, 30.0)
                self.reconnect_if_broken()
            except StoreError as exc:  # not transient (e.g. disk full): keep it, then say so
                _append_jsonl(self.pending_file, record.to_row())
                raise StoreError(f"{exc}; the finished run {record.run_key} is kept in "
                                 f"{self.pending_file} for the next run to import") from exc
        _append_jsonl(self.pending_file, record.to_row())
        return "pending"

    @property
    def rejected_file(self) -> Path:
        """Pending records the store refused (not transiently) on import, kept for a human."""
        return self.pending_file.with_name(
            self.pending_file.name.removesuffix(".jsonl") + ".rejected.jsonl")

    def reconnect_if_broken(self) -> bool:
        """Reconnect if the connection was lost (PostgreSQL; SQLite connections do not break);
        ``True`` if there is a new connection."""
        return False

    def pending_keys(self) -> set[str]:
        """Run keys of the finished runs waiting in :attr:`pending_file` (and in imports a
        killed process left half done) for :meth:`import_pending`; reads, imports nothing."""
        pending = self.pending_file
        if not pending.parent.is_dir():
            return set()
        keys: set[str] = set()
        for source in pending.parent.glob(f"{pending.name}*"):
            try:
                text = source.read_text(encoding="utf-8")
            except FileNotFoundError:  # imported meanwhile
                continue
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by a crash mid-write
                    continue
                if isinstance(row, dict) and isinstance(row.get("run_key"), str):
                    keys.add(row["run_key"])
        return keys

    def import_pending(self) -> tuple[int, int]:
        """Add the records of :attr:`pending_file` (and of imports that a killed process left
        half done), each at most once; returns ``(added, already present)``. The file is taken
        by an atomic rename first, so concurrent runners do not import it twice (and the
        store's uniqueness would drop a second copy anyway)."""
        added = present = 0
        pending = self.pending_file
        if not pending.parent.is_dir():
            return 0, 0
        for source in sorted(pending.parent.glob(f"{pending.name}*")):
            if source != pending and not _importer_is_dead(source.name):
                continue  # being imported by a live process right now
            taken = source.with_name(f"{pending.name}.importing-{os.getpid()}-{time.time_ns()}")
            try:
                os.replace(source, taken)
            except FileNotFoundError:  # another runner took it first
                continue
            for line in taken.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:  # a line cut by a crash mid-write
                    continue
                try:
                    record = RunRecord.from_row(row)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    # a whole line that is no record (e.g. another version's): set it aside
                    key = row.get("run_key") if isinstance(row, dict) else None
                    _append_jsonl(self.rejected_file, {"error": f"{type(exc).__name__}: {exc}",
                                                       "record": row})
                    warnings.warn(f"pending run {key} is not a readable record ({exc}); kept "
                                  f"in {self.rejected_file}", RuntimeWarning, stacklevel=2)
                    continue
                try:
                    if self.add(record):
                        added += 1
                    else:
                        present += 1
                except StoreUnavailableError:
                    raise  # the taken file is imported by a later run
                except StoreError as exc:
                    _append_jsonl(self.rejected_file, {"error": str(exc),
                                                       "record": record.to_row()})
                    warnings.warn(f"pending run {record.run_key} was refused by "
                                  f"{self.location} ({exc}); kept in {self.rejected_file}",
                                  RuntimeWarning, stacklevel=2)
            taken.unlink()
        return added, present

    # ---- reading --------------------------------------------------------------------------------
    def __contains__(self, run_key: object) -> bool:
        return bool(self._query("SELECT 1 FROM runs WHERE run_key = ?", (run_key,)))

    def __len__(self) -> int:
        return int(self._scalar("SELECT COUNT(*) FROM runs"))

    def keys(self) -> set[str]:
        return {_first(r) for r in self._query("SELECT run_key FROM runs")}

    def get(self, run_key: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE run_key = ?", (run_key,))
        return RunRecord.from_row(rows[0]) if rows else None

    def get_many(self, run_keys: Iterable[str]) -> dict[str, RunRecord]:
        """``{key: record}`` for the keys that are in the store."""
        wanted = list(dict.fromkeys(run_keys))
        out: dict[str, RunRecord] = {}
        for start in range(0, len(wanted), 500):  # stay under SQLite's host-parameter limit
            chunk = wanted[start:start + 500]
            rows = self._query(
                f"SELECT * FROM runs WHERE run_key IN ({', '.join('?' for _ in chunk)})", chunk)
            for row in rows:
                out[row["run_key"]] = RunRecord.from_row(row)
        return out

    def records(self, **where: Any) -> list[RunRecord]:
        """All runs whose columns equal the given values, e.g. ``records(dataset="digits")``,
        in the order they were added."""
        columns = set(RunRecord.columns())
        unknown = sorted(set(where) - columns)
        if unknown:
            raise StoreError(f"unknown column(s) {unknown}; columns are {sorted(columns)}")
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = "SELECT * FROM runs" + (f" WHERE {clause}" if clause else "") + " ORDER BY rowid"
        return [RunRecord.from_row(r) for r in self._query(sql, list(where.values()))]

    def dataframe(self, **where: Any) -> Any:
        """:meth:`records` as a ``pandas.DataFrame`` (JSON columns decoded)."""
        import pandas as pd

        rows = [r.to_row() | {n: getattr(r, n) for n in RunRecord.JSON_FIELDS}
                | {"layer_collapse": r.layer_collapse} for r in self.records(**where)]
        return pd.DataFrame(rows, columns=RunRecord.columns())


class ResultStore(BaseStore):
    """A SQLite results database at ``path`` (created with its folders when missing); masks,
    logs and pending records are files in the same folder.

    Example::

        store = ResultStore("runs/paizoo.db")
        if spec.key not in store:
            store.add(run_experiment(spec, ...))
        df = store.dataframe(dataset="fashion-mnist")
    """

    dialect = "sqlite"
    _now = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: str | os.PathLike = DEFAULT_STORE, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        #: opened read-only (the file or its folder cannot be written): reads work, writes and
        #: :meth:`check_writable` raise :class:`StoreError`
        self.read_only = False
        try:
            self._conn = self._connect(read_only=False)
        except sqlite3.OperationalError as exc:
            if "readonly" not in str(exc) or not self.path.is_file():
                raise self._translate(exc) from exc
            self.read_only = True
            try:
                self._conn = self._connect(read_only=True)
            except sqlite3.Error as exc2:
                raise self._translate(exc2) from exc2
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        if self.read_only:
            version = self.schema_version
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.location} has schema version {version}, newer than this paizoo "
                    f"understands ({SCHEMA_VERSION}); upgrade paizoo")
        else:
            self._migrate()

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        if read_only:
            # mode=ro needs the WAL's -shm file; when it is absent and cannot be created (a
            # read-only folder), no process has the database open, so it can be read as
            # immutable
            for flags in ("mode=ro", "immutable=1"):
                conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?{flags}", uri=True,
                                       timeout=self.timeout, isolation_level=None)
                conn.row_factory = sqlite3.Row
                try:
                    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                except sqlite3.OperationalError:
                    conn.close()
                    if flags == "immutable=1":
                        raise
                    continue
                return conn
        conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def check_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"the results database {self.location} is read-only (the file or "
                             "its folder cannot be written); make it writable or use another "
                             "--store")
        super().check_writable()

    @property
    def location(self) -> str:
        return self.path.as_posix()

    @property
    def files_dir(self) -> Path:
        return self.path.parent

    @property
    def pending_file(self) -> Path:
        return self.path.with_name(self.path.name + ".pending.jsonl")

    def reopen(self) -> ResultStore:
        return ResultStore(self.path, timeout=self.timeout)

    @property
    def schema_version(self) -> int:
        return int(self._scalar("PRAGMA user_version"))

    def _read_version(self, conn: Any) -> int:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def _set_schema_version(self, conn: Any, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _translate(self, exc: Exception) -> Exception:
        if not isinstance(exc, sqlite3.Error):
            return exc
        text = str(exc)
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreError(f"a write to {self.location} violates the store's schema: {text}")
        if isinstance(exc, sqlite3.OperationalError) and (
                "locked" in text or "busy" in text):
            return StoreUnavailableError(
                f"the results database {self.location} is locked by another process ({text}) "
                f"for longer than the {self.timeout:g} s timeout")
        if "readonly" in text or "read-only" in text:
            return StoreError(f"the results database {self.location} is read-only ({text}); "
                              "make it writable or use another --store")
        if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in text
                                                       or "malformed" in text):
            return StoreError(
                f"{self.location} is not a readable paizoo results store (SQLite says: {text}); "
                "the file is damaged or not a SQLite database: restore it from a backup or "
                "use another --store")
        return StoreError(f"the results database {self.location} failed: {text}")


def open_store(url_or_path: str | os.PathLike = DEFAULT_STORE, *, timeout: float = 60.0,
               files_dir: str | os.PathLike | None = None) -> BaseStore:
    """The results store at ``url_or_path``: a ``postgresql://`` (or ``postgres://``) URL opens
    a :class:`~paizoo.results.postgres.PostgresStore` (``pip install 'paizoo[postgres]'``; its
    local files go to ``files_dir``), anything else is a SQLite file (:class:`ResultStore`)."""
    if isinstance(url_or_path, BaseStore):
        return url_or_path
    text = os.fspath(url_or_path)
    if is_url(text):
        from .postgres import PostgresStore

        return PostgresStore(text, timeout=timeout, files_dir=files_dir)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", text):
        raise StoreError(f"unsupported store URL {text!r}: use a file path (SQLite) or a "
                         "postgresql:// URL")
    return ResultStore(text, timeout=timeout)


def is_url(text: str | os.PathLike) -> bool:
    """``True`` for a ``postgresql://``/``postgres://`` store URL."""
    return os.fspath(text).startswith(("postgresql://", "postgres://"))


_PG_TYPES = {"REAL": "DOUBLE PRECISION", "INTEGER": "BIGINT", "BLOB": "BYTEA"}


def migration_sql(migration: Migration, dialect: str) -> str:
    """The SQL of ``migration`` for ``dialect`` (portable SQL has its column types mapped)."""
    if isinstance(migration, Mapping):
        return migration[dialect]
    if dialect == "postgresql":
        return re.sub(r"\b(REAL|INTEGER|BLOB)\b", lambda m: _PG_TYPES[m.group(1)], migration)
    return migration


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no ';' inside our literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _first(row: Any) -> Any:
    return next(iter(row.values())) if isinstance(row, Mapping) else row[0]


def _check_ttl(ttl_s: float) -> None:
    if not (float(ttl_s) > 0):
        raise ValueError(f"a lease needs ttl_s > 0 seconds, got {ttl_s!r}")


def _importer_is_dead(name: str) -> bool:
    """Whether the process named in ``<pending>.importing-<pid>-<ns>`` is gone."""
    match = re.search(r"\.importing-(\d+)-\d+$", name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _append_jsonl(path: Path, row: Mapping[str, Any]) -> None:
    """Append one JSON line and fsync it (a pending record must survive a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(dict(row), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
