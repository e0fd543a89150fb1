"""Time and peak memory of paizoo.metrics on ResNet-20 and (matrix-free groups) timm ResNet-50.

Each case runs in a fresh subprocess so that its peak resident memory is its own. Pruning is
timed separately and is not part of the metrics time. Per-group times share one context, as in
``paizoo.metrics.compute`` (the graph/operator/linearised network are built by the first group
that needs them and reused).

    python benchmarks/bench_metrics.py                    # all cases
    python benchmarks/bench_metrics.py --cases resnet20-0.6 --pruner magnitude

Targets (issue "Topological metrics of sparse networks", 2-core machine): ResNet-20 at sparsity
0.6 full suite <= 10 s; ResNet-50 matrix-free groups <= 5 min and <= 8 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "resnet20-0.6": {"model": "resnet20", "shape": [3, 32, 32], "sparsity": 0.6,
                     "scale": "auto", "groups": None},
    "resnet20-0.98": {"model": "resnet20", "shape": [3, 32, 32], "sparsity": 0.98,
                      "scale": "auto", "groups": None},
    # synflow's 100 float64 rounds on an ImageNet ResNet-50 take long on a CPU; the metrics'
    # cost does not depend on how the mask was chosen, so this case uses layer-wise magnitude
    "resnet50-0.9": {"model": "timm:resnet50", "shape": [3, 224, 224], "sparsity": 0.9,
                     "scale": "matrix_free", "groups": None, "pruner": "magnitude"},
}


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(spec: dict) -> dict:
    import warnings

    import paizoo
    from paizoo.metrics.api import _single_thread_blas
    from paizoo.metrics.context import MetricContext
    from paizoo.metrics.registry import get_metric_group, list_metric_groups
    from paizoo.models import create_model
    from paizoo.pruners import list_pruners

    warnings.simplefilter("ignore")
    pruner = spec["pruner"]
    if pruner == "auto":
        pruner = "synflow" if "synflow" in list_pruners() else "magnitude"
    model = create_model(spec["model"], seed=0)
    start = time.perf_counter()
    config = {"scope": "layer"} if pruner == "magnitude" else {}
    mask = paizoo.prune(model, pruner, sparsity=spec["sparsity"],
                        input_shape=tuple(spec["shape"]), **config).cpu()
    prune_s = time.perf_counter() - start
    baseline = _rss_mb()
    ctx = MetricContext(model, mask, tuple(spec["shape"]), scale=spec["scale"])
    groups = spec["groups"] or list_metric_groups(default_only=True)
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    peaks: dict[str, float] = {}
    row: dict[str, float] = {}
    with _single_thread_blas():
        for name in groups:
            t, c = time.perf_counter(), time.process_time()
            for key, value in get_metric_group(name).func(ctx).items():
                row[f"{name}.{key}"] = float(value)
            times[name] = time.perf_counter() - t
            cpu[name] = time.process_time() - c
            peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"pruner": pruner, "prune_s": prune_s, "times": times, "total_s": sum(times.values()),
            "cpu": cpu, "total_cpu_s": sum(cpu.values()), "peaks_mb": peaks,
            "peak_mb": peak, "baseline_mb": baseline, "metrics": len(row),
            "edges": ctx.edge_estimate() if spec["shape"] else None,
            "nan": sum(1 for v in row.values() if v != v),
            "row": {k: v for k, v in row.items() if k.count(".") == 1}}


HEADLINE = ("density.global", "effective.sparsity", "effective.paths_log10",
            "effective.nodes_frac", "ramanujan.delta_r_mean", "ramanujan.imdb_mean",
            "ramanujan.ramanujan_frac", "spectral.gap_mean", "spectral.network_lambda2",
            "scatter.min", "mge.sources_frac", "mge.sinks_frac", "mge.disconnected_frac",
            "mge.r_in_frac", "mge.r_out_frac", "mge.components", "mge.spectral_gap")


def pruner_table(pruners: list[str], sparsity: float, csv: str | None) -> None:
    """One metrics row per pruner: ResNet-20, 3x32x32, seed 0; data-driven pruners get the
    seeded synthetic dataset (no real data is downloaded)."""
    import warnings

    import pandas as pd

    import paizoo
    from paizoo.data import load_dataset, pruning_batches
    from paizoo.metrics import compute
    from paizoo.models import create_model
    from paizoo.pruners import get_pruner_class

    warnings.simplefilter("ignore")
    dataset = load_dataset("synthetic:3x32x32:10", split="train")
    rows = {}
    for name in pruners:
        model = create_model("resnet20", seed=0)
        data = (pruning_batches(dataset, name, num_classes=10, seed=0)
                if get_pruner_class(name).requires_data else None)
        try:
            start = time.perf_counter()
            mask = paizoo.prune(model, name, sparsity=sparsity, data=data,
                                input_shape=(3, 32, 32), seed=0)
            prune_s = time.perf_counter() - start
            start = time.perf_counter()
            row = compute(model, mask, (3, 32, 32))
            rows[name] = {**row, "prune_s": prune_s, "metrics_s": time.perf_counter() - start}
        except Exception as exc:  # one failing pruner must not hide the others
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    frame = pd.DataFrame.from_dict(rows, orient="index")
    if csv:
        frame.to_csv(csv)
    cols = [c for c in HEADLINE if c in frame.columns] + ["metrics_s"]
    short = {c: c.replace("effective.", "eff.").replace("ramanujan.", "ram.")
             .replace("spectral.", "spec.") for c in cols}
    with pd.option_context("display.width", 250, "display.max_columns", 40,
                           "display.float_format", "{:.4g}".format):
        print(frame[cols].rename(columns=short).to_string())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--pruner", default="auto",
                        help="pruner (default: synflow if registered, else magnitude per layer)")
    parser.add_argument("--pruner-table", default=None, metavar="PRUNERS",
                        help="instead: one metrics row per pruner (comma list, or 'all') for "
                             "ResNet-20 at --sparsity")
    parser.add_argument("--sparsity", type=float, default=0.98)
    parser.add_argument("--csv", default=None, help="with --pruner-table: write all columns")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.pruner_table:
        from paizoo.pruners import list_pruners

        names = list_pruners() if args.pruner_table == "all" else args.pruner_table.split(",")
        pruner_table(names, args.sparsity, args.csv)
        return 0
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    results = {}
    for name in args.cases.split(","):
        spec = {"pruner": args.pruner, **CASES[name]}
        out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)],
                             capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            print(f"{name}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    groups = sorted({g for r in results.values() for g in r["times"]})
    header = (f"{'case':<15} {'pruner':<10} {'edges':>12} {'prune s':>8} "
              + " ".join(f"{g[:14]:>14}" for g in groups)
              + f" {'total s':>12} {'peak MB':>8} {'+MB':>7} {'NaN':>5}")
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for name, r in results.items():
        cells = " ".join(f"{r['times'].get(g, nan):>6.2f}/{r['cpu'].get(g, nan):<7.2f}"
                         for g in groups)
        print(f"{name:<15} {r['pruner']:<10} {r['edges'] or 0:>12,} {r['prune_s']:>8.2f} {cells} "
              f"{r['total_s']:>5.2f}/{r['total_cpu_s']:<6.2f} {r['peak_mb']:>8.0f} "
              f"{r['peak_mb'] - r['baseline_mb']:>7.0f} {r['nan']:>5}")
        print(f"{'':<15} {'peak MB':<10} {'':>12} {'':>8} "
              + " ".join(f"{r['peaks_mb'].get(g, nan):>14.0f}" for g in groups))
    print(f"(per group: wall s / CPU s (process_time, all threads); second line: process peak RSS "
          f"after the group. machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          "peak MB = process peak RSS, +MB = over the RSS after model creation and pruning)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
