"""``paizoo evolve``: SET training from a PaI mask, with the topology's drift measured by NNSTD.

For each seed the model is initialised and pruned at initialisation as ``paizoo train`` does, then
trained with SET (:class:`paizoo.training.set.SETSchedule`). At step 0 and after every topology
update the command records the test accuracy and the mask; afterwards it computes the NNSTD
(Liu et al. 2020, :func:`paizoo.metrics.nnstd.nnstd`) of each mask against the run's initial mask
and against the mask of the next seed's run at the same step (seeds taken cyclically). This
reproduces the observation of Liu et al. that SET runs from different seeds end in very different
topologies (high NNSTD) with similar accuracy.

Outputs in ``--out``: ``nnstd.csv`` (seed, step, epoch, nnstd_vs_initial, nnstd_vs_other_seed,
test_acc), ``nnstd.png`` (NNSTD and test accuracy over training), ``summary.md`` (a short table),
and the masks of every update under ``masks/seed<seed>/``.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Any

from .common import parse_kv
from .train import add_train_arguments, train_config_from_args

CSV_FIELDS = ("seed", "step", "epoch", "nnstd_vs_initial", "nnstd_vs_other_seed", "test_acc")


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; write e.g. 0,1") from exc
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"bad seed list {text!r}; give distinct seeds, e.g. 0,1")
    return seeds


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evolve", help="train with SET from a PaI mask and track the topology with NNSTD",
        description="Prune at initialisation, train with SET (Mocanu et al. 2018: every "
                    "--delta-t steps drop the fraction --zeta of smallest-magnitude weights per "
                    "layer and regrow as many at random) and write the NNSTD (Liu et al. 2020) "
                    "of the mask at every update against the initial mask and against the run "
                    "of the next seed. Example: paizoo evolve --model lenet_300_100 --dataset "
                    "fashion-mnist --pruner random --sparsity 0.9 --epochs 10 --delta-t 100 "
                    "--zeta 0.3 --seeds 0,1 --out leaderboards/set-evolution")
    p.add_argument("--model", required=True, help="paizoo model (see `paizoo models`)")
    p.add_argument("--model-option", "-m", action="append", metavar="KEY=VALUE",
                   help="model keyword argument (repeatable)")
    p.add_argument("--dataset", required=True, help="e.g. fashion-mnist, digits")
    p.add_argument("--data-root", default=None, help="folder holding the dataset's files")
    p.add_argument("--pruner", default="random", help="PaI pruner giving the initial mask")
    p.add_argument("--sparsity", type=float, required=True, help="fraction pruned, 0 < s < 1")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="pruner option (repeatable)")
    p.add_argument("--samples-per-class", type=int, default=10,
                   help="pruning data for data-driven pruners: samples per class")
    p.add_argument("--prune-batch-size", type=int, default=256,
                   help="pruning data for data-driven pruners: batch size")
    g = p.add_argument_group("SET")
    g.add_argument("--delta-t", type=int, default=100, help="optimiser steps between updates")
    g.add_argument("--zeta", type=float, default=0.3,
                   help="fraction of each layer's kept weights dropped and regrown per update")
    g.add_argument("--exclude-dropped", action="store_true",
                   help="never regrow a connection dropped in the same update")
    g.add_argument("--seeds", type=_seeds, default=(0, 1),
                   help="runs to compare, e.g. 0,1 (each seeds init, pruner, batches, regrowth)")
    add_train_arguments(p)
    p.add_argument("--out", required=True, help="output folder (CSV, PNG, summary, masks)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evolve)


def _run_seed(args: argparse.Namespace, seed: int, data: Any, out: Path) -> dict[str, Any]:
    """Prune and SET-train one seed; returns its masks, steps, epochs and accuracies."""
    import torch

    from ..results.record import RunSpec
    from ..training.batching import Batches
    from ..training.config import PruneDataConfig
    from ..training.experiment import build_model, prune_for
    from ..training.loop import evaluate, select_device, train
    from ..training.set import SETSchedule, SETUpdate

    config = train_config_from_args(args)
    pruner = args.pruner.lower()
    from ..pruners import get_pruner_class

    spec = RunSpec(dataset=data.name, model=args.model, pruner=pruner, sparsity=args.sparsity,
                   seed=seed, train=config, model_config=parse_kv(args.model_option),
                   pruner_config=parse_kv(args.option),
                   prune_data=PruneDataConfig(batch_size=args.prune_batch_size,
                                              samples_per_class=args.samples_per_class)
                   if get_pruner_class(pruner).requires_data else None)
    device = select_device(config.device)
    model = build_model(spec, data.info).to(device)
    mask, _ = prune_for(spec, model, data)
    mask.apply(model)
    test_batches = Batches(data.test, config.eval_batch_size, shuffle=False, device=device,
                           num_workers=config.num_workers, drop_singleton=False)
    steps_per_epoch = len(Batches(data.train, config.batch_size, shuffle=True, device=device,
                                  generator=torch.Generator(), num_workers=config.num_workers))
    record: dict[str, Any] = {"steps": [0], "masks": [mask.cpu()],
                              "acc": [evaluate(model, test_batches)[1]]}

    def on_update(update: SETUpdate) -> None:
        record["steps"].append(update.step)
        record["masks"].append(update.mask)
        record["acc"].append(evaluate(model, test_batches)[1])
        model.train()

    schedule = SETSchedule(args.delta_t, args.zeta, seed=seed,
                           exclude_dropped=args.exclude_dropped, keep_history=False,
                           checkpoint_dir=out / "masks" / f"seed{seed}", on_update=on_update)
    result = train(model, data.train, data.test, config, seed=seed,
                   progress=False if args.quiet else None, topology_update=schedule,
                   on_epoch=lambda m: print(f"seed {seed}: epoch {m.epoch}/{config.epochs} "
                                            f"loss {m.train_loss:.4f} test {m.test_acc:.2%}",
                                            flush=True))
    record["epochs"] = [s / steps_per_epoch for s in record["steps"]]
    record["final_test_acc"] = result.final_test_acc
    return record


def cmd_evolve(args: argparse.Namespace) -> int:
    import torch

    from ..errors import PaizooError
    from ..training.experiment import load_experiment_data
    from ..training.loop import select_device

    try:
        from ..metrics.nnstd import nnstd
    except ImportError as exc:
        raise PaizooError("paizoo evolve needs paizoo.metrics.nnstd (NNSTD), which this "
                               "installation lacks; update paizoo") from exc
    if not 0.0 < args.sparsity < 1.0:
        print(f"paizoo: error: --sparsity must be in (0, 1), got {args.sparsity}")
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_experiment_data(args.dataset, root=args.data_root, augment=args.augment,
                                device=select_device(args.device))
    runs = {seed: _run_seed(args, seed, data, out) for seed in args.seeds}

    rows: list[dict[str, Any]] = []
    seeds = list(args.seeds)
    for i, seed in enumerate(seeds):
        run = runs[seed]
        other = runs[seeds[(i + 1) % len(seeds)]] if len(seeds) > 1 else None
        for j, (step, m, acc) in enumerate(zip(run["steps"], run["masks"], run["acc"],
                                               strict=True)):
            vs_other = math.nan
            if other is not None and j < len(other["masks"]):
                vs_other = nnstd(m, other["masks"][j]).distance
            rows.append({"seed": seed, "step": step, "epoch": round(run["epochs"][j], 4),
                         "nnstd_vs_initial": nnstd(m, run["masks"][0]).distance,
                         "nnstd_vs_other_seed": vs_other, "test_acc": acc})
    with open(out / "nnstd.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, seeds, out / "nnstd.png", title=f"SET from {args.pruner} masks, "
          f"{args.model} on {data.name}, sparsity {args.sparsity:g}, delta_t {args.delta_t}, "
          f"zeta {args.zeta:g}")
    summary = _summary(rows, seeds, runs, args, data.name)
    (out / "summary.md").write_text(summary)
    print(summary)
    print(f"wrote {out / 'nnstd.csv'}, {out / 'nnstd.png'}, {out / 'summary.md'} and the masks "
          f"under {out / 'masks'}")
    return 0


def _summary(rows: list[dict[str, Any]], seeds: list[int], runs: dict[int, dict[str, Any]],
             args: argparse.Namespace, dataset: str) -> str:
    train = train_config_from_args(args)
    lines = [f"SET (delta_t {args.delta_t}, zeta {args.zeta:g}) from `{args.pruner}` masks at "
             f"sparsity {args.sparsity:g}: {args.model} on {dataset}, {args.epochs} epoch(s).", "",
             f"Training: {train.optimizer} lr {train.lr:g}, momentum {train.momentum:g}, weight "
             f"decay {train.weight_decay:g}, {train.schedule} schedule, batch {train.batch_size}; "
             f"seeds {', '.join(map(str, seeds))}. NNSTD (Liu et al. 2020) in [0, 1]: 0 for the "
             "same topology up to a permutation of hidden neurons, 1 for disjoint ones.", "",
             "| seed | updates | NNSTD vs initial (end) | NNSTD vs next seed (start) | "
             "NNSTD vs next seed (end) | final test acc |",
             "|---:|---:|---:|---:|---:|---:|"]
    for seed in seeds:
        mine = [r for r in rows if r["seed"] == seed]
        lines.append(f"| {seed} | {len(mine) - 1} | {mine[-1]['nnstd_vs_initial']:.4f} | "
                     f"{mine[0]['nnstd_vs_other_seed']:.4f} | "
                     f"{mine[-1]['nnstd_vs_other_seed']:.4f} | "
                     f"{runs[seed]['final_test_acc']:.2%} |")
    lines += ["", "Produced by `paizoo evolve` (nnstd.csv: one row per seed and mask update; "
              "nnstd.png: NNSTD and test accuracy over training)."]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], seeds: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, seed in enumerate(seeds):
        mine = [r for r in rows if r["seed"] == seed]
        epochs = [r["epoch"] for r in mine]
        color = f"C{i % 10}"
        ax1.plot(epochs, [r["nnstd_vs_initial"] for r in mine], color=color, marker=".",
                 label=f"seed {seed} vs its initial mask")
        ax1.plot(epochs, [r["nnstd_vs_other_seed"] for r in mine], color=color, linestyle="--",
                 label=f"seed {seed} vs next seed, same step")
        ax2.plot(epochs, [r["test_acc"] for r in mine], color=color, marker=".",
                 label=f"seed {seed}")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("NNSTD")
    ax1.set_ylim(0, 1)
    ax1.legend(fontsize=8)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("test accuracy")
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
