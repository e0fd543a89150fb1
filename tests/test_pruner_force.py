"""Iterative SNIP and FORCE (de Jorge et al. 2021): resurrection, monotonicity, hand-made scores."""

from __future__ import annotations

import itertools

import pytest
import torch
from _pruner_testlib import ScoreRecorder, prune_checking_collapse
from torch import nn

import paizoo
from paizoo.diagnostics import BranchCollapseWarning
from paizoo.errors import MissingDataError, ScoreError
from paizoo.models.registry import create_model
from paizoo.pruners.force import FORCE, IterativeSNIP
from paizoo.sparsity import kept_count


class RecordingFORCE(ScoreRecorder, FORCE):
    pass


class RecordingIterativeSNIP(ScoreRecorder, IterativeSNIP):
    pass


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target) ** 2).mean()


def hand_net() -> nn.Sequential:
    """f(x) = v . (W x), no biases, no nonlinearity; W = [[a, b], [c, d]], v = [p, q].

    With x = (1, 1), target 0 and delta = 2 f (the MSE derivative), the FORCE score of each
    weight is |theta_0 * dL/dtheta| at the masked weights:
    a: |a v1 delta|, b: |b v1 delta|, c: |c v2 delta|, d: |d v2 delta|,
    p: |p h1 delta|, q: |q h2 delta| with h = W_masked x.
    """
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, -1.9], [1.95, 0.01]]))
        model[1].weight.copy_(torch.tensor([[1.0, 1.0]]))
    return model


HAND_DATA = (torch.ones(1, 2), torch.zeros(1, 1))


def test_force_resurrects_a_pruned_weight() -> None:
    """Round 1 (dense, h1 = a + b = 0.1) prunes p and b; at the masked net h1 = a = 2, so p's
    FORCE score |p * h1 * delta| = 2 |delta| tops round 2 and p comes back."""
    model = hand_net()
    pruner = RecordingFORCE(rounds=2)
    mask = paizoo.prune(model, pruner, density=0.3, data=HAND_DATA, loss_fn=mse)
    # densities 0.3^(1/2) then 0.3 of 6 weights: 3 kept after round 1, 2 after round 2
    after_round_1 = pruner._masks[1]
    assert after_round_1["0.weight"].tolist() == [[True, False], [True, False]]
    assert after_round_1["1.weight"].tolist() == [[False, True]]
    assert bool(mask["1.weight"][0, 0])  # p is back
    assert mask.num_kept == 2
    # round 2 scores by hand: W_m = [[2, 0], [1.95, 0]], v_m = [0, 1], f = 1.95, delta = 3.9
    delta = 2 * 1.95
    expected_w = torch.tensor([[0.0, 0.0], [1.95 * 1.0 * delta, 0.01 * 1.0 * delta]])
    expected_v = torch.tensor([[1.0 * 2.0 * delta, 1.0 * 1.95 * delta]])
    torch.testing.assert_close(pruner._scores[1]["0.weight"], expected_w)
    torch.testing.assert_close(pruner._scores[1]["1.weight"], expected_v)


def test_iterative_snip_cannot_resurrect() -> None:
    model = hand_net()
    pruner = RecordingIterativeSNIP(rounds=2)
    mask = paizoo.prune(model, pruner, density=0.3, data=HAND_DATA, loss_fn=mse)
    assert not bool(mask["1.weight"][0, 0])  # p stays pruned
    assert mask.num_kept == 2
    # iterative SNIP scores |theta * g| at the masked weights: pruned weights score 0
    for name, s in pruner._scores[1].items():
        assert bool((s[~pruner._masks[1][name]] == 0).all())


def random_mlp(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                         nn.Linear(16, 4))


def random_data(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(12, 8, generator=gen), torch.randint(0, 4, (12,), generator=gen))
            for _ in range(2)]


def test_force_is_not_monotone_iterative_snip_is() -> None:
    force, isnip = RecordingFORCE(rounds=10), RecordingIterativeSNIP(rounds=10)
    prune_checking_collapse(random_mlp(0), force, sparsity=0.98, data=random_data(0))
    prune_checking_collapse(random_mlp(0), isnip, sparsity=0.98, data=random_data(0))

    def resurrected(masks: list[dict[str, torch.Tensor]]) -> int:
        return sum(int((~before[n] & after[n]).sum())
                   for before, after in itertools.pairwise(masks) for n in before)

    assert resurrected(isnip._masks) == 0
    assert resurrected(force._masks) > 0


