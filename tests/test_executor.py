"""The executor contract's pieces that need no cluster: per-model resources in the config, the
worker-side function (dataset cache, errors returned not raised, files as bytes) and the
progress lines written when not on a terminal."""

from __future__ import annotations

import json

import pytest
from _executor_testlib import grid

from paizoo.leaderboard import parse_config
from paizoo.leaderboard.executor import (
    DataSource,
    Resources,
    RunTask,
    _placed,
    _Progress,
    execute_run,
)
from paizoo.masks import Mask
from paizoo.training import ConfigError
from paizoo.training.experiment import run_experiment


def test_resources_per_model_entry(tmp_path):
    cfg = grid(tmp_path, models=[{"name": "lenet_300_100", "resources": {"gpus": 0.25}},
                                 {"name": "lenet5", "resources": {"cpus": 2, "gpus": 2}}])
    config = parse_config(cfg)
    by_model = {s.model: config.resources_for(s) for s in config.specs()}
    assert by_model == {"lenet_300_100": Resources(cpus=1.0, gpus=0.25),
                        "lenet5": Resources(cpus=2.0, gpus=2.0)}
    assert parse_config(grid(tmp_path)).resources_for(config.specs()[0]) == Resources()
    # not part of a run's identity: the same keys with or without resources
    assert [s.key for s in parse_config(grid(tmp_path)).specs()] == \
        [s.key for s in config.specs() if s.model == "lenet_300_100"]
    for bad, match in (({"gpu": 1}, r"unknown key\(s\) \['gpu'\]"),
                       ({"cpus": 0}, r"cpus: expected a number > 0"),
                       ({"gpus": -1}, r"gpus: expected a number >= 0"),
                       ({"gpus": 1.5}, "a fraction of one GPU or whole GPUs"),
                       ({"cpus": True}, "cpus: expected a number"),
                       ([1], "expected a mapping")):
        with pytest.raises(ConfigError, match=match):
            parse_config(grid(tmp_path, models=[{"name": "lenet_300_100", "resources": bad}]))


def test_device_placement_on_workers(tmp_path):
    spec = parse_config(grid(tmp_path, train={"epochs": 1})).specs()[1]
    assert spec.train.device is None
    on_cpu = _placed(spec, gpus=0)  # a worker given no GPU never picks one up by itself
    assert on_cpu.train.device == "cpu" and on_cpu.key == spec.key
    assert _placed(spec, gpus=0.5) is spec


def _failing_run(spec, data, **kwargs):
    raise ValueError("bad run")


def test_execute_run_loads_data_once_and_returns_files_and_errors(tmp_path):
    config = parse_config(grid(tmp_path))
    source = DataSource(name="digits", root=str(tmp_path), device="cpu")  # a fresh cache key
    first, second = (execute_run(RunTask(spec=s, position=i, resources=Resources(),
                                         data=source, run_fn=run_experiment))
                     for i, s in enumerate(config.specs()[:2]))
    assert first.loaded_data and not second.loaded_data
    assert first.error is None and first.mask is None and first.log  # dense: no mask
    path = tmp_path / "mask.safetensors"
    path.write_bytes(second.mask)
    assert Mask.load(path).num_kept == second.record.kept
    events = [json.loads(line) for line in second.log.decode().splitlines()]
    assert events[0]["event"] == "start" and events[0]["run_key"] == second.run_key
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == \
        list(range(1, second.record.epochs + 1))
    failed = execute_run(RunTask(spec=config.specs()[0], position=0, resources=Resources(),
                                 data=source, run_fn=_failing_run))
    assert failed.record is None and failed.error.endswith("ValueError: bad run")


def test_progress_lines_when_not_on_a_terminal():
    lines: list[str] = []
    bar = _Progress("grid", total=4, progress=False, say=lines.append, every_s=0.0)
    bar.advance(in_flight=2)
    bar.close()
    assert len(lines) == 1
    assert lines[0].startswith("grid: 1/4 runs finished, 2 running, elapsed 0m00s, ETA 0m")
