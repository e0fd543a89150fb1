"""SNIP (Lee et al. 2019): scores against a hand-written backward pass, exact counts, safety."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _pruner_testlib import ScoreRecorder, prune_checking_collapse
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import paizoo
from paizoo.diagnostics import BranchCollapseWarning
from paizoo.errors import MissingDataError, ScoreError
from paizoo.models.registry import create_model
from paizoo.pruners.snip import SNIP
from paizoo.sparsity import kept_count


class RecordingSNIP(ScoreRecorder, SNIP):
    pass


def two_layer(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))


def toy_batches(seed: int = 1, sizes: tuple[int, ...] = (6, 4)) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, 4, generator=gen), torch.randint(0, 3, (b,), generator=gen))
            for b in sizes]


def hand_gradients(model: nn.Sequential, batches: list) -> dict[str, torch.Tensor]:
    """Backprop of mean cross-entropy through Linear-ReLU-Linear written out by hand (float64)."""
    w1, b1 = model[0].weight.detach().double(), model[0].bias.detach().double()
    w2, b2 = model[2].weight.detach().double(), model[2].bias.detach().double()
    g1, g2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for x, y in batches:
        x = x.double()
        h = x @ w1.T + b1
        a = h.clamp(min=0)
        z = a @ w2.T + b2
        p = torch.exp(z - z.max(dim=1, keepdim=True).values)
        p = p / p.sum(dim=1, keepdim=True)
        onehot = torch.zeros_like(p)
        onehot[torch.arange(len(y)), y] = 1.0
        dz = (p - onehot) / len(y)  # d(mean CE)/dz
        g2 += dz.T @ a
        dh = (dz @ w2) * (h > 0).double()
        g1 += dh.T @ x
    n = len(batches)
    return {"0.weight": g1 / n, "2.weight": g2 / n}


def test_scores_equal_hand_backprop() -> None:
    model, batches = two_layer(), toy_batches()
    pruner = RecordingSNIP()
    mask = paizoo.prune(model, pruner, sparsity=0.5, data=batches)
    grads = hand_gradients(model, batches)
    (scores,) = pruner._recorded
    for name, param in paizoo.prunable_parameters(model).items():
        expected = (param.detach().double() * grads[name]).abs()
        torch.testing.assert_close(scores[name].double(), expected, rtol=1e-5, atol=1e-8)
    # the mask keeps exactly the top-k of the hand-computed scores
    flat = torch.cat([(p.detach().double() * grads[n]).abs().flatten()
                      for n, p in paizoo.prunable_parameters(model).items()])
    k = kept_count(0.5, flat.numel())
    kept = torch.cat([mask[n].flatten() for n in mask])
    assert int(kept.sum()) == k
    assert flat[kept].min() > flat[~kept].max()


def test_all_batches_are_used() -> None:
    model, batches = two_layer(), toy_batches(sizes=(5, 5, 5))
    one, three = RecordingSNIP(), RecordingSNIP()
    paizoo.prune(model, one, sparsity=0.5, data=batches[:1])
    paizoo.prune(model, three, sparsity=0.5, data=batches)
    grads = hand_gradients(model, batches)
    w = model[0].weight.detach().double()
    torch.testing.assert_close(three._recorded[0]["0.weight"].double(),
                               (w * grads["0.weight"]).abs(), rtol=1e-5, atol=1e-8)
    assert not torch.allclose(one._recorded[0]["0.weight"], three._recorded[0]["0.weight"])


def test_train_mode_option() -> None:
    """Dropout is active in train mode (scores differ from eval mode) and inactive in eval mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    batches = toy_batches()
    train, evaluate = RecordingSNIP(), RecordingSNIP(train_mode=False)
    paizoo.prune(model, train, sparsity=0.5, data=batches)
    paizoo.prune(model, evaluate, sparsity=0.5, data=batches)
    eval_model = copy.deepcopy(model).eval()
    loss = sum(F.cross_entropy(eval_model(x), y) for x, y in batches) / len(batches)
    g = torch.autograd.grad(loss, [eval_model[0].weight])[0]
    torch.testing.assert_close(evaluate._recorded[0]["0.weight"],
                               (eval_model[0].weight * g).abs().detach())
    assert not torch.allclose(train._recorded[0]["0.weight"], evaluate._recorded[0]["0.weight"])


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_exact_global_counts(sparsity: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10))
    data = (torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,)))
    mask = paizoo.prune(model, "snip", sparsity=sparsity, data=data)
    assert mask.num_kept == kept_count(1 - sparsity, mask.num_total)


