"""``paizoo leaderboard run | render | status``: resumable grids and their tables."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..leaderboard.config import LeaderboardConfig
from ..leaderboard.executor import Executor
from ..leaderboard.runner import DEFAULT_LEASE_TTL_S
from ..results.store import BaseStore, ResultStore, open_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="run, render or inspect a leaderboard grid",
                       description="Leaderboards: YAML grids of models x pruners x sparsities x "
                                   "seeds, recorded run by run in a results store (a SQLite "
                                   "file or a postgresql:// URL).")
    lsub = p.add_subparsers(dest="leaderboard_command", metavar="ACTION")

    r = lsub.add_parser(
        "run", help="run the grid's missing runs, then render it",
        description="Run every run of the grid that is not in the results store yet (kill it "
                    "at any moment and run it again: no finished run is lost or duplicated), "
                    "then write NAME.md/.csv/.png next to the config and print the tables.")
    r.add_argument("config", help="leaderboard YAML file (or a name in leaderboards/)")
    r.add_argument("--store", default=None, help="results store: a SQLite file or a "
                   "postgresql:// URL (default: the config's `store`, else runs/paizoo.db)")
    r.add_argument("--data-root", default=None,
                   help="folder holding the dataset's files (overrides the config's data_root)")
    r.add_argument("--limit", type=_non_negative_int, default=None,
                   help="run at most N new runs, then stop")
    r.add_argument("--shard", default=None, metavar="I/N",
                   help="run only the runs at positions I mod N (optional: runners started "
                        "on one store claim runs, so they share a grid without it)")
    r.add_argument("--lease-ttl", type=_positive_seconds, default=DEFAULT_LEASE_TTL_S,
                   metavar="SECONDS",
                   help="each run is claimed in the store before training, so several "
                        "runners (any machines, one store) share the grid; a killed runner's "
                        "claims expire after this long (default: %(default)g)")
    r.add_argument("--keep-going", action="store_true",
                   help="log failed runs and continue (they leave no row)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (1 is fastest on a busy or small machine)")
    r.add_argument("--mask-mode", choices=("project", "hook"), default="project")
    r.add_argument("--no-render", action="store_true", help="do not render afterwards")
    r.add_argument("--out-dir", default=None, help="where to render (default: the config's "
                   "folder)")
    r.add_argument("--wandb", action="store_true", help="log each run to Weights & Biases")
    r.add_argument("--wandb-project", default="paizoo")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1 ... (default: the config's train.device, else CUDA "
                        "if any); not part of a run's identity")
    _add_executor_args(r)
    r.set_defaults(func=cmd_run)

    d = lsub.add_parser("render", help="write NAME.md, NAME.csv and NAME.png from the store",
                        description="Render a leaderboard from the results store: NAME -> "
                                    "leaderboards/NAME.yaml gives the grid and the store.")
    d.add_argument("name", help="leaderboard name (leaderboards/NAME.yaml) or a config path")
    d.add_argument("--config", default=None, help="the YAML config (default: from NAME)")
    d.add_argument("--store", default=None, help="results store, a path or postgresql:// URL "
                   "(default: the config's)")
    d.add_argument("--out-dir", default=None, help="default: the config's folder")
    d.set_defaults(func=cmd_render)

    s = lsub.add_parser("status", help="how many runs of a grid are done")
    s.add_argument("config", help="leaderboard YAML file (or a name in leaderboards/)")
    s.add_argument("--store", default=None, help="results store, a path or postgresql:// URL "
                   "(default: the config's)")
    s.add_argument("--missing", action="store_true", help="list the missing runs")
    s.set_defaults(func=cmd_status)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (a whole number), got {text!r}")
    return value


def _add_executor_args(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group(
        "cluster", "Run the grid on a Ray cluster or on SLURM; this process stays the only "
                   "writer of the store (see README, 'Run a grid on a cluster').")
    g.add_argument("--executor", choices=("sequential", "ray", "slurm"), default="sequential",
                   help="sequential: one run after the other in this process (default); ray: "
                        "each run a Ray task; slurm: each run a SLURM job (submitit)")
    g.add_argument("--max-concurrent", type=int, default=None, metavar="N",
                   help="at most N runs in flight (default: as many as the cluster holds)")
    g.add_argument("--max-retries", type=_non_negative_int, default=2, metavar="N",
                   help="resubmit a run whose worker or job died at most N times (default 2)")
    g.add_argument("--address", default=None,
                   help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default: start a "
                        "local cluster on this machine)")
    g.add_argument("--num-cpus", type=int, default=None,
                   help="CPUs of the local Ray cluster (default: all of this machine's)")
    g.add_argument("--slurm-partition", default=None, help="SLURM partition (default: the "
                   "cluster's default)")
    g.add_argument("--slurm-time", type=int, default=60, metavar="MINUTES",
                   help="time limit of each run's job (default 60)")
    g.add_argument("--slurm-gpus", type=int, default=None,
                   help="GPUs per job (default: each model's resources.gpus, rounded up)")
    g.add_argument("--slurm-array-parallelism", type=int, default=64, metavar="N",
                   help="at most N jobs of an array running at once (default 64)")
    g.add_argument("--slurm-folder", default=None,
                   help="submitit's job folder, on a filesystem the nodes share (default: "
                        "submitit/ next to the store)")
    g.add_argument("--slurm-cluster", choices=("slurm", "local"), default=None,
                   help="local: run the jobs as processes on this machine (default: SLURM "
                        "when sbatch is found)")


def _make_executor(args: argparse.Namespace, files_dir: Path) -> Executor | None:
    """The executor the options ask for; refuses options of another executor."""
    from ..errors import PaizooError

    def refuse(names: list[str], executor: str) -> None:
        given = [n for n in names if getattr(args, n) is not None]
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise PaizooError(f"{flags} only apply with --executor {executor}")

    slurm_only = ["slurm_partition", "slurm_gpus", "slurm_folder", "slurm_cluster"]
    if args.executor != "ray":
        refuse(["address", "num_cpus"], "ray")
    if args.executor != "slurm":
        refuse(slurm_only, "slurm")
    if args.executor == "sequential":
        refuse(["max_concurrent"], "ray or slurm")
        return None
    if args.executor == "ray":
        from ..leaderboard.ray_executor import RayExecutor

        return RayExecutor(args.address, num_cpus=args.num_cpus)
    from ..leaderboard.slurm_executor import SlurmExecutor

    return SlurmExecutor(args.slurm_folder or files_dir / "submitit",
                         partition=args.slurm_partition, time_min=args.slurm_time,
                         gpus=args.slurm_gpus, array_parallelism=args.slurm_array_parallelism,
                         cluster=args.slurm_cluster)


def _load(name_or_path: str, explicit: str | None = None) -> LeaderboardConfig:
    from ..leaderboard.config import load_config, resolve_config_path

    return load_config(explicit or resolve_config_path(name_or_path))


def _store(config: LeaderboardConfig, override: str | None) -> BaseStore:
    return open_store(override or config.store)


def _missing_local_store(location: str) -> bool:
    """A SQLite path with no file yet (a URL, supported or not, is left to open_store)."""
    return "://" not in str(location) and not Path(location).exists()


def _print_tables(config: LeaderboardConfig, text: str) -> None:
    """Print each model's section (title, training, dense line, table) of the rendered md."""
    sections = text.split("\n## ")
    for section in sections[1:]:
        title = section.split("\n", 1)[0]
        if title in {m.label for m in config.models}:
            print("## " + section.rstrip())
            print()


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from ..leaderboard.render import render_leaderboard
    from ..leaderboard.runner import parse_shard, run_leaderboard
    from ..training.logs import WandbOptions

    config = _load(args.config)
    if args.data_root:
        config = dataclasses.replace(config, data_root=args.data_root)
    if args.device:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                       device=args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    store = _store(config, args.store)
    executor = _make_executor(args, store.files_dir)
    try:
        report = run_leaderboard(
            config, store, limit=args.limit, shard=parse_shard(args.shard),
            keep_going=args.keep_going, mask_mode=args.mask_mode,
            progress=False if args.quiet else None,
            lease_ttl_s=args.lease_ttl,
            wandb=WandbOptions(project=args.wandb_project, group=config.name)
            if args.wandb else None, executor=executor, max_retries=args.max_retries,
            max_concurrent=args.max_concurrent)
    except KeyboardInterrupt:
        print(f"\ninterrupted: every finished run is in {store.location}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    done = report.already_done + len(report.ran)
    print(f"{config.name}: ran {len(report.ran)}, {done}/{report.total} done"
          + (f", {len(report.failed)} failed" if report.failed else "")
          + (f", {len(report.lost_leases)} stopped early (their leases were taken over by "
             "other runners)" if report.lost_leases else "")
          + (" (stopped at --limit)" if report.stopped_at_limit else ""))
    if not args.no_render:
        rendered = render_leaderboard(config, store, out_dir=args.out_dir)
        print()
        _print_tables(config, rendered.text)
        print(f"wrote {rendered.markdown}, {rendered.csv}, {rendered.png} "
              f"({rendered.runs}/{rendered.total} runs)")
    store.close()
    return 1 if report.failed else 0


def cmd_render(args: argparse.Namespace) -> int:
    from ..leaderboard.render import render_leaderboard

    config = _load(args.name, args.config)
    location = args.store or config.store
    if _missing_local_store(location):
        print(f"paizoo: error: no results store at {location}; run `paizoo leaderboard run "
              f"{config.path}` first", file=sys.stderr)
        return 2
    store = _store(config, args.store)
    rendered = render_leaderboard(config, store, out_dir=args.out_dir)
    _print_tables(config, rendered.text)
    print(f"wrote {rendered.markdown}, {rendered.csv}, {rendered.png} "
          f"({rendered.runs}/{rendered.total} runs on {rendered.dataset})")
    store.close()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..leaderboard.runner import grid_status
    from ..leaderboard.validate import validate_entries

    config = _load(args.config)
    validate_entries(config)  # before the store is opened (or created)
    location = args.store or config.store
    if _missing_local_store(location):
        # nothing is done yet; a status query creates no database (nor folders) at the path
        store: BaseStore = ResultStore(":memory:")
        where = f"no results store at {location} yet"
    else:
        store = _store(config, args.store)
        where = f"store {store.location}"
    status = grid_status(config, store)
    print(f"{config.name}: {status.done}/{status.total} runs done on {status.dataset} "
          f"({where})")
    if status.pending:
        print(f"{len(status.pending)} more finished run(s) wait in {store.pending_file} to be "
              "imported (the next `paizoo leaderboard run` on this store imports them)")
    leases = store.leases()
    running = [s for s in status.missing if s.key in leases and leases[s.key][1] > 0]
    if running:
        print(f"{len(running)} of the missing runs are being trained now (leased)")
    if args.missing:
        for spec in status.missing:
            model, pruner = config.label_of(spec)
            held = (f"  [leased by {leases[spec.key][0]} for {leases[spec.key][1]:.0f} s]"
                    if spec in running else "")
            if spec in status.pending:
                held += "  [finished, waiting in the pending file]"
            print(f"  missing: {model} | {pruner} | s={spec.sparsity:g} | seed {spec.seed}"
                  + held)
    store.close()
    return 0
