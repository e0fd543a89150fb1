"""End to end on digits: a tiny results store (paizoo.results) -> `regress build` -> `regress
train` -> `rank`."""

from __future__ import annotations

import sqlite3
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import paizoo
from paizoo import PruneContext, Pruner
from paizoo.cli import main
from paizoo.data import dataset_info
from paizoo.regression import load_predictor
from paizoo.regression.agnostic import agnostic_features, layout_of
from paizoo.results import ResultStore, RunRecord, RunSpec
from paizoo.training import TrainConfig
from paizoo.training.experiment import build_model

metrics = pytest.importorskip("paizoo.metrics")

MODEL = "lenet_300_100"
INPUT = (1, 8, 8)
GROUPS = "density,effective,scatter"


class SmallestFirst(Pruner):
    """Keeps the smallest |w| (a deliberately poor pruner, reached as module:Class)."""

    def score(self, ctx: PruneContext) -> dict[str, torch.Tensor]:
        return {n: -p.detach().abs() for n, p in ctx.params.items()}


SPEC = f"{SmallestFirst.__module__}:SmallestFirst"


def _model(seed: int) -> torch.nn.Module:
    from paizoo.models import create_model

    return create_model(MODEL, num_classes=10, in_channels=1, seed=seed, input_size=INPUT[1:])


def _record(spec: RunSpec, accuracy: float, mask: paizoo.Mask | None,
            mask_path: str | None) -> RunRecord:
    """A finished-run record as the runner writes it, with a given test accuracy (fraction)."""
    density = mask.density if mask is not None else 1.0
    return RunRecord(
        run_key=spec.key, dataset=spec.dataset, model=spec.model,
        model_config=dict(spec.model_config), pruner=spec.pruner,
        pruner_config=dict(spec.pruner_config), prune_data_config=None,
        sparsity=spec.sparsity, seed=spec.seed, train_hash=spec.train.hash(),
        train_config=spec.train.to_dict(), final_test_acc=accuracy, best_test_acc=accuracy,
        best_epoch=0, final_train_acc=accuracy, final_train_loss=0.0, final_test_loss=0.0,
        dense_test_acc=None, density=density, kept=mask.num_kept if mask is not None else 0,
        total=mask.num_total if mask is not None else 0, layer_densities={},
        layer_collapse=False, collapsed_layers=[], prune_time_s=0.0, train_time_s=0.0,
        eval_time_s=0.0, epochs=1, history=[], mask_path=mask_path, log_path=None,
        device="cpu", versions={})


def _store(tmp_path) -> tuple[str, dict[tuple[str, float, int], str]]:
    """A results store with runs of magnitude and SmallestFirst (+ dense) on digits, masks saved
    as the runner saves them (``masks/<run key>.safetensors`` beside the store); the 'test
    accuracies' are a known function of the mask: 95 - 60 * (1 - effective.nodes_frac)."""
    db = tmp_path / "runs" / "paizoo.db"
    train = TrainConfig(epochs=1)
    info = dataset_info("digits")
    keys = {}
    with ResultStore(db) as store:
        for seed in (0, 1):
            dense = RunSpec("digits", MODEL, "dense", 0.0, seed, train)
            store.add(_record(dense, 0.95, None, None))
            for pruner in ("magnitude", SPEC):
                for s in (0.5, 0.8, 0.9, 0.95, 0.98):
                    spec = RunSpec("digits", MODEL, pruner, s, seed, train)
                    net = build_model(spec, info)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        mask = paizoo.prune(net, pruner, sparsity=s, seed=seed)
                    path = mask.save(db.parent / "masks" / f"{spec.key}.safetensors")
                    keys[(pruner, s, seed)] = spec.key
                    nodes = metrics.compute(net, mask, INPUT, groups=["effective"])[
                        "effective.nodes_frac"]
                    store.add(_record(spec, (95 - 60 * (1 - nodes)) / 100, mask, str(path)))
        assert len(store) == 22
    return str(db), keys


