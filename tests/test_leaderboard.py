"""Leaderboards: config parsing, an end-to-end grid on digits, resume after interruption,
rendering from the store, and the CLI."""

from __future__ import annotations

import csv
import math
import re
import sqlite3
import statistics
from pathlib import Path

import pytest
import yaml
from _training_models import CNN, MLP

import paizoo
from paizoo.cli import main
from paizoo.data import dataset_info
from paizoo.errors import DatasetNotFoundError
from paizoo.leaderboard import (
    grid_status,
    load_config,
    parse_config,
    render_leaderboard,
    run_leaderboard,
)
from paizoo.leaderboard.render import CHANCE_MARK, OFF_TARGET_MARK
from paizoo.pruners import list_pruners
from paizoo.results import ResultStore, open_store
from paizoo.training import ConfigError
from paizoo.training.experiment import build_model, run_experiment


def _config(tmp_path: Path, **changes: object) -> dict:
    cfg = {
        "name": "tiny",
        "description": "Test grid.",
        "dataset": "digits",
        "store": str(tmp_path / "runs" / "paizoo.db"),
        "models": [{"name": "lenet_300_100", "label": "LeNet-300-100"}],
        "pruners": [{"label": "random (ERK)", "name": "random",
                     "config": {"distribution": "erk"}},
                    {"label": "SNIP (layer)", "name": "snip", "config": {"scope": "layer"}}],
        "sparsities": [0.5, 0.9],
        "seeds": [0],
        "train": {"epochs": 1, "batch_size": 64, "lr": 0.1},
        "pruning_data": {"batch_size": 32, "samples_per_class": 2},
    }
    cfg.update(changes)
    return cfg


def _write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / "leaderboards" / f"{cfg['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_config_parsing_and_errors(tmp_path):
    config = load_config(_write(tmp_path, _config(tmp_path)))
    assert config.name == "tiny" and config.sparsities == (0.5, 0.9) and config.dense
    assert config.num_runs == 1 * (1 + 2 * 2) * 1
    assert config.source is not None and "Test grid." in config.source
    specs = config.specs()
    assert [s.pruner for s in specs] == ["dense", "random", "snip", "random", "snip"]
    assert specs[1].prune_data is None and specs[2].prune_data is not None  # data-free vs not
    assert config.label_of(specs[2]) == ("LeNet-300-100", "SNIP (layer)")
    # string shorthand and per-model training overrides
    short = parse_config(_config(tmp_path, models=[MLP, {"name": CNN, "train": {"lr": 0.01}}]))
    assert short.models[0].label == MLP
    assert short.train_for(short.models[1]).lr == 0.01
    assert short.train_for(short.models[0]).lr == 0.1

    def bad(match: str, **changes: object) -> None:
        with pytest.raises(ConfigError, match=match):
            parse_config(_config(tmp_path, **changes))

    bad("unknown key.*'epochs'.*valid keys", epochs=3)
    bad(r"train: unknown option.*'epoch'", train={"epoch": 1})
    bad("sparsities: each must be a number in", sparsities=[0.5, 1.0])
    bad("sparsities: repeated", sparsities=[0.5, 0.5])
    bad("seeds: a non-empty list of integers", seeds=[0.5])
    bad("'dense' is not a pruner", pruners=[{"name": "dense"}])
    bad("fallback_train is only used with a fallback_dataset", fallback_train={"epochs": 2})
    bad(r"models\[LeNet-300-100\].train with fallback_train: unknown option",
        fallback_dataset="mnist", fallback_train={"epochz": 2})
    bad("labels must be unique", pruners=[{"name": "magnitude", "label": "a"},
                                          {"name": "random", "label": "a"}])
    bad("same name and config", pruners=[{"name": "magnitude", "label": "a"},
                                         {"name": "magnitude", "label": "b"}])
    bad(r"models\[0\]: unknown option\(s\) 'kwargs'", models=[{"name": MLP, "kwargs": {}}])
    bad(r"pruners\[a\].models: 'LeNet-5' is not a model of this grid",
        pruners=[{"name": "magnitude", "label": "a", "models": ["LeNet-5"]}])
    bad(r"pruners\[a\].models: expected a list", pruners=[{"name": "magnitude", "label": "a",
                                                           "models": MLP}])
    bad(r"models\[Tiny\].train: unknown option", models=[{"name": MLP, "label": "Tiny",
                                                          "train": {"lrr": 1}}])
    with pytest.raises(ConfigError, match=r"in_channels come\(s\) from the dataset"):
        grid = parse_config(_config(tmp_path, models=[{"name": "lenet_300_100",
                                                       "config": {"in_channels": 3}}]))
        build_model(grid.specs()[0], dataset_info("digits"))
    with pytest.raises(ConfigError, match=r"unknown pruner.*'nope'"):
        parse_config(_config(tmp_path, pruners=[{"name": "nope"}])).specs()


