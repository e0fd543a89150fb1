"""Several runners on one store (SQLite file or PostgreSQL): runs are claimed before training,
so each run is trained and recorded once; a killed runner's runs are taken over. The runners are
real processes (tests/_grid_runner.py) with a fake, fast ``run_fn`` that logs every call."""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import yaml
from test_store import _env, _record
from test_store_leases import _hold_lock

from paizoo.leaderboard import grid_status, load_config, parse_config, run_leaderboard
from paizoo.results import open_store

RUNNER = Path(__file__).resolve().parent / "_grid_runner.py"


def _grid(tmp_path: Path, store: str) -> Path:
    """14 runs: 2 dense + 2 pruners x 3 sparsities x 2 seeds."""
    cfg = {"name": "shared", "dataset": "digits", "store": store,
           "models": [{"name": "lenet_300_100"}],
           "pruners": [{"name": "random"}, {"name": "magnitude"}],
           "sparsities": [0.5, 0.8, 0.9], "seeds": [0, 1],
           "train": {"epochs": 1, "batch_size": 64}}
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _runner(config: Path, store: str, workdir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(RUNNER), str(config), store, str(workdir),
                             *extra], cwd=workdir, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _calls(workdir: Path) -> list[tuple[str, int]]:
    path = workdir / "calls.txt"
    if not path.exists():
        return []
    return [(k, int(p)) for k, p in (line.split() for line in path.read_text().splitlines())]


