"""Running a grid's runs as Ray tasks (``pip install 'paizoo[ray]'``).

Each run is one Ray task asking for its model's ``resources`` (``num_cpus``, ``num_gpus``; a
fraction of a GPU lets several small runs share one). Ray schedules them onto the cluster;
:func:`~paizoo.leaderboard.executor.dispatch` keeps the contract (the driver alone writes the
store, a run whose worker or node dies is resubmitted a bounded number of times, resume).

Without an address, a private Ray cluster is started on this machine for the duration of the
grid: ``num_cpus`` CPUs (default all), no dashboard, listening on the loopback interface only,
workers at the driver's priority (Ray's default is ``nice 15``).
With ``address="auto"`` (a cluster started by ``ray start`` on this node), ``"HOST:PORT"``
(a cluster's GCS address) or ``"ray://HOST:10001"`` (Ray Client: ``ray[client]``, which
``paizoo[ray]`` installs; with token authentication, ``RAY_AUTH_MODE=token`` on the driver), the
same grid runs on that cluster. CPU worker processes are reused across tasks, so each loads the
dataset once (:func:`~paizoo.leaderboard.executor.load_data_once`); a run given a GPU (or a
fraction of one) gets a fresh worker process, as Ray does for GPU functions by default, since a
process stays on the GPU it first used.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .executor import (
    Executor,
    ExecutorError,
    Finished,
    Resources,
    RunResult,
    RunTask,
    execute_run,
)


def import_ray() -> Any:
    """``import ray``, with a clear error when it is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError("--executor ray needs Ray: pip install 'paizoo[ray]'") from exc
    return ray


@contextmanager
def _loopback_only(ray: Any) -> Iterator[None]:
    """Make a local cluster started in this block listen on 127.0.0.1 only. Ray binds to the
    machine's address unless its ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` switch is off (read at
    import: set for the processes Ray starts, and patched in this already imported one)."""
    from ray._private import ray_constants

    old_env = os.environ.get(_LOOPBACK_ENV)
    old_flag = getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if old_env is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = old_env
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
    address = ray.get_runtime_context().gcs_address
    if not address.startswith("127.0.0.1:"):
        warnings.warn(f"Ray's local cluster listens on {address}, not on the loopback "
                      "interface only (this Ray version ignores the switch)", stacklevel=3)


_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _execute_on_gpu(task: RunTask) -> RunResult:
    """:func:`execute_run` under another name: Ray keys a remote function's options (here a
    fresh process per call) by the function, so GPU runs need their own."""
    return execute_run(task)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


#: connection attempts of a Ray Client driver whose per-driver server fails to start
CLIENT_CONNECT_ATTEMPTS = 3


def _specific_server_failed(message: str) -> bool:
    """Whether a Ray Client connection error is the head's failure to start the per-driver
    server: its own report ("Starting Ray client server failed"), or the traceback of its
    start-up check when the dead server is a zombie process (``start_specific_server`` ...
    ``ZombieProcess``)."""
    return "Starting Ray client server failed" in message or (
        "start_specific_server" in message and "ZombieProcess" in message)


def _client_init(ray: Any, address: str, kwargs: dict[str, Any]) -> None:
    """``ray.init(address, **kwargs)``, tried again (up to :data:`CLIENT_CONNECT_ATTEMPTS`
    times) when a ``ray://`` head reports that the server it starts for this driver died at
    startup (:func:`_specific_server_failed`): with Ray 2.5x the head's proxy forks that server
    while its own gRPC threads run, and the child sometimes exits at once without a word (8 of
    29 runs of this project's Ray Client test on a 2-core machine); the next attempt gets a
    new server. Any other failure is raised at once."""
    import sys
    import time

    for attempt in range(1, CLIENT_CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address=address, **kwargs)
            return
        except (ConnectionError, RuntimeError) as exc:
            if attempt == CLIENT_CONNECT_ATTEMPTS or not str(address).startswith("ray://") \
                    or not _specific_server_failed(str(exc)):
                raise
            print(f"paizoo: note: the Ray head at {address} could not start its server for this "
                  f"driver (attempt {attempt} of {CLIENT_CONNECT_ATTEMPTS}: Starting Ray client "
                  "server failed); connecting again", file=sys.stderr, flush=True)
            try:
                ray.shutdown()
            except Exception:  # nothing was connected
                pass
            time.sleep(2.0)


