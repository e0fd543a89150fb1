"""Running a leaderboard grid, resumably.

:func:`run_leaderboard` walks the grid's runs (seed-major, dense baselines first) and skips every
run whose key is already in the results store. Each finished run is written in one transaction,
so the grid can be killed at any moment (Ctrl-C, ``kill -9``, a crash) and run again: finished
runs are kept, the interrupted one is redone, nothing is duplicated. Runs are claimed (leased)
before they are trained, so several runners on one store -- processes on one machine, or
drivers on several machines sharing a PostgreSQL store -- share the grid without training a run
twice.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from ..errors import DatasetNotFoundError
from ..results.leases import LeaseKeeper, claim_or_take_over, owner_id
from ..results.record import RunRecord, RunSpec
from ..results.store import BaseStore
from ..training.experiment import ExperimentData, load_experiment_data, run_experiment
from ..training.logs import WandbOptions
from ..training.loop import TrainingStopped, select_device
from ..training.masking import MaskMode
from .config import LeaderboardConfig
from .executor import Executor, dispatch, on_cpu
from .validate import validate_entries

RunFn = Callable[..., RunRecord]

#: seconds a runner's claim on a run lasts without renewal (renewed every quarter of it)
DEFAULT_LEASE_TTL_S = 120.0


@dataclass
class GridStatus:
    """How much of a grid is in the store."""

    dataset: str
    total: int
    done: int
    missing: list[RunSpec] = field(default_factory=list)
    #: the missing runs that finished but wait in the store's pending file (a store that was
    #: locked or unreachable when they ended); the next runner on the store imports them
    pending: list[RunSpec] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.done == self.total


@dataclass
class RunReport:
    """What :func:`run_leaderboard` did."""

    dataset: str
    total: int
    already_done: int
    ran: list[RunRecord] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    stopped_at_limit: bool = False
    #: runs stopped early because another runner took their lease over (they are that
    #: runner's now; this one waits for them like for any run another runner holds)
    lost_leases: list[RunSpec] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.total - self.already_done - len(self.ran)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"0/2"`` -> ``(0, 2)``: this process runs the grid's runs with index % 2 == 0."""
    if text is None:
        return None
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError as exc:
        raise ValueError(f"bad shard {text!r}; write INDEX/COUNT, e.g. 0/2") from exc
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"bad shard {text!r}: need 0 <= INDEX < COUNT")
    return index, count


def resolve_dataset(config: LeaderboardConfig, *, notice: Callable[[str], None] | None = None
                    ) -> ExperimentData:
    """Load the grid's dataset, or its ``fallback_dataset`` (with a notice) when not installed."""
    device = select_device(config.train.device)
    try:
        return load_experiment_data(config.dataset, root=config.data_root,
                                    augment=config.train.augment, device=device)
    except DatasetNotFoundError as exc:
        if not config.fallback_dataset:
            raise
        message = (f"NOTICE: dataset {config.dataset!r} was not found ({exc}).\n"
                   f"NOTICE: using the fallback dataset {config.fallback_dataset!r} instead; "
                   "the results are recorded under that name.")
        (notice or _print_err)(message)
        return load_experiment_data(config.fallback_dataset, root=None,
                                    augment=config.train.augment, device=device)


def dataset_in_store(config: LeaderboardConfig, store: BaseStore) -> str:
    """The dataset whose results a render should show: the main one if the store has any of its
    runs for this grid, else the fallback if it has, else the main one."""
    candidates = [config.dataset] + ([config.fallback_dataset] if config.fallback_dataset else [])
    for name in candidates:
        keys = [s.key for s in config.specs(name)]
        if store.get_many(keys):
            return name
    return config.dataset


def grid_status(config: LeaderboardConfig, store: BaseStore, dataset: str | None = None
                ) -> GridStatus:
    """Done/total runs of the grid for ``dataset`` (default: :func:`dataset_in_store`), and
    which missing runs wait in the store's pending file."""
    dataset = dataset or dataset_in_store(config, store)
    validate_entries(config, dataset)
    specs = config.specs(dataset)
    present = store.get_many(s.key for s in specs)
    missing = [s for s in specs if s.key not in present]
    waiting = store.pending_keys() if missing else set()
    return GridStatus(dataset=dataset, total=len(specs), done=len(specs) - len(missing),
                      missing=missing, pending=[s for s in missing if s.key in waiting])


