"""Shared pieces of the Ray and SLURM (submitit) executor tests: a tiny grid, a run function
that leaves a trace of every attempt and can kill its own worker process, and a driver script
that the tests start as a subprocess and kill.

Workers unpickle the run function; this module is not importable on them (``tests/`` is not on
their path), so the tests register it to be pickled by value.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from paizoo.training.experiment import run_experiment

REPO = Path(__file__).resolve().parents[1]


def grid(tmp_path: Path, **changes: Any) -> dict:
    """Dense + two pruners at two sparsities on digits, LeNet-300-100, one 1-epoch seed."""
    cfg = {
        "name": "tiny",
        "dataset": "digits",
        "store": str(tmp_path / "runs" / "paizoo.db"),
        "models": [{"name": "lenet_300_100", "label": "LeNet-300-100"}],
        "pruners": [{"label": "random (ERK)", "name": "random",
                     "config": {"distribution": "erk"}},
                    {"label": "SNIP", "name": "snip"}],
        "sparsities": [0.5, 0.9],
        "seeds": [0],
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.1, "device": "cpu"},
        "pruning_data": {"batch_size": 32, "samples_per_class": 2},
    }
    cfg.update(changes)
    return cfg


def write_grid(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class TracedRun:
    """:func:`run_experiment`, leaving ``<folder>/<run key>.<pid>.<ns>`` at each attempt.

    ``kill_key``: the first attempt of that run kills its own process (SIGKILL) after its
    training epoch, before the result can go back. ``sleep_s``: wait before running (to
    keep runs in flight while a test kills the driver).
    """

    def __init__(self, folder: str | Path, kill_key: str | None = None,
                 sleep_s: float = 0.0) -> None:
        self.folder, self.kill_key, self.sleep_s = str(folder), kill_key, sleep_s

    def __call__(self, spec: Any, data: Any, **kwargs: Any) -> Any:
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{spec.key}.{os.getpid()}.{time.time_ns()}").touch()
        time.sleep(self.sleep_s)
        on_epoch = None
        marker = folder / "killed"
        if spec.key == self.kill_key and not marker.exists():
            def on_epoch(_metrics: Any) -> None:
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)
        return run_experiment(spec, data, on_epoch=on_epoch, **kwargs)


def niceness() -> int:
    """This process's nice value (run on a worker)."""
    return os.nice(0)


def attempts(folder: Path) -> dict[str, int]:
    """``{run key: attempts}`` from the traces of :class:`TracedRun`."""
    out: dict[str, int] = {}
    for path in Path(folder).glob("*.*.*"):
        key = path.name.split(".")[0]
        out[key] = out.get(key, 0) + 1
    return out


def count_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


DRIVER = """
import sys, yaml
sys.path.insert(0, {tests!r})
import _executor_testlib as lib
from paizoo.leaderboard import parse_config, run_leaderboard
from paizoo.results import ResultStore
{make_executor}
config = parse_config(yaml.safe_load(open({config!r})))
run_leaderboard(config, ResultStore(config.store), executor=executor, progress=False,
                run_fn=lib.TracedRun({traces!r}, sleep_s={sleep_s!r}), max_concurrent=1)
"""


def kill_driver_mid_grid(cfg: dict, tmp_path: Path, make_executor: str, traces: Path,
                         sleep_s: float, timeout_s: float = 240.0) -> int:
    """Start a driver subprocess on ``cfg``'s grid, SIGKILL it as soon as its store has a run,
    and return how many runs the store holds then."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER.format(tests=str(REPO / "tests"), make_executor=make_executor,
                                    config=str(write_grid(tmp_path, cfg)), traces=str(traces),
                                    sleep_s=sleep_s))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    db = Path(cfg["store"])
    deadline = time.monotonic() + timeout_s
    try:
        while count_rows(db) == 0:
            if proc.poll() is not None:
                raise AssertionError(f"the driver exited ({proc.returncode}) before the kill: "
                                     + (tmp_path / "driver.log").read_text()[-3000:])
            if time.monotonic() > deadline:
                raise AssertionError("no run recorded in time: "
                                     + (tmp_path / "driver.log").read_text()[-3000:])
            time.sleep(0.2)
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    return count_rows(db)

