"""Group ``scatter`` against an explicit-loop transcription of Dey et al.'s definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _metrics_testlib import random_mask, tiny_cnn, tiny_mlp

import paizoo.metrics as pm
from paizoo.masks import Mask
from paizoo.metrics.scatter import junction_scatter, scatter_report


def loop_scatter(a: np.ndarray, window: int, forward: bool) -> list[float]:
    """Per-neuron scatter with explicit loops (forward: output neurons vs input windows)."""
    n_out, n_in = a.shape
    ideal = window * a.sum() / (n_in * n_out)
    scored, windowed = (n_out, n_in) if forward else (n_in, n_out)
    out = []
    for k in range(scored):
        ratios = []
        for j in range(windowed // window):
            members = range(j * window, (j + 1) * window)
            conn = sum(a[k, i] if forward else a[i, k] for i in members)
            ratios.append(min(conn / ideal, 1.0))
        out.append(sum(ratios) / len(ratios))
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("window", [1, 3, 4])
def test_views_match_loop_definition(seed, window):
    rng = np.random.default_rng(seed)
    a = (rng.random((7, 13)) < 0.3).astype(float)
    fwd, bwd = junction_scatter(a, window)
    assert fwd == pytest.approx(loop_scatter(a, window, True))
    assert bwd == pytest.approx(loop_scatter(a, window, False))


def test_fully_connected_and_evenly_spread_junctions_score_one():
    fwd, bwd = junction_scatter(np.ones((5, 8)), 2)
    assert np.allclose(fwd, 1) and np.allclose(bwd, 1)
    # 16 inputs, 4 outputs, output k reads inputs k, k+4, k+8, k+12: one per window of 4
    a = np.zeros((4, 16))
    for k in range(4):
        a[k, k::4] = 1
    fwd, bwd = junction_scatter(a, "auto")  # density 1/4 -> window 4
    assert np.allclose(fwd, 1) and np.allclose(bwd, 1)


def test_clustered_junction_scores_low():
    a = np.zeros((4, 16))
    a[:2, :8] = 1  # outputs 0-1 read only the first half, outputs 2-3 the second half
    a[2:, 8:] = 1
    fwd, _ = junction_scatter(a, 4)  # ideal 2 per window; half the windows are empty
    assert np.allclose(fwd, 0.5)


def test_io_product_counts_paths_and_min_covers_every_view():
    a1 = (np.random.default_rng(0).random((5, 6)) < 0.5).astype(float)
    a2 = (np.random.default_rng(1).random((3, 5)) < 0.5).astype(float)
    report = scatter_report({"a": a1, "b": a2}, window=2)
    fwd, bwd = junction_scatter(a2 @ a1, 2)
    assert report.values["io_forward"] == pytest.approx(fwd.mean())
    assert report.values["io_backward"] == pytest.approx(bwd.mean())
    assert report.scatter == min(report.values.values())
    assert report.vectors["forward.a"].shape == (5,)


def test_group_on_mlp_and_cnn():
    torch.manual_seed(0)
    model = tiny_mlp()
    mask = random_mask(model, 0.6, 0)
    row = pm.compute(model, mask, groups=["scatter"], options={"scatter": {"window": 2}})
    mats = {n: mask[n].numpy().astype(float) for n in mask}
    ref = scatter_report(mats, window=2)
    for key, value in ref.values.items():
        assert row[f"scatter.{key}"] == pytest.approx(value)
    assert row["scatter.min"] == pytest.approx(ref.scatter)

    cnn = tiny_cnn()  # one Linear junction: io = that junction
    row = pm.compute(cnn, Mask.ones(cnn), groups=["scatter"])
    assert row["scatter.min"] == 1.0 and row["scatter.io_forward"] == 1.0

    conv_only = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    row = pm.compute(conv_only, Mask.ones(conv_only), groups=["scatter"])
    assert math.isnan(row["scatter.min"])


class _ResidualMlp(torch.nn.Module):
    """x -> a -> h; h + b(h) -> c: the end-to-end junction is C (I + B) A, not C B A."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (torch.nn.Linear(6, 6), torch.nn.Linear(6, 6),
                                  torch.nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return self.c(h + self.b(h))


@pytest.mark.parametrize("seed", range(3))
def test_io_scatter_of_a_residual_mlp_counts_the_shortcut(seed):
    torch.manual_seed(seed)
    model = _ResidualMlp()
    mask = random_mask(model, 0.5, seed)
    if seed == 0:  # the branch fully pruned: data still flows through the shortcut
        mask = Mask({**mask, "b.weight": torch.zeros(6, 6)})
    a, b, c = (mask[n].double().numpy() for n in ("a.weight", "b.weight", "c.weight"))
    fwd, bwd = junction_scatter(c @ (np.eye(6) + b) @ a)
    row = pm.compute(model, mask, (6,), groups=["scatter"])
    assert row["scatter.io_forward"] == pytest.approx(fwd.mean())
    assert row["scatter.io_backward"] == pytest.approx(bwd.mean())
