"""Running a grid's runs on other processes or machines: the contract every executor keeps.

An :class:`Executor` (Ray: :mod:`.ray_executor`, SLURM through submitit: :mod:`.slurm_executor`)
only moves :class:`RunTask` objects to workers and :class:`RunResult` objects back. Everything
else lives here, in :func:`dispatch`, so every executor keeps the same contract:

* **The driver is the only writer.** Workers never open the store. Each finished run comes back
  as a result carrying its record, its mask (safetensors bytes) and its training log (bytes), so
  no shared filesystem is needed; the driver writes the files into the store's folders and then
  the record, in one transaction per run, as results arrive.
* **Bounded retries.** A run whose worker process or node dies (the executor reports a *crash*,
  not a Python exception of the run) is submitted again, at most ``max_retries`` times. A run
  that raises is a *failure*, as in the sequential runner: it stops the grid, or with
  ``keep_going`` is logged and left out; it is not retried (it would raise again).
* **Resume.** Runs already in the store are never submitted, and a killed driver loses only
  the runs in flight: running the same command again submits exactly the missing ones.
* **Leases.** Each run is claimed in the store (:meth:`~paizoo.results.BaseStore.claim`) just
  before it is submitted, and the lease is renewed while it is in flight
  (:class:`~paizoo.results.leases.LeaseKeeper`), so several drivers sharing one store (e.g. a
  PostgreSQL store) do not run the same run; runs other drivers hold are waited for at the end
  and taken over when their leases expire (at once when their driver is a dead process of this
  host), as the sequential runner does.

Datasets are loaded by the workers themselves, once per worker process (:func:`execute_run`
keeps them in a per-process cache): the dataset's files must be at the same local path on each
node (``data_root`` of the grid), or be built in (``digits``, ``synthetic:...``).
"""

from __future__ import annotations

import abc
import dataclasses
import math
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PaizooError
from ..results.leases import LeaseKeeper, claim_or_take_over, owner_id
from ..results.record import RunRecord, RunSpec
from ..training.experiment import ExperimentData, load_experiment_data
from ..training.logs import WandbOptions

if TYPE_CHECKING:
    from .config import LeaderboardConfig
    from .runner import RunReport

RunFn = Callable[..., RunRecord]


class ExecutorError(PaizooError, RuntimeError):
    """An executor cannot start, or a run failed or kept crashing its workers."""


@dataclass(frozen=True)
class Resources:
    """What one run needs on a worker: CPU cores and GPUs (fractions share a GPU)."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class DataSource:
    """How a worker loads the grid's dataset (the cache key of :func:`load_data_once`)."""

    name: str
    root: str | None = None
    augment: bool = False
    device: str | None = None


@dataclass
class RunTask:
    """One run, as shipped to a worker (everything in it must pickle)."""

    spec: RunSpec
    position: int
    resources: Resources
    data: DataSource
    run_fn: RunFn
    mask_mode: str = "project"
    wandb: WandbOptions | None = None
    attempt: int = 1

    @property
    def key(self) -> str:
        return self.spec.key


@dataclass
class RunResult:
    """What comes back from a worker: the record and the files, or the run's error."""

    run_key: str
    record: RunRecord | None = None
    error: str | None = None
    mask: bytes | None = None
    log: bytes | None = None
    host: str = ""
    pid: int = 0
    #: whether this run loaded the dataset (the first run of its worker process does)
    loaded_data: bool = False
    seconds: float = 0.0


@dataclass
class Finished:
    """A task the executor is done with: a :class:`RunResult`, or ``crash`` (why no result)."""

    task: RunTask
    result: RunResult | None = None
    crash: str | None = None


class Executor(abc.ABC):
    """Where runs execute. Subclasses move tasks out and results back; :func:`dispatch` does
    the rest (store, retries, leases, progress)."""

    name = "executor"

    @abc.abstractmethod
    def start(self) -> None:
        """Connect to (or start) the cluster; called once before the first :meth:`submit`."""

    def capacity(self, resources: Sequence[Resources]) -> int | None:
        """How many runs to keep in flight by default (``None``: submit them all)."""
        return None

    def gpus_for(self, resources: Resources) -> float:
        """The GPUs a run asking for ``resources`` gets."""
        return resources.gpus

    @abc.abstractmethod
    def submit(self, tasks: Sequence[RunTask]) -> None:
        """Start these tasks."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[Finished]:
        """Block up to ``timeout`` seconds for tasks to finish; return those that have (possibly
        none). Each submitted task is returned exactly once."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop every task still in flight (the driver is stopping)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what :meth:`start` acquired."""

    def describe(self) -> str:
        return self.name


