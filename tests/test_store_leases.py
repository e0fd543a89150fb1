"""Store URLs, leases, and the store under faults (corrupt, read-only, locked, unreachable),
against SQLite files and a real PostgreSQL server (fixtures in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from test_store import _env, _record, _spec

from paizoo.cli import main
from paizoo.results import (
    MIGRATIONS,
    SCHEMA_VERSION,
    LeaseKeeper,
    ResultStore,
    StoreError,
    StoreUnavailableError,
    claim_or_take_over,
    open_store,
    owner_id,
    owner_is_dead,
)
from paizoo.results.leases import parse_owner
from paizoo.results.store import migration_sql


def test_open_store_dispatches_on_the_location(tmp_path):
    store = open_store(tmp_path / "a" / "r.db")
    assert isinstance(store, ResultStore) and store.location == (tmp_path / "a" / "r.db"
                                                                  ).as_posix()
    assert store.pending_file == tmp_path / "a" / "r.db.pending.jsonl"
    assert open_store(store) is store
    with pytest.raises(StoreError, match="unsupported store URL 'mysql://h/db'"):
        open_store("mysql://h/db")


def test_postgres_url_opens_a_postgres_store(postgres_url, tmp_path):
    from paizoo.results.postgres import PostgresStore

    store = open_store(postgres_url)
    assert isinstance(store, PostgresStore) and store.dialect == "postgresql"
    name = postgres_url.split("/")[3].split("?")[0]
    assert store.files_dir == Path("runs") / f"pg-{name}"
    secret = postgres_url.replace("postgres@", "postgres:hunter2@")
    assert "hunter2" not in open_store(secret, files_dir=tmp_path / "f").location


def test_unreachable_postgres_is_a_clear_error(tmp_path):
    pytest.importorskip("psycopg")
    with pytest.raises(StoreUnavailableError, match="cannot reach the results database"):
        open_store(f"postgresql://nobody@/nodb?host={tmp_path}", timeout=1)


def test_claim_renew_release(store_url):
    store = open_store(store_url)
    spec = _spec()
    key = spec.key
    assert store.claim(key, "a", 60)
    assert not store.claim(key, "b", 60)  # a holds it
    assert store.claim(key, "a", 60)  # a's own lease is extended
    assert store.renew(key, "a", 60) and not store.renew(key, "b", 60)
    assert not store.release(key, "b") and store.release(key, "a")
    assert store.leases() == {}
    assert store.claim(key, "b", 60)
    (owner, left), = store.leases().values()
    assert owner == "b" and 55 < left <= 60
    assert store.add(_record(spec))  # recording the run ends its lease, in one transaction
    assert store.leases() == {}
    assert not store.claim(key, "a", 60) and not store.claim(key, "b", 60)  # finished
    with pytest.raises(ValueError, match="ttl_s > 0"):
        store.claim("x", "a", 0)


def test_an_expired_lease_is_taken_over(store_url):
    store = open_store(store_url)
    assert store.claim("k", "a", 1.0)
    assert not store.claim("k", "b", 60)
    time.sleep(1.1)
    assert store.claim("k", "b", 60)  # a's lease expired
    assert not store.renew("k", "a", 60)  # a learns it lost the run
    assert not store.claim("k", "c", 60)
    assert store.claim("k", "c", 60, take_from="b")  # b is known to be dead
    assert store.leases()["k"][0] == "c"


def test_concurrent_claims_give_each_run_one_owner(store_url):
    store = open_store(store_url)
    keys = [f"run{i}" for i in range(15)]
    won: dict[str, list[str]] = {k: [] for k in keys}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            mine = store.reopen()
            for key in keys:
                if mine.claim(key, name, 60):
                    with lock:
                        won[key].append(name)
            mine.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(len(owners) == 1 for owners in won.values()), won
    assert {k: o for k, (o, _) in store.leases().items()} == {k: v[0] for k, v in won.items()}


def test_owner_ids_and_dead_owners():
    me = owner_id()
    host, pid = parse_owner(me)
    assert pid == os.getpid() and me.startswith(host + ":")
    assert owner_id() != me  # random part
    assert not owner_is_dead(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert owner_is_dead(f"{host}:{child.pid}:abcd")
    assert not owner_is_dead(f"another-host-{host}:{child.pid}:abcd")
    assert not owner_is_dead("someone") and parse_owner("someone") is None


def test_a_dead_local_owner_is_taken_over_at_once(store_url):
    store = open_store(store_url)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    host = parse_owner(owner_id())[0]
    dead, alive = f"{host}:{child.pid}:00", f"elsewhere:{os.getpid()}:00"
    assert store.claim("k1", dead, 600) and store.claim("k2", alive, 600)
    assert claim_or_take_over(store, "k1", "me", 60)
    assert not claim_or_take_over(store, "k2", "me", 60)  # a live (or remote) owner keeps it


def test_lease_keeper_renews_until_stopped(store_url):
    store = open_store(store_url)
    keeper = LeaseKeeper(store, "a", ttl_s=1.5, interval_s=0.1).start()
    assert store.claim("k", "a", 1.5) and store.claim("gone", "a", 1.5)
    keeper.hold("k")
    keeper.hold("gone")
    store.delete(["gone"])
    with store.transaction() as conn:  # someone else took "gone" over
        conn.execute("DELETE FROM leases WHERE run_key = " +
                      ("%s" if store.dialect == "postgresql" else "?"), ("gone",))
    assert store.claim("gone", "b", 60)
    time.sleep(3.2)  # > 2 ttl: without renewals the lease would have expired
    assert not store.claim("k", "b", 60)
    assert store.leases()["k"][0] == "a"
    assert keeper.lost == {"gone"} and keeper.held == {"k"}
    keeper.stop(release=keeper.held)
    assert "k" not in store.leases()


# ---- faults -----------------------------------------------------------------------------------
def test_a_file_that_is_not_a_store_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_text("this is not a database\n" * 200)
    with pytest.raises(StoreError, match="not a readable paizoo results store"):
        open_store(junk)
    good = tmp_path / "good.db"
    store = open_store(good)
    for seed in range(40):
        store.add(_record(_spec(seed=seed)))
    store.close()
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # truncated, e.g. by a full disk or a bad copy
    with pytest.raises(StoreError, match=r"not a readable paizoo results store|malformed"):
        store = open_store(good)
        store.records()


def test_cli_reports_a_corrupt_store_in_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 100)
    # an error exit (2 here; 1 under the "runtime errors exit 1" CLI convention of #13)
    assert main(["leaderboard", "status", "quick", "--store", str(junk)]) in (1, 2)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("paizoo: error: ") and "junk.db" in err


def test_a_read_only_store_is_found_before_any_work():
    folder = Path(tempfile.mkdtemp(prefix="paizoo-ro-"))
    try:
        path = folder / "r.db"
        store = open_store(path)
        store.add(_record(_spec()))
        store.close()
        for p in folder.iterdir():
            p.chmod(0o444)
        folder.chmod(0o555)
        script = textwrap.dedent(f"""
            from paizoo.results import open_store, StoreError
            store = open_store({str(path)!r})
            assert len(store) == 1  # reading works
            try:
                store.check_writable()
            except StoreError as exc:
                print("StoreError:", exc)
            else:
                print("writable")
            from types import SimpleNamespace
            from paizoo.leaderboard import parse_config, run_leaderboard
            config = parse_config({{"name": "g", "dataset": "digits", "store": {str(path)!r},
                                   "models": [{{"name": "lenet_300_100"}}],
                                   "pruners": [{{"name": "random"}}], "sparsities": [0.5],
                                   "seeds": [0], "train": {{"epochs": 1}}}})
            calls = []
            try:
                run_leaderboard(config, store, data=SimpleNamespace(name="digits"),
                                run_fn=lambda *a, **k: calls.append(a), progress=False)
            except StoreError:
                print("runner refused before", len(calls), "runs")
            import contextlib, io
            from paizoo.cli import main
            err = io.StringIO()
            with contextlib.redirect_stderr(err):  # the CLI: before loading data or training
                code = main(["train", "--model", "lenet_300_100", "--dataset", "digits",
                             "--pruner", "magnitude", "--sparsity", "0.5", "--store",
                             {str(path)!r}])
            print("train exit", code, "stderr", repr(err.getvalue()))
        """)
        user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if (
            os.geteuid() == 0) else []  # root writes anything: check as an ordinary user
        result = subprocess.run([*user, sys.executable, "-c", script], capture_output=True,
                                text=True, timeout=120, env=_env())
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("StoreError:"), result.stdout
        assert "is read-only" in result.stdout and "runner refused before 0 runs" in result.stdout
        assert re.search(r"train exit [12] stderr 'paizoo: error: the results database \S+ is "
                         r"read-only [^\n]*\\n'$", result.stdout.strip()), result.stdout
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def _hold_lock(store_url: str):
    """A second connection holding the store's write lock (SQLite) or a lock on ``runs`` that
    stops writes but not reads (PostgreSQL) until ``.close()``."""
    if store_url.startswith("postgresql://"):
        import psycopg

        conn = psycopg.connect(store_url, autocommit=True)
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE runs IN EXCLUSIVE MODE")
        return conn
    conn = sqlite3.connect(store_url, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_a_record_that_cannot_be_written_goes_to_pending_and_is_imported_once(store_url):
    open_store(store_url).close()
    store = open_store(store_url, timeout=0.2)
    rec = _record(_spec())
    blocker = _hold_lock(store_url)
    start = time.monotonic()
    try:
        assert store.add_reliably(rec, retry_s=0.6, first_wait_s=0.1) == "pending"
    finally:
        blocker.close()
    assert 0.4 <= time.monotonic() - start < 10  # retried with backoff, then gave up
    lines = store.pending_file.read_text().splitlines()
    assert [json.loads(line)["run_key"] for line in lines] == [rec.run_key]
    assert len(store) == 0
    # the next runner imports it (a torn last line from a crash is skipped), once
    with open(store.pending_file, "a") as fh:
        fh.write('{"run_key": "cut mid-wr')
    nxt = open_store(store_url)
    assert nxt.import_pending() == (1, 0)
    assert nxt.get(rec.run_key) == rec and len(nxt) == 1
    assert not store.pending_file.exists() and nxt.import_pending() == (0, 0)
    # a record that reached the store anyway is not duplicated
    assert nxt.add_reliably(rec) == "present" and len(nxt) == 1


def test_a_lost_postgres_connection_is_replaced(postgres_url):
    import psycopg

    store = open_store(postgres_url)

    def drop_connection() -> None:  # as when the server restarts or a proxy cuts it
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)",
                          (store.connection().info.backend_pid,))

    drop_connection()
    assert len(store) == 0  # a read
    drop_connection()
    assert store.claim("k", "a", 60)  # a transaction
    drop_connection()
    rec = _record(_spec())
    assert store.add_reliably(rec, retry_s=30, first_wait_s=0.1) == "added"
    assert store.get(rec.run_key) == rec


def test_postgres_keeps_masks_and_logs_with_the_run(postgres_url, tmp_path):
    store = open_store(postgres_url)
    mask, log = tmp_path / "m.safetensors", tmp_path / "l.jsonl"
    mask.write_bytes(os.urandom(5000))
    log.write_text('{"event": "start"}\n')
    rec = _record(_spec())
    rec.mask_path, rec.log_path = str(mask), str(log)
    assert store.add(rec)
    want_mask, want_log = mask.read_bytes(), log.read_bytes()
    mask.unlink()
    log.unlink()
    elsewhere = open_store(postgres_url, files_dir=tmp_path / "other-machine")
    got = elsewhere.get(rec.run_key)
    assert elsewhere.mask_file(got) == tmp_path / "other-machine" / "masks" / (
        f"{rec.run_key}.safetensors")
    assert elsewhere.mask_file(got).read_bytes() == want_mask
    assert elsewhere.log_file(got).read_bytes() == want_log
    store.delete([rec.run_key])
    assert store._scalar("SELECT COUNT(*) FROM run_files") == 0


def test_a_version_1_sqlite_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(migration_sql(MIGRATIONS[0], "sqlite"))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    rec = _record(_spec())  # a row written with the version-1 schema
    conn = sqlite3.connect(path)
    v1_columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    row = {k: v for k, v in rec.to_row().items() if k in v1_columns}
    conn.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                 list(row.values()))
    conn.commit()
    conn.close()
    store = open_store(path)
    assert store.schema_version == SCHEMA_VERSION and store.records() == [rec]
    assert store.claim("k", "a", 60)


def test_a_pending_record_the_store_refuses_is_set_aside_with_a_warning(store_url):
    store = open_store(store_url)
    good, bad = _record(_spec(seed=1)), _record(_spec(seed=2))
    bad.final_test_acc = None  # type: ignore[assignment] - NOT NULL
    store.pending_file.parent.mkdir(parents=True, exist_ok=True)
    store.pending_file.write_text(json.dumps(bad.to_row()) + "\n" + json.dumps(good.to_row())
                                  + "\n")
    with pytest.warns(RuntimeWarning, match=f"pending run {bad.run_key} was refused"):
        assert store.import_pending() == (1, 0)
    assert store.keys() == {good.run_key} and not store.pending_file.exists()
    (kept,) = [json.loads(x) for x in store.rejected_file.read_text().splitlines()]
    assert kept["record"]["run_key"] == bad.run_key and "final_test_acc" in kept["error"]
    assert store.import_pending() == (0, 0)  # set aside, not retried at every start


def test_a_pending_line_that_is_json_but_no_record_is_set_aside_not_dropped(store_url):
    # only a line cut mid-write (not JSON) is skipped; a whole JSON object that does not
    # make a RunRecord (a field missing, e.g. written by another paizoo version) is a
    # finished run that must not vanish: it is kept in the rejected file with a warning
    store = open_store(store_url)
    good = _record(_spec(seed=1))
    short = {k: v for k, v in _record(_spec(seed=2)).to_row().items() if k != "final_test_acc"}
    store.pending_file.parent.mkdir(parents=True, exist_ok=True)
    store.pending_file.write_text(json.dumps(short) + "\n" + json.dumps(good.to_row()) + "\n"
                                  + '{"run_key": "cut mid-wr')
    with pytest.warns(RuntimeWarning, match=f"pending run {short['run_key']} is not a "
                                            "readable record"):
        assert store.import_pending() == (1, 0)
    assert store.keys() == {good.run_key} and not store.pending_file.exists()
    (kept,) = [json.loads(x) for x in store.rejected_file.read_text().splitlines()]
    assert kept["record"] == short and "final_test_acc" in kept["error"]
