"""``paizoo regress build|eval|train``: the accuracy-drop regression from mask metrics."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

DEFAULT_SPLITS = ("loao", "lofo", "lopo", "kfold")


def _list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "regress", help="predict accuracy drops from mask metrics (build / eval / train)",
        description="Build the metrics table of a results store, evaluate accuracy-drop "
                    "regressors on it, and train the predictor used by `paizoo rank`.")
    cmds = p.add_subparsers(dest="regress_command", metavar="SUBCOMMAND")

    b = cmds.add_parser(
        "build", help="join finished runs with the metrics of their masks into one table",
        description="Read every finished run of the results store, compute the metrics of its "
                    "saved mask once (cached in the store's mask_metrics table), and write one "
                    "row per pruned run with its accuracy drop against the dense run of the same "
                    "model/dataset/training config.")
    b.add_argument("--db", default="runs/paizoo.db", help="results store (default: %(default)s)")
    b.add_argument("--dataset", action="append", default=None,
                   help="only runs on this dataset (repeatable; default: all)")
    b.add_argument("--groups", type=_list, default=None,
                   help="metric groups to compute (default: all of paizoo.metrics)")
    b.add_argument("--out", required=True,
                   help="table to write (.csv), e.g. leaderboards/fashion-mnist-metrics.csv")
    b.add_argument("--recompute", action="store_true", help="ignore cached metrics")
    b.add_argument("--data-root", default=None,
                   help="dataset folder, to prune again runs whose mask file is absent")
    b.add_argument("--no-agnostic", action="store_true",
                   help="leave out the architecture-agnostic columns (profiles, arch.*)")
    b.set_defaults(func=cmd_build)

    f = cmds.add_parser(
        "features", help="add the architecture-agnostic columns to an existing metrics table",
        description="Read a metrics table of zoo models, build each model once for its dataset "
                    "(layer order, shapes, descriptors), add the architecture-agnostic columns "
                    "(profiles over normalised depth, size-free values, arch.*) and a family "
                    "column, and write it with its feature definitions (.features.json).")
    f.add_argument("--table", required=True, help="metrics table (.csv)")
    f.add_argument("--out", required=True, help="table to write (.csv); may equal --table")
    f.set_defaults(func=cmd_features)

    e = cmds.add_parser(
        "eval", help="compare feature sets and splits; write a Markdown report and a plot",
        description="Cross-validate accuracy-drop regressors on a metrics table (feature sets x "
                    "leave-one-architecture-out / leave-one-family-out / leave-one-pruner-out "
                    "/ random K-fold), compute the permutation importance of the main set, "
                    "validate the ranking of the pruners on unseen architectures and of unseen "
                    "pruners (rank errors, Kendall tau, RBO) and write the report.")
    e.add_argument("--table", required=True, action="append",
                   help="metrics table (.csv) with the schema of paizoo.regression.schema; "
                        "repeat to evaluate on several (rows concatenated)")
    e.add_argument("--note", default="",
                   help="a paragraph put after the report's data summary")
    e.add_argument("--out", default="leaderboards/regression.md",
                   help="Markdown report (default: %(default)s)")
    e.add_argument("--plot", default=None,
                   help="predicted-vs-actual plot (default: the report's path with .png)")
    e.add_argument("--splits", type=_list, default=list(DEFAULT_SPLITS),
                   help="kfold,lopo,loao,lofo (default: all that the table supports)")
    e.add_argument("--models", type=_list, default=["hgb"],
                   help="regressors to compare, the first is the default: hgb,ridge,forest")
    e.add_argument("--folds", type=int, default=5, help="K of random K-fold (default 5)")
    e.add_argument("--main", default="agnostic",
                   help="feature set of the rank tables and importance (default: agnostic)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_eval)

    t = cmds.add_parser(
        "train", help="train a predictor on a metrics table and save it (skops)",
        description="Fit an AccuracyDropRegressor on the whole table, record the table it was "
                    "trained on and its cross-validated error, and save it as a .skops file "
                    "(`paizoo rank --predictor FILE`).")
    t.add_argument("--table", required=True, action="append",
                   help="metrics table (.csv); repeat to train on several (rows concatenated)")
    t.add_argument("--groups", default="agnostic",
                   help="feature groups, comma-separated (default: agnostic, the columns every "
                        "architecture has). e.g. per-layer, all, mge,density.global")
    t.add_argument("--coverage", type=float, default=0.9,
                   help="coverage of the prediction intervals (default 0.9)")
    t.add_argument("--note", default="",
                   help="a note on the validity domain, stored in the file and printed by "
                        "`paizoo rank` (e.g. how thin the corpus is)")
    t.add_argument("--model", default="hgb", help="hgb (default), forest or ridge")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="predictor file to write (.skops)")
    t.set_defaults(func=cmd_train)

    r = cmds.add_parser(
        "rebuild", help="build the metrics tables, write the report and retrain the predictor",
        description="From the committed leaderboard stores: build each metrics table (mask "
                    "metrics cached in the store), evaluate on all of them and write "
                    "leaderboards/regression.md (headed by this command), and retrain the "
                    "default predictor with its validity domain and interval calibration. "
                    "`make regression` runs it.")
    r.add_argument("--source", action="append", default=None, metavar="STORE:DATASET:TABLE",
                   help="a store, the dataset of its runs and the table to write (repeatable; "
                        "default: the archs corpus and the Fashion-MNIST leaderboard)")
    r.add_argument("--report", default=None, help="Markdown report (default: "
                   "leaderboards/regression.md)")
    r.add_argument("--predictor", default=None, help="predictor to write (default: "
                   "paizoo/regression/predictors/default.skops)")
    r.add_argument("--no-predictor", action="store_true", help="write the tables and report only")
    r.add_argument("--note", default="", help="a paragraph for the report and the predictor's "
                   "validity domain")
    r.add_argument("--data-root", default=None,
                   help="dataset folder, to prune again runs whose mask file is absent")
    r.set_defaults(func=cmd_rebuild)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_build(args: argparse.Namespace) -> int:
    from ..regression.build import build_from_store
    from .common import output_file

    output_file(args.out)  # before any metric is computed
    table = build_from_store(args.db, datasets=args.dataset, groups=args.groups,
                             recompute=args.recompute, data_root=args.data_root,
                             agnostic=not args.no_agnostic)
    _write_table(table, args.out)
    return 0


def _write_table(table: object, out_path: str) -> None:
    from ..regression.rebuild import write_table

    side = write_table(table, out_path)  # type: ignore[arg-type]
    print(f"{len(table)} runs x {table.shape[1]} columns written to {out_path} "  # type: ignore[arg-type,attr-defined]
          f"(column definitions: {side})")


def cmd_features(args: argparse.Namespace) -> int:
    from ..regression.build import with_agnostic
    from ..regression.schema import load_table
    from .common import output_file

    output_file(args.out)
    _write_table(with_agnostic(load_table(args.table)), args.out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..regression.evaluate import evaluate
    from ..regression.report import scores_wide, write_report
    from ..regression.schema import load_table
    from .common import output_file

    output_file(args.out)  # before the cross-validation
    if args.plot:
        output_file(args.plot, "--plot")
    table = pd.concat([load_table(t) for t in args.table], ignore_index=True, sort=False)
    ev = evaluate(table, splits=tuple(args.splits), models=tuple(args.models),
                  n_splits=args.folds, random_state=args.seed, main=args.main)
    plot = args.plot or str(Path(args.out).with_suffix(".png"))
    command = ("paizoo regress eval " + " ".join(f"--table {shlex.quote(t)}" for t in args.table)
               + f" --out {shlex.quote(args.out)}"
               + (f" --plot {shlex.quote(args.plot)}" if args.plot else "")
               + (f" --models {','.join(args.models)}" if args.models != ["hgb"] else "")
               + (f" --splits {','.join(args.splits)}"
                  if args.splits != list(DEFAULT_SPLITS) else "")
               + (f" --folds {args.folds}" if args.folds != 5 else "")
               + (f" --main {shlex.quote(args.main)}" if args.main != "agnostic" else "")
               + (f" --seed {args.seed}" if args.seed else "")
               + (f" --note {shlex.quote(args.note)}" if args.note else ""))
    path = write_report(ev, args.out, plot_path=plot, source=", ".join(args.table),
                        command=command, extra_models=tuple(args.models[1:]),
                        preamble=[args.note] if args.note else ())
    print(scores_wide(ev).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"best feature set: {ev.best}")
    print(f"report written to {path} (plot {plot})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..regression.schema import load_table
    from ..regression.train import train_predictor
    from .common import output_file

    output_file(args.out)  # before the cross-validation
    table = pd.concat([load_table(t) for t in args.table], ignore_index=True, sort=False)
    command = ("paizoo regress train "
               + " ".join(f"--table {shlex.quote(t)}" for t in args.table)
               + f" --out {shlex.quote(args.out)}"
               + (f" --groups {args.groups}" if args.groups != "agnostic" else "")
               + (f" --model {args.model}" if args.model != "hgb" else "")
               + (f" --coverage {args.coverage:g}" if args.coverage != 0.9 else "")
               + (f" --note {shlex.quote(args.note)}" if args.note else "")
               + (f" --seed {args.seed}" if args.seed else ""))
    predictor = train_predictor(table, groups=args.groups, model=args.model,
                                random_state=args.seed, table_path=args.table,
                                command=command, coverage=args.coverage, note=args.note,
                                out=args.out)
    print(predictor.describe())
    print(f"predictor written to {predictor.path}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    from ..regression import rebuild as rb

    sources = [rb.Source.parse(t) for t in args.source] if args.source else rb.DEFAULT_SOURCES
    report = args.report or rb.DEFAULT_REPORT
    predictor = None if args.no_predictor else (args.predictor or rb.DEFAULT_PREDICTOR)
    command = ("paizoo regress rebuild"
               + "".join(f" --source {shlex.quote(t)}" for t in args.source or ())
               + (f" --report {shlex.quote(args.report)}" if args.report else "")
               + (f" --predictor {shlex.quote(args.predictor)}" if args.predictor else "")
               + (" --no-predictor" if args.no_predictor else "")
               + (f" --note {shlex.quote(args.note)}" if args.note else ""))
    res = rb.rebuild(sources, report=report, predictor=predictor, command=command,
                     note=args.note, data_root=args.data_root)
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in res.seconds.items()))
    return 0
