"""Test-suite settings shared by every test module."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")

import torch

# One intra-op thread per test worker: the suite runs under pytest-xdist on small machines,
# where several threads per worker oversubscribe the cores (10-20x slower, measured).
torch.set_num_threads(1)


# ---- scikit-learn's digits: the always-available real dataset of the training tests -----------
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def digits() -> tuple[object, object]:
    from paizoo.data import load_dataset

    return load_dataset("digits", "train"), load_dataset("digits", "test")


# ---- results stores: SQLite files and a real PostgreSQL server (tests/_postgres.py) --------------


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the whole session (skips, with the reason, where none can run)."""
    from _postgres import start_server

    server, reason = start_server()
    if server is None:
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, tmp_path, monkeypatch) -> str:
    """A fresh PostgreSQL database; the working directory is ``tmp_path`` so the store's local
    files (``runs/pg-<database>``) stay there."""
    monkeypatch.chdir(tmp_path)
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """Where a fresh results store is: a SQLite file path, or a PostgreSQL database URL."""
    if request.param == "sqlite":
        return str(tmp_path / "store" / "paizoo.db")
    return request.getfixturevalue("postgres_url")
