"""``paizoo train``: prune a model at initialisation and train it (one run)."""

from __future__ import annotations

import argparse

from ..results.record import RunSpec
from ..results.store import BaseStore, open_store
from ..training.config import OPTIMIZERS, SCHEDULES, TrainConfig
from ..training.loop import EpochMetrics
from .common import UsageError, check_model_options, output_file, parse_kv


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad list {text!r}; write e.g. 60,120") from exc


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Training options shared by commands that train (defaults: :class:`TrainConfig`'s)."""
    d = TrainConfig()
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    g.add_argument("--lr", type=float, default=d.lr, help="initial learning rate")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    g.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="learning-rate schedule (per epoch)")
    g.add_argument("--milestones", type=_int_list, default=(),
                   help="epochs where the step schedule multiplies the lr by --gamma, e.g. 60,120")
    g.add_argument("--gamma", type=float, default=d.gamma, help="step schedule's drop factor")
    g.add_argument("--augment", action="store_true",
                   help="train with the dataset's augmentation (random crop + flip on CIFAR)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="mixed precision (default: on for CUDA, off on CPU)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: CUDA if any)")
    g.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    g.add_argument("--num-workers", type=int, default=d.num_workers,
                   help="DataLoader workers (only for datasets that are not in memory)")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
        schedule=args.schedule, milestones=args.milestones, gamma=args.gamma,
        augment=args.augment, amp=args.amp, device=args.device,
        eval_batch_size=args.eval_batch_size, num_workers=args.num_workers)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="prune a model at initialisation and train it",
        description="Build a freshly initialised model, prune it at initialisation (or not: "
                    "--pruner dense), train it with the mask enforced and print per-epoch "
                    "metrics. Example: paizoo train --model lenet5 --dataset fashion-mnist "
                    "--pruner snip --sparsity 0.9 --epochs 5")
    p.add_argument("--model", required=True, help="paizoo model (see `paizoo models`), "
                   "timm:<name> or torchvision:<name>")
    p.add_argument("--model-option", "-m", action="append", metavar="KEY=VALUE",
                   help="model keyword argument (repeatable)")
    p.add_argument("--dataset", required=True, help="e.g. fashion-mnist, digits, cifar10")
    p.add_argument("--data-root", default=None, help="folder holding the dataset's files")
    p.add_argument("--pruner", default="dense",
                   help="pruner name (see `paizoo pruners`), or dense for no pruning")
    p.add_argument("--sparsity", type=float, default=None,
                   help="fraction of prunable weights removed, 0 < s < 1 (required unless dense)")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="pruner option, e.g. -o distribution=erk (repeatable)")
    p.add_argument("--samples-per-class", type=int, default=10,
                   help="pruning data for data-driven pruners: samples per class")
    p.add_argument("--prune-batch-size", type=int, default=256,
                   help="pruning data for data-driven pruners: batch size")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the initialisation, the pruner and the batch order")
    add_train_arguments(p)
    out = p.add_argument_group("output")
    out.add_argument("--store", default=None,
                     help="also record the run in this results database (e.g. runs/paizoo.db)")
    out.add_argument("--log", default=None, help="JSON-lines metrics log (default with --store: "
                     "<store folder>/logs/<run key>.jsonl)")
    out.add_argument("--save-mask", default=None, help="write the mask to this .safetensors file")
    out.add_argument("--wandb", action="store_true", help="log to Weights & Biases")
    out.add_argument("--wandb-project", default="paizoo")
    p.add_argument("--mask-mode", choices=("project", "hook"), default="project",
                   help="how the mask is enforced during training (same results; see docs)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from ..results.record import DENSE
    from ..training.config import PruneDataConfig
    from ..training.experiment import load_experiment_data, run_experiment
    from ..training.logs import WandbOptions
    from ..training.loop import select_device

    if args.threads:
        torch.set_num_threads(args.threads)
    pruner = args.pruner.lower()
    if pruner == DENSE:
        if args.sparsity not in (None, 0, 0.0):
            raise UsageError("--pruner dense trains the unpruned model; drop --sparsity")
        sparsity = 0.0
    elif args.sparsity is None:
        raise UsageError(f"--pruner {args.pruner} needs --sparsity (e.g. 0.9)")
    else:
        sparsity = args.sparsity
    requires_data = False
    if pruner != DENSE:
        from ..pruners import get_pruner_class

        requires_data = get_pruner_class(pruner).requires_data
    train_config = train_config_from_args(args)
    model_config, pruner_config = parse_kv(args.model_option, "-m"), parse_kv(args.option, "-o")
    if pruner != DENSE:
        from ..pruners import create_pruner

        create_pruner(pruner, **pruner_config)  # bad options fail before any work
    save_mask = output_file(args.save_mask, "--save-mask") if args.save_mask else None
    log = output_file(args.log, "--log") if args.log else None
    select_device(args.device)  # an unknown or absent device fails before any work
    check_model_options(args.model, model_config)
    spec = RunSpec(
        dataset=args.dataset, model=args.model, pruner=pruner, sparsity=sparsity,
        seed=args.seed, train=train_config, model_config=model_config,
        pruner_config=pruner_config,
        prune_data=PruneDataConfig(batch_size=args.prune_batch_size,
                                   samples_per_class=args.samples_per_class)
        if requires_data else None)
    store = open_store(args.store) if args.store else None
    if store is not None and spec.key not in store:
        store.check_writable()  # a read-only store fails now, not after the training
        store.import_pending()
    if store is not None and spec.key in store:
        rec = store.get(spec.key)
        assert rec is not None
        print(f"{spec.describe()} is already in {store.location} (run {spec.key}): final test "
              f"accuracy {rec.final_test_acc:.2%}, best {rec.best_test_acc:.2%}")
        return 0
    data = load_experiment_data(args.dataset, root=args.data_root, augment=args.augment,
                                device=select_device(args.device))
    print(f"{spec.describe()}: {len(data.train)} training / {len(data.test)} test samples, "
          f"{train_config.epochs} epoch{'s' if train_config.epochs != 1 else ''} "
          f"(run {spec.key})", flush=True)

    def on_epoch(m: EpochMetrics) -> None:
        print(f"epoch {m.epoch:>3}/{train_config.epochs}  lr {m.lr:<8.4g} loss "
              f"{m.train_loss:.4f}  train {m.train_acc:6.2%}  test {m.test_acc:6.2%}  "
              f"({m.train_time_s:.1f} s + {m.eval_time_s:.1f} s eval)", flush=True)

    has_store = store is not None
    record = run_experiment(
        spec, data, masks_dir=store.masks_dir if has_store else None,
        logs_dir=store.logs_dir if has_store else None, log_path=log,
        mask_path=save_mask,
        dense_test_acc=_dense_ref(store, spec), mask_mode=args.mask_mode,
        progress=False if args.quiet else None,
        wandb=WandbOptions(project=args.wandb_project) if args.wandb else None,
        on_epoch=on_epoch)
    collapse = (f"; LAYER COLLAPSE in {', '.join(record.collapsed_layers)}"
                if record.layer_collapse else "")
    if spec.is_dense:
        print(f"dense: all {record.total:,} prunable weights kept")
    else:
        print(f"density {record.density:.4%} ({record.kept:,}/{record.total:,} weights kept; "
              f"pruned weights exactly 0 after training: checked){collapse}")
    if record.diverged:
        print(f"DIVERGED: the training loss became NaN/inf at epoch {record.diverged_epoch}, "
              f"step {record.diverged_step}; training stopped there (lower the learning rate)")
    print(f"final test accuracy {record.final_test_acc:.2%}, best {record.best_test_acc:.2%} "
          f"(epoch {record.best_epoch}); pruning {record.prune_time_s:.2f} s, training "
          f"{record.train_time_s:.1f} s on {record.device}")
    if record.mask_path:
        print(f"mask written to {record.mask_path}")
    if store is not None:
        if store.add_reliably(record) == "pending":
            print(f"{store.location} is unavailable: the run is kept in {store.pending_file} "
                  "and recorded by the next run (train or leaderboard) on this store")
        else:
            print(f"recorded in {store.location} (run {record.run_key})")
        store.close()
    return 0


def _dense_ref(store: BaseStore | None, spec: RunSpec) -> float | None:
    if store is None or spec.is_dense:
        return None
    rec = store.get(spec.dense_reference().key)
    return rec.final_test_acc if rec else None
