"""Tests of paizoo.regression: schema, estimator, splits, evaluation, persistence, CLI."""

from __future__ import annotations

import warnings
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import check_estimator

from paizoo.regression import (
    AccuracyDropRegressor,
    PredictorFileError,
    TableError,
    evaluate,
    load_predictor,
    make_folds,
    save_predictor,
    select_features,
    train_predictor,
    validate_table,
    write_report,
)
from paizoo.regression.evaluate import (
    batched_permutation_importance,
    cross_predict,
    validate_ranking,
)
from paizoo.regression.schema import groups_present, metrics_groups_for
from paizoo.regression.synthetic import make_synthetic_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_synthetic_table()


# ---- schema ----------------------------------------------------------------------------------
def test_feature_groups_select_by_prefix(table: pd.DataFrame) -> None:
    cols = list(table.columns)
    assert select_features(cols, "density.global") == ["density.global"]
    layer = select_features(cols, ["density.layer"])
    assert "density.global" not in layer and layer
    assert all(c.startswith("density.layer.") for c in layer)
    assert select_features(cols, "mge") == ["mge.log_paths_deficit", "mge.mean_degree"]
    assert select_features(cols, "mge.log*") == ["mge.log_paths_deficit"]
    everything = select_features(cols, "all")
    # identifiers and target are never features
    assert not {"dataset", "model", "pruner", "sparsity", "seed", "accuracy_drop"} & set(everything)
    assert len(everything) == len(cols) - 6
    # "mge,density.global" string form, in table order
    assert select_features(cols, "mge,density.global") == [
        "density.global", "mge.log_paths_deficit", "mge.mean_degree"]
    # per-layer density written as density.<param> (no "layer." infix) is found as well
    assert select_features(["density.global", "density.conv1.weight"], "density.layer") == [
        "density.conv1.weight"]
    with pytest.raises(TableError, match="unknown feature group 'bogus'"):
        select_features(cols, "bogus")
    with pytest.raises(TableError, match="no feature column matches"):
        select_features(cols, "effective")
    assert set(groups_present(cols)) == {"density.global", "density.layer", "ramanujan", "mge",
                                         "spectral"}
    assert metrics_groups_for(["mge.a", "density.global"]) == ["density", "mge"]


def test_validate_table_errors(table: pd.DataFrame) -> None:
    assert len(validate_table(table)) == len(table)
    with pytest.raises(TableError, match="no target column 'accuracy_drop'"):
        validate_table(table.drop(columns="accuracy_drop"))
    validate_table(table.drop(columns="accuracy_drop"), require_target=False)
    with pytest.raises(TableError, match=r"identifier column\(s\) \['seed'\]"):
        validate_table(table.drop(columns="seed"))
    bad = table.assign(**{"mge.kind": "a"})
    with pytest.raises(TableError, match=r"non-numeric feature column\(s\) \['mge.kind'\]"):
        validate_table(bad)
    with pytest.raises(TableError, match="infinite values"):
        validate_table(table.assign(**{"mge.mean_degree": np.inf}))
    with pytest.raises(TableError, match="non-finite"):
        validate_table(table.assign(accuracy_drop=np.nan))
    with pytest.raises(TableError, match="sparsity"):
        validate_table(table.assign(sparsity=1.0))


# ---- estimator -------------------------------------------------------------------------------
@pytest.mark.parametrize("model, params", [("hgb", None), ("ridge", None),
                                           ("forest", {"n_estimators": 10})])
