"""The results store: run identities, finished-run records, and the database (SQLite or
PostgreSQL) with leases that let several runners share a grid."""

from __future__ import annotations

from .leases import LeaseKeeper, claim_or_take_over, owner_id, owner_is_dead
from .record import DENSE, RunRecord, RunSpec, library_versions
from .store import (
    DEFAULT_STORE,
    MIGRATIONS,
    SCHEMA_VERSION,
    BaseStore,
    ResultStore,
    StoreError,
    StoreUnavailableError,
    is_url,
    open_store,
)

__all__ = [
    "DEFAULT_STORE",
    "DENSE",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "BaseStore",
    "LeaseKeeper",
    "ResultStore",
    "RunRecord",
    "RunSpec",
    "StoreError",
    "StoreUnavailableError",
    "claim_or_take_over",
    "is_url",
    "library_versions",
    "open_store",
    "owner_id",
    "owner_is_dead",
]
