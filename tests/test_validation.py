"""Every (model, pruner) entry of a grid is checked before the first run (issue 13, item 2), and
pruner options are checked by name and value wherever a pruner is created."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import paizoo
from paizoo.cli import main
from paizoo.errors import PrunerOptionError
from paizoo.leaderboard import grid_status, parse_config, run_leaderboard
from paizoo.leaderboard.validate import validate_entries
from paizoo.results import ResultStore
from paizoo.training import ConfigError


def _bad_grid(tmp_path: Path) -> dict:
    return {
        "name": "bad", "dataset": "digits", "store": str(tmp_path / "p.db"),
        "models": [{"name": "lenet_300_100", "label": "MLP"},
                   {"name": "lenet_300_100", "label": "wide", "config": {"hidden": [5]}}],
        "pruners": [{"label": "ok", "name": "magnitude"},
                    {"label": "rz", "name": "random", "config": {"distribution": "zzz"}},
                    {"label": "mb", "name": "magnitude", "config": {"bogus": 1}}],
        "sparsities": [0.5], "seeds": [0], "train": {"epochs": 1},
    }


def test_bad_entries_fail_before_any_run_and_in_status(tmp_path, capsys):
    config = parse_config(_bad_grid(tmp_path), path=tmp_path / "bad.yaml")
    store = ResultStore(config.store)
    calls = []

    def run_fn(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("nothing may run")

    with pytest.raises(ConfigError) as info:
        run_leaderboard(config, store, run_fn=run_fn, progress=False, echo=lambda _m: None)
    message = str(info.value)
    assert calls == []  # the dense and the 'ok' runs come first in the grid, yet none ran
    assert "3 bad entries" in message and "\n" not in message
    assert "pruners[rz]" in message and "unknown distribution 'zzz'" in message
    assert "pruners[mb]" in message and "no option 'bogus'" in message
    assert "models[wide]" in message and "hidden" in message
    assert "pruners[ok]" not in message and "models[MLP]" not in message
    with pytest.raises(ConfigError, match="3 bad entries"):
        grid_status(config, store)
    assert len(store) == 0


def test_a_model_that_cannot_take_the_dataset_input_is_caught(tmp_path):
    cfg = _bad_grid(tmp_path)
    cfg["models"] = [{"name": "lenet5", "config": {"input_size": 28}}]  # digits are 8x8
    cfg["pruners"] = [{"name": "magnitude"}]
    with pytest.raises(ConfigError, match=r"models\[lenet5\].*digits \(1, 8, 8\)"):
        validate_entries(parse_config(cfg))


@pytest.mark.parametrize("path", sorted(Path("leaderboards").glob("*.yaml")))
def test_committed_grids_validate(path):
    from paizoo.leaderboard import load_config

    validate_entries(load_config(path))


@pytest.mark.parametrize("options, match", [
    ({"bogus": 1}, r"pruner 'random' has no option 'bogus'; its options are distribution, "
                   r"rounds, schedule, scope"),
    ({"distribution": "zzz"}, r"pruner 'random' with distribution='zzz': unknown distribution"),
    ({"rounds": "abc"}, r"pruner 'random' with rounds='abc': invalid literal"),
])
def test_pruner_options_are_checked_by_name_and_value(options, match):
    with pytest.raises(PrunerOptionError, match=match):
        paizoo.create_pruner("random", **options)
    with pytest.raises(TypeError):  # still a TypeError/ValueError for existing callers
        paizoo.create_pruner("random", **options)


def test_cli_status_of_a_bad_grid_is_one_line(tmp_path, capsys):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_bad_grid(tmp_path)))
    assert main(["leaderboard", "status", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("paizoo: error: bad: 3 bad entries")


def test_models_are_checked_without_meta_imports(tmp_path):
    """The check runs the models on the CPU: a fresh process (e.g. a Ray or SLURM driver, which
    trains nothing itself) does not import torch._dynamo and SymPy for it, as meta tensors do."""
    import subprocess
    import sys

    script = ("import sys\nfrom paizoo.leaderboard import load_config\n"
              "from paizoo.leaderboard.validate import validate_entries\n"
              "validate_entries(load_config('leaderboards/quick.yaml'), 'digits')\n"
              "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_a_model_too_large_for_the_cpu_is_checked_on_the_meta_device(tmp_path):
    from paizoo.models import register_model
    from paizoo.models.registry import _DESCRIPTIONS, _MODELS

    built_on = []

    def huge(num_classes: int, in_channels: int, width: int = 4) -> torch.nn.Module:
        device = torch.empty(0).device.type
        built_on.append(device)
        if device == "cpu":  # what a model too large for this machine's memory does
            raise RuntimeError("[enforce fail at alloc_cpu.cpp] not enough memory")
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64 * in_channels, width),
                                   torch.nn.Linear(width, num_classes))

    register_model("test_huge")(huge)
    try:
        cfg = _bad_grid(tmp_path)
        cfg["models"] = [{"name": "test_huge"}]
        cfg["pruners"] = [{"name": "magnitude"}]
        validate_entries(parse_config(cfg))  # digits: 1x8x8 inputs
        assert built_on == ["cpu", "meta"]
        cfg["models"] = [{"name": "test_huge", "config": {"width": "x"}}]  # bad either way
        with pytest.raises(ConfigError, match=r"models\[test_huge\]"):
            validate_entries(parse_config(cfg))
    finally:
        _MODELS.pop("test_huge", None)
        _DESCRIPTIONS.pop("test_huge", None)