def test_force_scores_use_dense_initial_weights() -> None:
    """|theta_0 * g| where g is the gradient of the masked net (autograd on a masked copy)."""
    model, data = random_mlp(1), random_data(1)
    pruner = RecordingFORCE(rounds=3)
    paizoo.prune(model, pruner, sparsity=0.9, data=data)
    mask = pruner._masks[2]
    masked = random_mlp(1)
    names = list(mask)
    with torch.no_grad():
        for n in names:
            masked.get_parameter(n).mul_(mask[n])
    loss = sum(nn.functional.cross_entropy(masked(x), y) for x, y in data) / len(data)
    grads = torch.autograd.grad(loss, [masked.get_parameter(n) for n in names])
    for n, g in zip(names, grads, strict=True):
        expected = (model.get_parameter(n).detach() * g).abs()
        torch.testing.assert_close(pruner._scores[2][n], expected)
        assert bool((pruner._scores[2][n][~mask[n]] > 0).any())  # pruned weights still scored


@pytest.mark.parametrize("name", ["force", "iterative_snip"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
def test_exact_counts(name: str, sparsity: float) -> None:
    mask = prune_checking_collapse(random_mlp(2), name, sparsity=sparsity, data=random_data(2),
                                   rounds=8)
    assert mask.num_kept == kept_count(1 - sparsity, mask.num_total)


@pytest.mark.parametrize("name", ["force", "iterative_snip"])
def test_layer_scope_counts(name: str) -> None:
    mask = paizoo.prune(random_mlp(3), name, sparsity=0.8, data=random_data(3), rounds=5,
                        scope="layer")
    for layer in mask.layers():
        assert layer.kept == kept_count(0.2, layer.total)


def test_defaults() -> None:
    for cls in (FORCE, IterativeSNIP):
        pruner = cls()
        assert pruner.rounds == 60 and pruner.schedule == "exponential"
        assert pruner.train_mode and pruner.scope == "global" and cls.requires_data
    assert not FORCE.monotone and IterativeSNIP.monotone


@pytest.mark.parametrize("name", ["force", "iterative_snip"])
def test_determinism(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    a = paizoo.prune(model, name, sparsity=0.9, data=random_data(4), rounds=6, seed=5)
    b = paizoo.prune(model, name, sparsity=0.9, data=random_data(4), rounds=6, seed=5)
    assert a == b


@pytest.mark.parametrize("name", ["force", "iterative_snip"])
def test_missing_data_and_nan(name: str) -> None:
    with pytest.raises(MissingDataError, match="data="):
        paizoo.prune(random_mlp(0), name, sparsity=0.5)
    model = random_mlp(0)
    with torch.no_grad():
        model[4].bias[1] = float("nan")
    with pytest.raises(ScoreError, match="NaN"):
        paizoo.prune(model, name, sparsity=0.5, data=random_data(0), rounds=2)


@pytest.mark.parametrize("name", ["force", "iterative_snip"])
def test_model_unchanged(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 5))
    model[4].bias.requires_grad_(False)
    model.eval()
    data = (torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,)))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    paizoo.prune(model, name, sparsity=0.9, data=data, rounds=4)
    assert modes == {n: m.training for n, m in model.named_modules()}
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("name", ["force", "iterative_snip"])
@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_resnet18_small_input(name: str, source: str) -> None:
    model = create_model(source, num_classes=10, seed=0)
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(4, 3, 32, 32, generator=gen), torch.randint(0, 10, (4,), generator=gen))
    if source.startswith("timm"):  # zero_init_last: the residual branches score exactly 0
        with pytest.warns(BranchCollapseWarning, match="zero_init_last=False"):
            mask = paizoo.prune(model, name, sparsity=0.95, data=data, rounds=3)
    else:
        mask = prune_checking_collapse(model, name, sparsity=0.95, data=data, rounds=3)
    assert mask.num_kept == kept_count(0.05, mask.num_total)