def run_leaderboard(
    config: LeaderboardConfig,
    store: BaseStore,
    *,
    limit: int | None = None,
    shard: tuple[int, int] | None = None,
    keep_going: bool = False,
    mask_mode: MaskMode = "project",
    progress: bool | None = None,
    wandb: WandbOptions | None = None,
    data: ExperimentData | None = None,
    run_fn: RunFn = run_experiment,
    echo: Callable[[str], None] | None = None,
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    owner: str | None = None,
    wait_for_others: bool = True,
    retry_s: float = 300.0,
    executor: Executor | None = None,
    max_retries: int = 2,
    max_concurrent: int | None = None,
) -> RunReport:
    """Run every run of the grid that is not in ``store`` yet.

    Each run is claimed in the store before it is trained (a lease of ``lease_ttl_s`` seconds,
    renewed by a heartbeat thread while it trains), so several runners started on one store,
    with or without ``shard``, train every run once; the runs leased by other runners are
    waited for at the end and taken over if their leases expire (at once when their runner is
    a dead process of this host). A finished run is recorded with retries; if the store stays
    unavailable for ``retry_s`` seconds it is kept in the store's pending file, which every
    runner imports when it starts.

    Args:
        config: the grid.
        store: the results store (finished runs are skipped, new ones added one by one).
        limit: run at most this many new runs, then stop.
        shard: ``(i, n)``: only the runs whose position in the grid is ``i`` modulo ``n`` (to
            split a grid over processes that share the store).
        keep_going: log a failed run and continue (default: stop at the first failure; the
            failed run leaves no row either way).
        mask_mode: how masks are enforced during training (see :mod:`paizoo.training.masking`).
        progress: tqdm bars (``None``: only on a terminal).
        wandb: log each run to Weights & Biases.
        data: already loaded datasets (default: :func:`resolve_dataset`).
        run_fn: the function running one spec (:func:`~paizoo.training.run_experiment`).
        echo: where one-line messages go (default: ``tqdm.write`` to stdout).
        lease_ttl_s: lease length; a killed runner's runs are taken over after this long.
        owner: this runner's lease owner id (default: :func:`~paizoo.results.owner_id`).
        wait_for_others: after its own runs, wait for the runs other runners hold (``False``:
            return, leaving them to those runners).
        retry_s: how long to retry recording a finished run before keeping it pending.
        executor: run on Ray, SLURM... (:mod:`paizoo.leaderboard.executor`; default: one
            run after the other in this process); this process still writes every result.
        max_retries / max_concurrent: with an executor, how often a run whose worker died is
            resubmitted, and how many runs are in flight at most (default: the executor's).
    """
    say = echo or tqdm.write
    requires = config.pruner_requirements()  # fail on unknown pruners before any work
    _check_models(config)
    store.check_writable()  # a read-only store fails here, before any work
    imported, _ = store.import_pending()
    if imported:
        say(f"imported {imported} finished run(s) that an earlier run could not write to "
            f"{store.location} (from {store.pending_file})")
    # with an executor the workers load the data; the driver only needs its name, on the CPU
    data = data or resolve_dataset(config if executor is None else on_cpu(config), notice=say)
    validate_entries(config, data.name)  # every pruner and model entry, before the first run
    specs = config.specs(data.name, requires)
    indexed = list(enumerate(specs))
    if shard is not None:
        indexed = [(i, s) for i, s in indexed if i % shard[1] == shard[0]]
    present = store.get_many(s.key for _, s in indexed)
    todo = [(i, s) for i, s in indexed if s.key not in present]
    report = RunReport(dataset=data.name, total=len(indexed), already_done=len(present))
    say(f"{config.name}: {len(indexed)} runs on {data.name}, {len(present)} already in "
        f"{store.location}, {len(todo)} to run"
        + (f" (limit {limit})" if limit is not None else ""))
    owner = owner or owner_id()
    if executor is not None:
        return dispatch(config, store, executor, todo, report, data=data, total=len(specs),
                        limit=limit, keep_going=keep_going, mask_mode=mask_mode, wandb=wandb,
                        run_fn=run_fn, max_retries=max_retries, max_concurrent=max_concurrent,
                        progress=progress, say=say, owner=owner, lease_ttl_s=lease_ttl_s,
                        wait_for_others=wait_for_others, retry_s=retry_s)
    context = _RunContext(config, store, data, owner, lease_ttl_s, run_fn, report, say,
                          keep_going, retry_s, len(specs),
                          dict(mask_mode=mask_mode, progress=progress, wandb=wandb))
    bar = tqdm(todo, desc=config.name, unit="run", disable=None if progress is None
               else not progress)
    with LeaseKeeper(store, owner, lease_ttl_s) as keeper:
        context.keeper = keeper
        leased_by_others: list[tuple[int, RunSpec]] = []
        for position, spec in bar:
            if limit is not None and len(report.ran) >= limit:
                report.stopped_at_limit = True
                break
            if not context.try_run(position, spec, bar):
                leased_by_others.append((position, spec))
        bar.close()
        if leased_by_others and wait_for_others and not report.stopped_at_limit:
            say(f"waiting for {len(leased_by_others)} run(s) that other runners hold (taken "
                "over if their leases expire: a runner that dies stops renewing them)")
            poll = min(lease_ttl_s / 4, 5.0)
            while leased_by_others:
                if limit is not None and len(report.ran) >= limit:
                    report.stopped_at_limit = True
                    break
                time.sleep(poll)
                leased_by_others = [(p, s) for p, s in leased_by_others
                                    if not context.try_run(p, s, None)]
    return report