@pytest.mark.parametrize("path", sorted(
    (Path(__file__).resolve().parents[1] / "leaderboards").glob("*.yaml")), ids=lambda p: p.stem)
def test_committed_configs_are_valid(path):
    config = load_config(path)
    assert config.name == path.stem and config.num_runs > 0
    # the committed grid keeps its store next to its table; the others use the default store
    assert config.store in ("runs/paizoo.db", f"leaderboards/{path.stem}.db")
    if {p.name for p in config.pruners} <= set(list_pruners()):
        assert len(config.specs()) == config.num_runs


def test_end_to_end_grid_renders_md_csv_png(store_url, tmp_path, capsys):
    cfg_path = _write(tmp_path, _config(tmp_path, store=store_url))
    assert main(["leaderboard", "run", str(cfg_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "## LeNet-300-100" in out and "| Pruner | s = 0.5 | s = 0.9 |" in out
    config = load_config(cfg_path)
    store = open_store(config.store)
    assert len(store) == 5 and store.keys() == {s.key for s in config.specs()}
    for rec in store.records():
        assert rec.epochs == 1 and len(rec.history) == 1
        if rec.pruner == "dense":
            assert rec.mask_path is None and rec.density == 1.0
            assert rec.dense_test_acc == rec.final_test_acc
        else:
            assert rec.density == pytest.approx(1 - rec.sparsity, abs=1e-3)
            mask = paizoo.Mask.load(rec.mask_path)
            assert mask.num_kept == rec.kept and mask.layer_densities() == pytest.approx(
                rec.layer_densities)
            dense = store.get(config.specs()[0].key)
            assert rec.dense_test_acc == dense.final_test_acc
        assert Path(rec.log_path).is_file()
    md = (cfg_path.parent / "tiny.md").read_text()
    png = (cfg_path.parent / "tiny.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "paizoo leaderboard run " + cfg_path.as_posix() in md
    assert "```yaml" in md and "Test grid." in md
    assert "Runs:** 5 of 5" in md
    assert md.count("**") >= 2  # at least one best cell in bold
    with open(cfg_path.parent / "tiny.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5
    # the table comes from the store: recompute each cell independently
    for row in rows:
        recs = [r for r in store.records() if r.pruner == row["pruner_name"]
                and math.isclose(r.sparsity, float(row["sparsity"]))]
        assert int(row["seeds"]) == len(recs) == 1
        assert float(row["final_acc_mean"]) == pytest.approx(recs[0].final_test_acc, rel=1e-5)
        assert row["dataset"] == "digits"
        cell = f"{100 * recs[0].final_test_acc:.2f}"
        assert cell in md


def test_mean_std_and_bold_over_seeds(tmp_path):
    cfg = _config(tmp_path, seeds=[0, 1], sparsities=[0.8],
                  pruners=[{"label": "mag", "name": "magnitude"},
                           {"label": "mag-layer", "name": "magnitude",
                            "config": {"scope": "layer"}}])
    config = parse_config(cfg, path=tmp_path / "lb" / "two.yaml", name="two")
    store = ResultStore(config.store)
    run_leaderboard(config, store, progress=False, echo=lambda _m: None)
    rendered = render_leaderboard(config, store)
    assert rendered.runs == rendered.total == 6
    by_label: dict[str, list[float]] = {}
    for spec in config.specs():
        if not spec.is_dense:
            by_label.setdefault(config.label_of(spec)[1], []).append(
                store.get(spec.key).final_test_acc)
    means = {k: statistics.mean(v) for k, v in by_label.items()}
    for label, accs in by_label.items():
        text = f"{100 * statistics.mean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}"
        best = max(means.values())
        shown = f"**{text}**" if round(100 * means[label], 2) == round(100 * best, 2) else text
        assert f"| {label} | {shown}" in rendered.text


def test_runs_that_stay_at_chance_are_marked(tmp_path):
    """A run whose final training loss is >= 0.99 ln C gets the double dagger; the others not."""
    cfg = _config(tmp_path, seeds=[0], sparsities=[0.8],
                  pruners=[{"label": "mag", "name": "magnitude"},
                           {"label": "rnd", "name": "random"}])
    config = parse_config(cfg, path=tmp_path / "lb" / "chance.yaml", name="chance")
    store = ResultStore(config.store)
    run_leaderboard(config, store, progress=False, echo=lambda _m: None)

    def rows() -> tuple[str, str]:
        lines = render_leaderboard(config, store).text.splitlines()
        return (next(line for line in lines if line.startswith("| mag |")),
                next(line for line in lines if line.startswith("| rnd |")))

    assert not any(CHANCE_MARK in row for row in rows())  # digits trains in one epoch
    with sqlite3.connect(config.store) as db:  # as if the magnitude run had diverged
        db.execute("UPDATE runs SET final_train_loss = ? WHERE pruner = 'magnitude'",
                   (math.log(10),))
    db.close()
    mag_row, rnd_row = rows()
    assert mag_row.endswith(f"{CHANCE_MARK} |") and CHANCE_MARK not in rnd_row
    rendered = render_leaderboard(config, store)
    with open(rendered.csv) as fh:
        cells = {r["pruner"]: r for r in csv.DictReader(fh)}
    assert cells["mag"]["chance_seeds"] == "1" and cells["rnd"]["chance_seeds"] == "0"


def test_pruner_restricted_to_models_and_off_target_sparsity_is_marked(tmp_path):
    """A pruner entry with ``models`` runs on those models only (no row elsewhere); a cell whose
    masks miss the requested sparsity shows the achieved one and is never bold."""
    cfg = _config(tmp_path, seeds=[0], sparsities=[0.5, 0.9],
                  models=[{"name": "lenet_300_100", "label": "A"},
                          {"name": "lenet_300_100", "label": "B",
                           "config": {"input_size": 8}}],
                  pruners=[{"label": "mag", "name": "magnitude"},
                           {"label": "dey", "name": "dey", "models": ["A"]}])
    config = parse_config(cfg, path=tmp_path / "lb" / "only.yaml", name="only")
    cells = [(m.label, p.label if p else None, s) for m, p, s in config.cells()]
    assert ("A", "dey", 0.9) in cells and not any(m == "B" and p == "dey" for m, p, _ in cells)
    assert config.num_runs == 2 * 1 + 2 * 2 + 1 * 2
    store = ResultStore(config.store)
    run_leaderboard(config, store, progress=False, echo=lambda _m: None)
    rendered = render_leaderboard(config, store)
    section_a, section_b = rendered.text.split("## B")
    assert "| dey |" in section_a and "| dey |" not in section_b.split("## Pruning time")[0]
    dey_row = next(line for line in section_a.splitlines() if line.startswith("| dey |"))
    dey = {s.sparsity: store.get(s.key) for s in config.specs() if s.pruner == "dey"}
    # digits: fc1 is (300, 64); whole fan-ins need fan-outs that are multiples of 75 of 300,
    # so density 0.5 is exact and density 0.1 becomes 0.25 in fc1
    assert dey[0.5].kept == round(0.5 * dey[0.5].total)
    achieved = 1 - dey[0.9].kept / dey[0.9].total
    assert 0.5 < achieved < 0.85
    first, second = dey_row.strip("|").split("|")[1:3]
    assert OFF_TARGET_MARK not in first
    assert second.strip().endswith(f"{OFF_TARGET_MARK} (s = {achieved:.4g})")
    assert "**" not in second
    with open(rendered.csv) as fh:
        rows = {(r["model"], r["pruner"], r["sparsity"]): r for r in csv.DictReader(fh)}
    assert rows[("A", "dey", "0.9")]["off_target_seeds"] == "1"
    assert rows[("A", "mag", "0.9")]["off_target_seeds"] == "0"
    timing = rendered.text.split("## Pruning time")[1]
    assert next(line for line in timing.splitlines() if line.startswith("| dey |")).endswith(
        "| n/a |")


class _Boom(RuntimeError):
    pass


def test_resume_after_interruption_gives_exactly_the_full_grid(tmp_path):
    config = parse_config(_config(tmp_path, seeds=[0, 1]), path=tmp_path / "g.yaml")
    store = ResultStore(config.store)
    calls: list[str] = []

    def flaky(spec, data, **kw):
        calls.append(spec.key)
        if len(calls) == 4:
            raise _Boom("injected failure in the 4th run")
        return run_experiment(spec, data, **kw)

    with pytest.raises(_Boom):
        run_leaderboard(config, store, run_fn=flaky, progress=False, echo=lambda _m: None)
    assert len(store) == 3  # runs 1-3 finished; the 4th left no row
    assert calls[3] not in store
    report = run_leaderboard(config, store, run_fn=flaky, progress=False, echo=lambda _m: None)
    assert report.already_done == 3 and len(report.ran) == config.num_runs - 3
    keys = [r.run_key for r in store.records()]
    assert len(keys) == len(set(keys)) == config.num_runs == 10
    assert set(keys) == {s.key for s in config.specs()}
    assert len(calls) == config.num_runs + 1  # every run once, plus the failed attempt
    again = run_leaderboard(config, store, progress=False, echo=lambda _m: None)
    assert again.ran == [] and len(store) == 10  # nothing left, nothing duplicated


def test_crash_or_interrupt_mid_run_leaves_no_row(tmp_path, monkeypatch):
    config = parse_config(_config(tmp_path), path=tmp_path / "g.yaml")
    store = ResultStore(config.store)
    import paizoo.training.experiment as experiment

    real_train = experiment.train
    for error in (RuntimeError("crash in epoch 1"), KeyboardInterrupt()):
        def dying_train(*args, error=error, **kwargs):
            def on_epoch(_m):
                raise error

            return real_train(*args, **{**kwargs, "on_epoch": on_epoch})

        monkeypatch.setattr(experiment, "train", dying_train)
        with pytest.raises(type(error)):
            run_leaderboard(config, store, progress=False, echo=lambda _m: None)
        assert len(store) == 0
    monkeypatch.setattr(experiment, "train", real_train)
    report = run_leaderboard(config, store, limit=2, progress=False, echo=lambda _m: None)
    assert report.stopped_at_limit and len(report.ran) == 2 and len(store) == 2
    status = grid_status(config, store)
    assert (status.done, status.total) == (2, 5) and len(status.missing) == 3


def test_keep_going_and_shards(store_url, tmp_path):
    config = parse_config(_config(tmp_path, store=store_url), path=tmp_path / "g.yaml")
    store = open_store(config.store)

    def fail_dense(spec, data, **kw):
        if spec.is_dense:
            raise _Boom("dense fails")
        return run_experiment(spec, data, **kw)

    report = run_leaderboard(config, store, run_fn=fail_dense, keep_going=True,
                             shard=(0, 2), progress=False, echo=lambda _m: None)
    assert report.total == 3 and len(report.failed) == 1 and len(report.ran) == 2
    report = run_leaderboard(config, store, shard=(1, 2), progress=False, echo=lambda _m: None)
    assert report.total == 2 and len(report.ran) == 2
    assert grid_status(config, store).missing == [config.specs()[0]]  # only the failed dense


def test_fallback_dataset_is_used_with_a_notice(tmp_path, monkeypatch):
    import paizoo.leaderboard.runner as runner

    real_load = runner.load_experiment_data

    def load(name, **kw):
        if name == "fashion-mnist":  # behave as if it were not installed here
            raise DatasetNotFoundError("no fashion-mnist files in /nowhere")
        return real_load(name, **kw)

    monkeypatch.setattr(runner, "load_experiment_data", load)
    messages: list[str] = []
    config = parse_config(_config(tmp_path, dataset="fashion-mnist", fallback_dataset="digits",
                                  fallback_train={"epochs": 2}, pruners=[{"name": "magnitude"}],
                                  sparsities=[0.5]),
                          path=tmp_path / "lb" / "fb.yaml", name="fb")
    store = ResultStore(config.store)
    report = run_leaderboard(config, store, progress=False, echo=messages.append)
    assert report.dataset == "digits"
    assert any("NOTICE" in m and "fashion-mnist" in m and "digits" in m for m in messages)
    assert {r.dataset for r in store.records()} == {"digits"}
    assert {r.epochs for r in store.records()} == {2}  # fallback_train applies on the fallback
    assert config.train_for(config.models[0]).epochs == 1
    rendered = render_leaderboard(config, store)
    assert rendered.dataset == "digits" and "**fallback**" in rendered.text
    assert "Training: 2 epochs" in rendered.text
    assert rendered.runs == rendered.total == 2


def test_cli_train_prints_epochs_and_records(tmp_path, capsys):
    db = tmp_path / "runs" / "paizoo.db"
    args = ["train", "--model", "lenet_300_100", "--dataset", "digits", "--pruner", "grasp",
            "--sparsity", "0.8", "--epochs", "2", "--batch-size", "64", "--store", str(db),
            "--quiet", "--samples-per-class", "3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch   1/2" in out and "epoch   2/2" in out
    assert "pruned weights exactly 0 after training: checked" in out
    store = ResultStore(db)
    (rec,) = store.records()
    assert rec.pruner == "grasp" and rec.prune_data_config["samples_per_class"] == 3
    assert rec.density == pytest.approx(0.2, abs=1e-4)
    assert Path(rec.mask_path).is_file() and Path(rec.log_path).is_file()
    assert main(args) == 0
    assert "already in" in capsys.readouterr().out
    assert len(store) == 1
    assert main(["train", "--model", MLP, "--dataset", "digits", "--pruner", "magnitude"]) == 2


def test_cli_status_and_render(store_url, tmp_path, capsys):
    cfg_path = _write(tmp_path, _config(tmp_path, pruners=[{"name": "magnitude"}],
                                        sparsities=[0.5]))
    if not store_url.startswith("postgresql://"):  # a URL store is created on first use
        assert main(["leaderboard", "render", "tiny", "--config", str(cfg_path), "--store",
                     store_url]) == 2
        assert "no results store" in capsys.readouterr().err
    store = ["--store", store_url]
    assert main(["leaderboard", "run", str(cfg_path), "--limit", "1", "--quiet",
                 "--no-render", *store]) == 0
    assert main(["leaderboard", "status", str(cfg_path), "--missing", *store]) == 0
    out = capsys.readouterr().out
    assert "1/2 runs done on digits" in out
    assert "missing: LeNet-300-100 | magnitude | s=0.5 | seed 0\n" in out
    missing = load_config(cfg_path).specs()[1]
    assert open_store(store_url).claim(missing.key, "elsewhere:1:x", 300)
    assert main(["leaderboard", "status", str(cfg_path), "--missing", *store]) == 0
    out = capsys.readouterr().out
    assert "1 of the missing runs are being trained now (leased)" in out
    assert re.search(r"s=0.5 \| seed 0  \[leased by elsewhere:1:x for (29\d|300) s\]", out)
    assert main(["leaderboard", "render", "tiny", "--config", str(cfg_path), *store]) == 0
    assert (cfg_path.parent / "tiny.md").is_file()
    assert "—" in (cfg_path.parent / "tiny.md").read_text()  # the missing cell


def test_cli_status_of_a_store_not_created_yet_creates_nothing(tmp_path, capsys):
    cfg_path = _write(tmp_path, _config(tmp_path, pruners=[{"name": "magnitude"}],
                                        sparsities=[0.5]))
    before = set(tmp_path.rglob("*"))
    typo = tmp_path / "no-such-folder" / "results.db"
    assert main(["leaderboard", "status", str(cfg_path), "--store", str(typo)]) == 0
    out = capsys.readouterr().out
    assert "0/2 runs done" in out and f"no results store at {typo} yet" in out
    assert set(tmp_path.rglob("*")) == before


def test_interleaved_order_covers_every_model_and_pruner_first(tmp_path):
    from paizoo.leaderboard.config import spread_order

    # farthest-point order over positions, worked by hand: middle (index 2), then the ends
    # (0 and 4 are both 2 away: the lower first), then 1 and 3
    assert spread_order((0.5, 0.8, 0.9, 0.95, 0.99)) == [0.9, 0.5, 0.99, 0.8, 0.95]
    assert spread_order((0.1, 0.2)) == [0.1, 0.2] and spread_order(()) == []
    models = [{"name": MLP, "label": "A"}, {"name": CNN, "label": "B"}]
    pruners = [{"name": "magnitude"}, {"name": "random"}, {"name": "snip", "models": ["A"]}]
    kw = dict(models=models, pruners=pruners, sparsities=[0.5, 0.9, 0.99], seeds=[0, 1])
    grid = parse_config(_config(tmp_path, **kw))
    inter = parse_config(_config(tmp_path, order="interleaved", **kw))
    assert grid.order == "grid" and inter.order == "interleaved"
    one_seed = [(s.model, s.pruner, s.sparsity) for s in inter.specs() if s.seed == 0]
    a, b = MLP, CNN
    assert one_seed == [
        (a, "dense", 0.0), (b, "dense", 0.0),
        (a, "magnitude", 0.9), (b, "magnitude", 0.9), (a, "random", 0.9), (b, "random", 0.9),
        (a, "snip", 0.9),
        (a, "magnitude", 0.5), (b, "magnitude", 0.5), (a, "random", 0.5), (b, "random", 0.5),
        (a, "snip", 0.5),
        (a, "magnitude", 0.99), (b, "magnitude", 0.99), (a, "random", 0.99),
        (b, "random", 0.99), (a, "snip", 0.99)]
    specs = inter.specs()
    assert [s.seed for s in specs] == [0] * 17 + [1] * 17  # still seed-major
    # the same runs (same keys) as the default order, only reordered
    assert sorted(s.key for s in specs) == sorted(s.key for s in grid.specs())
    assert grid.specs()[1].model == a and grid.specs()[1].sparsity == 0.5  # model by model
    with pytest.raises(ConfigError, match="order: must be one of grid, interleaved"):
        parse_config(_config(tmp_path, order="random"))


def test_model_family_key(tmp_path):
    config = parse_config(_config(tmp_path, models=[
        {"name": "lenet_300_100", "family": "mlp"}, {"name": "lenet5"},
        {"name": "timm:resnet18", "family": "resnet"}]))
    assert [config.family_of(m) for m in config.models] == ["mlp", "cnn", "resnet"]
    with pytest.raises(ConfigError, match=r"'cnn' contradicts the zoo's family 'mlp'"):
        parse_config(_config(tmp_path, models=[{"name": "lenet_300_100", "family": "cnn"}]))


def test_training_summary_names_warmup_and_subset():
    from paizoo.leaderboard.render import _train_summary
    from paizoo.training import TrainConfig

    plain = TrainConfig(epochs=5, lr=0.05, schedule="cosine")
    assert "warm-up" not in _train_summary(plain) and "training images" not in \
        _train_summary(plain)
    text = _train_summary(plain.replace(warmup_steps=157, train_subset=20000))
    assert text.endswith("cosine schedule, linear warm-up over the first 157 steps, trained on "
                         "the first 20,000 training images only")
