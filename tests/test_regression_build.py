"""Tests of building the metrics table: accuracy drops, the mask_metrics cache, the store reader."""

from __future__ import annotations

import math
import sqlite3
import warnings

import pandas as pd
import pytest

from paizoo.regression import RegressionError, validate_table
from paizoo.regression.build import (
    STORE_COLUMNS,
    MetricsCache,
    accuracy_drops,
    build_from_store,
    build_table,
    groups_key,
    runs_from_store,
)


def _runs() -> pd.DataFrame:
    rows = [
        # key, dataset, model, pruner, sparsity, seed, config, accuracy (points)
        ("d0", "digits", "mlp", "dense", 0.0, 0, "T1", 90.0),
        ("d1", "digits", "mlp", "dense", 0.0, 1, "T1", 92.0),
        ("d2", "digits", "mlp", "dense", 0.0, 0, "T2", 80.0),  # another training config
        ("a", "digits", "mlp", "snip", 0.9, 0, "T1", 85.0),
        ("b", "digits", "mlp", "snip", 0.9, 1, "T1", 88.5),
        ("c", "digits", "mlp", "random", 0.9, 0, "T2", 70.0),
        ("e", "digits", "cnn", "snip", 0.9, 0, "T1", 50.0),  # no dense cnn run
    ]
    return pd.DataFrame(rows, columns=["run_key", "dataset", "model", "pruner", "sparsity",
                                       "seed", "config", "accuracy"])


def test_accuracy_drop_against_dense_of_same_config() -> None:
    with pytest.warns(UserWarning, match=r"1 pruned run\(s\) have no dense run .* digits / cnn"):
        out = accuracy_drops(_runs())
    got = dict(zip(out["run_key"], out["accuracy_drop"], strict=True))
    # dense T1 reference = mean(90, 92) = 91; dense T2 = 80
    assert got == {"a": pytest.approx(6.0), "b": pytest.approx(2.5), "c": pytest.approx(10.0)}
    assert dict(zip(out["run_key"], out["dense_accuracy"], strict=True)) == {
        "a": 91.0, "b": 91.0, "c": 80.0}
    with pytest.raises(RegressionError, match="lack column"):
        accuracy_drops(_runs().drop(columns="accuracy"))


def test_metrics_cache_round_trip(tmp_path) -> None:
    db = tmp_path / "store.db"
    with MetricsCache(db) as cache:
        assert cache.get("a", "1", "all") is None
        cache.put("a", "1", "all", {"mge.x": 1.5, "mge.nan": math.nan})
        got = cache.get("a", "1", "all")
        assert got is not None and got["mge.x"] == 1.5 and math.isnan(got["mge.nan"])
        cache.put("a", "1", "all", {"mge.x": 2.0})  # replaces, does not merge
        assert cache.get("a", "1", "all") == {"mge.x": 2.0}
        assert cache.get("a", "2", "all") is None  # another metrics version
        assert cache.get("a", "1", "density") is None  # another group selection
        assert cache.get_many("1", "all") == {"a": {"mge.x": 2.0}}
    # the table is plain SQL, readable by anyone
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM mask_metrics").fetchone()[0] == 1
    conn.close()
    assert groups_key(None) == "all" and groups_key(["mge", "density", "mge"]) == "density,mge"