class RayExecutor(Executor):
    """Runs on a Ray cluster (started locally when ``address`` is ``None``).

    Args:
        address: ``None`` (start a local cluster), ``"auto"``, ``"HOST:PORT"`` or
            ``"ray://HOST:PORT"``.
        num_cpus / num_gpus: resources of the local cluster (default: this machine's).
        init_kwargs: more ``ray.init`` arguments.

    When Ray is already initialised in this process (e.g. by a test suite), that cluster is
    used and left running.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 num_gpus: int | None = None, **init_kwargs: Any) -> None:
        if address is not None and (num_cpus is not None or num_gpus is not None):
            raise ExecutorError("--num-cpus/--num-gpus size a local Ray cluster; a cluster at "
                                "--address has its own resources")
        self.address = address
        self.num_cpus, self.num_gpus, self.init_kwargs = num_cpus, num_gpus, init_kwargs
        self._ray: Any = None
        self._owned = False
        self._remote: Any = None
        self._remote_gpu: Any = None
        self._refs: dict[Any, RunTask] = {}

    def start(self) -> None:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, **self.init_kwargs}
            if self.address is None:
                kwargs.update(num_cpus=self.num_cpus or os.cpu_count() or 1,
                              num_gpus=self.num_gpus, include_dashboard=False)
                # Ray runs its workers at nice 15 by default; the runs are the work here, so
                # they get the driver's priority, as in the sequential runner
                kwargs.setdefault("_system_config", {"worker_niceness": 0})
            try:
                if self.address is None or self.address.startswith(("127.0.0.1:",
                                                                      "localhost:")):
                    with _loopback_only(ray):  # start, or join, a loopback-only cluster
                        ray.init(address=self.address, **kwargs)
                else:
                    _client_init(ray, self.address, kwargs)
            except ImportError as exc:  # ray:// without the client extras
                raise ExecutorError(f"cannot connect to {self.address}: {exc}; Ray Client "
                                    "needs pip install 'ray[client]'") from exc
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = ""
                if str(self.address).startswith("ray://") and \
                        os.environ.get("RAY_AUTH_MODE", "") != "token":
                    # Ray >= 2.59: `ray start --head` turns token authentication on when
                    # ~/.ray/auth_token exists, and a Ray Client sends no token unless told
                    hint = ("; if the cluster uses token authentication (`ray start --head` "
                            "turns it on by default since Ray 2.59), set RAY_AUTH_MODE=token "
                            "here, with its token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
                raise ExecutorError(f"cannot start or reach the Ray cluster "
                                    f"{self.address or '(local)'}: {exc}{hint}") from exc
            self._owned = True
        # GPU tasks get a fresh worker process each (Ray's own default for GPU functions): a
        # process keeps the GPU it first initialised CUDA on, whatever the next task is given
        self._remote = ray.remote(execute_run)
        self._remote_gpu = ray.remote(max_calls=1)(_execute_on_gpu)

    def describe(self) -> str:
        if self._ray is None:
            return "ray"
        res = self._ray.cluster_resources()
        where = self.address or "a local cluster"
        n_gpus = res.get("GPU", 0)
        gpus = f", {n_gpus:g} GPU" + ("s" if n_gpus != 1 else "") if n_gpus else ""
        return f"Ray ({where}: {res.get('CPU', 0):g} CPUs{gpus})"

    def capacity(self, resources: Sequence[Resources]) -> int | None:
        """Runs of the least demanding kind that fit the cluster at once."""
        if not resources:
            return None
        total = self._ray.cluster_resources()
        fits = []
        for r in resources:
            n = int(total.get("CPU", 0) // r.cpus)
            if r.gpus:
                n = min(n, int(total.get("GPU", 0) // r.gpus))
            fits.append(n)
        best = max(fits)
        if best < 1:
            needs = min(resources, key=lambda r: (r.cpus, r.gpus))
            raise ExecutorError(
                f"no run fits the Ray cluster: a run asks for {needs.cpus:g} CPUs and "
                f"{needs.gpus:g} GPUs, the cluster has {total.get('CPU', 0):g} CPUs and "
                f"{total.get('GPU', 0):g} GPUs; lower the models' resources or add nodes")
        return best

    def submit(self, tasks: Sequence[RunTask]) -> None:
        for task in tasks:
            remote = self._remote_gpu if task.resources.gpus > 0 else self._remote
            ref = remote.options(
                num_cpus=task.resources.cpus, num_gpus=task.resources.gpus,
                max_retries=0,  # dispatch() retries, bounded, and logs each retry
                name=f"paizoo:{task.spec.describe()}",
            ).remote(task)
            self._refs[ref] = task

    def wait(self, timeout: float) -> list[Finished]:
        ray = self._ray
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is ready too
            rest = [r for r in self._refs if r not in ready]
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0) if rest else ([], [])
            ready = ready + more
        out = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                out.append(Finished(task, result=ray.get(ref)))
            except ray.exceptions.RayError as exc:  # worker or node died, object lost...
                lines = [ln for ln in _ANSI.sub("", str(exc)).splitlines() if ln.strip()]
                out.append(Finished(task, crash=f"{type(exc).__name__}: "
                                               f"{lines[-1].strip() if lines else ''}"))
        return out

    def cancel(self) -> None:
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished or its owner is gone
                pass
        self._refs.clear()

    def close(self) -> None:
        if self._owned and self._ray is not None:
            self._ray.shutdown()
            self._owned = False