@dataclass
class _RunContext:
    """What :func:`run_leaderboard` needs to claim, train and record one run."""

    config: LeaderboardConfig
    store: BaseStore
    data: ExperimentData
    owner: str
    ttl_s: float
    run_fn: RunFn
    report: RunReport
    say: Callable[[str], None]
    keep_going: bool
    retry_s: float
    grid_size: int
    train_options: dict[str, Any]
    keeper: LeaseKeeper | None = None

    def try_run(self, position: int, spec: RunSpec, bar: Any) -> bool:
        """Run ``spec`` unless it is recorded (``True``: nothing left to do for it) or another
        runner holds its lease (``False``: try again later)."""
        store, report, say, key = self.store, self.report, self.say, spec.key
        if key in store:  # finished meanwhile by another process sharing the store
            report.already_done += 1
            return True
        if not claim_or_take_over(store, key, self.owner, self.ttl_s):
            if key in store:
                report.already_done += 1
                return True
            return False
        assert self.keeper is not None
        self.keeper.hold(key)
        model_label, pruner_label = self.config.label_of(spec)
        if bar is not None:
            bar.set_postfix_str(f"{model_label} {pruner_label} s={spec.sparsity:g} "
                                f"seed={spec.seed}")
        dense_ref = None if spec.is_dense else store.get(spec.dense_reference().key)
        keeper = self.keeper
        started = time.monotonic()
        try:
            record = self.run_fn(spec, self.data, masks_dir=store.masks_dir,
                                 logs_dir=store.logs_dir,
                                 dense_test_acc=dense_ref.final_test_acc if dense_ref else None,
                                 should_stop=lambda: keeper.is_lost(key), **self.train_options)
        except TrainingStopped:
            if not keeper.is_lost(key):
                raise
            holder = store.leases().get(key)
            say(f"STOPPED run {position + 1}/{self.grid_size} {spec.describe()} after "
                f"{time.monotonic() - started:.1f} s: this runner's lease expired and "
                f"{holder[0] if holder else 'another runner'} took it over; the run is left "
                "to it (nothing recorded here)")
            report.lost_leases.append(spec)
            return False  # waited for like any run another runner holds
        except Exception as exc:
            self.keeper.drop(key)
            store.release(key, self.owner)
            message = f"{type(exc).__name__}: {exc}"
            say(f"FAILED run {position + 1}/{self.grid_size} {spec.describe()}: {message}")
            if not self.keep_going:
                raise
            report.failed.append((spec, message))
            return True
        delivered = store.add_reliably(record, retry_s=self.retry_s)
        self.keeper.drop(key)
        if delivered == "present":  # our lease was lost and another runner recorded it first
            say(f"run {position + 1}/{self.grid_size} {spec.describe()} was recorded by "
                "another runner meanwhile (this runner's lease had expired); its result is kept")
            report.already_done += 1
            return True
        if delivered == "pending":
            say(f"NOTE: {store.location} is unavailable; run {spec.describe()} is kept in "
                f"{store.pending_file} and recorded by the next run")
        report.ran.append(record)
        collapse = "  [layer collapse]" if record.layer_collapse else ""
        if record.diverged:  # recorded like any finished run: the grid goes on
            collapse += (f"  [diverged: non-finite loss at epoch {record.diverged_epoch}, "
                         f"step {record.diverged_step}]")
        say(f"[{position + 1}/{self.grid_size}] {model_label} | {pruner_label} | "
            f"s={spec.sparsity:g} | seed {spec.seed}: test {record.final_test_acc:.2%} (best "
            f"{record.best_test_acc:.2%}), prune {record.prune_time_s:.2f} s, train "
            f"{record.train_time_s:.1f} s{collapse}")
        return True


def _check_models(config: LeaderboardConfig) -> None:
    from ..errors import UnknownModelError
    from ..models import list_models

    known = set(list_models())
    unknown = [m.name for m in config.models
               if ":" not in m.name and m.name.lower() not in known]
    if unknown:
        raise UnknownModelError(f"{config.name}: unknown model(s) {unknown}; paizoo models: "
                                f"{', '.join(sorted(known))}")


def _print_err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def describe_plan(config: LeaderboardConfig) -> dict[str, Any]:
    """Counts for the CLI: models, pruners, sparsities, seeds and total runs."""
    return {"models": len(config.models), "pruners": len(config.pruners),
            "sparsities": len(config.sparsities), "seeds": len(config.seeds),
            "dense": config.dense, "runs": config.num_runs}
