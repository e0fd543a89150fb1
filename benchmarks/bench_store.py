"""Results store speed: SQLite file vs PostgreSQL, side by side (prints one table).

    PYTHONPATH=. python benchmarks/bench_store.py [--runs 1000] [--repeat 3] [--postgres URL]

Rows (wall-clock seconds; SQLite and PostgreSQL columns from the same run):
* ``record N runs``: N finished runs, each written as the runner does, in its own transaction;
* ``claim + record N runs``: the runner's full path per run (claim the lease, then record the
  run, which ends the lease);
* ``import the leaderboard``: the committed Fashion-MNIST store's runs (a copy of
  leaderboards/fashion-mnist.db) added one by one to an empty store;
* ``read the leaderboard's runs``: :func:`~paizoo.leaderboard.render.collect_runs` of that grid;
* ``render the leaderboard``: :func:`~paizoo.leaderboard.render_leaderboard` (Markdown, CSV and
  the plot, which dominates).
Medians over ``--repeat`` repetitions (the backends alternate, so both see the same machine
load). Without ``--postgres`` a
throwaway PostgreSQL server is started from Debian's binaries (as the tests do: Unix socket,
``fsync=off``, so the PostgreSQL column is a lower bound for a durable server; SQLite runs with
its defaults here: WAL, ``synchronous=NORMAL``).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def synthetic_records(n: int) -> list:
    """``n`` distinct finished runs shaped like the Fashion-MNIST grid's (10 epochs, 4 layers)."""
    from paizoo.results import RunRecord, RunSpec, library_versions
    from paizoo.training import TrainConfig

    train = TrainConfig(epochs=10)
    out = []
    for i in range(n):
        spec = RunSpec(dataset="bench", model="lenet5", pruner="random",
                       sparsity=round(0.5 + 0.49 * (i % 97) / 97, 6), seed=i // 97, train=train)
        history = [{"epoch": e, "lr": 0.05, "train_loss": 0.5, "train_acc": 0.8,
                    "test_loss": 0.6, "test_acc": 0.79, "epoch_time_s": 6.0}
                   for e in range(1, 11)]
        out.append(RunRecord(
            run_key=spec.key, dataset=spec.dataset, model=spec.model, model_config={},
            pruner=spec.pruner, pruner_config={}, prune_data_config=None,
            sparsity=spec.sparsity, seed=spec.seed, train_hash=train.hash(),
            train_config=train.to_dict(), final_test_acc=0.79, best_test_acc=0.8,
            best_epoch=9, final_train_acc=0.8, final_train_loss=0.5, final_test_loss=0.6,
            dense_test_acc=0.9, density=1 - spec.sparsity, kept=1000, total=60000,
            layer_densities={f"layer{j}.weight": 0.1 * j for j in range(4)},
            layer_collapse=False, collapsed_layers=[], prune_time_s=0.1, train_time_s=60.0,
            eval_time_s=1.0, epochs=10, history=history, mask_path=None, log_path=None,
            device="cpu", versions=library_versions()))
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(open_fresh: Callable[[], object], source, config, records,
            out_dir: Path) -> dict[str, float]:
    """One repetition of every row on fresh stores from ``open_fresh``."""
    from paizoo.leaderboard.render import collect_runs, render_leaderboard
    from paizoo.results import owner_id

    rows: dict[str, float] = {}
    store = open_fresh()
    rows[f"record {len(records)} runs"] = timed(lambda: [store.add(r) for r in records])
    store.close()
    store = open_fresh()
    owner = owner_id()

    def claim_and_record() -> None:
        for r in records:
            assert store.claim(r.run_key, owner, 120)
            store.add(r)

    rows[f"claim + record {len(records)} runs"] = timed(claim_and_record)
    store.close()
    store = open_fresh()
    grid = source.records()
    rows[f"import the leaderboard ({len(grid)} runs)"] = timed(lambda: [store.add(r)
                                                                          for r in grid])
    rows[f"read the leaderboard's runs ({len(collect_runs(config, store))})"] = timed(
        lambda: collect_runs(config, store))
    rows["render the leaderboard (md, csv, png)"] = timed(
        lambda: render_leaderboard(config, store, out_dir=out_dir))
    store.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=None,
                        help="an empty PostgreSQL database URL (default: start a throwaway "
                             "server)")
    args = parser.parse_args(argv)

    from paizoo.leaderboard import load_config
    from paizoo.results import open_store

    work = Path(tempfile.mkdtemp(prefix="paizoo-bench-store-"))
    server = None
    try:
        committed = ROOT / "leaderboards" / "fashion-mnist.db"
        shutil.copy(committed, work / "source.db")  # never migrate the committed file
        source = open_store(work / "source.db")
        config = load_config(ROOT / "leaderboards" / "fashion-mnist.yaml")
        records = synthetic_records(args.runs)
        counter = iter(range(1000))

        def fresh_sqlite():
            return open_store(work / f"sqlite-{next(counter)}.db")

        if args.postgres:
            def fresh_postgres():
                store = open_store(args.postgres, files_dir=work / "pg-files")
                with store.transaction() as conn:  # the given database is emptied each time
                    for table in ("runs", "leases", "run_files"):
                        conn.execute(f"DELETE FROM {table}")
                return store
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from _postgres import start_server

            server, reason = start_server()
            if server is None:
                print(f"cannot benchmark PostgreSQL: {reason}")
                return 1

            def fresh_postgres():
                return open_store(server.new_database(), files_dir=work / "pg-files")

        times: dict[str, dict[str, list[float]]] = {"SQLite": {}, "PostgreSQL": {}}
        for _ in range(args.repeat):  # alternate the backends so both see the same load
            for name, opener in (("SQLite", fresh_sqlite), ("PostgreSQL", fresh_postgres)):
                for op, seconds in measure(opener, source, config, records,
                                           work / f"render-{name}").items():
                    times[name].setdefault(op, []).append(seconds)
        results = {name: {op: statistics.median(v) for op, v in rows.items()}
                   for name, rows in times.items()}
        source.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"Results store: SQLite vs PostgreSQL (seconds, wall clock, median of {args.repeat} "
          "repetitions on fresh stores)")
    print(f"| {'operation':<42} | {'SQLite':>8} | {'PostgreSQL':>10} | {'PG / SQLite':>11} |")
    print(f"|{'-' * 44}|{'-' * 9}:|{'-' * 11}:|{'-' * 12}:|")
    for op, sqlite_s in results["SQLite"].items():
        pg_s = results["PostgreSQL"][op]
        print(f"| {op:<42} | {sqlite_s:>8.3f} | {pg_s:>10.3f} | {pg_s / sqlite_s:>10.2f}x |")
    n = args.runs
    print(f"\nper recorded run: SQLite {1000 * results['SQLite'][f'record {n} runs'] / n:.2f} ms, "
          f"PostgreSQL {1000 * results['PostgreSQL'][f'record {n} runs'] / n:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
