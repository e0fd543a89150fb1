"""Time `paizoo regress eval` / `train` on synthetic metric tables of leaderboard-like sizes.

Usage: python benchmarks/bench_regression.py [--rows 150,400,1000] [--features 20,150]

Each table: 8 pruners x sparsities x seeds rows over two models, with the synthetic structure of
paizoo.regression.synthetic plus extra noise feature columns (NaN for one model, like per-layer
metrics). Prints seconds for the full evaluation (6 feature sets x 3 splits, importance, ranking
validation) and for training a predictor with its validation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from paizoo.regression.evaluate import evaluate
from paizoo.regression.synthetic import make_synthetic_table
from paizoo.regression.train import train_predictor

PRUNERS = {"synflow": 0.2, "snip": 0.6, "grasp": 0.9, "magnitude": 1.3, "random": 2.0,
           "erk": 0.8, "prospr": 0.4, "phew": 0.5}


def table(rows: int, features: int):  # type: ignore[no-untyped-def]
    sparsities = np.linspace(0.5, 0.995, max(2, rows // (8 * 2 * 3)))
    t = make_synthetic_table(pruners=PRUNERS, sparsities=tuple(sparsities), seeds=(0, 1, 2))
    rng = np.random.default_rng(0)
    extra = max(0, features - 10)
    noise = rng.standard_normal((len(t), extra))
    noise[np.ix_(t["model"].to_numpy() == "mlp", np.arange(1, extra, 2))] = np.nan
    cols = pd.DataFrame(noise, columns=[f"ramanujan.noise{i}" for i in range(extra)])
    return pd.concat([t, cols], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="150,400,1000")
    parser.add_argument("--features", default="20,150")
    args = parser.parse_args()
    print(f"{'rows':>6} {'features':>9} {'eval s':>8} {'train s':>8}")
    for n in map(int, args.rows.split(",")):
        for f in map(int, args.features.split(",")):
            t = table(n, f)
            start = time.perf_counter()
            evaluate(t, progress=False)
            ev = time.perf_counter() - start
            start = time.perf_counter()
            train_predictor(t)
            tr = time.perf_counter() - start
            print(f"{len(t):>6} {t.shape[1] - 6:>9} {ev:>8.1f} {tr:>8.1f}")


if __name__ == "__main__":
    main()
