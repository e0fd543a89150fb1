"""The SQLite results store: round trips, no duplicates, all-or-nothing writes, schema version."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from paizoo.results import (
    SCHEMA_VERSION,
    RunRecord,
    RunSpec,
    StoreError,
    library_versions,
    open_store,
)
from paizoo.training import PruneDataConfig, TrainConfig


def _spec(**changes: object) -> RunSpec:
    base = dict(dataset="digits", model="lenet5", pruner="magnitude", sparsity=0.9, seed=0,
                train=TrainConfig(epochs=1), pruner_config={"scope": "layer"})
    base.update(changes)
    return RunSpec(**base)  # type: ignore[arg-type]


def _record(spec: RunSpec, acc: float = 0.5, key: str | None = None) -> RunRecord:
    return RunRecord(
        run_key=key or spec.key, dataset=spec.dataset, model=spec.model,
        model_config=dict(spec.model_config), pruner=spec.pruner,
        pruner_config=dict(spec.pruner_config),
        prune_data_config=spec.prune_data.to_dict() if spec.prune_data else None,
        sparsity=spec.sparsity, seed=spec.seed, train_hash=spec.train.hash(),
        train_config=spec.train.to_dict(), final_test_acc=acc, best_test_acc=acc + 0.1,
        best_epoch=1, final_train_acc=0.6, final_train_loss=1.0, final_test_loss=1.1,
        dense_test_acc=0.9, density=0.1, kept=10, total=100,
        layer_densities={"a.weight": 0.0, "b.weight": 0.2}, layer_collapse=True,
        collapsed_layers=["a.weight"], prune_time_s=0.1, train_time_s=2.0, eval_time_s=0.2,
        epochs=1, history=[{"epoch": 1, "test_acc": acc}], mask_path="runs/masks/x.safetensors",
        log_path=None, device="cpu", versions=library_versions())


def test_round_trip(store_url):
    store = open_store(store_url)
    spec = _spec()
    rec = _record(spec)
    assert spec.key not in store and len(store) == 0
    assert store.add(rec) is True
    assert spec.key in store and len(store) == 1 and store.keys() == {spec.key}
    back = store.get(spec.key)
    assert back == rec
    assert store.records(dataset="digits", seed=0) == [rec]
    assert store.records(dataset="cifar10") == []
    assert store.get_many([spec.key, "missing"]) == {spec.key: rec}
    df = store.dataframe()
    assert list(df["run_key"]) == [spec.key]
    assert df.loc[0, "layer_densities"] == {"a.weight": 0.0, "b.weight": 0.2}
    with pytest.raises(StoreError, match="unknown column"):
        store.records(acc=1)
    if store.dialect == "sqlite":
        assert store.masks_dir == Path(store_url).parent / "masks"
    assert store.mask_file(rec) == store.masks_dir / f"{spec.key}.safetensors"  # moved store
    store.close()
    reopened = open_store(store_url)  # persisted, schema kept
    assert reopened.get(spec.key) == rec and reopened.schema_version == SCHEMA_VERSION


def test_no_duplicates(store_url):
    store = open_store(store_url)
    spec = _spec()
    assert store.add(_record(spec, 0.5))
    assert not store.add(_record(spec, 0.7))  # same key: the first row stays
    assert store.get(spec.key).final_test_acc == 0.5
    # same identifying columns under another key: the UNIQUE constraint refuses it too
    assert not store.add(_record(spec, 0.7, key="0123456789abcdef"))
    assert len(store) == 1
    other = _spec(seed=1)
    assert store.add(_record(other))
    assert len(store) == 2


def test_failed_write_leaves_nothing(store_url):
    store = open_store(store_url)
    bad = _record(_spec())
    bad.final_test_acc = None  # type: ignore[assignment] - NOT NULL
    with pytest.raises(StoreError, match=r"violates the store's schema.*final_test_acc"):
        store.add(bad)
    assert len(store) == 0
    good = _record(_spec(seed=3))
    with pytest.raises(KeyboardInterrupt), store.transaction() as conn:
        conn.execute("DELETE FROM runs")
        raise KeyboardInterrupt
    store.add(good)
    with pytest.raises(RuntimeError), store.transaction() as conn:
        conn.execute("DELETE FROM runs")
        raise RuntimeError("crash inside a transaction")
    assert len(store) == 1  # rolled back


def test_killed_process_mid_transaction_leaves_no_row(store_url, tmp_path):
    open_store(store_url).close()
    spec = _spec()
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from paizoo.results import open_store
        from test_store_child import record
        store = open_store({store_url!r})
        mark = "%s" if store.dialect == "postgresql" else "?"
        with store.transaction() as conn:
            row = record().to_row()
            conn.execute(f"INSERT INTO runs ({{', '.join(row)}}) VALUES "
                         f"({{', '.join([mark] * len(row))}})", list(row.values()))
            os._exit(9)  # killed before COMMIT
    """)
    (tmp_path / "test_store_child.py").write_text(textwrap.dedent("""
        from paizoo.results import RunSpec, RunRecord, library_versions
        from paizoo.training import TrainConfig
        def record():
            s = RunSpec(dataset="d", model="m", pruner="dense", sparsity=0, seed=0,
                        train=TrainConfig(epochs=1))
            return RunRecord(run_key=s.key, dataset="d", model="m", model_config={},
                pruner="dense", pruner_config={}, prune_data_config=None, sparsity=0.0,
                seed=0, train_hash=s.train.hash(), train_config={}, final_test_acc=0.1,
                best_test_acc=0.1, best_epoch=1, final_train_acc=0.1, final_train_loss=1.0,
                final_test_loss=1.0, dense_test_acc=0.1, density=1.0, kept=1, total=1,
                layer_densities={}, layer_collapse=False, collapsed_layers=[],
                prune_time_s=0.0, train_time_s=1.0, eval_time_s=0.1, epochs=1, history=[],
                mask_path=None, log_path=None, device="cpu", versions={})
    """))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=_env())
    assert result.returncode == 9, result.stderr
    store = open_store(store_url)
    assert len(store) == 0
    store.add(_record(spec))  # the database is still writable
    assert len(store) == 1


