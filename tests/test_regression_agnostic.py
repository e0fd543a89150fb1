"""Architecture-agnostic features, split-conformal intervals and ranking on unseen architectures."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from paizoo.regression import AccuracyDropRegressor, select_features
from paizoo.regression.agnostic import (
    Layout,
    add_agnostic_columns,
    agnostic_features,
    feature_definitions,
    is_agnostic_column,
    layout_of,
    parse_label,
    profile_stats,
    structural_family,
)
from paizoo.regression.conformal import (
    Calibration,
    calibrate,
    conformal_quantile,
    overlapping,
)
from paizoo.regression.predict import same_pruner
from paizoo.regression.splits import make_folds, pair_folds


# ---- tiny nets -------------------------------------------------------------------------------
class Reversed(nn.Module):
    """Registered fc_b before fc_a, but fc_a runs first."""

    def __init__(self) -> None:
        super().__init__()
        self.fc_b = nn.Linear(3, 2)
        self.fc_a = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_b(torch.relu(self.fc_a(x.flatten(1))))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        h = h + self.dw(h)
        return self.fc(h.flatten(1))


def test_layout_order_and_descriptors_by_hand() -> None:
    lay = layout_of(Reversed(), (1, 2, 2), dense_paths=False)
    assert lay.params == ["fc_a.weight", "fc_b.weight"] and lay.order == "forward"
    assert lay.shapes == [(3, 4), (2, 3)] and lay.kinds == ["linear", "linear"]
    d = lay.descriptors()
    assert d == {"arch.depth": 2.0, "arch.log10_params": pytest.approx(math.log10(18)),
                 "arch.residual": 0.0, "arch.norm": 0.0, "arch.conv_share": 0.0,
                 "arch.grouped_share": 0.0}
    assert structural_family(lay) == "mlp"
    lay = layout_of(Residual(), (1, 4, 4), dense_paths=False)
    assert lay.params == ["conv.weight", "dw.weight", "fc.weight"]
    n = {"conv": 4 * 1 * 9, "dw": 4 * 1 * 9, "fc": 2 * 64}
    total = sum(n.values())
    d = lay.descriptors()
    assert d["arch.residual"] == 1.0 and d["arch.norm"] == 1.0
    assert d["arch.conv_share"] == pytest.approx((n["conv"] + n["dw"]) / total)
    assert d["arch.grouped_share"] == pytest.approx(n["dw"] / total)
    assert structural_family(lay) == "resnet"


def test_dense_paths_by_hand() -> None:
    # Linear 4->3->2 dense: 4 * 3 * 2 = 24 input-output paths
    lay = layout_of(Reversed(), (1, 2, 2))
    assert lay.dense_paths_log10 == pytest.approx(math.log10(24))


def test_profile_stats_by_hand() -> None:
    v = np.array([0.5, 0.2, 0.8])
    w = np.array([10.0, 30.0, 60.0])
    s = profile_stats(v, w, bottleneck=1)
    # t = 0, 0.5, 1; centred t = -.5, 0, .5; centred v = 0, -.3, .3 -> slope 0.15 / 0.5
    assert s == pytest.approx({
        "min": 0.2, "max": 0.8, "mean": 0.5, "wmean": (5 + 6 + 48) / 100,
        "q25": 0.35, "q50": 0.5, "q75": 0.65, "first": 0.5, "last": 0.8, "bneck": 0.2,
        "slope": 0.3, "undef": 0.0})
    s = profile_stats(np.array([np.nan, 0.4, 0.6]), np.ones(3), bottleneck=None)
    assert math.isnan(s["first"]) and math.isnan(s["bneck"]) and s["last"] == 0.6
    assert s["undef"] == pytest.approx(1 / 3)
    assert s["slope"] == pytest.approx(0.4)  # (0.6 - 0.4) / (1 - 0.5)
    s = profile_stats(np.array([0.7]), np.ones(1), bottleneck=0)
    assert s["first"] == s["last"] == s["bneck"] == 0.7 and math.isnan(s["slope"])


def test_agnostic_features_by_hand() -> None:
    lay = Layout(params=["a.weight", "b.weight"], shapes=[(3, 4), (2, 3)],
                 kinds=["linear", "linear"], groups=[1, 1], residual=False, norm=False,
                 dense_paths_log10=2.0)
    m = {"density.a.weight": 0.5, "density.b.weight": 0.25, "density.global": 0.41,
         "ramanujan.d_left.a.weight": 1.5,  # / n_R = 3
         "ramanujan.d_left.b.weight": 1.0,  # / n_R = 2
         "spectral.lambda2.a.weight": 0.6,  # / min(n_L, n_R) = 3
         "spectral.lambda2.b.weight": 1.0,  # / 2
         "effective.paths_log10": 1.5, "mge.nodes": 12.0, "mge.sources_frac": 0.1,
         "mge.one_hop_frac": 0.01}
    f = agnostic_features(m, lay)
    assert f["density@first"] == 0.5 and f["density@last"] == 0.25
    assert f["density@bneck"] == 0.25 and f["density@slope"] == pytest.approx(-0.25)
    assert f["ramanujan.d_left_rel@first"] == pytest.approx(0.5)
    assert f["ramanujan.d_left_rel@bneck"] == pytest.approx(0.5)  # layer b has lowest density
    assert f["spectral.lambda2_rel@mean"] == pytest.approx((0.2 + 0.5) / 2)
    assert f["effective.paths_log10_ratio"] == pytest.approx(-0.5)
    assert f["density.global"] == 0.41 and f["mge.sources_frac"] == 0.1
    # size-dependent values are not in the agnostic set
    assert "mge.nodes" not in f and "mge.one_hop_frac" not in f
    assert all(is_agnostic_column(c) for c in f)


def test_lambda2_rel_on_degenerate_layers_by_hand() -> None:
    """Laplacian spectra of complete bipartite graphs: K(1,1) = K_2 has {0, 2}, a star K(1,n)
    {0, 1 (n-1 times), n+1}, K(2,3) {0, 2, 2, 3, 5}: lambda2 = 2, 1, 2. On a layer with a side
    of one node every connected graph is a star, so its lambda2_rel is 1 when it keeps a weight,
    never 2 (it was 2 on a 1x1 layer, and on a star pruned to one edge)."""
    import paizoo
    import paizoo.metrics as pm

    def lambda2_rel(net: nn.Module, mask: dict, shape: tuple[int, ...]) -> list[float]:
        mask = paizoo.Mask(mask) if mask else paizoo.Mask.ones(net)
        m = pm.compute(net, mask, shape, groups=["density", "spectral"])
        lay = layout_of(net, shape, dense_paths=False)
        f = agnostic_features(m, lay)
        return [f["spectral.lambda2_rel@first"], f["spectral.lambda2_rel@last"]]

    one = nn.Sequential(nn.Linear(1, 1), nn.ReLU(), nn.Linear(1, 4))  # 1x1, then a 4x1 star
    assert lambda2_rel(one, {}, (1,)) == [1.0, 1.0]  # raw lambda2: 2 and 1
    star = {"0.weight": torch.ones(1, 1, dtype=torch.bool),
            "2.weight": torch.tensor([[True], [False], [False], [False]])}  # one edge left
    assert lambda2_rel(one, star, (1,)) == [1.0, 1.0]  # raw lambda2: 2 and 2
    k23 = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    assert lambda2_rel(k23, {}, (2,)) == pytest.approx([1.0, 1.0])  # lambda2 2 = min(2, 3)
    # K(2,2) (a 4-cycle, lambda2 2) minus one edge is the path P4: 2 - 2 cos(pi / 4)
    k22 = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    path = {"0.weight": torch.tensor([[True, True], [True, False]]),
            "2.weight": torch.ones(2, 2, dtype=torch.bool)}
    assert lambda2_rel(k22, path, (2,)) == pytest.approx([(2 - math.sqrt(2)) / 2, 1.0])


def test_components_rel_is_size_free_by_hand() -> None:
    """c weakly connected components of the n-node multipartite graph: (c - 1) / (n - 1), 0 for
    any connected network (components_frac = c / n was 1 / n there), and 1 / 4 for a 2-2-1
    network whose input 0 lost both weights (5 nodes, 2 components)."""
    import paizoo
    import paizoo.metrics as pm

    def features(net: nn.Module, mask: dict | None, shape: tuple[int, ...]) -> dict:
        mask = paizoo.Mask(mask) if mask else paizoo.Mask.ones(net)
        m = pm.compute(net, mask, shape, groups=["density", "mge"])
        return {**m, **agnostic_features(m, layout_of(net, shape, dense_paths=False))}

    small = features(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)), None, (2,))
    wide = features(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)), None, (8,))
    assert (small["mge.components_frac"], wide["mge.components_frac"]) == (1 / 5, 1 / 17)
    assert small["mge.components_rel"] == wide["mge.components_rel"] == 0.0
    cut = features(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)),
                   {"0.weight": torch.tensor([[False, True], [False, True]]),
                    "2.weight": torch.ones(1, 2, dtype=torch.bool)}, (2,))
    assert (cut["mge.nodes"], cut["mge.components"]) == (5.0, 2.0)
    assert cut["mge.components_rel"] == 0.25
    assert is_agnostic_column("mge.components_rel")
    assert not is_agnostic_column("mge.components_frac")
    assert not is_agnostic_column("mge.component_size_frac")


def test_same_columns_for_any_architecture() -> None:
    """The point of the agnostic set: two architectures give the same columns, none named after
    a layer, while their per-layer columns differ."""
    from paizoo import metrics, prune

    cols = []
    for net, shape in ((Reversed(), (1, 2, 2)), (Residual(), (1, 4, 4))):
        mask = prune(net, "magnitude", sparsity=0.5)
        vals = metrics.compute(net, mask, shape, groups=["density", "effective", "spectral"])
        lay = layout_of(net, shape)
        feats = agnostic_features(vals, lay)
        for p in lay.params:
            assert not any(p in c for c in feats), p
        cols.append(set(feats))
        # density profile = the mask's own per-layer densities, in forward order
        dens = [float(mask[p].float().mean()) for p in lay.params]
        assert feats["density@first"] == pytest.approx(dens[0])
        assert feats["density@max"] == pytest.approx(max(dens))
    assert cols[0] == cols[1]


def test_definitions_and_table_columns() -> None:
    lay = Layout(params=["fc1.weight"], shapes=[(2, 2)], kinds=["linear"], groups=[1],
                 residual=False, norm=False, family="mlp")
    table = pd.DataFrame({"dataset": ["d"], "model": ["m"], "pruner": ["p"], "sparsity": [0.5],
                          "seed": [0], "accuracy_drop": [1.0], "density.fc1.weight": [0.5],
                          "density.global": [0.5]})
    out = add_agnostic_columns(table, {"m": lay})
    assert out["family"].tolist() == ["mlp"]
    defs = feature_definitions(out.columns, lay.params)
    assert set(defs) == set(out.columns)
    assert defs["density.fc1.weight"].startswith("per-layer (named")
    assert "profile over normalised depth" in defs["density@slope"]
    assert select_features(out.columns, "per-layer") == ["density.fc1.weight"]
    agn = select_features(out.columns, "agnostic")
    assert "density.fc1.weight" not in agn and "arch.depth" in agn
    assert select_features(out.columns, "agnostic-mask") == [c for c in agn
                                                             if not c.startswith("arch.")]
    assert parse_label('resnet20{"width":2}') == ("resnet20", {"width": 2})


def test_same_pruner_knows_defaults() -> None:
    """The store labels the leaderboard's random settings with their config; `paizoo rank -p
    random` (the default, uniform) is one of them and must not be called unseen."""
    from paizoo.regression import Predictor
    from paizoo.regression.predict import validity_notes

    assert same_pruner("random", 'random{"distribution":"uniform"}')
    assert not same_pruner("random", 'random{"distribution":"erk"}')
    assert same_pruner("snip", "snip") and not same_pruner("snip", "grasp")
    pred = Predictor(AccuracyDropRegressor(), info={"trained_on": {
        "models": ["m"], "pruners": ['random{"distribution":"erk"}',
                                     'random{"distribution":"uniform"}', "snip"]}})
    notes = validity_notes(pred, dataset=None, model="m", sparsities=[0.5],
                           pruners=["random", "snip", "grasp"])
    assert [n for n in notes if "not in the training data" in n] == [
        "pruners not in the training data: grasp (predicted as unseen pruners; the predictor "
        "records no leave-one-pruner-out error)"]


def test_unseen_pruner_note_quotes_its_error_and_the_interval_caveat() -> None:
    """An unseen pruner on an unseen architecture: the note said 'see the leave-one-pruner-out
    error', which paizoo rank does not print then (it prints the leave-one-architecture-out
    one), and the intervals, calibrated on seen pruners, were not flagged."""
    from paizoo.regression import Predictor
    from paizoo.regression.predict import validity_notes

    lopo = {"r2": 0.61, "mae": 7.25, "spearman": 0.8}
    pred = Predictor(AccuracyDropRegressor(), info={
        "trained_on": {"models": ["m"], "pruners": ["snip"]},
        "validation": {"leave one pruner out": lopo,
                       "leave one architecture out": {"r2": 0.7, "mae": 6.0}}})
    for split, caveat in (("loao", True), ("lopo", False)):
        notes = validity_notes(pred, dataset=None, model="m", sparsities=[0.5],
                               pruners=["snip", "grasp"], split=split)
        note = next(n for n in notes if "not in the training data" in n)
        assert note.startswith("pruners not in the training data: grasp (")
        assert f"MAE {lopo['mae']:.2f} points, R^2 {lopo['r2']:.3f}" in note
        assert ("leave one architecture out residuals of pruners that were seen" in note) \
            == caveat


# ---- split-conformal intervals ---------------------------------------------------------------
def test_conformal_quantile_by_hand() -> None:
    r = np.arange(1.0, 10.0)  # 9 residuals: ceil(10 * 0.8) = 8th smallest
    assert conformal_quantile(r, 0.8) == 8.0
    assert conformal_quantile(r, 0.95) == math.inf  # ceil(9.5) = 10 > 9
    cal = Calibration("x", 0.5, [10.0], [[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])
    assert cal.quantile == [2.0, 6.0]
    np.testing.assert_array_equal(cal.half_width([0.0, 11.0]), [2.0, 6.0])
    assert Calibration.from_dict(cal.to_dict()).quantile == cal.quantile
    assert overlapping(np.array([0, 2, 10]), np.array([3, 4, 11])) == [[1], [0], []]


def test_conformal_quantile_rank_is_exact_when_n_plus_one_times_coverage_is_whole() -> None:
    """(n + 1) * coverage = 100 * 0.55 = 55 exactly: the 55th smallest, although the float
    product 100 * 0.55 is 55.000000000000007 (its ceil, 56, would widen the interval)."""
    r = np.arange(1.0, 100.0)  # 99 residuals 1..99
    assert conformal_quantile(r, 0.55) == 55.0
    assert conformal_quantile(np.arange(1.0, 400.0), 0.55) == 220.0  # 400 * 0.55 = 220


def test_calibration_bins_hold_min_bin_rows_when_predictions_tie() -> None:
    """60 of 100 out-of-fold predictions tie at the minimum (a tree model's leaf): the median
    edge is that minimum, so a bin below it would be empty (half-width inf for any smaller
    prediction); bins are merged until each has min_bin rows."""
    p = np.r_[np.zeros(60), np.linspace(1.0, 10.0, 40)]
    y = p + np.r_[np.full(60, 0.5), np.full(40, 2.0)]
    cal = calibrate(y, p, split="x", coverage=0.9, bins=2, min_bin=50)
    assert all(len(r) >= 50 for r in cal.residuals)
    assert np.isfinite(cal.half_width([-1.0, 0.0, 5.0])).all()
    # a clean split keeps its bins: 100 distinct predictions, two bins of 50
    cal = calibrate(np.arange(100.0) + 1.0, np.arange(100.0), split="x", bins=2, min_bin=50)
    assert [len(r) for r in cal.residuals] == [50, 50]


def _grouped_synthetic(n_groups: int, per_group: int, sigma: float, tau: float,
                       rng: np.random.Generator) -> pd.DataFrame:
    """y = 30 x1 - 10 x2 + b_group + eps, b ~ N(0, tau), eps ~ N(0, sigma)."""
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.uniform(0, 1, size=(len(g), 2))
    b = rng.normal(0, tau, size=n_groups)[g]
    y = 30 * x[:, 0] - 10 * x[:, 1] + b + rng.normal(0, sigma, size=len(g))
    return pd.DataFrame({"dataset": "s", "model": [f"m{i}" for i in g], "pruner": "p",
                         "sparsity": 0.5, "seed": 0, "density.global": x[:, 0],
                         "mge.x": x[:, 1], "accuracy_drop": y})


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_intervals_cover_held_out_groups(coverage: float) -> None:
    """Calibrated on leave-one-architecture-out residuals, the intervals cover new groups
    (architectures) at the stated rate; the known noise is sqrt(sigma^2 + tau^2)."""
    from paizoo.regression.evaluate import cross_predict

    rng = np.random.default_rng(0)
    sigma, tau = 2.0, 3.0
    train = _grouped_synthetic(30, 20, sigma, tau, rng)
    est = AccuracyDropRegressor(groups="all", model="ridge")
    oof = cross_predict(est, train, make_folds(train, "loao"))
    cal = calibrate(train["accuracy_drop"], oof, split="loao", coverage=coverage, bins=1)
    est.fit(train)
    test = _grouped_synthetic(400, 5, sigma, tau, rng)
    lo, hi = cal.interval(est.predict(test))
    y = test["accuracy_drop"].to_numpy()
    covered = ((y >= lo) & (y <= hi)).mean()
    assert abs(covered - coverage) < 0.04
    from scipy import stats

    expected = stats.norm.ppf(0.5 + coverage / 2) * math.hypot(sigma, tau)
    assert cal.quantile[0] == pytest.approx(expected, rel=0.15)


def test_pair_folds_hold_out_architecture_and_pruner() -> None:
    t = pd.DataFrame({"model": ["a", "a", "b", "b", "c"], "pruner": ["p", "q", "p", "q", "p"]})
    folds = {f.label: f for f in pair_folds(t)}
    assert set(folds) == {"a x p", "a x q", "b x p", "b x q", "c x p"}
    f = folds["a x p"]
    assert f.test.tolist() == [0] and f.train.tolist() == [3]  # neither a nor p


# ---- ranking on an architecture in no training table ----------------------------------------
GROUPS = ["density", "effective"]


class Mlp(nn.Module):
    def __init__(self, width: int = 6) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, width)
        self.fc2 = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def mlp_factory(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return Mlp()


def wide_factory(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return Mlp(12)


def residual_factory(seed: int) -> nn.Module:
    """The architecture no predictor below was trained on (used by the CLI test too)."""
    torch.manual_seed(seed)
    return Residual()


def _agnostic_predictor(path) -> None:  # type: ignore[no-untyped-def]
    """A predictor on agnostic columns of two MLPs, target 100 * (1 - effective density)."""
    from paizoo.regression import train_predictor

    train_predictor(_agnostic_table(), groups="agnostic", model="ridge", out=path)


def _agnostic_table() -> pd.DataFrame:
    """The training table of :func:`_agnostic_predictor`."""
    from paizoo import metrics, prune

    rows = []
    for name, factory in (("mlp_factory", mlp_factory), ("wide_factory", wide_factory)):
        lay = layout_of(factory(0), (1, 4, 4))
        for pruner in ("magnitude", "random"):
            for s in (0.3, 0.6, 0.9):
                for seed in (0, 1):
                    net = factory(seed)
                    mask = prune(net, pruner, sparsity=s, seed=seed)
                    v = metrics.compute(net, mask, (1, 4, 4), groups=GROUPS)
                    v.update(agnostic_features(v, lay))
                    rows.append({"dataset": "toy", "model": name, "pruner": pruner,
                                 "sparsity": s, "seed": seed, **v,
                                 "accuracy_drop": 100 * (1 - v["effective.density"])})
    return pd.DataFrame(rows)


def test_rank_pruners_on_unseen_architecture(tmp_path) -> None:
    from paizoo.regression import load_predictor, rank_pruners

    _agnostic_predictor(tmp_path / "p.skops")
    predictor = load_predictor(tmp_path / "p.skops")
    res = rank_pruners(residual_factory, ["magnitude", "random"], [0.5, 0.9],
                       predictor=predictor, input_shape=(1, 4, 4), progress=False)
    assert res.split == "loao" and res.coverage == 0.9
    r = res.ranking.set_index("pruner")
    assert (r["low"] <= r["mean"]).all() and (r["mean"] <= r["high"]).all()
    text = res.format()
    assert "validated (leave one architecture out)" in text
    assert "validated (leave one pruner out)" not in text
    assert "interval" in text and "tied with" in text
    assert "not in the training data" not in text  # both pruners are
    # the ranking's tie column is the overlap of the printed intervals
    lo, hi = res.ranking["low"].to_numpy(), res.ranking["high"].to_numpy()
    tied = bool(lo[0] <= hi[1] and lo[1] <= hi[0])
    assert (res.ranking["tied_with"].iloc[0] == "2") == tied
    # a model of the training data gets the leave-one-pruner-out error instead
    res = rank_pruners(mlp_factory, ["magnitude"], [0.5], predictor=predictor,
                       input_shape=(1, 4, 4), progress=False)
    assert res.split == "lopo"


def test_in_domain_is_decided_by_architecture_not_by_name(tmp_path) -> None:
    """A request whose model *name* is a training model's gets the leave-one-pruner-out split
    only when it is that network: a wider network under the same name (or the zoo model built
    for another input size) gets leave-one-architecture-out, and a note says why."""
    from paizoo.regression import load_predictor, rank_pruners

    _agnostic_predictor(tmp_path / "p.skops")
    predictor = load_predictor(tmp_path / "p.skops")
    recorded = predictor.info["trained_on"]["architectures"]
    assert recorded["mlp_factory"] == layout_of(mlp_factory(0), (1, 4, 4)).descriptors()
    assert recorded["wide_factory"] == layout_of(wide_factory(0), (1, 4, 4)).descriptors()

    def mlp_factory_wider(seed: int) -> nn.Module:  # the name clashes, the network does not
        torch.manual_seed(seed)
        return Mlp(16)

    mlp_factory_wider.__name__ = "mlp_factory"
    res = rank_pruners(mlp_factory_wider, ["magnitude"], [0.5], predictor=predictor,
                       input_shape=(1, 4, 4), progress=False)
    assert res.split == "loao"
    wide = layout_of(Mlp(16), (1, 4, 4)).descriptors()["arch.log10_params"]
    assert (f"model 'mlp_factory' has the name of a training architecture but is another "
            f"network (arch.log10_params {wide:.4g} vs "
            f"{recorded['mlp_factory']['arch.log10_params']:.4g} in training)") in res.format()
    assert "is none of the training architectures" in res.format()
    res = rank_pruners(mlp_factory, ["magnitude"], [0.5], predictor=predictor,
                       input_shape=(1, 4, 4), progress=False)
    assert res.split == "lopo" and "has the name of a training" not in res.format()


def test_in_domain_with_a_predictor_that_records_no_architectures() -> None:
    """A predictor that predates the record (the shipped one without it): the training
    architecture of a zoo name is rebuilt as the leaderboard built it (Fashion-MNIST, 1x28x28)."""
    import copy

    from paizoo.models import create_model
    from paizoo.regression import load_predictor, rank_pruners

    shipped = load_predictor()
    assert "lenet5" in shipped.info["trained_on"]["architectures"]  # rebuilt with the record
    predictor = copy.deepcopy(shipped)
    del predictor.info["trained_on"]["architectures"]
    assert "lenet5" in predictor.info["trained_on"]["models"]

    def metrics_fn(model, mask, shape, groups):  # type: ignore[no-untyped-def]
        return {}  # the split is decided before any metric

    def split(model, shape):  # type: ignore[no-untyped-def]
        return rank_pruners(model, ["magnitude"], [0.5], predictor=predictor,
                            input_shape=shape, metrics_fn=metrics_fn, allow_missing=True,
                            progress=False).split

    assert split("lenet5", (1, 28, 28)) == "lopo"
    assert split("lenet5", (1, 32, 32)) == "loao"  # same name, input size 32: other fc sizes

    def lenet5(seed: int) -> nn.Module:  # a user's model with a clashing name
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    assert split(lenet5, (1, 28, 28)) == "loao"

    def lenet5_zoo(seed: int) -> nn.Module:
        return create_model("lenet5", num_classes=10, in_channels=1, seed=seed)

    lenet5_zoo.__name__ = "lenet5"
    assert split(lenet5_zoo, (1, 28, 28)) == "lopo"
    predictor = shipped  # the recorded descriptors decide the same way
    assert split("lenet5", (1, 28, 28)) == "lopo" and split("lenet5", (1, 32, 32)) == "loao"
    assert split(lenet5, (1, 28, 28)) == "loao"

    # a training model that no record and no zoo model describes: the name decides, said so
    from paizoo.regression import Predictor
    from paizoo.regression.predict import in_domain

    custom = Predictor(AccuracyDropRegressor(), info={"trained_on": {"models": ["my_net"]}})
    split_, note = in_domain(custom, "my_net", layout_of(Mlp(), (1, 4, 4)).descriptors())
    assert split_ == "lopo" and "by its name alone" in note
    assert in_domain(custom, "other", {}) == ("loao", None)


def test_rank_pruners_refuses_a_data_driven_pruner_without_data_before_pruning() -> None:
    """snip listed after magnitude, no dataset/data: refused up front, not after magnitude's
    masks and metrics were computed; the message names the CLI flag too."""
    from paizoo.regression import load_predictor, rank_pruners
    from paizoo.regression.errors import RegressionError

    calls = []

    def metrics_fn(model, mask, shape, groups):  # type: ignore[no-untyped-def]
        calls.append(1)
        return {}

    with pytest.raises(RegressionError, match=r"'snip' is data-driven.*--dataset"):
        rank_pruners(mlp_factory, ["magnitude", "snip"], [0.5], predictor=load_predictor(),
                     input_shape=(1, 4, 4), metrics_fn=metrics_fn, progress=False)
    assert calls == []


@pytest.mark.parametrize("coverage", [0.0, 1.0, 1.5])
def test_rank_pruners_refuses_a_coverage_outside_0_1_before_pruning(coverage: float) -> None:
    """A bad --coverage was a ValueError after every mask was computed, which the CLI reports
    as an unexpected error ('please report it')."""
    from paizoo.regression import load_predictor, rank_pruners
    from paizoo.regression.errors import RegressionError

    calls = []

    def metrics_fn(model, mask, shape, groups):  # type: ignore[no-untyped-def]
        calls.append(1)
        return {}

    with pytest.raises(RegressionError, match=r"coverage must lie in \(0, 1\)"):
        rank_pruners(mlp_factory, ["magnitude"], [0.5], predictor=load_predictor(),
                     input_shape=(1, 4, 4), metrics_fn=metrics_fn, coverage=coverage,
                     progress=False)
    assert calls == []


def test_rank_pruners_names_an_input_shape_the_model_does_not_take() -> None:
    """--input-shape 1,4,5 for a model of 16 inputs: one clear error naming the shape, not
    torch's matmul RuntimeError from inside the metrics (an 'unexpected error' in the CLI)."""
    from paizoo.regression import load_predictor, rank_pruners
    from paizoo.regression.errors import RegressionError

    with pytest.raises(RegressionError, match=r"input of shape 1x4x5"):
        rank_pruners(mlp_factory, ["magnitude"], [0.5], predictor=load_predictor(),
                     input_shape=(1, 4, 5), progress=False)


def test_rank_pruners_refuses_a_factory_that_returns_no_module() -> None:
    from paizoo.regression import load_predictor, rank_pruners
    from paizoo.regression.errors import RegressionError

    def not_a_model(seed: int) -> object:
        return seed

    with pytest.raises(RegressionError, match=r"not_a_model\(seed\) returned int, not an "
                       r"nn.Module"):
        rank_pruners(not_a_model, ["magnitude"], [0.5], predictor=load_predictor(),
                     input_shape=(1, 4, 4), progress=False)


def test_cli_rank_unseen_model_from_a_script(tmp_path, capsys) -> None:
    from paizoo.cli import main

    _agnostic_predictor(tmp_path / "p.skops")
    assert main(["rank", "--model", f"{__name__}:residual_factory", "--input-shape", "1,4,4",
                 "--pruners", "magnitude,random", "--sparsities", "0.5,0.9",
                 "--predictor", str(tmp_path / "p.skops")]) == 0
    out = capsys.readouterr().out
    assert "validated (leave one architecture out)" in out and "validity domain:" in out
    assert "is in no training table" in out
    interval = re.compile(r"\[-?\d+\.\d, -?\d+\.\d\]")  # a ranking row's interval
    assert sum(1 for line in out.splitlines() if interval.search(line)) == 2


def test_cli_features_adds_agnostic_columns_to_a_zoo_table(tmp_path) -> None:
    """`paizoo regress features`: zoo model labels are built for their dataset (LeNet-5 on
    Fashion-MNIST: 5 layers in forward order, conv1 first), family and definitions written."""
    import json

    from paizoo.cli import main

    t = pd.DataFrame({"dataset": ["fashion-mnist"] * 2, "model": ["lenet5", "lenet_300_100"],
                      "pruner": ["p", "p"], "sparsity": [0.5, 0.5], "seed": [0, 0],
                      "accuracy_drop": [1.0, 2.0], "density.conv1.weight": [0.2, np.nan],
                      "density.fc1.weight": [0.7, 0.4], "density.fc3.weight": [0.9, 0.6]})
    t.to_csv(tmp_path / "t.csv", index=False)
    assert main(["regress", "features", "--table", str(tmp_path / "t.csv"), "--out",
                 str(tmp_path / "o.csv")]) == 0
    o = pd.read_csv(tmp_path / "o.csv").set_index("model")
    assert o.loc["lenet5", "arch.depth"] == 5 and o.loc["lenet_300_100", "arch.depth"] == 3
    assert o.loc["lenet5", "density@first"] == 0.2  # conv1 runs first
    assert o.loc["lenet_300_100", "density@first"] == 0.4
    assert o.loc["lenet5", "density@last"] == 0.9  # fc3 runs last
    assert o.loc["lenet5", "density@undef"] == pytest.approx(2 / 5)  # conv2, fc2 absent
    assert o.loc["lenet5", "family"] == "cnn" and o.loc["lenet_300_100", "family"] == "mlp"
    defs = json.loads((tmp_path / "o.features.json").read_text())
    assert set(defs) == set(o.reset_index().columns)


def test_pairs_table_keeps_one_cell_per_config() -> None:
    """An architecture trained with two recipes (configs) gives two ranks per pair."""
    from paizoo.regression.report import _pairs_table

    pairs = pd.DataFrame({"model": ["a", "a", "b"], "pruner": ["p", "p", "p"],
                          "n_pruners": [3, 3, 3], "predicted_rank": [1, 2, 3],
                          "actual_rank": [1, 3, 3], "abs_error": [0, 1, 0]})
    t = _pairs_table(pairs)
    assert t.to_dict("list") == {"held-out pruner": ["p", "mean abs. rank error"],
                                 "a": ["1/1; 2/3", "0.50"], "b": ["3/3", "0.00"]}


def test_one_model_label_with_two_networks_records_both() -> None:
    """A label that names two networks in the training table (e.g. one zoo model built for two
    input sizes) records both descriptor sets, and a request is in domain when it is either;
    the first row's network alone used to be recorded, sending the other one to 'loao'."""
    from paizoo.regression.persistence import Predictor
    from paizoo.regression.predict import in_domain
    from paizoo.regression.train import describe_table

    rows = [{"dataset": ds, "model": m, "pruner": "random", "sparsity": 0.5, "seed": 0,
             "accuracy_drop": 1.0, "arch.depth": depth, "arch.log10_params": lp}
            for ds, m, depth, lp in (("a", "net", 3.0, 4.5), ("a", "net", 3.0, 4.5),
                                     ("b", "net", 3.0, 5.25), ("a", "other", 2.0, 3.0))]
    info = describe_table(pd.DataFrame(rows))
    assert info["architectures"] == {
        "net": [{"arch.depth": 3.0, "arch.log10_params": 4.5},
                {"arch.depth": 3.0, "arch.log10_params": 5.25}],
        "other": {"arch.depth": 2.0, "arch.log10_params": 3.0}}
    predictor = Predictor(estimator=None, info={"trained_on": info})
    for lp in (4.5, 5.25):
        assert in_domain(predictor, "net", {"arch.depth": 3.0, "arch.log10_params": lp}) \
            == ("lopo", None)
    split, note = in_domain(predictor, "net", {"arch.depth": 3.0, "arch.log10_params": 6.0})
    assert split == "loao" and "arch.log10_params 6 vs 4.5 in training" in note
    assert in_domain(predictor, "other", {"arch.depth": 2.0, "arch.log10_params": 3.0}) \
        == ("lopo", None)


def _refused_before_pruning(match: str, model, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """``rank_pruners`` raises RegressionError matching ``match`` and computes no metric."""
    from paizoo.regression import load_predictor, rank_pruners
    from paizoo.regression.errors import RegressionError

    calls = []

    def metrics_fn(model, mask, shape, groups):  # type: ignore[no-untyped-def]
        calls.append(1)
        return {}

    args = {"pruners": ["magnitude"], "sparsities": [0.5], "input_shape": (1, 4, 4), **kwargs}
    with pytest.raises(RegressionError, match=match):
        rank_pruners(model, predictor=load_predictor(), metrics_fn=metrics_fn, progress=False,
                     **args)
    assert calls == []


def test_rank_pruners_refuses_a_module_instance() -> None:
    """An nn.Module instance is callable: it used to be called as factory(seed), i.e. its
    forward on an int, a TypeError the CLI reports as unexpected ('please report it')."""
    _refused_before_pruning(r"Mlp instance, not a factory.*lambda seed", Mlp())


def test_rank_pruners_names_a_factory_that_does_not_take_the_seed() -> None:
    """A class whose constructor takes no seed (a common slip: --model script:MyNet)."""
    class NoSeed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(16, 2)

    _refused_before_pruning(r"factory NoSeed\(seed\) failed \(TypeError: .*must take the "
                            r"seed", NoSeed)


def test_rank_pruners_refuses_options_of_a_pruner_it_does_not_rank() -> None:
    """`-o synflw.rounds=3` (a typo) used to be dropped silently, ranking the defaults."""
    _refused_before_pruning(r"options given for pruner\(s\) 'synflw'.*not among the pruners "
                            r"ranked \(magnitude\)", mlp_factory,
                            pruner_options={"synflw": {"rounds": 3}})


def test_rank_pruners_refuses_model_options_for_a_factory() -> None:
    """A factory is called as factory(seed): model options were dropped silently."""
    _refused_before_pruning(r"model_options \{'hidden': 3\} are given for a model factory",
                            mlp_factory, model_options={"hidden": 3})


def test_rank_pruners_refuses_an_input_shape_other_than_the_datasets() -> None:
    """The dataset's samples feed the data-driven pruners, so another input_shape prunes and
    measures one network on two input sizes (it used to win silently over the dataset's)."""
    from paizoo.data import dataset_info

    shape = tuple(dataset_info("synthetic:1x4x4:2").input_shape)
    assert shape == (1, 4, 4)
    _refused_before_pruning(r"input_shape 1x5x5 is not the shape of dataset "
                            r"'synthetic:1x4x4:2' \(1x4x4\)", mlp_factory,
                            dataset="synthetic:1x4x4:2", input_shape=(1, 5, 5))


INSTANCE = Mlp()


def test_cli_rank_refuses_a_module_instance_in_one_line(capsys) -> None:
    from paizoo.cli import main

    assert main(["rank", "--model", f"{__name__}:INSTANCE", "--input-shape", "1,4,4",
                 "--pruners", "magnitude", "--sparsities", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("paizoo: error: ")
    assert "is an nn.Module instance" in err[0] and "unexpected" not in err[0]


def test_goals_count_pairs_and_cells_apart() -> None:
    """An architecture trained with two recipes has two rank cells per (architecture, pruner)
    pair: the goal line said 'over 124 pairs' where there were 124 cells of 99 pairs."""
    from paizoo.regression.evaluate import Evaluation
    from paizoo.regression.report import goals_text

    pairs = pd.DataFrame({"model": ["a", "a", "a", "a", "b"], "pruner": ["p", "p", "q", "q", "p"],
                          "n_pruners": 2, "predicted_rank": [1, 2, 2, 1, 1],
                          "actual_rank": [1, 1, 2, 2, 2]})
    pairs["abs_error"] = (pairs["predicted_rank"] - pairs["actual_rank"]).abs()
    n_pairs = len({(m, p) for m, p in zip(pairs["model"], pairs["pruner"], strict=True)})
    table = pd.DataFrame({"dataset": "d", "model": ["a", "b"], "pruner": "p", "sparsity": 0.5,
                          "seed": 0, "accuracy_drop": [1.0, 2.0]})
    ev = Evaluation(table=table, scores=pd.DataFrame(columns=["feature_set", "split", "model"]),
                    predictions={}, best="agnostic", model="hgb", pairs=pairs)
    line = next(t for t in goals_text(ev) if "held-out pruner" in t)
    assert f"{pairs['abs_error'].mean():.2f} over {len(pairs)} (pair, config) cells of " \
           f"{n_pairs} (architecture, pruner) pairs" in line


def test_ranking_table_leads_with_the_architecture_unseen_row() -> None:
    """The question of a user ranking known pruners on their own model: the pruner order by
    the leave-one-architecture-out predictions. Checked against scipy's tau-b on hand-grouped
    means (per (model, sparsity), and over the mean across sparsities)."""
    from scipy.stats import kendalltau

    from paizoo.regression.evaluate import Evaluation
    from paizoo.regression.report import LOAO_RANKING, _unseen_rows

    rng = np.random.default_rng(3)
    rows = [{"dataset": "d", "model": m, "pruner": p, "sparsity": s, "seed": seed}
            for m in ("a", "b") for p in ("p", "q", "r", "t") for s in (0.5, 0.9)
            for seed in (0, 1)]
    table = pd.DataFrame(rows)
    table["accuracy_drop"] = rng.normal(size=len(table))
    pred = rng.normal(size=len(table))
    ev = Evaluation(table=table, scores=pd.DataFrame(), best="agnostic", model="hgb",
                    predictions={("agnostic", "loao", "hgb"): pred})
    out = _unseen_rows(ev)
    assert list(out["predictions"]) == [LOAO_RANKING]
    t = table.assign(pred=pred)
    per, mean = [], []
    for _, g in t.groupby(["model", "sparsity"]):
        m = g.groupby("pruner")[["pred", "accuracy_drop"]].mean()
        per.append(kendalltau(m["pred"], m["accuracy_drop"]).statistic)
    for _, g in t.groupby("model"):
        m = g.groupby("pruner")[["pred", "accuracy_drop"]].mean()
        mean.append(kendalltau(m["pred"], m["accuracy_drop"]).statistic)
    row = out.iloc[0]
    assert row["contexts"] == 4
    assert row["τ per sparsity"] == pytest.approx(np.mean(per))
    assert row["τ mean ranking"] == pytest.approx(np.mean(mean))


def test_predictor_records_how_well_it_orders_the_pruners() -> None:
    """R^2 / Spearman over all masks mostly rank the sparsities; the predictor also records
    Kendall tau of the pruner order by its leave-one-architecture-out predictions (refit here
    by hand, tau by scipy on hand-grouped means), and `describe` prints it under its split."""
    from scipy.stats import kendalltau

    from paizoo.regression import train_predictor

    table = _agnostic_table()
    table["accuracy_drop"] += np.random.default_rng(0).normal(0.0, 3.0, len(table))
    predictor = train_predictor(table, groups="agnostic", model="ridge")
    taus = set()
    for column, split in (("model", "leave one architecture out"),
                          ("pruner", "leave one pruner out")):
        pred = np.full(len(table), np.nan)
        for m in table[column].unique():
            held = (table[column] == m).to_numpy()
            est = AccuracyDropRegressor(groups=["agnostic"], model="ridge").fit(table[~held])
            pred[held] = est.predict(table[held])
        t = table.assign(pred=pred)
        per = [kendalltau(*g.groupby("pruner")[["pred", "accuracy_drop"]].mean().T.values)
               .statistic for _, g in t.groupby(["model", "sparsity"])]
        mean = [kendalltau(*g.groupby("pruner")[["pred", "accuracy_drop"]].mean().T.values)
                .statistic for _, g in t.groupby("model")]
        val = predictor.info["validation"][split]
        assert val["rank_tau_per_sparsity"] == pytest.approx(np.nanmean(per))
        assert val["rank_tau_mean"] == pytest.approx(np.nanmean(mean))
        taus |= {round(np.nanmean(per), 6), round(np.nanmean(mean), 6)}
        text = predictor.describe(splits=[split])
        assert (f"pruner order ({split}): Kendall tau {np.nanmean(mean):.3f} of the ranking "
                f"by the mean over sparsities") in text
    assert len(taus) > 1  # the splits order the pruners differently: a discriminating check


def test_cli_model_factory_from_a_script_in_the_current_folder(tmp_path, monkeypatch) -> None:
    """The README's `paizoo rank --model myscript:make_net`: the `paizoo` console script puts
    its own folder on sys.path, not the current one, so ./myscript.py was not found."""
    import os
    import sys

    from paizoo.cli.rank import _model_arg

    (tmp_path / "r5_user_script.py").write_text(
        "from torch import nn\n\ndef make_net(seed):\n    return nn.Linear(3, seed + 1)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path
                                      if p not in ("", os.getcwd(), str(tmp_path))])
    monkeypatch.delitem(sys.modules, "r5_user_script", raising=False)
    factory = _model_arg("r5_user_script:make_net")
    net = factory(4)
    assert isinstance(net, nn.Linear) and net.out_features == 5
    sys.modules.pop("r5_user_script", None)


def test_rank_pruners_uses_the_shipped_predictor_by_default() -> None:
    """`rank_pruners(factory, pruners, sparsities, input_shape=...)`, as the README writes it,
    needed predictor= (a TypeError); by default it is the shipped one, as for `paizoo rank`."""
    from paizoo.regression import load_predictor, rank_pruners

    args = (mlp_factory, ["magnitude", "random"], [0.5, 0.9])
    default = rank_pruners(*args, input_shape=(1, 4, 4), progress=False)
    explicit = rank_pruners(*args, input_shape=(1, 4, 4), progress=False,
                            predictor=load_predictor())
    assert default.predictor.path == load_predictor().path
    pd.testing.assert_frame_equal(default.ranking, explicit.ranking)
    assert default.split == explicit.split == "loao"


@pytest.mark.parametrize("dense", [0.5, 0.9, 1.0])
def test_rank_pruners_refuses_a_dense_accuracy_given_as_a_fraction(dense: float) -> None:
    """--dense-accuracy 0.9 (a fraction) clipped every predicted drop to 0.9 and tied all
    pruners, ranked then by name: a silently wrong ranking."""
    _refused_before_pruning(rf"dense_accuracy {dense:g} is read in points.*"
                            rf"e\.g\. {100 * dense:g} for a fraction", mlp_factory,
                            dense_accuracy=dense)


def test_regress_eval_help_names_every_split_it_runs() -> None:
    """Its description listed 'leave-one-model-out' (the old name) and no family split."""
    from paizoo.cli import build_parser
    from paizoo.cli.regress import DEFAULT_SPLITS
    from paizoo.regression.splits import SPLITS

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    regress = sub.choices["regress"]
    evaluate = next(a for a in regress._actions if a.dest == "regress_command").choices["eval"]
    text = " ".join(evaluate.description.split())
    for kind in DEFAULT_SPLITS:
        assert SPLITS[kind].replace(" ", "-").replace("random-K", "random K") in text
    assert "leave-one-model-out" not in text


def test_rank_table_prints_no_negative_zero() -> None:
    """An interval bound of -0.04 printed as '[-0.0, 2.8]' (seen on a user's MLP)."""
    from paizoo.regression import Predictor
    from paizoo.regression.predict import RankResult

    ranking = pd.DataFrame({"rank": [1], "pruner": ["p"], "s=0.9": [-0.004], "mean": [-0.004],
                            "low": [-0.04], "high": [2.84], "tied_with": [""]})
    res = RankResult(rows=pd.DataFrame(), ranking=ranking, coverage=0.9, split="loao",
                     predictor=Predictor(AccuracyDropRegressor(), info={}))
    row = next(line for line in res.format().splitlines() if line.strip().startswith("1 "))
    assert row.split() == ["1", "p", f"{0.0:.2f}", f"{0.0:.2f}", "[0.0,", "2.8]", "-"]


def test_rank_summary_paragraph_names_the_order_of_its_contexts() -> None:
    """'7/7/11/...': ten ranks for eight architectures (two with two recipes), said to be 'one
    per (dataset, model)'; the paragraph now names each position."""
    from paizoo.regression.evaluate import ranking_summary
    from paizoo.regression.report import _context_order

    ctx = [("d", "b", "c1"), ("d", "a", "c2"), ("d", "a", "c1")]
    rows = [{"held_out": h, "dataset": d, "model": m, "config": c, "sparsity": "mean",
             "kendall_tau": 0.0, "rbo": 0.5, "predicted_rank": r, "actual_rank": r}
            for h in ("p", "q") for r, (d, m, c) in enumerate(ctx, 1)]
    ranking = pd.DataFrame(rows).sort_values(["held_out", "dataset", "model", "config"])
    summary = ranking_summary(ranking.assign(sparsity=0.5).pipe(
        lambda per: pd.concat([per, ranking])))
    ranks = summary.set_index("held_out").loc["p", "rank_predicted"].split("/")
    by_position = {c: ranks[i] for i, c in enumerate(sorted(ctx))}
    assert by_position == {c: str(ctx.index(c) + 1) for c in ctx}
    assert _context_order(ranking) == "a (c1), a (c2), b"


def test_per_architecture_table_has_the_pruner_order_tau() -> None:
    """Per held-out architecture, ρ is over runs of every sparsity (mostly their order); the
    pruner order on that architecture is checked against scipy's tau-b on hand-grouped means."""
    from scipy.stats import kendalltau

    from paizoo.regression.evaluate import Evaluation
    from paizoo.regression.report import per_architecture

    rng = np.random.default_rng(5)
    table = pd.DataFrame([{"dataset": "d", "model": m, "pruner": p, "sparsity": s, "seed": 0}
                          for m in ("a", "b") for p in ("p", "q", "r", "t", "u")
                          for s in (0.5, 0.9)])
    table["accuracy_drop"] = rng.normal(size=len(table))
    pred = rng.normal(size=len(table))
    ev = Evaluation(table=table, scores=pd.DataFrame(), best="agnostic", model="hgb",
                    predictions={("agnostic", "loao", "hgb"): pred})
    got = per_architecture(ev).set_index("held-out architecture")["τ pruner order"]
    t = table.assign(pred=pred)
    for m, g in t.groupby("model"):
        means = g.groupby("pruner")[["pred", "accuracy_drop"]].mean()
        assert got[m] == pytest.approx(kendalltau(means["pred"], means["accuracy_drop"])
                                       .statistic)


def test_rank_header_does_not_claim_coverage_for_the_mean_over_sparsities() -> None:
    """The interval of the mean over sparsities is the mean of the per-mask bounds: it has the
    stated coverage per mask, and for the mean only when the errors at the sparsities move
    together (paizoo.regression.predict's own caveat); the header claimed '90% split-conformal
    interval of the mean'."""
    from paizoo.regression import Predictor
    from paizoo.regression.predict import RankResult

    def header(cols: list[str]) -> str:
        ranking = pd.DataFrame({"rank": [1], "pruner": ["p"], **{c: [1.0] for c in cols},
                                "mean": [1.0], "low": [0.0], "high": [2.0], "tied_with": [""]})
        res = RankResult(rows=pd.DataFrame(), ranking=ranking, coverage=0.9, split="loao",
                         predictor=Predictor(AccuracyDropRegressor(), info={}))
        return res.format().splitlines()[2]

    assert "interval of each mask, averaged over the sparsities" in header(["s=0.5", "s=0.9"])
    assert "interval of the mean" not in header(["s=0.5", "s=0.9"])
    assert "averaged" not in header(["s=0.9"])  # one sparsity: the mask's own interval


def test_cli_rank_out_in_a_missing_folder_fails_before_any_mask(tmp_path, capsys,
                                                                monkeypatch) -> None:
    """paizoo's CLI creates no folder for an output file (paizoo.cli's rule, output_file);
    rank's --out created one, and a bad --out only failed after every mask was computed."""
    import paizoo.regression.predict as predict
    from paizoo.cli import main

    calls = []
    monkeypatch.setattr(predict, "paizoo_metrics", lambda *a: calls.append(1) or {})
    out = tmp_path / "missing" / "rows.csv"
    assert main(["rank", "--model", f"{__name__}:mlp_factory", "--input-shape", "1,4,4",
                 "--pruners", "magnitude", "--sparsities", "0.5", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("paizoo: error: --out ")
    assert f"the folder {out.parent} does not exist" in err[0]
    assert not out.parent.exists() and calls == []


@pytest.mark.parametrize("argv", [
    ["regress", "build", "--db", "{tmp}/absent.db"],
    ["regress", "features", "--table", "{tmp}/absent.csv"],
    ["regress", "eval", "--table", "{tmp}/absent.csv"],
    ["regress", "train", "--table", "{tmp}/absent.csv"],
])
def test_cli_regress_out_in_a_missing_folder_is_refused_first(argv, tmp_path, capsys) -> None:
    """Their outputs' folders were created after the work (a build of every mask's metrics, a
    cross-validation), against the CLI's rule; now --out is checked before any input is read."""
    from paizoo.cli import main

    out = tmp_path / "missing" / "out.csv"
    argv = [a.format(tmp=tmp_path) for a in argv] + ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--out {out}: the folder {out.parent} does not exist" in err[0]
    assert not out.parent.exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"sparsities": [0.9, 0.90]}, r"each sparsity once: got \[0\.9, 0\.9\]"),
    ({"seeds": [0, 0]}, r"each seed once: got \[0, 0\]"),
    ({"seeds": []}, r"at least one pruner, one sparsity and one seed"),
])
def test_rank_pruners_refuses_repeated_sparsities_or_seeds(kwargs, match) -> None:
    """--sparsities 0.9,0.90 pruned and measured every mask twice, and the title counted two
    sparsities over a table of one column; --seeds 0,0 averaged a seed with itself."""
    _refused_before_pruning(match, mlp_factory, **kwargs)


def test_rank_pruners_refuses_num_classes_other_than_the_datasets() -> None:
    """num_classes=100 with a 2-class dataset won silently (a zoo model with 100 outputs,
    pruned with the dataset's 2-class batches)."""
    from paizoo.data import dataset_info

    assert dataset_info("synthetic:1x4x4:2").num_classes == 2
    _refused_before_pruning(r"num_classes 100 is not dataset 'synthetic:1x4x4:2'.s 2",
                            mlp_factory, dataset="synthetic:1x4x4:2", input_shape=None,
                            num_classes=100)


def test_rank_pruners_takes_one_pruner_sparsity_or_seed_alone() -> None:
    """rank_pruners(f, "synflow", 0.9) iterated the name's letters ('unknown pruner s') and
    the float (a TypeError); alone they mean one-element lists."""
    from paizoo.regression import rank_pruners

    one = rank_pruners(mlp_factory, "magnitude", np.float64(0.5), seeds=np.int64(1),
                       input_shape=(1, 4, 4),
                       progress=False)
    listed = rank_pruners(mlp_factory, ["magnitude"], [0.5], seeds=[1], input_shape=(1, 4, 4),
                          progress=False)
    pd.testing.assert_frame_equal(one.ranking, listed.ranking)
    assert one.rows["seed"].tolist() == [1]


def test_rank_pruners_refuses_a_seed_that_is_not_an_integer() -> None:
    _refused_before_pruning(r"seeds must be integers, got \[0\.5\]", mlp_factory, seeds=[0.5])


def test_validity_notes_name_an_input_shape_outside_the_training_data() -> None:
    """The predictor records its datasets' input shapes (printed in its validity domain), but a
    request at another size (timm resnet18 at 3x224x224 against a 1x28x28 corpus) had no note."""
    from paizoo.regression import Predictor
    from paizoo.regression.predict import validity_notes

    pred = Predictor(AccuracyDropRegressor(), info={"trained_on": {
        "models": ["m"], "datasets": ["a", "b"], "input_shapes": {"a": [1, 28, 28], "b": None}}})

    def notes(shape):  # type: ignore[no-untyped-def]
        return [n for n in validity_notes(pred, dataset=None, model="m", sparsities=[0.5],
                                          pruners=[], split="lopo", input_shape=shape)
                if n.startswith("input shape")]

    assert notes((1, 28, 28)) == [] and notes(None) == []
    assert notes((3, 32, 32)) == ["input shape 3x32x32 is none of the training data's "
                                  "(1x28x28): the masks' metrics and the drops extrapolate to "
                                  "another input size"]


def test_rank_pruners_checks_every_sparsity_before_any_mask() -> None:
    """[0.5, 1.5]: the masks and metrics at 0.5 were computed before 1.5 failed in prune."""
    from paizoo.errors import SparsityError
    from paizoo.regression import rank_pruners

    calls = []

    def metrics_fn(model, mask, shape, groups):  # type: ignore[no-untyped-def]
        calls.append(1)
        return {}

    with pytest.raises(SparsityError, match=r"sparsity=1\.5 is out of range"):
        rank_pruners(mlp_factory, ["magnitude"], [0.5, 1.5], input_shape=(1, 4, 4),
                     metrics_fn=metrics_fn, progress=False)
    assert calls == []
