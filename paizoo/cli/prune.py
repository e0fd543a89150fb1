"""``paizoo pruners`` and ``paizoo prune``."""

from __future__ import annotations

import argparse
import time

from .common import UsageError, output_file, parse_kv, parse_shape, synthetic_spec, zoo_model_input


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pruners", help="list the registered pruners")
    p.set_defaults(func=cmd_pruners)

    p = sub.add_parser("prune", help="prune a model at initialisation and write its mask",
                       description="Prune a freshly initialised model, print the per-layer "
                                   "density table and optionally save the mask (safetensors).")
    p.add_argument("--model", required=True,
                   help="paizoo model (see `paizoo models`), timm:<name> or torchvision:<name>")
    p.add_argument("--pruner", required=True, help="pruner name (see `paizoo pruners`)")
    level = p.add_mutually_exclusive_group(required=True)
    level.add_argument("--sparsity", type=float, help="fraction of weights removed, 0 <= s < 1")
    level.add_argument("--density", type=float, help="fraction of weights kept, 0 < d <= 1")
    level.add_argument("--compression", type=float, help="x with density = 10^-x")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="one input sample's shape, e.g. 3,32,32 (default: the dataset's, else "
                        "the zoo model's native input)")
    p.add_argument("--num-classes", type=int, default=None,
                   help="output classes (default: the dataset's, else the model's default)")
    p.add_argument("--dataset", default=None,
                   help="data for data-driven pruners (e.g. digits, fashion-mnist, cifar10, "
                        "or synthetic: random data of --input-shape, default 3x32x32, with "
                        "--num-classes classes, default 10)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset's files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", "-o", action="append", metavar="KEY=VALUE",
                   help="pruner option, e.g. -o rounds=10 -o distribution=erk (repeatable)")
    p.add_argument("--cover", action="append", metavar="KIND",
                   help="also prune these weights besides Conv/Linear: attention, recurrent, "
                        "embedding or all (repeatable; default: Conv/Linear only)")
    p.add_argument("--include", action="append",
                   help="glob of parameter names to prune: narrows the covered weights to the "
                        "matching ones and may add any other parameter (repeatable)")
    p.add_argument("--exclude", action="append",
                   help="glob of parameter names to keep dense; wins over --include/--cover")
    p.add_argument("--out", default=None, help="write the mask to this .safetensors file (its "
                   "folder must exist)")
    p.set_defaults(func=cmd_prune)


def cmd_pruners(args: argparse.Namespace) -> int:
    from ..pruners import get_pruner_class, pruner_summaries

    summaries = pruner_summaries()
    width = max(len(n) for n in summaries)
    for name, line in summaries.items():
        cls = get_pruner_class(name)
        tag = "data" if cls.requires_data else "data-free"
        print(f"{name:<{width}}  [{tag:<9}]  {line}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    import torch

    from ..api import prune
    from ..models import create_model
    from ..pruners import create_pruner, get_pruner_class

    pruner_cls = get_pruner_class(args.pruner)
    config = parse_kv(args.option, "-o")
    create_pruner(args.pruner, **config)  # bad options fail before any work
    out = output_file(args.out) if args.out else None
    num_classes, input_shape = args.num_classes, args.input_shape
    data = None
    if args.dataset is not None:
        from ..data import dataset_info, load_dataset, pruning_batches

        dataset_name = synthetic_spec(args.dataset, args.input_shape, args.num_classes)
        info = dataset_info(dataset_name)
        num_classes = num_classes or info.num_classes
        input_shape = input_shape or info.input_shape
        if pruner_cls.requires_data:
            dataset = load_dataset(dataset_name, split="train", root=args.data_root)
            data = pruning_batches(dataset, args.pruner, num_classes=num_classes, seed=args.seed)
    elif pruner_cls.requires_data:
        raise UsageError(f"pruner {args.pruner!r} is data-driven: pass --dataset (e.g. "
                         "--dataset synthetic for random data of --input-shape)")
    input_shape, sizing = zoo_model_input(args.model, input_shape)
    if input_shape is None and pruner_cls.requires_input_shape:
        raise UsageError(f"pruner {args.pruner!r} feeds inputs to {args.model}: pass "
                         "--input-shape (e.g. 3,224,224) or --dataset")
    model = create_model(args.model, num_classes=num_classes, seed=args.seed, **sizing)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    start = time.perf_counter()
    mask = prune(model, args.pruner, sparsity=args.sparsity, density=args.density,
                 compression=args.compression, data=data, input_shape=input_shape,
                 seed=args.seed, include=args.include, exclude=args.exclude, cover=args.cover,
                 **config)
    elapsed = time.perf_counter() - start
    print(mask.report())
    shape_text = "x".join(map(str, input_shape)) if input_shape else "input shape not needed"
    print(f"{args.pruner} on {args.model} ({shape_text}): {elapsed:.2f} s on {device}")
    if out is not None:
        path = mask.save(out, metadata={
            "model": args.model, "pruner": args.pruner, "config": config, "seed": args.seed,
            "density": mask.density, "input_shape": list(input_shape) if input_shape else None,
            "num_classes": num_classes})
        print(f"mask written to {path}")
    return 0