# ---- worker side -------------------------------------------------------------------------------
_DATA: dict[DataSource, ExperimentData] = {}


def load_data_once(source: DataSource) -> tuple[ExperimentData, bool]:
    """The dataset of ``source``, loaded at most once per process; ``(data, loaded now)``."""
    if source in _DATA:
        return _DATA[source], False
    from ..training.loop import select_device

    data = load_experiment_data(source.name, root=source.root, augment=source.augment,
                                device=select_device(source.device))
    _DATA[source] = data
    return data, True


def execute_run(task: RunTask) -> RunResult:
    """Run one task on a worker; never raises for an error of the run itself (the error comes
    back in :attr:`RunResult.error`, so any exception an executor sees means a crash)."""
    import torch

    start = time.perf_counter()
    out = RunResult(run_key=task.key, host=socket.gethostname(), pid=os.getpid())
    folder = Path(tempfile.mkdtemp(prefix="paizoo-run-"))
    try:
        torch.set_num_threads(max(1, int(task.resources.cpus)))
        data, out.loaded_data = load_data_once(task.data)
        record = task.run_fn(task.spec, data, masks_dir=folder / "masks",
                             logs_dir=folder / "logs", dense_test_acc=None,
                             mask_mode=task.mask_mode, progress=False, wandb=task.wandb)
        out.mask = _read(record.mask_path)
        out.log = _read(record.log_path)
        out.record = record
    except Exception:
        out.error = traceback.format_exc(limit=8).rstrip()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out.seconds = time.perf_counter() - start
    return out


def _read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path and Path(path).is_file() else None


