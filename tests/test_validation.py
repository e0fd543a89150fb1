"""Every (model, pruner) entry of a grid is checked before the first run (issue 13, item 2), and
pruner options are checked by name and value wherever a pruner is created."""

from __future__ import annotations

from pathlib import Path

import pytest

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