@pytest.mark.filterwarnings("ignore:infinite metric values")  # magnitude collapses at s=0.98
def test_digits_build_train_rank(tmp_path, capsys) -> None:
    db, keys = _store(tmp_path)
    # masks are not committed with a store: these runs must be pruned again
    for run in (("magnitude", 0.9, 0), ("magnitude", 0.98, 1), (SPEC, 0.5, 0), (SPEC, 0.95, 1)):
        (tmp_path / "runs" / "masks" / f"{keys[run]}.safetensors").unlink()
    assert len(list((tmp_path / "runs" / "masks").iterdir())) == 16
    table_csv = tmp_path / "digits-metrics.csv"
    assert main(["regress", "build", "--db", db, "--dataset", "digits", "--groups", GROUPS,
                 "--out", str(table_csv)]) == 0
    table = pd.read_csv(table_csv)
    assert len(table) == 20 and set(table["pruner"]) == {"magnitude", SPEC}
    assert set(table["model"]) == {MODEL}  # input_size is implied by the dataset
    # the target is the known function of the metric the build recomputed from the saved (or
    # pruned again) masks
    np.testing.assert_allclose(table["accuracy_drop"],
                               60 * (1 - table["effective.nodes_frac"]), atol=1e-6)
    skops = tmp_path / "tiny.skops"
    assert main(["regress", "train", "--table", str(table_csv), "--groups", GROUPS,
                 "--model", "ridge", "--out", str(skops)]) == 0
    capsys.readouterr()
    rows_csv = tmp_path / "rank-rows.csv"
    assert main(["rank", "--model", MODEL, "--dataset", "digits", "--sparsities", "0.6,0.9",
                 "--pruners", f"magnitude,{SPEC}", "--predictor", str(skops), "--seeds", "3",
                 "--out", str(rows_csv)]) == 0
    out = capsys.readouterr().out
    assert "paizoo rank: lenet_300_100 on digits" in out and "nothing trained" in out
    assert "validity domain: 20 runs" in out and "on digits (1x8x8)" in out
    assert "validated (leave one pruner out): MAE" in out
    assert "note: sparsities" not in out  # 0.6 and 0.9 lie in the trained range
    ranking = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()
               and "[" in line]
    assert len(ranking) == 2 and "interval" in out and "tied with" in out
    rows = pd.read_csv(rows_csv)
    # the ranking follows the known truth evaluated on rank's own masks
    truth = (60 * (1 - rows["effective.nodes_frac"])).groupby(rows["pruner"]).mean()
    assert [r[1] for r in ranking] == truth.sort_values().index.tolist()
    # the printed drops are the predictor's predictions for freshly computed metrics
    predictor = load_predictor(skops)
    net = _model(3)
    mask = paizoo.prune(net, "magnitude", sparsity=0.9, seed=3)
    values = metrics.compute(net, mask, INPUT, groups=GROUPS.split(","))
    values.update(agnostic_features(values, layout_of(net, INPUT)))  # as build and rank add
    fresh = pd.DataFrame([values])
    expected = predictor.predict(fresh)[0]
    got = rows[(rows["pruner"] == "magnitude") & (rows["sparsity"] == 0.9)]["predicted_drop"]
    assert got.iloc[0] == pytest.approx(expected)
    printed = next(r for r in ranking if r[1] == "magnitude")
    assert float(printed[3]) == pytest.approx(expected, abs=0.006)  # the s=0.9 column
    # the cache is used on a second build
    conn = sqlite3.connect(db)
    n_cached = conn.execute("SELECT COUNT(DISTINCT run_key) FROM mask_metrics").fetchone()[0]
    conn.close()
    assert n_cached == 20


