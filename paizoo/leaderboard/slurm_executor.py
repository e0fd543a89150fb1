"""Running a grid's runs as SLURM jobs through submitit (``pip install 'paizoo[slurm]'``).

Each run is one job; the runs submitted together form one job array per resource kind, with at
most ``array_parallelism`` of its jobs running at once (SLURM's ``--array=...%N``). The driver
polls the jobs and keeps the contract of :func:`~paizoo.leaderboard.executor.dispatch` (it alone
writes the store, a job that dies without a result — node failure, ``scancel``, out of memory,
time limit — is resubmitted a bounded number of times, resume after a killed driver).

submitit passes each job's task and result as pickles in ``folder``, which must therefore be
on a filesystem that the driver and the compute nodes share (the results store need not be:
masks and logs come back inside the result). Each job is a fresh process, so it loads the
dataset itself, from the same local path as on the driver (``data_root``). SLURM allocates
whole GPUs: a model entry asking for ``gpus: 0.25`` gets one GPU per job here (say
``--slurm-gpus`` to choose); packing several runs per GPU is what the Ray executor does.

``cluster="local"`` runs the jobs as processes on this machine with submitit's local executor
(how the tests exercise this module without SLURM); there ``array_parallelism`` caps how many
run at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

from .executor import Executor, ExecutorError, Finished, Resources, RunTask, execute_run


class SlurmExecutor(Executor):
    """Runs each run as a SLURM job (or a local process with ``cluster="local"``).

    Args:
        folder: submitit's job folder (shared with the compute nodes on SLURM).
        partition: SLURM partition (``None``: the cluster's default).
        time_min: each job's time limit in minutes.
        gpus: GPUs per job (default: each model's ``resources.gpus``, rounded up).
        array_parallelism: at most this many jobs of an array run at once.
        cluster: ``"slurm"``, ``"local"`` or ``None`` (submitit picks: SLURM when ``sbatch``
            is on the PATH).
        poll_s: how often the driver checks its jobs.
        extra: more submitit parameters (e.g. ``slurm_account``, ``slurm_qos``, ``mem_gb``).
    """

    name = "slurm"

    def __init__(self, folder: str | Path, *, partition: str | None = None,
                 time_min: int = 60, gpus: int | None = None, array_parallelism: int = 64,
                 cluster: str | None = None, poll_s: float = 1.0, **extra: Any) -> None:
        if time_min < 1 or array_parallelism < 1 or (gpus is not None and gpus < 0):
            raise ExecutorError("--slurm-time and --slurm-array-parallelism must be >= 1, "
                                "--slurm-gpus >= 0")
        self.folder = Path(folder)
        self.partition, self.time_min, self.gpus = partition, time_min, gpus
        self.array_parallelism, self.cluster, self.poll_s = array_parallelism, cluster, poll_s
        self.extra = extra
        self._executor: Any = None
        self._jobs: dict[Any, RunTask] = {}

    def start(self) -> None:
        try:
            import submitit
        except ImportError as exc:
            raise ExecutorError("--executor slurm needs submitit: pip install "
                                "'paizoo[slurm]'") from exc
        try:
            self._executor = submitit.AutoExecutor(folder=self.folder / "%j",
                                                   cluster=self.cluster)
        except RuntimeError as exc:  # no sbatch and no cluster given
            raise ExecutorError(f"no SLURM cluster found ({exc}); run where `sbatch` works, "
                                "or pass --slurm-cluster local to run the jobs on this "
                                "machine") from exc
        self.cluster = self._executor.cluster

    def describe(self) -> str:
        where = "local processes" if self.cluster == "local" else \
            f"SLURM partition {self.partition or '(default)'}"
        return (f"submitit ({where}, {self.time_min} min per job, "
                f"{self.array_parallelism} jobs at once, folder {self.folder})")

    def capacity(self, resources: Sequence[Resources]) -> int | None:
        # SLURM throttles an array itself; local jobs all start at once, so cap them here
        return self.array_parallelism if self.cluster == "local" else None

    def gpus_for(self, resources: Resources) -> float:
        return self.gpus if self.gpus is not None else math.ceil(resources.gpus)

    def submit(self, tasks: Sequence[RunTask]) -> None:
        def kind(task: RunTask) -> tuple[int, int]:
            return math.ceil(task.resources.cpus), self.gpus_for(task.resources)

        for (cpus, gpus), group in groupby(sorted(tasks, key=kind), key=kind):
            group = list(group)
            self._executor.update_parameters(
                name="paizoo", timeout_min=self.time_min, cpus_per_task=cpus,
                gpus_per_node=gpus, slurm_partition=self.partition,
                slurm_array_parallelism=self.array_parallelism, **self.extra)
            with self._executor.batch():
                jobs = [self._executor.submit(execute_run, task) for task in group]
            self._jobs.update(zip(jobs, group, strict=True))

    def wait(self, timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            done = [job for job in self._jobs if job.done()]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        out = []
        for job in done:
            task = self._jobs.pop(job)
            try:
                result = job.result()
            except Exception as exc:  # no result: the job died (UncompletedJobError, ...)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.append(Finished(task, crash=f"job {job.job_id} {job.state}: "
                                               f"{type(exc).__name__} {first} "
                                               f"(log: {job.paths.stderr})"))
                continue
            out.append(Finished(task, result=result))
            for path in (job.paths.result_pickle, job.paths.submitted_pickle):
                path.unlink(missing_ok=True)  # they hold the mask; the store has it now
        return out

    def cancel(self) -> None:
        for job in list(self._jobs):
            try:
                job.cancel(check=False)
            except Exception:  # already gone
                pass
        self._jobs.clear()
