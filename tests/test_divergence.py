"""Diverging runs (issue 13, items 1, 9 and 10): a non-finite loss stops training and is
recorded, a blow-up followed by chance is recognised from the history, the grid goes on, and
the leaderboard marks both, clips its error bars and keeps its legend off the axis labels."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import torch
from _training_models import MLP
from torch import nn

import paizoo
from paizoo.leaderboard import parse_config, render_leaderboard, run_leaderboard
from paizoo.leaderboard.render import (
    CHANCE_MARK,
    DIVERGED_MARK,
    aggregate,
    collect_runs,
    plot_figure,
)
from paizoo.models import create_model
from paizoo.results import ResultStore
from paizoo.results.store import MIGRATIONS, SCHEMA_VERSION
from paizoo.training import TrainConfig, train
from paizoo.training.divergence import BLOWUP, blowup_divergence


class NaNAfter(nn.Module):
    """Wraps a model; its ``k``-th forward pass in training mode (1-based) returns NaN logits."""

    def __init__(self, inner: nn.Module, k: int) -> None:
        super().__init__()
        self.inner, self.k, self.calls = inner, k, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.k:
                out = out * float("nan")
        return out


@pytest.mark.parametrize("mode", ["project", "hook"])
def test_nonfinite_loss_stops_training_where_it_happened(digits, mode):
    """The NaN first appears at optimiser step 30 = epoch 2 (digits: 1437 samples, batch 64
    -> 22 full steps per epoch, the last partial batch of 29 samples is the 23rd)."""
    train_set, test_set = digits
    inner = create_model(MLP, num_classes=10, in_channels=1, input_size=8, seed=0)
    mask = paizoo.prune(inner, "magnitude", sparsity=0.7)
    model = NaNAfter(inner, k=30)
    mask.apply(model.inner)
    config = TrainConfig(epochs=4, batch_size=64, lr=0.05)
    steps_per_epoch = math.ceil(len(train_set) / 64)
    result = train(model, train_set, test_set, config, mask_mode=mode, progress=False)
    assert result.diverged is not None
    assert result.diverged.step == 30 and result.diverged.epoch == 1 + 29 // steps_per_epoch
    assert model.calls == 30  # stopped at once: no forward pass after the bad step
    assert len(result.history) == 2 and math.isnan(result.history[-1].train_loss)
    assert math.isfinite(result.history[0].train_loss)
    # pruned weights are still exactly 0 (NaN * 0 would be NaN), the mask is unchanged
    assert result.mask_check is not None and result.mask_check.nonzero_pruned == 0
    assert paizoo.Mask.from_model(model.inner) == mask
    for name, keep in mask.items():
        module = model.inner.get_submodule(name.rsplit(".", 1)[0])
        assert torch.all(module.weight_orig[~keep] == 0)
        assert torch.isnan(module.weight_orig[keep]).any()  # the kept weights did diverge


def test_finite_training_reports_no_divergence(digits):
    train_set, test_set = digits
    model = create_model(MLP, num_classes=10, in_channels=1, input_size=8, seed=0)
    result = train(model, train_set, test_set, TrainConfig(epochs=1, batch_size=64, lr=0.05),
                   progress=False)
    assert result.diverged is None


def _grid(tmp_path: Path, **train: object) -> dict:
    return {"name": "div", "dataset": "digits", "store": str(tmp_path / "runs" / "p.db"),
            "models": [{"name": "lenet_300_100", "label": "L"}],
            "pruners": [{"label": "mag", "name": "magnitude"}, {"label": "rnd", "name": "random"}],
            "sparsities": [0.5], "seeds": [0],
            "train": {"epochs": 2, "batch_size": 64, "lr": 0.1, **train}}


def test_grid_with_a_diverging_recipe_finishes_renders_and_resumes(tmp_path):
    """lr 1e6: every run diverges; before the fix the first pruned run raised 'the mask was not
    enforced' (NaN * 0) and no re-run could get past it."""
    config = parse_config(_grid(tmp_path, lr=1.0e6), path=tmp_path / "lb" / "div.yaml")
    store = ResultStore(config.store)
    messages: list[str] = []
    report = run_leaderboard(config, store, progress=False, echo=messages.append)
    assert len(report.ran) == 3 and not report.failed
    for record in store.records():
        assert record.status == "diverged" and record.diverged
        assert record.diverged_epoch == 1 and record.diverged_step >= 1
        assert record.epochs == 1 and record.final_train_loss is None
    assert sum("[diverged: non-finite loss at epoch 1" in m for m in messages) == 3
    again = run_leaderboard(config, store, progress=False, echo=lambda _m: None)
    assert again.ran == [] and again.already_done == 3
    text = render_leaderboard(config, store).text
    mag = next(line for line in text.splitlines() if line.startswith("| mag |"))
    assert DIVERGED_MARK in mag and CHANCE_MARK not in mag and "**" not in mag
    dense = next(line for line in text.splitlines() if line.startswith("Dense"))
    assert dense.endswith(DIVERGED_MARK)
    assert "- mag on L, s = 0.5: seed 0: non-finite loss at epoch 1, step" in text


