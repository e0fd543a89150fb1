"""The PostgreSQL results store (``pip install 'paizoo[postgres]'``, psycopg 3).

Same schema, SQL, identity and uniqueness rules as the SQLite store (:class:`~paizoo.results.
store.BaseStore` holds the shared code; portable migrations get PostgreSQL column types). What
differs:

* the schema version lives in a one-row table ``paizoo_schema``; migrations run under an
  advisory lock, so drivers starting together migrate once;
* every run's mask and JSON-lines log are stored in the database (table ``run_files``) in the
  transaction that records the run, so they travel with the result between machines without a
  shared filesystem. :meth:`~BaseStore.mask_file` / :meth:`~BaseStore.log_file` write them to
  the local ``files_dir`` when they are read on another machine; runners write new files there
  first (default ``runs/pg-<database>``), and pending records go there too;
* claims and records of one run are serialised by a transaction-level advisory lock on its key.

One database (and ``search_path`` schema) holds one store: use one database per project.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .record import RunRecord
from .store import BaseStore, StoreError, StoreUnavailableError

#: advisory lock id serialising schema migrations ("paizoo" in ASCII)
_MIGRATION_LOCK = 0x7061697A6F6F


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StoreError("a postgresql:// store needs psycopg 3: pip install "
                         "'paizoo[postgres]'") from exc
    return psycopg


class PostgresStore(BaseStore):
    """A results store in the PostgreSQL database at ``url``
    (``postgresql://user:password@host:port/database``, or
    ``postgresql:///database?host=/socket/dir`` for a Unix socket).

    ``timeout``: seconds to wait for a connection and for a lock before the operation fails
    (:class:`StoreUnavailableError`, retried by :meth:`~BaseStore.add_reliably`).
    ``files_dir``: this machine's folder for masks, logs and pending records.
    """

    dialect = "postgresql"
    _now = "extract(epoch from clock_timestamp())::double precision"

    def __init__(self, url: str, *, timeout: float = 60.0,
                 files_dir: str | os.PathLike | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self._psycopg = _psycopg()
        self._files_dir = Path(files_dir) if files_dir is not None else (
            Path("runs") / f"pg-{_database_name(url)}")
        self._conn = self._connect()
        self._migrate()

    def _connect(self) -> Any:
        from psycopg.rows import dict_row

        try:
            conn = self._psycopg.connect(self.url, autocommit=True, row_factory=dict_row,
                                         connect_timeout=max(1, round(self.timeout)))
            conn.execute(f"SET lock_timeout = {int(self.timeout * 1000)}")
        except self._psycopg.Error as exc:
            raise self._translate(exc) from exc
        return conn

    @property
    def location(self) -> str:
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", self.url)

    @property
    def files_dir(self) -> Path:
        return self._files_dir

    def reopen(self) -> PostgresStore:
        return PostgresStore(self.url, timeout=self.timeout, files_dir=self._files_dir)

    def reconnect_if_broken(self) -> bool:
        if not (self._conn.closed or self._conn.broken):
            return False
        try:
            self._conn = self._connect()
        except StoreError:
            return False  # still down; the next attempt tries again
        return True

    # ---- schema ---------------------------------------------------------------------------------
    @property
    def schema_version(self) -> int:
        return int(self._scalar("SELECT version FROM paizoo_schema"))

    def _read_version(self, conn: Any) -> int:
        conn.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        conn.execute("CREATE TABLE IF NOT EXISTS paizoo_schema (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM paizoo_schema").fetchone()
        if row is None:
            conn.execute("INSERT INTO paizoo_schema (version) VALUES (0)")
            return 0
        return int(row["version"])

    def _set_schema_version(self, conn: Any, version: int) -> None:
        conn.execute("UPDATE paizoo_schema SET version = %s", (int(version),))

    # ---- SQL ------------------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        # our statements use '?' placeholders and no '?' or '%' in literals
        return super()._sql(sql).replace("?", "%s")

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def _lock_run(self, conn: Any, run_key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (run_key,))

    def _keep_files(self, conn: Any, record: RunRecord) -> None:
        for kind, name in (("mask", record.mask_path), ("log", record.log_path)):
            if name is not None and Path(name).is_file():
                conn.execute("INSERT INTO run_files (run_key, kind, data) VALUES (%s, %s, %s) "
                             "ON CONFLICT DO NOTHING",
                             (record.run_key, kind, Path(name).read_bytes()))

    def _translate(self, exc: Exception) -> Exception:
        pg = self._psycopg
        if not isinstance(exc, pg.Error):
            return exc
        errors = pg.errors
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, pg.IntegrityError):
            return StoreError(f"a write to {self.location} violates the store's schema: {text}")
        if isinstance(exc, errors.ReadOnlySqlTransaction | errors.InsufficientPrivilege):
            return StoreError(f"cannot write the results database {self.location} ({text}); "
                              "grant this user write access or use another --store")
        if isinstance(exc, errors.LockNotAvailable | errors.DeadlockDetected
                      | errors.SerializationFailure | errors.QueryCanceled
                      | errors.AdminShutdown | errors.CannotConnectNow):
            return StoreUnavailableError(f"the results database {self.location} is busy or "
                                         f"shutting down ({text})")
        if isinstance(exc, pg.OperationalError | pg.InterfaceError):
            return StoreUnavailableError(f"cannot reach the results database {self.location} "
                                         f"({text})")
        return StoreError(f"the results database {self.location} failed: {text}")


def _database_name(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        name = conninfo_to_dict(url).get("dbname")
    except Exception:  # a malformed URL fails with a clear message when connecting
        name = None
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(name or "paizoo"))
