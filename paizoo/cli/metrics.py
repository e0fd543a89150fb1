"""``paizoo metrics`` (topological metrics of a mask) and ``paizoo nnstd`` (mask distance)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from .common import UsageError, output_file, parse_kv, parse_shape, synthetic_spec, zoo_model_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "metrics", help="topological metrics of a pruned model (one CSV row)",
        description="Prune a freshly initialised model (or load a saved mask) and compute its "
                    "topological metrics: density, effective sparsity/paths, Ramanujan gaps, "
                    "spectral expansion, scatter and multipartite-graph topometrics.")
    p.add_argument("--model", default=None,
                   help="paizoo model, timm:<name> or torchvision:<name> (default: from the "
                        "mask file's metadata)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--pruner", help="prune with this pruner (see `paizoo pruners`)")
    source.add_argument("--mask", help="a mask saved by `paizoo prune --out` (.safetensors)")
    level = p.add_mutually_exclusive_group()
    level.add_argument("--sparsity", type=float, help="fraction of weights removed, 0 <= s < 1")
    level.add_argument("--density", type=float, help="fraction of weights kept, 0 < d <= 1")
    level.add_argument("--compression", type=float, help="x with density = 10^-x")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="one input sample's shape, e.g. 3,32,32")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--dataset", default=None, help="data for data-driven pruners")
    p.add_argument("--data-root", default=None)
    p.add_argument("--seed", type=int, default=0, help="model init, pruning and metric sampling")
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="pruner option (repeatable)")
    p.add_argument("--groups", default=None,
                   help="comma-separated metric groups (default: all; see --list)")
    p.add_argument("--metric-option", "-m", action="append", metavar="GROUP.KEY=VALUE",
                   help="metric group option, e.g. -m scatter.window=8 (repeatable)")
    p.add_argument("--scale", choices=["auto", "exact", "matrix_free"], default="auto")
    p.add_argument("--edge-budget", type=float, default=None,
                   help="largest explicit graph in edges (default 5e7)")
    p.add_argument("--out", default=None, help="write the row to this CSV (or .json) file")
    p.add_argument("--append", action="store_true", help="append to an existing CSV")
    p.add_argument("--list", action="store_true", help="list the metric groups and exit")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("nnstd", help="sparse topology distance (NNSTD) between two masks",
                       description="NNSTD of Liu et al. 2020: 0 for masks equal up to a "
                                   "permutation of hidden neurons, 1 for unrelated masks.")
    p.add_argument("mask_a")
    p.add_argument("mask_b")
    p.add_argument("--model", default=None,
                   help="check both masks against this model (paizoo/timm/torchvision name)")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-channels", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_nnstd)


def _metric_options(items: list[str] | None) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for key, value in parse_kv(items, "-m").items():
        group, sep, name = key.partition(".")
        if not sep or not group or not name:
            raise UsageError(f"bad metric option -m {key}={value}; write GROUP.KEY=VALUE, e.g. "
                             "-m scatter.window=8 (`paizoo metrics --list` shows the groups)")
        out.setdefault(group, {})[name] = value
    return out


def cmd_metrics(args: argparse.Namespace) -> int:
    from .. import metrics as pm

    if args.list:
        for name, line in pm.metric_group_summaries().items():
            print(f"{name:<10} {line}")
        return 0
    from ..api import prune
    from ..masks import Mask
    from ..models import create_model

    meta: dict[str, object] = {}
    if args.mask:
        meta = Mask.load_metadata(args.mask)
    model_name = args.model or meta.get("model")
    input_shape = args.input_shape or (tuple(meta["input_shape"]) if meta.get("input_shape")
                                       else None)
    num_classes = args.num_classes or meta.get("num_classes")
    if not model_name:
        raise UsageError("pass --model (the mask file names none)")
    if not args.mask and not args.pruner:
        raise UsageError("pass --pruner (with --sparsity) or --mask FILE")
    out = output_file(args.out) if args.out else None
    metric_options = _metric_options(args.metric_option)
    config = parse_kv(args.option, "-o")
    if args.pruner:
        from ..pruners import create_pruner

        create_pruner(args.pruner, **config)  # bad options fail before any work
    data = None
    dataset_name = args.dataset
    if dataset_name is not None:
        from ..data import dataset_info

        dataset_name = synthetic_spec(dataset_name, input_shape, num_classes)
        info = dataset_info(dataset_name)
        num_classes = num_classes or info.num_classes
        input_shape = input_shape or info.input_shape
    input_shape, sizing = zoo_model_input(str(model_name), input_shape)
    model = create_model(str(model_name), num_classes=num_classes, seed=args.seed, **sizing)
    start = time.perf_counter()
    if args.mask:
        mask = Mask.load(args.mask, model)
        pruner = meta.get("pruner", "")
    else:
        from ..pruners import get_pruner_class

        if args.sparsity is None and args.density is None and args.compression is None:
            raise UsageError("pass --sparsity, --density or --compression")
        if get_pruner_class(args.pruner).requires_data:
            if dataset_name is None:
                raise UsageError(f"pruner {args.pruner!r} is data-driven: pass --dataset")
            from ..data import load_dataset, pruning_batches

            dataset = load_dataset(dataset_name, split="train", root=args.data_root)
            data = pruning_batches(dataset, args.pruner, num_classes=num_classes, seed=args.seed)
        mask = prune(model, args.pruner, sparsity=args.sparsity, density=args.density,
                     compression=args.compression, data=data, input_shape=input_shape,
                     seed=args.seed, **config)
        pruner = args.pruner
    prune_time = time.perf_counter() - start
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] if args.groups else None
    kwargs: dict[str, object] = {"scale": args.scale, "seed": args.seed,
                                 "options": metric_options}
    if args.edge_budget is not None:
        kwargs["edge_budget"] = int(args.edge_budget)
    start = time.perf_counter()
    row = pm.compute(model, mask, input_shape, groups, progress=None, **kwargs)
    elapsed = time.perf_counter() - start
    record = {"model": model_name, "pruner": pruner, "density": mask.density,
              "seed": args.seed, **row}
    headline = [k for k in ("density.global", "effective.sparsity", "effective.paths_log10",
                            "ramanujan.delta_r_mean", "spectral.gap_mean", "scatter.min",
                            "mge.sources_frac", "mge.r_in_frac") if k in row]
    for key in headline:
        print(f"{key:<24} {row[key]:.6g}")
    print(f"{len(row)} metrics of {model_name} ({pruner}, density {mask.density:.4g}) in "
          f"{elapsed:.2f} s (pruning {prune_time:.2f} s)")
    if out is not None:
        _write(out, record, args.append)
        print(f"metrics written to {out}")
    return 0


def _write(path: Path, record: dict[str, object], append: bool) -> None:
    import pandas as pd

    if path.suffix == ".json":
        path.write_text(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v)
                                    for k, v in record.items()}, indent=1))
        return
    frame = pd.DataFrame([record])
    if append and path.exists():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    frame.to_csv(path, index=False)


def cmd_nnstd(args: argparse.Namespace) -> int:
    from ..masks import Mask
    from ..metrics import nnstd

    model = None
    if args.model:
        from ..models import create_model

        meta = Mask.load_metadata(args.mask_a)
        shape = meta.get("input_shape")
        shape = tuple(shape) if isinstance(shape, list) and shape else None
        if args.in_channels:
            shape = (args.in_channels, *shape[1:]) if shape else (args.in_channels,)
        if shape is not None and len(shape) == 1:  # only channels known: the native size
            sizing = {"in_channels": shape[0]}
        else:
            sizing = zoo_model_input(args.model, shape)[1]
        model = create_model(args.model, num_classes=args.num_classes or meta.get("num_classes"),
                             **sizing)
    a = Mask.load(args.mask_a, model)
    b = Mask.load(args.mask_b, model)
    result = nnstd(a, b)
    if args.json:
        print(json.dumps({"nnstd": result.distance, "layers": result.layers}, indent=1))
        return 0
    width = max(len("layer"), *(len(n) for n in result.layers))
    for name, value in result.layers.items():
        print(f"{name:<{width}}  {value:.6f}")
    print(f"{'NNSTD':<{width}}  {result.distance:.6f}")
    return 0