def test_build_table_computes_once_and_caches(tmp_path) -> None:
    calls: list[str] = []

    def metrics(row, groups):  # type: ignore[no-untyped-def]
        calls.append(row["run_key"])
        return {"density.global": 1 - row["sparsity"], "mge.paths": float(len(calls)),
                "mge.inf": math.inf}

    runs = _runs()[lambda r: r["model"] == "mlp"]
    with MetricsCache(tmp_path / "s.db") as cache:
        with pytest.warns(UserWarning, match="infinite metric values"):
            t1 = build_table(runs, metrics, cache=cache, version="v1", progress=False)
        assert sorted(calls) == ["a", "b", "c"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t2 = build_table(runs, metrics, cache=cache, version="v1", progress=False)
            assert len(calls) == 3  # all from the cache
            pd.testing.assert_frame_equal(t1, t2)
            build_table(runs, metrics, cache=cache, version="v2", progress=False)
            assert len(calls) == 6  # a new metrics version recomputes
            build_table(runs, metrics, cache=cache, version="v2", recompute=True,
                        progress=False)
            assert len(calls) == 9
    assert list(t1.columns[:6]) == ["dataset", "model", "pruner", "sparsity", "seed", "config"]
    assert t1["metrics_version"].unique().tolist() == ["v1"]
    assert t1["mge.inf"].isna().all()
    validate_table(t1)  # the result follows the schema


def test_build_table_reports_progress_in_a_log(monkeypatch, capsys) -> None:
    # stderr is not a terminal here (a batch job's log): lines with the count and an ETA,
    # one per run with a 0 s interval, and only for the runs actually computed
    monkeypatch.setenv("PAIZOO_PROGRESS_INTERVAL", "0")
    runs = _runs()[lambda r: r["model"] == "mlp"]

    def metrics(row, groups):  # type: ignore[no-untyped-def]
        return {"density.global": 1 - row["sparsity"]}

    build_table(runs, metrics)
    err = capsys.readouterr().err
    assert "mask metrics: 1/3 done" in err and "mask metrics: 2/3 done" in err
    assert "mask metrics: 3/3 done in" in err
    build_table(runs, metrics, progress=False)
    assert capsys.readouterr().err == ""


def _fake_store(path, rows: list[dict]) -> None:
    conn = sqlite3.connect(path)
    conn.execute(f"CREATE TABLE runs ({', '.join(STORE_COLUMNS)}, extra TEXT)")
    for r in rows:
        conn.execute(f"INSERT INTO runs ({', '.join(r)}) VALUES "
                     f"({', '.join('?' for _ in r)})", list(r.values()))
    conn.commit()
    conn.close()


def test_runs_from_store_read_only(tmp_path) -> None:
    db = tmp_path / "paizoo.db"
    base = {"dataset": "digits", "model": "mlp", "model_config": "{}", "seed": 0,
            "train_hash": "T", "mask_path": None}
    _fake_store(db, [
        {**base, "run_key": "k0", "pruner": "dense", "pruner_config": "{}", "sparsity": 0.0,
         "final_test_acc": 0.9},
        {**base, "run_key": "k1", "pruner": "snip", "pruner_config": "{}", "sparsity": 0.9,
         "final_test_acc": 0.8, "mask_path": "elsewhere/masks/k1.safetensors"},
        {**base, "run_key": "k2", "pruner": "synflow", "pruner_config": '{"rounds":10}',
         "sparsity": 0.9, "final_test_acc": 0.7},
        {**base, "run_key": "k3", "pruner": "synflow", "pruner_config": '{"rounds":100}',
         "sparsity": 0.9, "final_test_acc": 0.75},
        {**base, "run_key": "k4", "model_config": '{"width":2}', "pruner": "snip",
         "pruner_config": "{}", "sparsity": 0.9, "final_test_acc": 0.6, "dataset": "other"},
    ])
    (tmp_path / "masks").mkdir()
    (tmp_path / "masks" / "k1.safetensors").write_bytes(b"")
    before = db.read_bytes()
    runs = runs_from_store(db)
    assert db.read_bytes() == before  # read-only
    by = runs.set_index("run_key")
    assert by.loc["k1", "accuracy"] == pytest.approx(80.0)
    assert by.loc["k1", "pruner"] == "snip"  # one config: plain name
    assert by.loc["k2", "pruner"] == 'synflow{"rounds":10}'  # configs differ: in the label
    assert by.loc["k4", "model"] == 'mlp{"width":2}' and by.loc["k4", "model_name"] == "mlp"
    assert by.loc["k1", "mask_path"] == str(tmp_path / "masks" / "k1.safetensors")
    assert by.loc["k1", "config"] == "T"
    assert list(runs_from_store(db, ["other"])["run_key"]) == ["k4"]
    with pytest.raises(RegressionError, match="holds no finished run for dataset"):
        runs_from_store(db, ["nope"])
    with pytest.raises(FileNotFoundError, match="no results store"):
        runs_from_store(tmp_path / "missing.db")

    def metrics(row, groups):  # type: ignore[no-untyped-def]
        return {"density.global": 1 - row["sparsity"], "mge.acc_leak": 0.0}

    table = build_from_store(db, datasets=["digits"], metrics_for=metrics, version="t",
                             progress=False, agnostic=False)
    assert sorted(table["run_key"]) == ["k1", "k2", "k3"]
    assert dict(zip(table["run_key"], table["accuracy_drop"], strict=True)) == pytest.approx(
        {"k1": 10.0, "k2": 20.0, "k3": 15.0})
    conn = sqlite3.connect(db)
    cached = conn.execute("SELECT DISTINCT run_key FROM mask_metrics").fetchall()
    conn.close()
    assert sorted(k for (k,) in cached) == ["k1", "k2", "k3"]


def test_store_without_runs_table(tmp_path) -> None:
    db = tmp_path / "x.db"
    sqlite3.connect(db).execute("CREATE TABLE other (a)").connection.close()
    with pytest.raises(RegressionError, match="is it a paizoo results store"):
        runs_from_store(db)