def _env() -> dict[str, str]:
    import os
    from pathlib import Path

    import paizoo

    root = str(Path(paizoo.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_schema_versioning(store_url):
    store = open_store(store_url)
    assert store.schema_version == SCHEMA_VERSION >= 2
    with store.transaction() as conn:
        if store.dialect == "sqlite":
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            assert mode.lower() == "wal"
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        else:
            conn.execute(f"UPDATE paizoo_schema SET version = {SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(StoreError, match="newer than this paizoo"):
        open_store(store_url)


def test_run_key_is_stable_and_sensitive():
    spec = _spec()
    assert spec.key == _spec().key and len(spec.key) == 16
    # every identifying field changes the key
    variants = [_spec(dataset="cifar10"), _spec(model="lenet_300_100"), _spec(pruner="snip"),
                _spec(sparsity=0.95), _spec(seed=1), _spec(train=TrainConfig(epochs=2)),
                _spec(pruner_config={"scope": "global"}), _spec(model_config={"width": 2}),
                _spec(prune_data=PruneDataConfig(samples_per_class=5))]
    keys = {v.key for v in variants}
    assert len(keys) == len(variants) and spec.key not in keys
    # ...but not the device, the order of config keys, or float noise in the sparsity
    assert _spec(train=TrainConfig(epochs=1, device="cpu")).key == spec.key
    assert _spec(pruner_config={"scope": "layer"}).key == spec.key
    assert _spec(sparsity=0.9 + 1e-13).key == spec.key
    dense = spec.dense_reference()
    assert dense.pruner == "dense" and dense.sparsity == 0 and dense.train == spec.train
    with pytest.raises(ValueError, match="sparsity > 0"):
        _spec(sparsity=0.0)
    with pytest.raises(ValueError, match="dense baseline has sparsity 0"):
        _spec(pruner="dense")
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        _spec(sparsity=1.0)
