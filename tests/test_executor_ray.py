"""The Ray executor on a real local Ray cluster (2 CPUs, started once for this module): a grid
recorded once and identical to the sequential runner's, datasets loaded once per worker
process, a killed worker's run retried, a killed driver resumed without duplicates."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray executor needs `pip install 'paizoo[ray]'`")

import _executor_testlib as lib

from paizoo.cli import main
from paizoo.leaderboard import parse_config, run_leaderboard
from paizoo.leaderboard.executor import (
    DataSource,
    ExecutorError,
    Resources,
    RunTask,
)
from paizoo.leaderboard.ray_executor import RayExecutor
from paizoo.masks import Mask
from paizoo.results import ResultStore

# every test of this module on one pytest-xdist worker: one Ray cluster per test session
pytestmark = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU cluster started the way `--executor ray` without --address does."""
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(lib)
    executor = RayExecutor(num_cpus=2, num_gpus=1)  # a logical GPU: scheduling only
    executor.start()
    yield ray
    executor.close()
    assert not ray.is_initialized()


def _quiet(_message: str) -> None:
    pass


def _untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if not k.endswith("_time_s")} for epoch in history]


def test_local_cluster_is_private(ray_cluster):
    context = ray_cluster.get_runtime_context()
    assert context.gcs_address.startswith("127.0.0.1:")  # loopback only
    assert ray_cluster.cluster_resources()["CPU"] == 2
    # workers run at this process's priority (Ray's default would be nice 15)
    assert ray_cluster.get(ray_cluster.remote(lib.niceness).remote()) == os.nice(0)


