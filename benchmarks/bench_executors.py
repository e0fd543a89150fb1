"""Grid executors: the sequential runner vs Ray with N workers, side by side (one table).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_executors.py [--workers 2]
        [--config leaderboards/quick.yaml] [--noop-runs 200]

Rows (wall-clock seconds, same process, fresh temporary stores):
* ``grid``: the leaderboard config's whole grid, run one after the other in this process
  (one torch thread, as ``paizoo leaderboard run --threads 1``) and with ``--executor ray`` on a
  local cluster of ``--workers`` CPUs (one CPU per run). The Ray column counts from the first
  task to the last write; starting the cluster (and the workers importing torch) is shown on
  its own row and included in the ``with start-up`` ratio.
* ``sum of the runs' own times``: what each run measured itself, summed; equal in both columns
  when the workers get a free core each, larger on Ray when other processes take the CPUs.
* ``no-op runs``: ``--noop-runs`` runs whose run function returns a prepared record at once
  (nothing trained), through the whole driver path (claim, submit, wait, write the store),
  sequentially and on Ray; the difference per run is Ray's per-run overhead.

The work is embarrassingly parallel: the target is a grid ratio >= 0.9 x workers (1.8x on 2).
The machine's load average is printed with the figures (other processes share the CPUs).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "leaderboards" / "quick.yaml"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--noop-runs", type=int, default=200)
    args = parser.parse_args(argv)

    import torch

    from paizoo.leaderboard import load_config, parse_config, resolve_dataset, run_leaderboard
    from paizoo.leaderboard.ray_executor import RayExecutor
    from paizoo.results import open_store

    torch.set_num_threads(1)
    config = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="paizoo-bench-executors-"))
    rows: dict[str, tuple[float, float]] = {}
    data = resolve_dataset(config, notice=print)  # loaded once, outside the timings
    try:
        start = time.perf_counter()
        seq = run_leaderboard(config, open_store(work / "seq" / "paizoo.db"), progress=False,
                              echo=quiet, data=data)
        seq_s = time.perf_counter() - start

        executor = RayExecutor(num_cpus=args.workers)
        start = time.perf_counter()
        executor.start()
        import ray

        ray.get([ray.remote(num_cpus=1)(_warm).remote() for _ in range(args.workers)])
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        par = run_leaderboard(config, open_store(work / "ray" / "paizoo.db"), progress=False,
                              echo=quiet, data=data, executor=RayExecutor())
        ray_s = time.perf_counter() - start
        assert len(seq.ran) == len(par.ran) == config.num_runs, (len(seq.ran), len(par.ran))
        rows[f"grid: {config.name}, {config.num_runs} runs on {seq.dataset}"] = (seq_s, ray_s)
        # each run's own clock (prune + train + eval): longer on Ray when the two workers do
        # not get two free cores (other processes on the machine)
        own = [sum(r.prune_time_s + r.train_time_s + r.eval_time_s for r in rep.ran)
               for rep in (seq, par)]
        rows["sum of the runs' own times (prune+train+eval)"] = (own[0], own[1])

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
    print(f"| {'work':<46} | {'sequential':>10} | {'Ray':>8} | {'speed-up':>8} |")
    print(f"|{'-' * 48}|{'-' * 11}:|{'-' * 9}:|{'-' * 9}:|")
    for name, (a, b) in rows.items():
        print(f"| {name:<46} | {a:>10.2f} | {b:>8.2f} | {a / b:>7.2f}x |")
    grid_seq, grid_ray = next(iter(rows.values()))
    print(f"| {'Ray cluster start + worker warm-up':<46} | {'':>10} | {startup_s:>8.2f} | "
          f"{'':>8} |")
    print(f"\ngrid speed-up with start-up: {grid_seq / (grid_ray + startup_s):.2f}x; "
          f"target >= {0.9 * args.workers:.1f}x without it")
    seq_noop, ray_noop = rows[f"no-op runs: {args.noop_runs}"]
    print(f"per no-op run: sequential {1000 * seq_noop / args.noop_runs:.1f} ms, Ray "
          f"{1000 * ray_noop / args.noop_runs:.1f} ms -> Ray overhead "
          f"{1000 * (ray_noop - seq_noop) / args.noop_runs:.1f} ms per run")
    return 0


def _warm() -> int:
    import torch  # noqa: F401  (the workers' first import, kept out of the grid's time)

    import paizoo.leaderboard.executor  # noqa: F401

    return os.getpid()


if __name__ == "__main__":
    sys.exit(main())