# ---- driver side -------------------------------------------------------------------------------
class _Progress:
    """One bar of finished runs with an ETA (tqdm) on a terminal; else a log line every
    ``every_s`` seconds."""

    def __init__(self, name: str, total: int, progress: bool | None, say: Callable[[str], None],
                 every_s: float = 30.0) -> None:
        from tqdm.auto import tqdm

        interactive = sys.stderr.isatty() if progress is None else progress
        self.bar = tqdm(total=total, desc=name, unit="run", disable=not interactive,
                        dynamic_ncols=True) if interactive else None
        self.name, self.total, self.say, self.every_s = name, total, say, every_s
        self.done = 0
        self.started = self._last = time.monotonic()

    def advance(self, in_flight: int) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{in_flight} running")
        self.tick(in_flight)

    def tick(self, in_flight: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.bar is not None or not (force or now - self._last >= self.every_s):
            return
        self._last = now
        elapsed = now - self.started
        eta = (elapsed / self.done * (self.total - self.done)) if self.done else math.nan
        self.say(f"{self.name}: {self.done}/{self.total} runs finished, {in_flight} running, "
                 f"elapsed {_duration(elapsed)}, ETA {_duration(eta)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    h, rest = divmod(round(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _write_file(path: Path, payload: bytes) -> str:
    """Write atomically (temp file + rename): a killed driver never leaves half a mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return str(path)


def dispatch(
    config: LeaderboardConfig,
    store: Any,
    executor: Executor,
    todo: Sequence[tuple[int, RunSpec]],
    report: RunReport,
    *,
    data: ExperimentData,
    total: int,
    limit: int | None = None,
    keep_going: bool = False,
    mask_mode: str = "project",
    wandb: WandbOptions | None = None,
    run_fn: RunFn | None = None,
    max_retries: int = 2,
    max_concurrent: int | None = None,
    progress: bool | None = None,
    say: Callable[[str], None] = print,
    owner: str | None = None,
    lease_ttl_s: float = 120.0,
    wait_for_others: bool = True,
    retry_s: float = 300.0,
    log_every_s: float = 30.0,
) -> RunReport:
    """Run ``todo`` (``(position in the grid, spec)`` pairs) on ``executor``; the driver side of
    the module docstring's contract. Called by :func:`~paizoo.leaderboard.run_leaderboard`
    when it is given an executor; fills and returns ``report``.

    Pruned runs record the final accuracy of their dense baseline (``dense_test_acc``) when it
    is in the store as they are written; a pruned run that finishes before its dense run of
    the same grid waits for it (the dense runs are submitted first, so this is rare).

    Runs are submitted seed by seed, each seed's dense runs first and then its longest runs
    first (:mod:`~paizoo.leaderboard.schedule`), so the workers finish close together.
    """
    from ..training.experiment import run_experiment

    if max_retries < 0:
        raise ExecutorError(f"--max-retries must be >= 0, got {max_retries}")
    if max_concurrent is not None and max_concurrent < 1:
        raise ExecutorError(f"--max-concurrent must be >= 1, got {max_concurrent}")
    run_fn = run_fn or run_experiment
    resources = {s.key: config.resources_for(s) for _, s in todo}
    todo = [(i, _placed(s, executor.gpus_for(resources[s.key]))) for i, s in todo]
    todo = _longest_first(todo, data)
    owner = owner or owner_id()
    keeper = LeaseKeeper(store, owner, lease_ttl_s)
    pending = deque(todo)
    others: list[tuple[int, RunSpec]] = []  # leased by other runners: tried again later
    # dense runs of this batch not written yet: pruned results of their seed wait for them
    dense_open = {s.key for _, s in todo if s.is_dense}
    waiting: dict[str, list[Finished]] = {}
    in_flight: dict[str, RunTask] = {}
    attempts: dict[str, int] = {}
    dispatched = 0
    if not todo:
        return report  # nothing to run: no cluster to start
    executor.start()
    try:
        cap = max_concurrent or executor.capacity(sorted(set(resources.values()),
                                                         key=lambda r: (r.cpus, r.gpus)))
    except BaseException:
        executor.close()
        raise
    say(f"{config.name}: running on {executor.describe()}"
        + (f", at most {cap} at a time" if cap else "") + f", {max_retries} retries per run")
    bar = _Progress(config.name, len(todo) if limit is None else min(limit, len(todo)),
                    progress, say, every_s=log_every_s)

    def write(done: Finished) -> None:
        task, result = done.task, done.result
        assert result is not None and result.record is not None
        record = result.record
        key = task.key
        if result.mask is not None:
            record.mask_path = _write_file(Path(store.masks_dir) / f"{key}.safetensors",
                                           result.mask)
        if result.log is not None:
            record.log_path = _write_file(Path(store.logs_dir) / f"{key}.jsonl", result.log)
        if not task.spec.is_dense:
            dense = store.get(task.spec.dense_reference().key)
            record.dense_test_acc = dense.final_test_acc if dense else None
        delivered = store.add_reliably(record, retry_s=retry_s)
        keeper.drop(key)
        release_waiting(key)
        if delivered == "present":  # our lease had expired and another runner recorded it
            say(f"{task.spec.describe()} was recorded by another runner meanwhile; its "
                "result is kept")
            report.already_done += 1
            return
        if delivered == "pending":
            say(f"NOTE: {store.location} is unavailable; run {task.spec.describe()} is kept in "
                f"{store.pending_file} and recorded by the next run")
        report.ran.append(record)
        bar.advance(len(in_flight))
        model_label, pruner_label = config.label_of(task.spec)
        collapse = "  [layer collapse]" if record.layer_collapse else ""
        say(f"[{task.position + 1}/{total}] {model_label} | {pruner_label} | "
            f"s={task.spec.sparsity:g} | seed {task.spec.seed}: test "
            f"{record.final_test_acc:.2%} (best {record.best_test_acc:.2%}), prune "
            f"{record.prune_time_s:.2f} s, train {record.train_time_s:.1f} s on "
            f"{result.host}:{result.pid}"
            + (f" (attempt {task.attempt})" if task.attempt > 1 else "") + collapse)

    def release_waiting(dense_key: str) -> None:
        """The dense run ``dense_key`` is written, failed or not ours: write its waiting runs."""
        dense_open.discard(dense_key)
        for held in waiting.pop(dense_key, []):
            write(held)

    def give_up(task: RunTask, message: str, details: str = "") -> None:
        keeper.drop(task.key)
        store.release(task.key, owner)
        say(f"FAILED run {task.position + 1}/{total} {task.spec.describe()}: {message}"
            + (f"\n{details}" if details else ""))
        report.failed.append((task.spec, message))
        release_waiting(task.key)  # its pruned runs are written without a dense reference
        if not keep_going:
            raise ExecutorError(f"run {task.spec.describe()} failed: {message}")

    told_waiting = False
    keeper.start()
    try:
        while pending or in_flight or (others and wait_for_others):
            if others and not pending and not in_flight:
                if not told_waiting:
                    say(f"waiting for {len(others)} run(s) that other runners hold (taken over "
                        f"if their leases expire, {lease_ttl_s:g} s after their last renewal)")
                    told_waiting = True
                time.sleep(min(lease_ttl_s / 4, 5.0))
                pending.extend(others)
                others.clear()
            batch: list[RunTask] = []
            while pending and (cap is None or len(in_flight) + len(batch) < cap):
                if limit is not None and dispatched >= limit:
                    report.stopped_at_limit = True
                    pending.clear()
                    others.clear()
                    break
                position, spec = pending.popleft()
                key = spec.key
                if key not in attempts:  # first time: skip what others finished or hold
                    if key in store or not claim_or_take_over(store, key, owner, lease_ttl_s):
                        if key in store:  # finished meanwhile by another runner
                            report.already_done += 1
                        else:
                            others.append((position, spec))
                        release_waiting(key)  # a dense run that is not ours to write
                        continue
                    keeper.hold(key)
                    dispatched += 1
                attempts[key] = attempts.get(key, 0) + 1
                source = DataSource(name=data.name, root=config.data_root
                                    if data.name == config.dataset else None,
                                    augment=spec.train.augment, device=spec.train.device)
                batch.append(RunTask(spec=spec, position=position, resources=resources[key],
                                     data=source, run_fn=run_fn, mask_mode=mask_mode,
                                     wandb=wandb, attempt=attempts[key]))
            if batch:
                executor.submit(batch)
                in_flight.update((t.key, t) for t in batch)
            if not in_flight:
                continue
            for done in executor.wait(timeout=min(5.0, log_every_s)):
                task = in_flight.pop(done.task.key)
                if done.result is None:
                    if task.attempt <= max_retries:
                        say(f"RETRY {task.attempt}/{max_retries} of {task.spec.describe()}: "
                            f"{done.crash}")
                        pending.appendleft((task.position, task.spec))
                    else:
                        give_up(task, f"its worker died {task.attempt} times; last: "
                                      f"{done.crash}")
                elif done.result.error is not None:
                    give_up(task, done.result.error.splitlines()[-1], done.result.error)
                elif not task.spec.is_dense and \
                        task.spec.dense_reference().key in dense_open:
                    waiting.setdefault(task.spec.dense_reference().key, []).append(done)
                else:
                    write(done)
            bar.tick(len(in_flight))
        for held in [h for group in waiting.values() for h in group]:  # dense left at --limit
            write(held)
        waiting.clear()
    except BaseException:
        executor.cancel()
        keeper.stop(release=keeper.held)  # the runs in flight are free for others at once
        raise
    else:
        keeper.stop()
    finally:
        bar.close()
        executor.close()
    if others:
        say(f"left {len(others)} run(s) to the runners that hold them")
    return report


def _longest_first(todo: list[tuple[int, RunSpec]], data: Any) -> list[tuple[int, RunSpec]]:
    """``todo`` in submission order (:func:`~paizoo.leaderboard.schedule.longest_first`)."""
    from ..data import dataset_info
    from .schedule import longest_first

    if not todo:
        return todo
    info = getattr(data, "info", None) or dataset_info(data.name)
    train = getattr(data, "train", None)
    return longest_first(todo, info, len(train) if hasattr(train, "__len__") else None)


def on_cpu(config: LeaderboardConfig) -> LeaderboardConfig:
    """``config`` with ``train.device: cpu``: how the driver, which may have no GPU, loads the
    dataset to learn its name (the workers load their own copy on their device)."""
    return dataclasses.replace(config, train=dataclasses.replace(config.train, device="cpu"))


def _placed(spec: RunSpec, gpus: float) -> RunSpec:
    """``spec`` as run on a worker given ``gpus`` GPUs: without one, ``device: null`` (CUDA
    when available) becomes ``cpu`` (a worker may see GPUs it was not given) and ``cuda`` is
    refused. The device is not part of a run's key."""
    device = spec.train.device
    if gpus > 0:
        return spec
    if device is not None and device.startswith("cuda"):
        raise ExecutorError(f"{spec.describe()}: device {device!r} but its model asks for no "
                            "GPU; give the model entry resources: {gpus: 1} (or a fraction "
                            "such as 0.25 to share a GPU)")
    if device is None:
        return dataclasses.replace(spec, train=dataclasses.replace(spec.train, device="cpu"))
    return spec
