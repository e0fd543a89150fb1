"""SynFlow (Tanaka et al. 2020): closed-form scores, conservation law, overflow, layer collapse."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from _pruner_testlib import ScoreRecorder, prune_checking_collapse
from torch import nn

import paizoo
from paizoo.diagnostics import BranchCollapseWarning
from paizoo.errors import MissingDataError, ScoreError
from paizoo.masks import LayerCollapseWarning
from paizoo.models.registry import create_model
from paizoo.pruners.synflow import SynFlow
from paizoo.sparsity import kept_count


class RecordingSynFlow(ScoreRecorder, SynFlow):
    pass


def mlp(widths: list[int], seed: int = 0, bias: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def closed_form_mlp_scores(model: nn.Sequential) -> tuple[dict[str, torch.Tensor], float]:
    """Scores of a bias-free ReLU MLP on the all-ones input, where everything is positive:

    score_l = |W_l| * (b_l a_{l-1}^T), a_l = |W_l| a_{l-1}, a_0 = 1, b_{l-1} = |W_l|^T b_l, b_L = 1.
    """
    names = [f"{i}.weight" for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    mats = [model.get_parameter(n).detach().double().abs() for n in names]
    fwd = [torch.ones(mats[0].shape[1], dtype=torch.float64)]
    for a in mats:
        fwd.append(a @ fwd[-1])
    bwd = [torch.ones(mats[-1].shape[0], dtype=torch.float64)]
    for a in reversed(mats):
        bwd.append(a.T @ bwd[-1])
    bwd = bwd[::-1]  # bwd[l] is dR/d(activation l)
    scores = {n: a * torch.outer(bwd[i + 1], fwd[i]) for i, (n, a) in enumerate(zip(names, mats,
                                                                                    strict=True))}
    return scores, float(fwd[-1].sum())


def test_scores_equal_closed_form_and_conservation() -> None:
    model = mlp([6, 7, 5, 3])
    pruner = RecordingSynFlow(rounds=1)
    paizoo.prune(model, pruner, sparsity=0.5, input_shape=(6,))
    expected, flow = closed_form_mlp_scores(model)
    (scores,) = pruner._recorded
    for name, value in expected.items():
        torch.testing.assert_close(scores[name], value, rtol=1e-12, atol=0.0)
    sums = torch.tensor([float(s.sum()) for s in scores.values()], dtype=torch.float64)
    assert float((sums - flow).abs().max() / flow) < 1e-6  # every layer carries the flow R


def test_conservation_conv_net() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(8 * 1 * 1, 5, bias=False))
    pruner = RecordingSynFlow(rounds=1)
    paizoo.prune(model, pruner, sparsity=0.5, input_shape=(3, 10, 10))
    sums = torch.tensor([float(s.sum()) for s in pruner._recorded[0].values()],
                        dtype=torch.float64)
    positive = nn.Sequential(*[m for m in model]).double()
    with torch.no_grad():
        for p in positive.parameters():
            p.abs_()
        flow = float(positive(torch.ones(1, 3, 10, 10, dtype=torch.float64)).sum())
    assert float((sums - flow).abs().max() / flow) < 1e-6


def test_second_round_rescores_masked_network() -> None:
    model = mlp([6, 7, 5, 3], seed=1)
    pruner = RecordingSynFlow(rounds=2)
    mask = paizoo.prune(model, pruner, density=0.25, input_shape=(6,))
    # round 2 scores the network at |theta_0 * m_1|: compare with the closed form on that net
    first = pruner._recorded[0]
    k1 = kept_count(0.25 ** 0.5, sum(s.numel() for s in first.values()))
    flat = torch.cat([s.flatten() for s in first.values()])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[torch.topk(flat, k1).indices] = True
    masked = mlp([6, 7, 5, 3], seed=1)
    offset = 0
    with torch.no_grad():
        for name in first:
            p = masked.get_parameter(name)
            p.mul_(keep[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
    expected, _ = closed_form_mlp_scores(masked)
    for name, value in expected.items():
        torch.testing.assert_close(pruner._recorded[1][name], value, rtol=1e-12, atol=0.0)
    assert mask.num_kept == kept_count(0.25, mask.num_total)


def test_deep_net_no_overflow_in_float64() -> None:
    """60 layers of width 128: R ~ 12.8^60 ~ 1e66 overflows float32 but not float64."""
    model = mlp([128] * 61, seed=0)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight)
    pruner = RecordingSynFlow(rounds=2)
    mask = paizoo.prune(model, pruner, sparsity=0.9, input_shape=(128,))
    assert mask.num_kept == kept_count(0.1, mask.num_total)
    for scores in pruner._recorded:
        flat = torch.cat([s.flatten() for s in scores.values()])
        assert bool(torch.isfinite(flat).all())
        assert float(flat.max()) > 1e40  # really beyond float32's range
    with pytest.raises(ScoreError, match="float64"):
        paizoo.prune(model, "synflow", sparsity=0.9, input_shape=(128,), rounds=2,
                     precision="float32")


def test_float32_matches_float64_on_a_shallow_net() -> None:
    model = mlp([6, 7, 5, 3])
    a = paizoo.prune(model, "synflow", sparsity=0.7, input_shape=(6,), rounds=5)
    b = paizoo.prune(model, "synflow", sparsity=0.7, input_shape=(6,), rounds=5,
                     precision="float32")
    assert a == b


def test_iterative_synflow_avoids_layer_collapse() -> None:
    """A thin middle layer of tiny weights: magnitude prunes it away, 100-round SynFlow keeps it."""
    model = mlp([10, 100, 100, 10], seed=0)
    with torch.no_grad():
        model[2].weight.mul_(0.01)
    with pytest.warns(LayerCollapseWarning, match="2.weight"):
        magnitude = paizoo.prune(model, "magnitude", sparsity=0.95)
    assert "2.weight" in magnitude.collapsed_layers()
    synflow = paizoo.prune(model, "synflow", sparsity=0.95, input_shape=(10,))
    assert synflow.collapsed_layers() == []
    assert synflow.num_kept == kept_count(0.05, synflow.num_total)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 0.999])
def test_exact_global_counts(sparsity: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 10))
    mask = prune_checking_collapse(model, "synflow", sparsity=sparsity, input_shape=(3, 8, 8),
                                   rounds=10)
    assert mask.num_kept == kept_count(1 - sparsity, mask.num_total)


def test_layer_scope_counts() -> None:
    model = mlp([6, 7, 5, 3])
    mask = paizoo.prune(model, "synflow", sparsity=0.6, input_shape=(6,), scope="layer", rounds=4)
    for layer in mask.layers():
        assert layer.kept == kept_count(0.4, layer.total)


def test_determinism_and_default_rounds() -> None:
    assert SynFlow().rounds == 100 and SynFlow().precision == "float64"
    model = mlp([6, 16, 3])
    a = paizoo.prune(model, "synflow", sparsity=0.8, input_shape=(6,))
    b = paizoo.prune(model, "synflow", sparsity=0.8, input_shape=(6,))
    assert a == b


def test_needs_input_shape_and_reads_it_from_data() -> None:
    model = mlp([6, 16, 3])
    with pytest.raises(MissingDataError, match="input_shape"):
        paizoo.prune(model, "synflow", sparsity=0.5)
    data = (torch.randn(2, 6), torch.tensor([0, 1]))
    assert paizoo.prune(model, "synflow", sparsity=0.5, data=data) == paizoo.prune(
        model, "synflow", sparsity=0.5, input_shape=(6,))


def test_nan_weights_raise() -> None:
    model = mlp([6, 16, 3])
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ScoreError):
        paizoo.prune(model, "synflow", sparsity=0.5, input_shape=(6,), rounds=1)


def test_bad_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        SynFlow(precision="float16")  # type: ignore[arg-type]


def test_model_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 5))
    with torch.no_grad():  # signed, non-trivial BN statistics must survive
        model[1].running_mean.uniform_(-1, 1)
        model[1].bias.uniform_(-1, 1)
    model[4].bias.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    rng = torch.get_rng_state()
    paizoo.prune(model, "synflow", sparsity=0.9, input_shape=(3, 8, 8), rounds=3)
    assert modes == {n: m.training for n, m in model.named_modules()}
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(p.grad is None for p in model.parameters())
    assert all(v.dtype == state[k].dtype for k, v in model.state_dict().items())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.equal(rng, torch.get_rng_state())


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_resnet18_small_input(source: str) -> None:
    model = create_model(source, num_classes=10, seed=0)
    if source.startswith("timm"):
        # timm zero-initialises the last BN scale of each residual block, so no flow passes
        # through the residual branches: SynFlow rightly gives all their weights score 0, and
        # says so (the shortcuts keep the network connected).
        with pytest.warns(BranchCollapseWarning, match="zero_init_last=False"):
            mask = paizoo.prune(model, "synflow", sparsity=0.99, input_shape=(3, 32, 32),
                                rounds=5)
        assert "layer1.0.conv1.weight" in mask.collapsed_layers()
    else:
        mask = prune_checking_collapse(model, "synflow", sparsity=0.99, input_shape=(3, 32, 32),
                                       rounds=5)
    assert mask.num_kept == kept_count(0.01, mask.num_total)


def test_buffers_and_biases_are_made_positive() -> None:
    """Against an independent linearised copy: |theta| everywhere, BN statistics included."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3))
    with torch.no_grad():
        model[1].running_mean.uniform_(-2, -1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].bias.uniform_(-1, 1)
    pruner = RecordingSynFlow(rounds=1)
    paizoo.prune(model, pruner, sparsity=0.5, input_shape=(3, 6, 6))
    positive = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in [*positive.parameters(), *positive.buffers()]:
            t.abs_()
    weights = [positive[0].weight, positive[4].weight]
    grads = torch.autograd.grad(positive(torch.ones(1, 3, 6, 6, dtype=torch.float64)).sum(),
                                weights)
    for name, w, g in zip(["0.weight", "4.weight"], weights, grads, strict=True):
        torch.testing.assert_close(pruner._recorded[0][name], (w * g).detach(), rtol=1e-12,
                                   atol=0.0)