def test_build_refuses_masks_it_cannot_reproduce(tmp_path) -> None:
    """A missing mask is pruned again only if the run's spec and kept count are reproduced."""
    from paizoo.regression import RegressionError
    from paizoo.regression.build import build_from_store

    db = tmp_path / "s.db"
    train = TrainConfig(epochs=1)
    info = dataset_info("digits")
    spec = RunSpec("digits", MODEL, "magnitude", 0.9, 0, train)
    mask = paizoo.prune(build_model(spec, info), "magnitude", sparsity=0.9, seed=0)
    good = _record(spec, 0.8, mask, str(tmp_path / "gone.safetensors"))
    with ResultStore(db) as store:
        store.add(_record(RunSpec("digits", MODEL, "dense", 0.0, 0, train), 0.9, None, None))
        store.add(good)
    table = build_from_store(db, groups=["density"], progress=False)
    assert table["density.global"].iloc[0] == pytest.approx(mask.density)
    wrong_kept = _record(spec, 0.8, mask, None)
    wrong_kept.kept += 1
    with ResultStore(tmp_path / "k.db") as store:
        store.add(_record(RunSpec("digits", MODEL, "dense", 0.0, 0, train), 0.9, None, None))
        store.add(wrong_kept)
    with pytest.raises(RegressionError, match="pruning again kept"):
        build_from_store(tmp_path / "k.db", groups=["density"], progress=False)
    bad_key = _record(spec, 0.8, mask, None)
    bad_key.run_key = "0123456789abcdef"
    with ResultStore(tmp_path / "b.db") as store:
        store.add(_record(RunSpec("digits", MODEL, "dense", 0.0, 0, train), 0.9, None, None))
        store.add(bad_key)
    with pytest.raises(RegressionError, match="spec cannot be rebuilt"):
        build_from_store(tmp_path / "b.db", groups=["density"], progress=False)


@pytest.mark.filterwarnings("ignore:infinite metric values")  # magnitude collapses at s=0.98
def test_rebuild_is_build_eval_train_in_one_command(tmp_path, capsys) -> None:
    """`paizoo regress rebuild` writes the table `regress build` writes, a report headed by the
    command, and a predictor that records the same command and the table's runs."""
    from paizoo.regression.build import build_from_store

    db, _ = _store(tmp_path)
    table_csv, report = tmp_path / "t.csv", tmp_path / "r.md"
    skops = tmp_path / "p.skops"
    args = ["regress", "rebuild", "--source", f"{db}:digits:{table_csv}", "--report",
            str(report), "--predictor", str(skops)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "20 runs from" in out and "seconds: build" in out
    table = pd.read_csv(table_csv)
    expected = build_from_store(db, datasets=["digits"], progress=False)  # from the cache now
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, atol=1e-6)
    assert (tmp_path / "t.features.json").is_file()
    command = "paizoo " + " ".join(args)
    assert report.read_text().splitlines()[2].startswith(f"Produced by `{command}`")
    predictor = load_predictor(skops)
    assert predictor.info["command"] == command
    assert predictor.info["trained_on"]["rows"] == 20
    assert "leave one pruner out" in predictor.info["validation"]
    # the predictor is the one `regress train` fits on the written table (same rows, digits)
    from paizoo.regression import load_table, train_predictor

    again = train_predictor(load_table(table_csv), groups="agnostic")
    np.testing.assert_array_equal(predictor.predict(table), again.predict(table))
    assert again.info["validation"] == predictor.info["validation"]
    # a malformed source is refused with one message
    assert main(["regress", "rebuild", "--source", "only-a-store.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("paizoo: error: --source 'only-a-store.db': expected STORE:DATASET")


def test_rank_without_dataset_or_input_shape_is_one_error_line_on_stderr(capsys) -> None:
    from paizoo.cli import main

    assert main(["rank", "--model", "lenet5", "--sparsities", "0.9",
                 "--pruners", "magnitude"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "paizoo: error: pass --dataset (or --input-shape for data-free pruners)"
