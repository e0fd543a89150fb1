"""The SLURM executor (submitit), with submitit's local executor: real job processes on this
machine, the same code path as on a cluster except ``sbatch``. A grid recorded once and identical
to the sequential runner's (through the CLI command the README gives); a killed driver resumed
without duplicates, with a job that kills itself retried and recorded once."""

from __future__ import annotations

import pytest

pytest.importorskip("submitit", reason="the SLURM executor needs `pip install 'paizoo[slurm]'`")

import _executor_testlib as lib

from paizoo.cli import main
from paizoo.leaderboard import parse_config, run_leaderboard
from paizoo.leaderboard.executor import ExecutorError
from paizoo.leaderboard.slurm_executor import SlurmExecutor
from paizoo.results import ResultStore


@pytest.fixture(autouse=True)
def _pickle_testlib_by_value():
    import cloudpickle

    cloudpickle.register_pickle_by_value(lib)  # job processes cannot import tests/
    yield
    cloudpickle.unregister_pickle_by_value(lib)


def test_grid_as_local_jobs_matches_the_sequential_runner(tmp_path, capsys):
    cfg = lib.grid(tmp_path, pruners=[{"label": "SNIP", "name": "snip"}], sparsities=[0.9])
    path = lib.write_grid(tmp_path, cfg)
    assert main(["leaderboard", "run", str(path), "--executor", "slurm", "--slurm-cluster",
                 "local", "--slurm-array-parallelism", "2", "--slurm-time", "10",
                 "--no-render", "--quiet"]) == 0
    assert "running on submitit (local processes" in capsys.readouterr().out
    config = parse_config(cfg)
    store = ResultStore(cfg["store"])
    records = {r.run_key: r for r in store.records()}
    assert len(store) == len(records) == config.num_runs == 2
    seq = ResultStore(tmp_path / "seq" / "paizoo.db")
    run_leaderboard(config, seq, progress=False, echo=lambda _m: None)
    for ref in seq.records():
        got = records[ref.run_key]
        assert got.final_test_acc == ref.final_test_acc and got.kept == ref.kept
        assert got.dense_test_acc == ref.dense_test_acc
        assert (got.mask_path is None) == (ref.mask_path is None)
    # the jobs' pickles (they hold masks) are removed once recorded
    assert not list((store.files_dir / "submitit").rglob("*_result.pkl"))


def test_killed_driver_and_killed_job_resume_without_duplicates(tmp_path):
    cfg = lib.grid(tmp_path, pruners=[{"label": "random", "name": "random"}])
    config = parse_config(cfg)
    specs = config.specs()
    traces = tmp_path / "traces"
    folder = tmp_path / "jobs"
    before = lib.kill_driver_mid_grid(
        cfg, tmp_path, "import cloudpickle\ncloudpickle.register_pickle_by_value(lib)\n"
                       "from paizoo.leaderboard.slurm_executor import SlurmExecutor\n"
                       f"executor = SlurmExecutor({str(folder)!r}, cluster='local', "
                       "poll_s=0.2)", traces, sleep_s=0.0)
    assert 1 <= before < len(specs) == 3
    store = ResultStore(config.store)
    done_before = {r.run_key for r in store.records()}
    victim = next(s for s in specs if s.key not in done_before)
    messages: list[str] = []
    report = run_leaderboard(
        config, store, executor=SlurmExecutor(folder, cluster="local", array_parallelism=2,
                                              poll_s=0.2),
        run_fn=lib.TracedRun(traces, kill_key=victim.key), progress=False,
        echo=messages.append)
    assert report.already_done == before and len(report.ran) == 3 - before
    assert [m for m in messages if m.startswith("RETRY 1/2") and victim.describe() in m]
    keys = [r.run_key for r in store.records()]
    assert sorted(keys) == sorted(s.key for s in specs)  # each once
    counts = lib.attempts(traces)
    assert all(counts[k] == 1 for k in done_before)  # finished runs were not run again


def test_bad_options_are_refused(tmp_path, capsys):
    path = lib.write_grid(tmp_path, lib.grid(tmp_path))
    assert main(["leaderboard", "run", str(path), "--slurm-partition", "gpu"]) == 2
    assert "--slurm-partition only apply with --executor slurm" in capsys.readouterr().err
    assert main(["leaderboard", "run", str(path), "--executor", "slurm", "--address",
                 "auto"]) == 2
    assert "--address only apply with --executor ray" in capsys.readouterr().err
    with pytest.raises(ExecutorError, match="--slurm-time"):
        SlurmExecutor(tmp_path, time_min=0)