def test_grid_on_ray_matches_the_sequential_runner(ray_cluster, tmp_path, capsys):
    cfg = lib.grid(tmp_path)
    path = lib.write_grid(tmp_path, cfg)
    assert main(["leaderboard", "run", str(path), "--executor", "ray", "--max-concurrent", "2",
                 "--no-render", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "running on Ray (a local cluster: 2 CPUs, 1 GPU), at most 2 at a time" in out
    store = ResultStore(cfg["store"])
    config = parse_config(cfg)
    records = {r.run_key: r for r in store.records()}
    assert len(store) == len(records) == config.num_runs == 5
    assert set(records) == {s.key for s in config.specs()}
    # the same grid run one after the other in this process: identical results
    seq = ResultStore(tmp_path / "seq" / "paizoo.db")
    run_leaderboard(config, seq, progress=False, echo=_quiet)
    for ref in seq.records():
        got = records[ref.run_key]
        assert _untimed(got.history) == _untimed(ref.history)
        assert got.final_test_acc == ref.final_test_acc and got.kept == ref.kept
        assert got.dense_test_acc == ref.dense_test_acc is not None or ref.pruner == "dense"
        assert Path(got.log_path).read_text().count("\n") == Path(ref.log_path).read_text(
        ).count("\n") > 0
        if ref.mask_path is not None:  # the mask came back as bytes, into the store's folder
            assert Path(got.mask_path).parent == store.masks_dir
            assert Mask.load(got.mask_path) == Mask.load(ref.mask_path)
            assert Mask.load_metadata(got.mask_path) == Mask.load_metadata(ref.mask_path)
    # re-running finds nothing to do
    assert main(["leaderboard", "run", str(path), "--executor", "ray", "--no-render",
                 "--quiet"]) == 0
    assert "ran 0, 5/5 done" in capsys.readouterr().out and len(store) == 5


def test_each_worker_process_loads_the_dataset_once(ray_cluster, tmp_path):
    config = parse_config(lib.grid(tmp_path))
    executor = RayExecutor()  # Ray is initialised: reuses the module's cluster
    executor.start()
    # a root of its own: a cache key no earlier test loaded (digits ignores the root)
    source = DataSource(name="digits", root=str(tmp_path), device="cpu")
    tasks = [RunTask(spec=s, position=i, resources=Resources(), data=source,
                     run_fn=lib.TracedRun(tmp_path / "traces"))
             for i, s in enumerate(config.specs())]
    executor.submit(tasks)
    results = []
    while len(results) < len(tasks):
        results += executor.wait(timeout=30)
    assert all(f.result is not None and f.result.error is None for f in results)
    pids = {f.result.pid for f in results}
    loads = [f.result.pid for f in results if f.result.loaded_data]
    assert sorted(loads) == sorted(pids)  # one load per worker process, however many runs
    # runs given (a share of) a GPU get a fresh process each: a process stays on its first GPU
    gpu_tasks = [dataclasses.replace(t, resources=Resources(cpus=1, gpus=0.5))
                 for t in tasks[:2]]
    executor.submit(gpu_tasks)
    on_gpu = []
    while len(on_gpu) < len(gpu_tasks):
        on_gpu += executor.wait(timeout=30)
    assert all(f.result.error is None and f.result.loaded_data for f in on_gpu)
    assert len({f.result.pid for f in on_gpu} | pids) == len(pids) + 2
    executor.close()
    assert ray_cluster.is_initialized()  # not ours to shut down


def test_killed_worker_is_retried_and_recorded_once(ray_cluster, tmp_path):
    config = parse_config(lib.grid(tmp_path))
    victim = config.specs()[2]
    traces = tmp_path / "traces"
    messages: list[str] = []
    store = ResultStore(config.store)
    report = run_leaderboard(config, store, executor=RayExecutor(), progress=False,
                             run_fn=lib.TracedRun(traces, kill_key=victim.key),
                             echo=messages.append)
    assert (traces / "killed").exists()
    retry = [m for m in messages if m.startswith("RETRY")]
    assert len(retry) == 1 and victim.describe() in retry[0]
    assert len(report.ran) == len(store) == 5 and not report.failed
    counts = lib.attempts(traces)
    assert counts == {s.key: 1 + (s.key == victim.key) for s in config.specs()}
    assert len({r.run_key for r in store.records()}) == 5


def test_worker_that_keeps_dying_fails_after_max_retries(ray_cluster, tmp_path):
    config = parse_config(lib.grid(tmp_path, pruners=[], sparsities=[]))
    traces = tmp_path / "traces"

    class AlwaysDies(lib.TracedRun):
        def __call__(self, spec, data, **kwargs):
            (Path(self.folder) / "killed").unlink(missing_ok=True)
            return super().__call__(spec, data, **kwargs)

    dense = config.specs()[0]
    store = ResultStore(config.store)
    with pytest.raises(ExecutorError, match="its worker died 2 times"):
        run_leaderboard(config, store, executor=RayExecutor(), progress=False, max_retries=1,
                        run_fn=AlwaysDies(traces, kill_key=dense.key), echo=_quiet)
    assert len(store) == 0 and lib.attempts(traces) == {dense.key: 2}


def test_killed_driver_resumes_without_duplicates(ray_cluster, tmp_path):
    cfg = lib.grid(tmp_path)
    config = parse_config(cfg)
    traces = tmp_path / "traces"
    address = ray_cluster.get_runtime_context().gcs_address
    before = lib.kill_driver_mid_grid(
        cfg, tmp_path, "import ray.cloudpickle\nray.cloudpickle.register_pickle_by_value(lib)\n"
                       "from paizoo.leaderboard.ray_executor import RayExecutor\n"
                       f"executor = RayExecutor({address!r})", traces, sleep_s=0.5)
    assert 1 <= before < config.num_runs == 5
    store = ResultStore(config.store)
    done_before = {r.run_key for r in store.records()}
    report = run_leaderboard(config, store, executor=RayExecutor(), progress=False,
                             run_fn=lib.TracedRun(traces), echo=_quiet)
    assert report.already_done == before and len(report.ran) == 5 - before
    keys = [r.run_key for r in store.records()]
    assert len(keys) == len(set(keys)) == 5
    counts = lib.attempts(traces)
    assert all(counts[k] == 1 for k in done_before)  # finished runs were not run again


def test_cuda_without_a_gpu_resource_is_refused(ray_cluster, tmp_path):
    cfg = lib.grid(tmp_path)
    cfg["train"] = {**cfg["train"], "device": "cuda"}
    config = parse_config(cfg)
    with pytest.raises(ExecutorError, match=r"asks for no GPU; give the model entry "
                                            r"resources: \{gpus: 1\}"):
        run_leaderboard(config, ResultStore(config.store), executor=RayExecutor(),
                        progress=False, echo=_quiet)


def test_two_drivers_share_a_postgresql_store(ray_cluster, postgres_url, tmp_path):
    """Two drivers on one cluster and one PostgreSQL store (threads of this process, each its
    own connection and lease owner): every run trained once and recorded once."""
    import threading

    from paizoo.results import open_store

    cfg = lib.grid(tmp_path, store=postgres_url)
    config = parse_config(cfg)
    traces = tmp_path / "traces"
    reports, errors = [], []

    def drive() -> None:
        try:
            reports.append(run_leaderboard(
                config, open_store(postgres_url), executor=RayExecutor(), progress=False,
                run_fn=lib.TracedRun(traces, sleep_s=0.3), max_concurrent=1, echo=_quiet))
        except Exception as exc:  # reported below, with the thread's other outcome
            errors.append(exc)

    threads = [threading.Thread(target=drive) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors and len(reports) == 2
    store = open_store(postgres_url)
    keys = [r.run_key for r in store.records()]
    assert sorted(keys) == sorted(s.key for s in config.specs())  # each once
    assert sum(len(r.ran) for r in reports) == 5
    assert lib.attempts(traces) == {s.key: 1 for s in config.specs()}  # no run trained twice
    assert all(store.mask_file(r) is not None and store.mask_file(r).is_file()
               for r in store.records() if r.pruner != "dense")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head started by `ray start --head` (2 CPUs, Ray Client on a free port, token
    authentication on, its files in a temp folder); yields ``(client port, env, its folder)``
    and stops it at the end (SIGTERM to `ray start --block`, which stops what it started)."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    pytest.importorskip("grpc", reason="ray:// (Ray Client) needs `pip install 'ray[client]'`")
    folder = Path(tempfile.mkdtemp(prefix="rayc-", dir="/tmp"))  # short: Unix socket paths
    token = folder / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(lib.REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
        # Ray >= 2.59 turns token authentication on for `ray start --head`; a client must then
        # be told to send the token (RAY_AUTH_MODE=token), it does not pick it up by itself
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # stop at once on SIGTERM
        "RAY_USAGE_STATS_ENABLED": "0",
        # the head's client proxy gives the per-driver server it starts 30 s to answer; on a
        # loaded 2-core machine (the whole suite in parallel) starting it can take longer. A
        # server that died at startup is also waited for this long before the driver hears of
        # it and connects again (paizoo.leaderboard.ray_executor._client_init)
        "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "60"}
    gcs, client = _free_port(), _free_port()
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
         "--port", str(gcs), "--ray-client-server-port", str(client), "--num-cpus", "2",
         "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
         "--dashboard-port", str(_free_port()),
         "--dashboard-agent-listen-port", str(_free_port()), "--temp-dir", str(folder)],
        env=env, stdout=subprocess.DEVNULL, stderr=(folder / "ray-start.log").open("w"),
        start_new_session=True)  # its own process group: stopped below by its id
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (folder / "ray-start.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", client), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray Client server did not start"
                time.sleep(0.5)
        yield client, env, folder
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        try:  # anything of its group still there
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(folder, ignore_errors=True)


def test_cli_runs_a_grid_on_a_cluster_through_ray_client(ray_head, tmp_path):
    """`paizoo leaderboard run ... --executor ray --address ray://HOST:PORT` (a driver process
    of its own) against a head started by `ray start`: each run recorded once, its mask and
    log written by the driver into the store's folders, the runs trained by that cluster's
    workers."""
    import subprocess
    import sys

    client, env, folder = ray_head
    cfg = lib.grid(tmp_path, pruners=[{"name": "random", "config": {"distribution": "erk"}}])
    path = lib.write_grid(tmp_path, cfg)
    address = f"ray://127.0.0.1:{client}"
    command = [sys.executable, "-m", "paizoo", "leaderboard", "run", str(path),
               "--executor", "ray", "--address", address, "--no-render"]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    server_logs = "".join(f"\n--- {p.name}:\n{p.read_text()[-2000:]}"
                          for p in folder.glob("session_*/logs/ray_client_server*.err"))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + server_logs
    assert f"running on Ray ({address}: 2 CPUs)" in out.stdout
    store = ResultStore(cfg["store"])
    config = parse_config(cfg)
    keys = [r.run_key for r in store.records()]
    assert sorted(keys) == sorted(s.key for s in config.specs()) and config.num_runs == 3
    for record in store.records():
        log = Path(record.log_path)
        assert log.parent == store.logs_dir and len(log.read_text().splitlines()) >= 1
        if record.pruner != "dense":
            assert Path(record.mask_path).parent == store.masks_dir
            # the mask file the worker wrote is the one the record describes
            assert Mask.load(record.mask_path).density == pytest.approx(record.density)
            assert record.density == pytest.approx(1 - record.sparsity, abs=0.01)
    # each run ran in a worker process of that cluster: Ray logs its workers, by process id,
    # in the session folder of the head (under --temp-dir)
    pids = {int(m) for m in re.findall(r" on [^ :]+:(\d+)", out.stdout)}
    logs = folder / "session_latest" / "logs"
    assert pids and all(list(logs.glob(f"worker-*-{pid}.out")) for pid in pids), \
        (pids, sorted(p.name for p in logs.glob("worker-*")))
    # the same command again: nothing to do
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                           cwd=tmp_path)
    assert again.returncode == 0 and "ran 0, 3/3 done" in again.stdout, again.stdout[-2000:]
    assert len(store) == 3


def test_which_ray_client_errors_are_connected_again() -> None:
    """The two forms in which a Ray head reported that the server it starts for a driver died
    (both seen in this project's Ray Client test, messages abridged from those runs) are tried
    again; an unreachable head or a refused token is not."""
    from paizoo.leaderboard.ray_executor import _specific_server_failed

    assert _specific_server_failed(
        "Initialization failure from server: Traceback (most recent call last): File "
        "\".../proxier.py\", line 772, in Datapath; raise RuntimeError(; RuntimeError: Starting "
        "Ray client server failed. See ray_client_server_23000.err for detailed logs.")
    assert _specific_server_failed(
        "Initialization failure from server: Traceback (most recent call last): File "
        "\".../proxier.py\", line 765, in Datapath; if not self.proxy_manager."
        "start_specific_server(; ... psutil.ZombieProcess: PID still exists but it's a zombie "
        "(pid=9087)")
    assert not _specific_server_failed("ray client connection timeout")
    assert not _specific_server_failed("Failed to connect to the Ray cluster: UNAUTHENTICATED")