def test_two_runners_without_shards_train_every_run_once(store_url, tmp_path):
    config = _grid(tmp_path, store_url)
    keys = {s.key for s in load_config(config).specs()}
    runners = [_runner(config, store_url, tmp_path, "--wait-go", "--sleep", "0.3")
               for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [r.communicate(timeout=180) for r in runners]
    assert [r.returncode for r in runners] == [0, 0], [o[1][-2000:] for o in outputs]
    calls = _calls(tmp_path)
    counts = collections.Counter(k for k, _ in calls)
    assert set(counts) == keys and set(counts.values()) == {1}  # every run trained once
    reports = [json.loads(o[0].strip().splitlines()[-1]) for o in outputs]
    assert sum(r["ran"] for r in reports) == len(keys)
    assert all(r["ran"] >= 1 for r in reports), reports  # the grid was shared
    store = open_store(store_url)
    assert store.keys() == keys and len(store) == len(keys) and store.leases() == {}
    trainer = dict(calls)
    for key in keys:  # each log was written by the one process that trained the run
        lines = [json.loads(x) for x in (store.logs_dir / f"{key}.jsonl").read_text(
            ).splitlines()]
        assert [(x["event"], x["pid"]) for x in lines] == [("start", trainer[key]),
                                                          ("end", trainer[key])]


def test_a_killed_runner_is_resumed_without_duplicates(store_url, tmp_path):
    config = _grid(tmp_path, store_url)
    keys = {s.key for s in load_config(config).specs()}
    first = _runner(config, store_url, tmp_path, "--sleep", "1.0", "--ttl", "600")
    deadline = time.monotonic() + 120
    while len(_calls(tmp_path)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)  # kill -9 mid-run: the 4th run is being trained
    first.communicate(timeout=60)
    store = open_store(store_url)
    recorded = store.keys()
    assert 3 <= len(recorded) < len(keys)
    # the run it was training keeps its lease (600 s) after the runner died
    dead = [k for k, (owner, _) in store.leases().items()
            if owner.split(":")[1] == str(first.pid)]
    assert len(dead) <= 1 and not set(dead) & recorded
    start = time.monotonic()
    calls: list[str] = []  # the same grid again, in this process, with the default 120 s lease
    run_leaderboard(load_config(config), store, data=SimpleNamespace(name="digits"),
                    run_fn=_fake_run(calls), progress=False, echo=lambda _m: None)
    assert time.monotonic() - start < 60  # the dead runner's lease was taken over at once
    assert sorted(calls) == sorted(keys - recorded)  # the rest, each once
    assert store.keys() == keys and len(store) == len(keys) and store.leases() == {}


def test_a_runner_whose_lease_was_taken_over_stops_that_run_early(store_url, tmp_path):
    """A runner suspended past its lease's expiry (1 s) while training finds, at its next
    renewal, that another runner took the lease over: it stops that run at once (it would
    have trained 60 s more), says so, runs the rest of the grid and leaves the run to the
    other runner, whose record stands."""
    config = _grid(tmp_path, store_url)
    specs = load_config(config).specs()
    store = open_store(store_url)
    runner = _runner(config, store_url, tmp_path, "--ttl", "1", "--long-first", "60")
    deadline = time.monotonic() + 60
    while not _calls(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    key = _calls(tmp_path)[0][0]
    runner.send_signal(signal.SIGSTOP)  # suspended: its leases are not renewed
    try:
        time.sleep(2.0)
        assert store.leases()[key][1] < 0  # expired
        assert store.claim(key, "other-host:1:cafe", 300)  # another runner takes it over
    finally:
        runner.send_signal(signal.SIGCONT)
    while len(_calls(tmp_path)) < len(specs) and time.monotonic() < deadline:
        time.sleep(0.05)  # the runner goes on with the other runs
    assert store.leases()[key][0] == "other-host:1:cafe"
    other = _record(next(s for s in specs if s.key == key))
    other.mask_path, other.final_test_acc = None, 0.123
    store.add(other)  # the other runner records it; the waiting runner sees it done
    out, err = runner.communicate(timeout=120)
    assert runner.returncode == 0, err
    assert f"lost the lease of run {key}" in err and "other-host:1:cafe" in err
    stopped = re.search(r"STOPPED run \d+/\d+ .* after ([\d.]+) s: this runner's lease expired "
                        r"and other-host:1:cafe took it over; the run is left to it", out)
    assert stopped is not None, out
    assert float(stopped.group(1)) < 20  # not the 60 s the run would have taken
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["lost"] == [key] and summary["ran"] == len(specs) - 1
    assert [k for k, _ in _calls(tmp_path)].count(key) == 1
    assert store.get(key).final_test_acc == 0.123 and len(store) == len(specs)


def _fake_run(calls: list[str]):
    def run(spec, data, **_kw):
        calls.append(spec.key)
        rec = _record(spec)
        rec.mask_path = None
        return rec
    return run


def test_an_expired_lease_of_another_runner_is_taken_over(store_url, tmp_path):
    config = parse_config(yaml.safe_load(_grid(tmp_path, store_url).read_text()),
                          path=tmp_path / "g.yaml")
    store = open_store(store_url)
    specs = config.specs()
    busy = specs[3].key
    assert store.claim(busy, "another-host:1234:beef", 5)  # a runner elsewhere, then gone
    calls: list[str] = []
    data = SimpleNamespace(name="digits")
    report = run_leaderboard(config, store, data=data, run_fn=_fake_run(calls), progress=False,
                             echo=lambda _m: None, lease_ttl_s=30, wait_for_others=False)
    assert busy not in calls and len(report.ran) == len(specs) - 1
    assert grid_status(config, store).missing == [specs[3]]
    start = time.monotonic()
    messages: list[str] = []
    report = run_leaderboard(config, store, data=data, run_fn=_fake_run(calls), progress=False,
                             echo=messages.append, lease_ttl_s=2)
    assert calls.count(busy) == 1 and report.ran[0].run_key == busy
    assert time.monotonic() - start < 10 and any("waiting for 1 run" in m for m in messages)
    assert store.keys() == {s.key for s in specs} and store.leases() == {}


def test_runner_checks_the_store_and_imports_pending_runs_first(store_url, tmp_path):
    config = parse_config(yaml.safe_load(_grid(tmp_path, store_url).read_text()),
                          path=tmp_path / "g.yaml")
    store = open_store(store_url)
    done = _record(config.specs()[0])
    done.mask_path = None
    store.pending_file.parent.mkdir(parents=True, exist_ok=True)
    store.pending_file.write_text(json.dumps(done.to_row()) + "\n")
    calls: list[str] = []
    messages: list[str] = []
    report = run_leaderboard(config, store, data=SimpleNamespace(name="digits"),
                             run_fn=_fake_run(calls), progress=False, echo=messages.append)
    assert messages[0].startswith("imported 1 finished run(s)")
    assert done.run_key not in calls and report.already_done == 1
    assert len(calls) == len(store) - 1 == config.num_runs - 1
    assert not store.pending_file.exists()


def test_status_counts_the_runs_waiting_in_the_pending_file(store_url, tmp_path, capsys):
    from paizoo.cli import main

    cfg_path = _grid(tmp_path, store_url)
    config = load_config(cfg_path)
    store = open_store(store_url)
    specs = config.specs()
    records = [_record(s) for s in specs[:3]]
    for rec in records:
        rec.mask_path = None
    store.add(records[2])  # in the store and (again) in the pending file: done, not pending
    store.pending_file.parent.mkdir(parents=True, exist_ok=True)
    store.pending_file.write_text(json.dumps(records[0].to_row()) + "\n"
                                  + json.dumps(records[2].to_row()) + "\n" + '{"run_key": "x')
    # an import a killed process left half done still holds its records
    dead = store.pending_file.with_name(f"{store.pending_file.name}.importing-999999999-1")
    dead.write_text(json.dumps(records[1].to_row()) + "\n")
    status = grid_status(config, store)
    assert status.done == 1 and status.pending == specs[:2]
    assert main(["leaderboard", "status", str(cfg_path), "--missing", "--store", store_url]) == 0
    out = capsys.readouterr().out
    assert f"1/{config.num_runs} runs done on digits" in out
    assert (f"2 more finished run(s) wait in {store.pending_file} to be imported (the next "
            "`paizoo leaderboard run` on this store imports them)") in out
    assert out.count("[finished, waiting in the pending file]") == 2
    run_leaderboard(config, store, data=SimpleNamespace(name="digits"), run_fn=_fake_run([]),
                    progress=False, echo=lambda _m: None, limit=0)
    status = grid_status(config, store)
    assert status.done == 3 and status.pending == []


def test_a_run_finished_while_the_store_is_locked_is_kept_and_imported_once(store_url, tmp_path):
    config = parse_config(yaml.safe_load(_grid(tmp_path, store_url).read_text()),
                          path=tmp_path / "g.yaml")
    store = open_store(store_url, timeout=0.2)
    calls: list[str] = []
    fake = _fake_run(calls)
    blockers = []

    def run_then_lock(spec, data, **kw):  # another process takes the write lock meanwhile
        blockers.append(_hold_lock(store_url))
        return fake(spec, data, **kw)

    messages: list[str] = []
    data = SimpleNamespace(name="digits")
    report = run_leaderboard(config, store, data=data, run_fn=run_then_lock, progress=False,
                             echo=messages.append, limit=1, retry_s=0.5)
    blockers[0].close()
    assert len(report.ran) == 1 and len(store) == 0
    assert any(f"is kept in {store.pending_file}" in m for m in messages)
    again = open_store(store_url)
    messages.clear()
    report = run_leaderboard(config, again, data=data, run_fn=fake, progress=False,
                             echo=messages.append)
    assert messages[0].startswith("imported 1 finished run(s)")
    assert report.already_done == 1 and len(report.ran) == config.num_runs - 1
    assert sorted(calls) == sorted(s.key for s in config.specs())  # nothing trained twice
    assert again.keys() == {s.key for s in config.specs()} and len(again) == config.num_runs
    assert again.import_pending() == (0, 0)