def test_sklearn_estimator_checks(model: str, params: dict | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_estimator(AccuracyDropRegressor(model=model, model_params=params))


def test_recovers_known_function_of_two_features() -> None:
    """drop = 40 (1 - d)^4 + 6 * deficit (+ noise 0.05): held-out R^2 > 0.95 from those two."""
    train = make_synthetic_table(random_state=0, seeds=(0, 1, 2))
    test = make_synthetic_table(random_state=1, seeds=(0,))
    for model in ("hgb", "forest"):
        est = AccuracyDropRegressor(groups=["density.global", "mge.log_paths_deficit"],
                                    model=model).fit(train)
        assert list(est.feature_names_in_) == ["density.global", "mge.log_paths_deficit"]
        assert est.score(test, test["accuracy_drop"]) > 0.95
    # pure noise features cannot do it: the feature selection matters
    noise = AccuracyDropRegressor(groups="spectral").fit(train)
    assert noise.score(test, test["accuracy_drop"]) < 0.2


def test_hgb_is_the_small_data_gradient_boosting(table: pd.DataFrame) -> None:
    """model="hgb" is scikit-learn's HistGradientBoostingRegressor with depth <= 3, learning
    rate 0.05 x 200 iterations, L2 1.0 and leaves of >= 5 rows, built here independently; a
    model_params entry overrides one setting."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    cols = ["density.global", "mge.log_paths_deficit"]
    X, y = table[cols].to_numpy(float), table["accuracy_drop"].to_numpy(float)
    ours = AccuracyDropRegressor(groups=cols).fit(table)
    ref = HistGradientBoostingRegressor(max_depth=3, learning_rate=0.05, max_iter=200,
                                        l2_regularization=1.0, min_samples_leaf=5,
                                        random_state=0).fit(X, y)
    np.testing.assert_array_equal(ours.predict(table), ref.predict(X))
    assert max(p.get_max_depth() for it in ours.model_._predictors for p in it) <= 3
    deep = AccuracyDropRegressor(groups=cols, model_params={"max_depth": None}).fit(table)
    assert deep.model_.max_depth is None and deep.model_.learning_rate == 0.05


def test_sklearn_composition(table: pd.DataFrame) -> None:
    est = AccuracyDropRegressor(groups="mge,density.global", model="ridge")
    cloned = clone(est)
    assert cloned.get_params() == est.get_params()
    assert not hasattr(cloned, "model_")
    pipe = Pipeline([("identity", FunctionTransformer(validate=False)), ("drop", est)])
    scores = cross_val_score(pipe, table, table["accuracy_drop"], cv=3)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    lopo = [(f.train, f.test) for f in make_folds(table, "lopo")]
    scores = cross_val_score(est, table, table["accuracy_drop"], cv=lopo,
                             scoring="neg_mean_absolute_error")
    assert scores.shape == (5,) and np.all(scores < 0)
    est.set_params(model="hgb")
    assert est.get_params()["model"] == "hgb"


def test_remembers_columns_and_fails_clearly(table: pd.DataFrame) -> None:
    est = AccuracyDropRegressor(groups="mge,density.global").fit(table)
    assert est.metrics_groups_ == ["density", "mge"]
    ref = est.predict(table)
    # extra columns and another column order are fine
    shuffled = table[list(reversed(table.columns))].assign(extra=1.0)
    np.testing.assert_array_equal(est.predict(shuffled), ref)
    with pytest.raises(TableError, match=r"yet now missing:\n- mge\.mean_degree"):
        est.predict(table.drop(columns="mge.mean_degree"))
    est.set_params(allow_missing=True)
    assert np.all(np.isfinite(est.predict(table.drop(columns="mge.mean_degree"))))
    # per-layer columns that were NaN for some training rows (the layers mlp lacks) may be
    # absent for a model without those layers: they are missing values, not an error
    layered = AccuracyDropRegressor(groups="density").fit(table)
    assert layered.nan_features_.sum() == 2  # conv1, conv2 of lenet5 are NaN for mlp
    mlp = table[table["model"] == "mlp"]
    np.testing.assert_array_equal(
        layered.predict(mlp.drop(columns=["density.layer.conv1.weight",
                                          "density.layer.conv2.weight"])),
        layered.predict(mlp))
    with pytest.raises(TableError, match=r"yet now missing:\n- density\.layer\.fc1\.weight"):
        layered.predict(mlp.drop(columns="density.layer.fc1.weight"))
    with pytest.raises(TableError, match="non-numeric"):
        AccuracyDropRegressor(groups="mge").fit(table.assign(**{"mge.kind": "x"}))
    with pytest.raises(TableError, match="pass a pandas DataFrame"):
        AccuracyDropRegressor(groups="mge").fit(np.zeros((5, 2)), np.zeros(5))
    with pytest.raises(ValueError, match="requires y to be passed"):
        AccuracyDropRegressor().fit(table.drop(columns="accuracy_drop"))


@pytest.mark.parametrize("model", ["hgb", "forest", "ridge"])
def test_all_nan_columns_of_unseen_models(table: pd.DataFrame, model: str) -> None:
    """Training on one model leaves the other model's per-layer columns all NaN."""
    params = {"n_estimators": 10} if model == "forest" else None
    train = table[table["model"] == "mlp"]
    est = AccuracyDropRegressor(groups="density.layer", model=model, model_params=params)
    est.fit(train)
    assert est.empty_features_.sum() == 2  # conv1, conv2 of lenet5
    pred = est.predict(table[table["model"] == "lenet5"])
    assert np.all(np.isfinite(pred))


# ---- splits ----------------------------------------------------------------------------------
class _Spy(AccuracyDropRegressor):
    """Records the pruners and models of every training set it is fit on."""

    seen: ClassVar[list[tuple[set[str], set[str]]]] = []

    def fit(self, X, y=None):  # type: ignore[no-untyped-def, override]
        _Spy.seen.append((set(X["pruner"]), set(X["model"])))
        return super().fit(X, y)


def test_leave_one_pruner_out_never_leaks(table: pd.DataFrame) -> None:
    folds = make_folds(table, "lopo")
    assert [f.label for f in folds] == sorted(table["pruner"].unique())
    for f in folds:
        assert f.label not in set(table["pruner"].iloc[f.train])
        assert set(table["pruner"].iloc[f.test]) == {f.label}
        assert len(f.train) + len(f.test) == len(table)
    # and the estimators fit inside cross_predict / validate_ranking never see it
    _Spy.seen = []
    cross_predict(_Spy(model="ridge"), table, folds)
    assert [held for held in (f.label for f in folds)] == [
        next(iter(set(table["pruner"]) - seen[0])) for seen in _Spy.seen]
    _Spy.seen = []
    validate_ranking(table, lambda: _Spy(model="ridge"), progress=False)
    assert len(_Spy.seen) == len(folds)
    for f, (pruners, _) in zip(folds, _Spy.seen, strict=True):
        assert f.label not in pruners and len(pruners) == table["pruner"].nunique() - 1
    lomo = make_folds(table, "lomo")
    for f in lomo:
        assert f.label not in set(table["model"].iloc[f.train])
    kfold = make_folds(table, "kfold", n_splits=5)
    tests = np.concatenate([f.test for f in kfold])
    assert sorted(tests.tolist()) == list(range(len(table)))
    with pytest.raises(TableError, match="at least two distinct values of 'model'"):
        make_folds(table[table["model"] == "mlp"], "lomo")


# ---- evaluation, report ----------------------------------------------------------------------
#: feature sets by metric group (the synthetic table's columns are all "per-layer" kind)
GROUP_SETS = {
    "global density": ("density.global",),
    "per-layer density": ("density.global", "density.layer"),
    "BGE/Ramanujan": ("ramanujan",),
    "MGE": ("mge",),
    "MGE + density": ("mge", "density.global", "density.layer"),
    "all": ("all",),
}


def test_evaluate_and_report(table: pd.DataFrame, tmp_path) -> None:
    ev = evaluate(table, feature_sets=GROUP_SETS, models=("hgb", "ridge"), n_splits=3,
                  progress=False)
    s = ev.scores.set_index(["feature_set", "split", "model"])
    assert len(s) == 6 * 3 * 2
    # the sets that contain both generating features beat the noise-only BGE column
    for split in ("kfold", "lopo", "loao"):
        assert s.loc[("MGE + density", split, "hgb"), "r2"] > 0.85
        assert s.loc[("BGE/Ramanujan", split, "hgb"), "r2"] < 0.3
    assert ev.best in ("MGE + density", "all")
    assert ev.importance is not None
    assert ev.importance["feature"].iloc[0] == "density.global"
    assert set(ev.ranking["held_out"]) == {*table["pruner"].unique(), "(all unseen)"}
    assert ev.ranking["rbo"].between(0, 1).all()
    md = write_report(ev, tmp_path / "regression.md", plot_path=tmp_path / "regression.png",
                      source="syn.csv", command="paizoo regress eval --table syn.csv",
                      extra_models=("ridge",))
    text = md.read_text()
    for needle in ("leave one architecture out: R²", "leave one pruner out: R²",
                   "Permutation feature importance", "Held-out pruner on a held-out architecture",
                   "Rankings of the pruners on an architecture", "Per held-out architecture",
                   "Kendall τ-b", "RBO", "![predicted vs actual accuracy drop](regression.png)",
                   "### Model: ridge", "seed noise of the actual ranks"):
        assert needle in text
    assert (tmp_path / "regression.png").stat().st_size > 10_000
    # the answer to "will the order transfer to my model?" sits under the lead table, and
    # quotes the rankings table's architecture-unseen row
    row = next(line for line in text.splitlines()
               if line.startswith("| architecture unseen, pruners seen"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    line = next(line for line in text.splitlines() if line.startswith("- will the pruners'"))
    assert f"Kendall τ {cells[4]} between" in line and f", {cells[2]} per sparsity" in line
    assert text.index(line) < text.index("## Held-out pruner on a held-out architecture")
    # the two rank tables name the same quantities alike (one had snake_case headers)
    heads = [line for line in text.splitlines() if line.startswith("| predictions |")
             or line.startswith("| held-out pruner | contexts |")]
    assert len(heads) == 2
    quantities = ("τ per sparsity", "RBO per sparsity", "τ mean ranking", "RBO mean ranking")
    for head in heads:
        assert [c.strip() for c in head.strip("|").split("|")][1:6] == ["contexts",
                                                                        *quantities]


@pytest.mark.parametrize("random_state, max_cells", [(0, 4_000_000), (7, 2000)])
def test_batched_permutation_importance_equals_sklearn(random_state: int,
                                                       max_cells: int) -> None:
    """Same permutations as sklearn.inspection.permutation_importance, stacked predictions."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = 3 * np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 + 0.1 * rng.normal(size=40)
    model = HistGradientBoostingRegressor(max_iter=30).fit(X, y)
    ref = permutation_importance(model, X, y, scoring="neg_mean_absolute_error", n_repeats=4,
                                 random_state=random_state)
    mean, sd = batched_permutation_importance(model.predict, X, y, n_repeats=4,
                                              random_state=random_state, max_cells=max_cells)
    np.testing.assert_allclose(mean, ref.importances_mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(sd, ref.importances_std, rtol=0, atol=1e-12)
    assert mean[0] > mean[2:].max()  # the informative column matters most


def test_evaluate_skips_absent_sets_and_single_model(table: pd.DataFrame) -> None:
    sub = table[table["model"] == "mlp"].drop(columns=["mge.log_paths_deficit",
                                                       "mge.mean_degree"])
    ev = evaluate(sub, feature_sets=GROUP_SETS, splits=("kfold", "lopo", "lomo"),
                  importance=False, ranking=False, progress=False)
    assert set(ev.scores["split"]) == {"kfold", "lopo"}  # one model: no leave-one-model-out
    assert {"MGE", "MGE + density"} <= set(ev.skipped) or "MGE" in ev.skipped
    assert "MGE" not in set(ev.scores["feature_set"])


# ---- persistence -----------------------------------------------------------------------------
class _Evil:
    pass


@pytest.mark.parametrize("model", ["hgb", "ridge"])
def test_skops_round_trip(table: pd.DataFrame, tmp_path, model: str) -> None:
    est = AccuracyDropRegressor(groups="mge,density", model=model).fit(table)
    path = save_predictor(est, tmp_path / "p.skops", info={"trained_on": {"rows": 3}})
    loaded = load_predictor(path)
    assert loaded.info == {"trained_on": {"rows": 3}}
    assert isinstance(loaded.estimator, AccuracyDropRegressor)
    assert loaded.estimator.get_params() == est.get_params()
    np.testing.assert_array_equal(loaded.predict(table), est.predict(table))
    assert list(loaded.estimator.feature_names_in_) == list(est.feature_names_in_)
    # no pickle anywhere: it is a zip of JSON schema + numpy arrays
    import zipfile

    with zipfile.ZipFile(path) as z:
        assert "schema.json" in z.namelist()


def test_skops_refuses_untrusted_and_foreign_files(tmp_path) -> None:
    import skops.io as sio

    evil = tmp_path / "evil.skops"
    sio.dump({"format": "paizoo-predictor", "version": 1, "estimator": _Evil(), "info": {}},
             evil)
    with pytest.raises(PredictorFileError, match="does not trust"):
        load_predictor(evil)
    other = tmp_path / "other.skops"
    sio.dump({"hello": 1}, other)
    with pytest.raises(PredictorFileError, match="not a paizoo predictor"):
        load_predictor(other)
    with pytest.raises(PredictorFileError, match="no predictor file"):
        load_predictor(tmp_path / "missing.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(PredictorFileError, match="not a readable skops file"):
        load_predictor(tmp_path / "junk.skops")


def test_train_predictor_records_validity(table: pd.DataFrame, tmp_path) -> None:
    csv = tmp_path / "t.csv"
    table.to_csv(csv, index=False)
    pred = train_predictor(table, groups="mge,density", table_path=csv, command="cmd",
                           out=tmp_path / "d.skops")
    info = load_predictor(tmp_path / "d.skops").info
    on = info["trained_on"]
    assert on["rows"] == len(table) and on["models"] == ["lenet5", "mlp"]
    assert on["sparsity_range"] == [0.5, 0.99] and len(on["table_sha256"]) == 64
    assert set(info["validation"]) == {"leave one pruner out", "leave one architecture out",
                                       "random K-fold"}
    assert 0 < info["validation"]["leave one pruner out"]["mae"] < 5
    assert set(info["calibration"]) == {"lopo", "loao", "kfold"}
    assert on["date"] and on["input_shapes"] == {"synthetic": [3, 32, 32]}
    assert info["metrics_groups"] == ["density", "mge"]
    text = pred.describe()
    assert "validity domain: 120 runs" in text and "on synthetic (3x32x32); 2 architectures" in text
    assert "MAE" in text


# ---- CLI -------------------------------------------------------------------------------------
def test_cli_train_and_eval(table: pd.DataFrame, tmp_path, capsys) -> None:
    from paizoo.cli import main

    csv = tmp_path / "t.csv"
    table[table["pruner"] != "grasp"].to_csv(csv, index=False)
    assert main(["regress", "train", "--table", str(csv), "--groups", "mge,density.global",
                 "--model", "ridge", "--out", str(tmp_path / "p.skops")]) == 0
    assert "predictor written" in capsys.readouterr().out
    info = load_predictor(tmp_path / "p.skops").info
    assert info["command"].startswith("paizoo regress train --table")
    assert "--groups mge,density.global --model ridge" in info["command"]
    assert main(["regress", "eval", "--table", str(csv), "--out", str(tmp_path / "r.md"),
                 "--splits", "lopo", "--models", "ridge"]) == 0
    assert (tmp_path / "r.png").is_file() and "leave one pruner out" in (
        tmp_path / "r.md").read_text()
    bad = tmp_path / "bad.csv"
    table.drop(columns="accuracy_drop").to_csv(bad, index=False)
    assert main(["regress", "eval", "--table", str(bad)]) == 2
    assert "no target column 'accuracy_drop'" in capsys.readouterr().err


def test_seed_rank_noise_by_hand() -> None:
    """Two seeds, one sparsity: p and q swap places between the seeds, r stays last; the 0.8
    rows are left out (q has no seed-1 run there) and a one-seed model adds nothing."""
    from paizoo.regression.evaluate import seed_rank_noise

    rows = [("m", "p", 0.5, 0, 1.0), ("m", "q", 0.5, 0, 2.0), ("m", "r", 0.5, 0, 10.0),
            ("m", "p", 0.5, 1, 3.0), ("m", "q", 0.5, 1, 2.0), ("m", "r", 0.5, 1, 10.0),
            ("m", "p", 0.8, 0, 50.0), ("m", "q", 0.8, 0, 0.0), ("m", "r", 0.8, 0, 0.0),
            ("m", "p", 0.8, 1, 50.0), ("m", "r", 0.8, 1, 0.0),
            ("solo", "p", 0.5, 0, 1.0), ("solo", "q", 0.5, 0, 2.0)]
    t = pd.DataFrame(rows, columns=["model", "pruner", "sparsity", "seed", "accuracy_drop"])
    t.insert(0, "dataset", "d")
    noise = seed_rank_noise(t)
    assert set(noise["model"]) == {"m"} and len(noise) == 6  # 2 seeds x 3 pruners
    got = noise.set_index(["seed", "pruner"])["abs_rank_diff"].to_dict()
    assert got == {(0, "p"): 1, (0, "q"): 1, (0, "r"): 0, (1, "p"): 1, (1, "q"): 1, (1, "r"): 0}
    assert noise["abs_rank_diff"].mean() == pytest.approx(2 / 3)
