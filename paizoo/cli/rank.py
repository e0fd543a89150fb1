"""``paizoo rank``: rank pruners by their predicted accuracy drop, without training."""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Any

from .common import output_file, parse_kv, parse_shape


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad list of numbers {text!r}; write e.g. "
                                         "0.9,0.98,0.995") from exc


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad list of integers {text!r}; write e.g. 0,1") from exc


def _names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rank", help="rank pruners by predicted accuracy drop, without training",
        description="Prune a freshly initialised model with each pruner at each sparsity, "
                    "compute the metrics of the masks, predict each mask's accuracy drop with a "
                    "trained predictor (the shipped one by default) and print the pruners "
                    "ranked by their mean predicted drop. Nothing is trained.")
    p.add_argument("--model", required=True,
                   help="paizoo model, timm:<name>, torchvision:<name>, or module:function from "
                        "your own code (e.g. myscript:make_net for ./myscript.py; called as "
                        "function(seed), returning a new nn.Module)")
    p.add_argument("--dataset", default=None,
                   help="dataset (input shape, classes, and data for data-driven pruners)")
    p.add_argument("--input-shape", type=parse_shape, default=None,
                   help="one sample's shape when no --dataset is given, e.g. 1,28,28")
    p.add_argument("--num-classes", type=int, default=None,
                   help="classes of a paizoo/timm/torchvision model when no --dataset is given "
                        "(default 10)")
    p.add_argument("--data-root", default=None, help="folder holding the dataset's files")
    p.add_argument("--sparsities", type=_floats, required=True, help="e.g. 0.9,0.98,0.995")
    p.add_argument("--pruners", type=_names, required=True,
                   help="comma-separated pruner names, 'module:Class' allowed, "
                        "e.g. snip,grasp,synflow,random,mypkg:MyPruner")
    p.add_argument("--predictor", default=None,
                   help="predictor file (.skops) from `paizoo regress train` "
                        "(default: the one shipped with paizoo)")
    p.add_argument("--seeds", type=_ints, default=[0],
                   help="seeds of model init and pruning; drops are averaged (default 0)")
    p.add_argument("--model-option", "-m", action="append", metavar="KEY=VALUE",
                   help="option of a paizoo/timm/torchvision model, e.g. -m input_size=8 "
                        "(repeatable; a module:function sets its own)")
    p.add_argument("--option", "-o", action="append", metavar="PRUNER.KEY=VALUE",
                   help="pruner option, e.g. -o synflow.rounds=10 (repeatable)")
    p.add_argument("--allow-missing", action="store_true",
                   help="predict even when some metric columns of the predictor are not "
                        "produced for a model of its training data (treated as missing; "
                        "implied for a model in no training table)")
    p.add_argument("--coverage", type=float, default=0.9,
                   help="coverage of the prediction intervals (default 0.9)")
    p.add_argument("--dense-accuracy", type=float, default=None, metavar="PERCENT",
                   help="the dense model's test accuracy in percent (e.g. 91.2, not 0.912), "
                        "if known: drops and intervals are "
                        "clipped to [PERCENT - 100, PERCENT] (default: [-100, 100])")
    p.add_argument("--trust", action="append", default=[], metavar="TYPE",
                   help="extra type name to trust when loading your own predictor file")
    p.add_argument("--out", default=None,
                   help="also write the per-mask rows (metrics and predictions) to this CSV "
                        "(its folder must exist)")
    p.set_defaults(func=cmd_rank)


def _pruner_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    import yaml

    from ..regression.errors import RegressionError

    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for item in items or []:
        key, sep, value = item.partition("=")
        pruner, dot, option = key.rpartition(".")
        if not sep or not dot or not pruner or not option:
            raise RegressionError(f"bad option {item!r}; write PRUNER.KEY=VALUE, e.g. "
                                  "synflow.rounds=10")
        out[pruner][option.replace("-", "_")] = yaml.safe_load(value)
    return dict(out)


def _model_arg(spec: str) -> Any:
    """``spec`` as given, or for ``module:function`` (not timm/torchvision) the imported
    function, named ``spec``, as ``rank_pruners``' factory(seed). The current folder is put on
    the Python path first, as ``python -m`` does (the ``paizoo`` script's own folder is there
    instead), so ``myscript:make_net`` finds ``./myscript.py``."""
    import importlib
    import os

    from ..errors import UnknownModelError

    module, sep, attr = spec.partition(":")
    if not sep or module in ("timm", "torchvision"):
        return spec
    if not ({"", os.getcwd()} & set(sys.path)):
        sys.path.insert(0, os.getcwd())
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownModelError(
            f"cannot load model factory {spec!r} ({type(exc).__name__}: {exc}); write "
            "module:function with the module on the Python path (e.g. PYTHONPATH=.)") from exc
    from torch import nn

    if isinstance(fn, nn.Module) or not callable(fn):
        what = "an nn.Module instance" if isinstance(fn, nn.Module) else "not callable"
        raise UnknownModelError(f"{spec!r} is {what}; module:function must name a "
                                "function taking the seed and returning a new nn.Module")

    def factory(seed: int) -> Any:
        return fn(seed)

    factory.__name__ = spec
    return factory


def cmd_rank(args: argparse.Namespace) -> int:
    import torch

    from ..regression.persistence import load_predictor
    from ..regression.predict import rank_pruners

    out = output_file(args.out) if args.out else None  # before any mask is computed
    predictor = load_predictor(args.predictor, trusted=args.trust)
    if args.dataset is None and args.input_shape is None:
        print("paizoo: error: pass --dataset (or --input-shape for data-free pruners)",
              file=sys.stderr)
        return 2
    result = rank_pruners(
        _model_arg(args.model), args.pruners, args.sparsities, predictor=predictor,
        dataset=args.dataset,
        input_shape=args.input_shape, num_classes=args.num_classes, data_root=args.data_root,
        seeds=args.seeds, model_options=parse_kv(args.model_option),
        pruner_options=_pruner_options(args.option),
        allow_missing=args.allow_missing, coverage=args.coverage,
        dense_accuracy=args.dense_accuracy,
        device="cuda" if torch.cuda.is_available() else "cpu")
    print(result.format())
    if out is not None:
        result.rows.to_csv(out, index=False)
        print(f"per-mask rows written to {out}")
    return 0
