"""A leaderboard runner process for the shared-store tests (tests/test_leaderboard_shared.py).

    python tests/_grid_runner.py CONFIG STORE WORKDIR [--ttl S] [--sleep S] [--wait-go]
                                 [--long-first S]

Runs the grid with a fake ``run_fn`` that appends ``<run key> <pid>`` to WORKDIR/calls.txt (one
line per training), writes the run's log as two JSON lines with a pause between them (so two
processes training the same run would interleave), sleeps, and returns a record. With
``--wait-go`` it first writes WORKDIR/ready-<pid> and waits for WORKDIR/go, so that several
runners start together. With ``--long-first`` the first run it trains takes S seconds, in short
steps that each ask the runner's ``should_stop`` (as the training loop does), and stops with
``TrainingStopped`` when that says so.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

from test_store import _record

from paizoo.leaderboard import load_config, run_leaderboard
from paizoo.results import open_store
from paizoo.training import TrainingStopped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("store")
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--ttl", type=float, default=120.0)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--wait-go", action="store_true")
    parser.add_argument("--long-first", type=float, default=0.0)
    args = parser.parse_args()
    pid = os.getpid()

    started: list[str] = []

    def fake_run(spec, data, *, logs_dir, should_stop=None, **_kw):
        fd = os.open(args.workdir / "calls.txt", os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{spec.key} {pid}\n".encode())
        os.close(fd)
        started.append(spec.key)
        if len(started) == 1:
            end = time.monotonic() + args.long_first
            while time.monotonic() < end:  # the steps of a long training
                time.sleep(0.02)
                if should_stop is not None and should_stop():
                    raise TrainingStopped(f"stopped {spec.key}")
        log = Path(logs_dir) / f"{spec.key}.jsonl"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)
        with open(log, "a") as fh:
            for event in ("start", "end"):
                fh.write(json.dumps({"event": event, "pid": pid}) + "\n")
                fh.flush()
                if event == "start":
                    time.sleep(args.sleep)
        record = _record(spec)
        record.log_path, record.mask_path = str(log), None
        return record

    if args.wait_go:
        (args.workdir / f"ready-{pid}").touch()
        deadline = time.monotonic() + 120
        while not (args.workdir / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    config = load_config(args.config)
    store = open_store(args.store)
    report = run_leaderboard(config, store, data=SimpleNamespace(name=config.dataset),
                             run_fn=fake_run, progress=False, lease_ttl_s=args.ttl)
    print(json.dumps({"pid": pid, "ran": len(report.ran), "done": report.already_done,
                      "lost": [s.key for s in report.lost_leases]}))


if __name__ == "__main__":
    main()