def test_schema_migration_marks_existing_runs_ok(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a store made before the status columns existed
        db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.close()
    config = parse_config(_grid(tmp_path), path=tmp_path / "lb" / "ok.yaml")
    fresh = ResultStore(config.store)
    run_leaderboard(config, fresh, progress=False, echo=lambda _m: None, limit=1)
    row = fresh.records()[0].to_row()
    fresh.close()
    old_columns = {c for c in row if c not in ("status", "diverged_epoch", "diverged_step")}
    with sqlite3.connect(path) as db:
        db.execute(f"INSERT INTO runs ({', '.join(old_columns)}) VALUES "
                   f"({', '.join('?' for _ in old_columns)})", [row[c] for c in old_columns])
    db.close()
    store = ResultStore(path)
    assert store.schema_version == len(MIGRATIONS) == SCHEMA_VERSION
    (record,) = store.records()
    assert record.status == "ok" and record.diverged_epoch is None and not record.diverged
    with pytest.raises(sqlite3.IntegrityError):
        store.connection().execute("UPDATE runs SET status = 'lost'")


@pytest.mark.parametrize("losses, expected", [
    ([3.61, 2.3026, 2.3026], 1),          # GraSP on LeNet-5: blow-up in epoch 1, then chance
    ([2.30, 2.40, 2.60, 2.303], 3),       # the first epoch above 1.1 ln 10 = 2.533
    ([2.73, 1.30, 0.44], None),           # blew up but recovered
    ([2.31, 2.3026, 2.3026], None),       # at chance from the start, never blew up
    ([2.3, 1.2, float("nan")], 3),        # a non-finite epoch counts as a blow-up
    ([2.3, 1.2, None], 3),                # ... also when SQLite stored it as NULL
    ([], None),
])
def test_blowup_then_chance_criterion(losses, expected):
    found = blowup_divergence(losses, num_classes=10)
    assert (found.epoch if found else None) == expected
    if found:
        assert found.reason == BLOWUP and found.step is None
    # the threshold is 1.1 ln C: just above and just below it, for C = 100
    limit = 1.1 * math.log(100)
    assert blowup_divergence([limit * 1.001, math.log(100)], 100) is not None
    assert blowup_divergence([limit * 0.999, math.log(100)], 100) is None


def test_blowup_in_history_is_marked_diverged_not_chance(tmp_path):
    config = parse_config(_grid(tmp_path), path=tmp_path / "lb" / "b.yaml")
    store = ResultStore(config.store)
    run_leaderboard(config, store, progress=False, echo=lambda _m: None)
    ln10 = math.log(10)
    history = [{"epoch": 1, "train_loss": 3.7}, {"epoch": 2, "train_loss": ln10}]
    with sqlite3.connect(config.store) as db:  # as GraSP's runs on LeNet-5 did
        db.execute("UPDATE runs SET history = ?, final_train_loss = ? WHERE pruner = 'magnitude'",
                   (json.dumps(history), ln10))
        db.execute("UPDATE runs SET final_train_loss = ? WHERE pruner = 'random'", (ln10,))
    db.close()
    text = render_leaderboard(config, store).text
    mag = next(line for line in text.splitlines() if line.startswith("| mag |"))
    rnd = next(line for line in text.splitlines() if line.startswith("| rnd |"))
    assert DIVERGED_MARK in mag and CHANCE_MARK not in mag
    assert CHANCE_MARK in rnd and DIVERGED_MARK not in rnd
    assert "- mag on L, s = 0.5: seed 0: epoch-1 loss 3.70" in text


def test_plot_clips_error_bars_marks_cells_and_keeps_legend_off_the_labels(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection

    config = parse_config(_grid(tmp_path), path=tmp_path / "lb" / "p.yaml")
    cells = pd.DataFrame([
        {"model": "L", "pruner": "mag", "sparsity": 0.5, "density_mean": 0.5,
         "final_acc_mean": 0.10, "final_acc_std": 0.35, "collapsed_seeds": 0,
         "chance_seeds": 1, "diverged_seeds": 0},
        {"model": "L", "pruner": "rnd", "sparsity": 0.5, "density_mean": 0.5,
         "final_acc_mean": 0.95, "final_acc_std": 0.2, "collapsed_seeds": 0,
         "chance_seeds": 0, "diverged_seeds": 2},
    ])
    fig = plot_figure(config, cells, "digits")
    ax = fig.axes[0]
    segments = [s for c in ax.collections if isinstance(c, LineCollection)
                for s in c.get_segments()]
    lows = [min(s[:, 1]) for s in segments]
    highs = [max(s[:, 1]) for s in segments]
    assert min(lows) == pytest.approx(0.0) and max(highs) == pytest.approx(100.0)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert f"a seed at chance ({CHANCE_MARK})" in labels
    assert f"a seed diverged ({DIVERGED_MARK})" in labels
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend_top = fig.legends[0].get_window_extent(renderer).y1
    for axis in fig.axes:
        assert legend_top <= axis.xaxis.label.get_window_extent(renderer).y0
        for tick in axis.get_xticklabels():
            assert legend_top <= tick.get_window_extent(renderer).y0
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_header_names_the_code_versions_when_runs_come_from_several(tmp_path):
    config = parse_config(_grid(tmp_path), path=tmp_path / "lb" / "v.yaml")
    store = ResultStore(config.store)
    run_leaderboard(config, store, progress=False, echo=lambda _m: None)
    assert "Code versions" not in render_leaderboard(config, store).text  # one version
    with sqlite3.connect(config.store) as db:
        db.execute("UPDATE runs SET versions = ?, created_at = ? WHERE pruner = 'magnitude'",
                   (json.dumps({"paizoo": "0.0.9", "git": "abc1234"}),
                    "2026-01-02T03:04:05+00:00"))
    db.close()
    runs = collect_runs(config, store)
    assert len(aggregate(runs)) == 3
    line = next(x for x in render_leaderboard(config, store).text.splitlines()
                if "Code versions" in x)
    assert "2 code versions" in line
    assert "paizoo 0.0.9 (git abc1234): 1 runs, 2026-01-02 03:04" in line
    assert line.index("abc1234") < line.index(": 2 runs")  # oldest first


def test_regression_plot_legend_shows_readable_pruner_labels(tmp_path):
    """leaderboards/regression.png's legend showed raw JSON (random{"distribution":"erk"})."""
    from paizoo.regression.report import readable_label

    assert readable_label('random{"distribution":"erk"}') == "random (distribution=erk)"
    assert readable_label('dey{"pattern":"cyclic","z":2}') == "dey (pattern=cyclic, z=2)"
    assert readable_label("snip") == "snip"
    assert readable_label("odd{label") == "odd{label"  # not JSON: kept as it is


def test_cli_train_reports_a_diverged_run(tmp_path, capsys):
    from paizoo.cli import main

    store = tmp_path / "s.db"
    args = ["train", "--model", "lenet_300_100", "--dataset", "digits", "--epochs", "3",
            "--lr", "1e6", "--pruner", "magnitude", "--sparsity", "0.5", "--quiet",
            "--store", str(store)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "DIVERGED: the training loss became NaN/inf at epoch 1, step" in out
    assert "pruned weights exactly 0 after training: checked" in out
    (record,) = ResultStore(store).records()
    assert record.status == "diverged" and record.epochs == 1