@settings(max_examples=25, deadline=None)
@given(density=st.floats(min_value=0.05, max_value=1.0), seed=st.integers(0, 1000),
       scope=st.sampled_from(["global", "layer"]))
def test_property_counts_and_order(density: float, seed: int, scope: str) -> None:
    model = two_layer(seed)
    pruner = RecordingSNIP(scope=scope)
    mask = prune_checking_collapse(model, pruner, density=density, data=toy_batches(seed))
    scores = pruner._recorded[0]
    if scope == "global":
        assert mask.num_kept == kept_count(density, mask.num_total)
        kept = torch.cat([scores[n][mask[n]] for n in mask])
        pruned = torch.cat([scores[n][~mask[n]] for n in mask])
        if kept.numel() and pruned.numel():
            assert kept.min() >= pruned.max()
    else:
        for layer in mask.layers():
            assert layer.kept == kept_count(density, layer.total)
            s, m = scores[layer.name], mask[layer.name]
            if m.any() and (~m).any():
                assert s[m].min() >= s[~m].max()


def test_determinism_with_dropout() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 3))
    data = toy_batches()
    a = paizoo.prune(model, "snip", sparsity=0.8, data=data, seed=3)
    b = paizoo.prune(model, "snip", sparsity=0.8, data=data, seed=3)
    assert a == b
    others = [paizoo.prune(model, "snip", sparsity=0.8, data=data, seed=s) for s in range(4, 8)]
    assert any(o != a for o in others)  # dropout draws depend on the seed


def test_missing_data_error() -> None:
    with pytest.raises(MissingDataError, match="data="):
        paizoo.prune(two_layer(), "snip", sparsity=0.5)


def test_nan_scores_raise() -> None:
    model = two_layer()
    with torch.no_grad():
        model[2].bias[0] = float("nan")
    with pytest.raises(ScoreError, match="NaN"):
        paizoo.prune(model, "snip", sparsity=0.5, data=toy_batches())


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grad": {n: p.grad for n, p in model.named_parameters()},
        "dtype": {n: p.dtype for n, p in model.named_parameters()},
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["dtype"] == after["dtype"]
    assert all(g is None for g in after["grad"].values())
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k


@pytest.mark.parametrize("train_mode", [True, False])
def test_model_unchanged(train_mode: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.2),
                          nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    model[1].eval()  # a mixed-mode model: modes must come back exactly as they were
    model[5].bias.requires_grad_(False)
    data = (torch.randn(10, 3, 8, 8), torch.randint(0, 5, (10,)))
    before, rng = snapshot(model), torch.get_rng_state()
    paizoo.prune(model, "snip", sparsity=0.7, data=data, train_mode=train_mode)
    assert_same(before, snapshot(model))
    assert torch.equal(rng, torch.get_rng_state())


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_resnet18_small_input(source: str) -> None:
    model = create_model(source, num_classes=10, seed=0)
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen))
    if source.startswith("timm"):  # zero_init_last: the residual branches score exactly 0
        with pytest.warns(BranchCollapseWarning, match="zero_init_last=False"):
            mask = paizoo.prune(model, "snip", sparsity=0.9, data=data)
    else:
        mask = prune_checking_collapse(model, "snip", sparsity=0.9, data=data)
    assert mask.num_kept == kept_count(0.1, mask.num_total)
    assert set(mask) == set(paizoo.prunable_parameters(model))
