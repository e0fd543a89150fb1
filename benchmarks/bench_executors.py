"""Grid executors: the sequential runner vs Ray with N workers, side by side (one table).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_executors.py [--workers 2]
        [--config leaderboards/quick.yaml] [--noop-runs 200] [--repeat K] [--seeds N]

Rows (wall-clock seconds, same process, fresh temporary stores):
* ``grid``: the leaderboard config's whole grid, run one after the other in this process
  (one torch thread, as ``paizoo leaderboard run --threads 1``) and with ``--executor ray`` on a
  local cluster of ``--workers`` CPUs (one CPU per run), both from warm processes: before its
  timing, each process that runs runs (this one; each Ray worker) has done the same
  :func:`warm_up`: loaded the dataset and imported what a process's first run imports (the
  model zoo, the pruners, ``torch._dynamo``, which the first ``torch.optim`` optimiser of a
  process imports, about 1 s). Both columns count from the call of ``run_leaderboard`` (which
  checks every grid entry, orders the runs and, on Ray, submits them) to the last write.
* ``with start-up``: the grid plus getting there from a process that has imported paizoo:
  the warm-up for the sequential runner; starting the cluster and warming its workers (in
  parallel) for Ray. Printed under the table, with its own ratio.
* ``sum of the runs' own times``: what each run measured itself, summed; equal in both columns
  when the workers get a free core each, larger on Ray when other processes take the CPUs.
* ``other processes' CPU meanwhile``: CPU-seconds that processes other than this one and its
  Ray cluster used during each timing (:class:`OtherCpu`): near 0 when the columns had the
  machine to themselves; on a shared machine, the timings with a large figure are disturbed.
* ``--repeat K``: each grid is timed K times, the columns alternating; every timing is printed
  and the speed-up line takes each column's best.
* ``no-op runs``: ``--noop-runs`` runs whose run function returns a prepared record at once
  (nothing trained), through the whole driver path (claim, submit, wait, write the store),
  sequentially and on Ray; the difference per run is Ray's per-run overhead.
* ``--seeds N`` (N > 1) adds a second grid row, labelled as such: the same grid with seeds
  0..N-1 (N times as many runs), where the last round's idle workers weigh less.

The work is embarrassingly parallel: the target is a grid ratio >= 0.9 x workers (1.8x on 2).
R runs of nearly equal length on W workers take ceil(R/W) rounds, so the best ratio is
R / ceil(R/W) (13 runs on 2 workers: 1.86x); the table prints it for each grid. The machine's
load average is printed with the figures (other processes share the CPUs).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from paizoo.leaderboard.ray_executor import RayExecutor

ROOT = Path(__file__).resolve().parents[1]


class NoopRun:
    """A run function that trains nothing: ``template`` re-keyed for each spec."""

    def __init__(self, template) -> None:
        self.template = template

    def __call__(self, spec, data, **_kwargs):
        return dataclasses.replace(self.template, run_key=spec.key, seed=spec.seed,
                                   mask_path=None, log_path=None)


def quiet(_message: str) -> None:
    pass


def timed(fn):
    """``(fn(), wall-clock seconds, other processes' CPU-seconds meanwhile)``."""
    others = OtherCpu()
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start, others.seconds()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "leaderboards" / "quick.yaml"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--noop-runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each grid K times, alternating the columns (other "
                             "processes on a shared machine disturb some timings)")
    parser.add_argument("--seeds", type=int, default=1,
                        help="N > 1: also a grid row with the config's grid on seeds 0..N-1")
    args = parser.parse_args(argv)

    import ray
    import torch

    from paizoo.leaderboard import load_config, parse_config, resolve_dataset, run_leaderboard
    from paizoo.leaderboard.executor import DataSource
    from paizoo.results import open_store

    torch.set_num_threads(1)
    config = load_config(args.config)
    grids = [config]
    if args.seeds > 1:
        grids.append(dataclasses.replace(config, name=f"{config.name} x {args.seeds} seeds",
                                         seeds=list(range(args.seeds))))
    work = Path(tempfile.mkdtemp(prefix="paizoo-bench-executors-"))
    rows: dict[str, tuple[float, float]] = {}
    notes: list[str] = []
    start = time.perf_counter()
    data = resolve_dataset(config, notice=print)
    source = DataSource(name=data.name, root=config.data_root if data.name == config.dataset
                        else None, augment=config.train.augment, device="cpu")
    warm_up()
    seq_startup_s = time.perf_counter() - start
    try:
        start = time.perf_counter()
        RayExecutor(num_cpus=args.workers).start()
        # one warm-up per worker process: all submitted at once, each holding its CPU
        pids = ray.get([ray.remote(num_cpus=1)(warm_up).remote(source)
                        for _ in range(args.workers)])
        ray_startup_s = time.perf_counter() - start
        assert len(set(pids)) == args.workers, pids
        for i, grid in enumerate(grids):
            best: list[float] = [math.inf, math.inf]
            for rep in range(args.repeat):
                seq, seq_s, seq_others = timed(lambda g=grid, i=i, rep=rep: run_leaderboard(
                    g, open_store(work / f"seq{i}-{rep}" / "paizoo.db"), progress=False,
                    echo=quiet, data=data))
                executor = CountingRayExecutor()
                par, ray_s, ray_others = timed(lambda g=grid, i=i, rep=rep, e=executor:
                                               run_leaderboard(
                    g, open_store(work / f"ray{i}-{rep}" / "paizoo.db"), progress=False,
                    echo=quiet, data=data, executor=e))
                assert len(seq.ran) == len(par.ran) == grid.num_runs, (len(seq.ran),
                                                                       len(par.ran))
                label = ("grid" if i == 0 else "larger grid") + \
                    (f" #{rep + 1}" if args.repeat > 1 else "")
                rows[f"{label}: {grid.name}, {grid.num_runs} runs on {seq.dataset}"] = \
                    (seq_s, ray_s)
                # each run's own clock (prune + train + eval): longer on Ray when the workers
                # do not get a free core each (other processes on the machine)
                own = [sum(r.prune_time_s + r.train_time_s + r.eval_time_s for r in rp.ran)
                       for rp in (seq, par)]
                tag = f" [{label}]" if args.repeat > 1 or i else ""
                rows[f"  sum of the runs' own times{tag}"] = (own[0], own[1])
                rows[f"  other processes' CPU meanwhile, core-s{tag}"] = (seq_others,
                                                                          ray_others)
                best = [min(best[0], seq_s), min(best[1], ray_s)]
                rounds = -(-grid.num_runs // args.workers)
                notes.append(f"{label}: {grid.num_runs} runs on {args.workers} workers take "
                             f"{rounds} rounds: at best {grid.num_runs / rounds:.2f}x; Ray ran "
                             f"them on {len(executor.pids)} worker processes, {executor.loaded}"
                             " of its runs loaded the dataset (0: the warm-up reached every "
                             "worker)")
            if i == 0:
                first = (best[0], best[1])

        # no-op runs: one dense run per seed, each returning a prepared record at once
        template = seq.ran[0]
        noop = parse_config({"name": "noop", "dataset": seq.dataset,
                             "models": [{"name": config.models[0].name}], "pruners": [],
                             "seeds": list(range(args.noop_runs)),
                             "train": config.train_for(config.models[0], seq.dataset).to_dict()})
        timings = []
        for name, executor in (("seq", None), ("ray", RayExecutor())):
            store = open_store(work / f"noop-{name}" / "paizoo.db")
            start = time.perf_counter()
            report = run_leaderboard(noop, store, progress=False, echo=quiet,
                                     data=data, run_fn=NoopRun(template), executor=executor)
            timings.append(time.perf_counter() - start)
            assert len(report.ran) == len(store) == args.noop_runs
        rows[f"no-op runs: {args.noop_runs}"] = (timings[0], timings[1])
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    print(f"Grid executors: sequential vs Ray with {args.workers} workers (wall clock, s); "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    print(f"| {'work':<58} | {'sequential':>10} | {'Ray':>8} | {'speed-up':>8} |")
    print(f"|{'-' * 60}|{'-' * 11}:|{'-' * 9}:|{'-' * 9}:|")
    for name, (a, b) in rows.items():
        ratio = "" if "CPU meanwhile" in name else f"{a / b:.2f}x"
        print(f"| {name:<58} | {a:>10.2f} | {b:>8.2f} | {ratio:>8} |")
    print(f"| {'start-up: warm-up / cluster start + warm-up':<58} | {seq_startup_s:>10.2f} | "
          f"{ray_startup_s:>8.2f} | {'':>8} |")
    grid_seq, grid_ray = first
    best = " (best of each column)" if args.repeat > 1 else ""
    print(f"\ngrid speed-up{best} {grid_seq / grid_ray:.2f}x (target >= "
          f"{0.9 * args.workers:.1f}x); "
          f"with start-up: {grid_seq + seq_startup_s:.2f} s vs {grid_ray + ray_startup_s:.2f} s"
          f" = {(grid_seq + seq_startup_s) / (grid_ray + ray_startup_s):.2f}x")
    for note in notes:
        print(note)
    seq_noop, ray_noop = rows[f"no-op runs: {args.noop_runs}"]
    print(f"per no-op run: sequential {1000 * seq_noop / args.noop_runs:.1f} ms, Ray "
          f"{1000 * ray_noop / args.noop_runs:.1f} ms -> Ray overhead "
          f"{1000 * (ray_noop - seq_noop) / args.noop_runs:.1f} ms per run")
    return 0


class OtherCpu:
    """CPU-seconds (user + system, all cores) that processes other than this one and its
    descendants (its Ray cluster) use from now until :meth:`seconds`: the machine's busy time
    (``/proc/stat``) minus this process tree's. Other sessions' work on a shared machine shows
    here; near 0 when the columns had the cores to themselves."""

    def __init__(self) -> None:
        self.start = self._busy() - self._mine()

    def seconds(self) -> float:
        return self._busy() - self._mine() - self.start

    @staticmethod
    def _busy() -> float:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _mine() -> float:
        """CPU-seconds of this process and its descendants, living and reaped (``cutime``)."""
        parent, cpu = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = (Path("/proc") / entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(stat[1])
            cpu[int(entry)] = sum(int(v) for v in stat[11:15])  # utime stime cutime cstime
        mine, changed = {os.getpid()}, True
        while changed:
            changed = False
            for pid, ppid in parent.items():
                if ppid in mine and pid not in mine:
                    mine.add(pid)
                    changed = True
        return sum(cpu.get(pid, 0) for pid in mine) / os.sysconf("SC_CLK_TCK")


class CountingRayExecutor(RayExecutor):
    """A Ray executor that also counts the worker processes its results came from and the
    runs that had to load the dataset."""

    def __init__(self) -> None:
        super().__init__()
        self.pids: set[int] = set()
        self.loaded = 0

    def wait(self, timeout: float):
        done = super().wait(timeout)
        for finished in done:
            if finished.result is not None:
                self.pids.add(finished.result.pid)
                self.loaded += finished.result.loaded_data
        return done


def warm_up(source=None) -> int:
    """What a process's first run does once, done before the timings: load the dataset of
    ``source`` (on a worker: into its cache, :func:`~paizoo.leaderboard.executor.load_data_once`;
    the sequential runner is given the dataset), import the model zoo and the pruners, and
    build a ``torch.optim`` optimiser (a process's first one imports ``torch._dynamo``).
    Returns the process id."""
    import torch

    import paizoo.api
    import paizoo.models
    import paizoo.pruners  # noqa: F401  (imported for the warm-up)
    from paizoo.leaderboard.executor import load_data_once

    if source is not None:
        load_data_once(source)
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return os.getpid()


if __name__ == "__main__":
    sys.exit(main())
