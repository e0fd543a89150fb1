"""GraSP (Wang et al. 2020): Hg against torch.autograd.functional.hvp and finite differences."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from _pruner_testlib import ScoreRecorder, prune_checking_collapse
from torch import nn
from torch.autograd.functional import hvp
from torch.func import functional_call

import paizoo
from paizoo.diagnostics import BranchCollapseWarning
from paizoo.errors import MissingDataError, ScoreError
from paizoo.models.registry import create_model
from paizoo.pruners.grasp import GraSP
from paizoo.sparsity import kept_count


class RecordingGraSP(ScoreRecorder, GraSP):
    pass


def tanh_net(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4)).to(dtype)


def labelled_batches(dtype: torch.dtype = torch.float64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(5)
    ys = [torch.tensor([3, 1, 1, 0, 2, 1, 3, 0]), torch.tensor([2, 0, 3, 2, 1, 0, 2, 3, 3, 1])]
    return [(torch.randn(len(y), 3, generator=gen).to(dtype), y) for y in ys]


def stratified_by_hand(batches: list, per_class: int, num_classes: int) -> tuple:
    """The first ``per_class`` samples of each class in scan order, grouped by class."""
    chosen: dict[int, list[torch.Tensor]] = {c: [] for c in range(num_classes)}
    for x, y in batches:
        for xi, yi in zip(x, y.tolist(), strict=True):
            if len(chosen[yi]) < per_class:
                chosen[yi].append(xi)
    xs = [xi for c in range(num_classes) for xi in chosen[c]]
    ys = [c for c in range(num_classes) for _ in chosen[c]]
    return torch.stack(xs), torch.tensor(ys)


def half_losses_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor, temperature: float):
    """theta -> L_1 + L_2 over the two halves of the sample, for the prunable weights."""
    names = list(paizoo.prunable_parameters(model))
    fixed = {n: p.detach() for n, p in model.named_parameters() if n not in names}
    cut = len(x) // 2

    def loss(*weights: torch.Tensor) -> torch.Tensor:
        params = {**fixed, **dict(zip(names, weights, strict=True))}
        total = 0.0
        for xs, ys in ((x[:cut], y[:cut]), (x[cut:], y[cut:])):
            total = total + F.cross_entropy(functional_call(model, params, (xs,)) / temperature, ys)
        return total

    return names, loss


def reference_theta_hg(model: nn.Module, batches: list, per_class: int, num_classes: int,
                       temperature: float) -> dict[str, torch.Tensor]:
    x, y = stratified_by_hand(batches, per_class, num_classes)
    names, loss = half_losses_fn(model, x, y, temperature)
    theta = tuple(paizoo.prunable_parameters(model)[n].detach().clone() for n in names)
    g = torch.autograd.grad(loss(*[t.requires_grad_() for t in theta]), theta)
    _, hg = hvp(loss, tuple(t.detach() for t in theta), v=tuple(gi.detach() for gi in g))
    return {n: t.detach() * h for n, t, h in zip(names, theta, hg, strict=True)}


def test_hg_equals_autograd_hvp() -> None:
    model, batches = tanh_net(), labelled_batches()
    pruner = RecordingGraSP(samples_per_class=2)
    paizoo.prune(model, pruner, sparsity=0.5, data=batches)
    expected = reference_theta_hg(model, batches, 2, 4, 200.0)
    for name, value in expected.items():
        assert value.abs().max() > 0
        torch.testing.assert_close(pruner._recorded[0][name], value, rtol=1e-9, atol=1e-18)


def test_hg_equals_finite_differences() -> None:
    """(grad L(theta + eps g) - grad L(theta - eps g)) / (2 eps) = H g, in float64."""
    _check_against_finite_differences(tanh_net(seed=2), labelled_batches(), eps=1e-5, rtol=1e-6,
                                      atol=1e-10)


def test_halves_in_train_mode_with_batchnorm() -> None:
    """With batch-norm in train mode each half is normalised with its own statistics."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 4)).double()
    batches = labelled_batches()
    pruner = RecordingGraSP(samples_per_class=2)
    paizoo.prune(model, pruner, sparsity=0.5, data=batches)
    expected = reference_theta_hg(copy.deepcopy(model).train(), batches, 2, 4, 200.0)
    for name, value in expected.items():
        torch.testing.assert_close(pruner._recorded[0][name], value, rtol=1e-8, atol=1e-18)


def test_mask_removes_largest_minus_theta_hg() -> None:
    model, batches = tanh_net(seed=1), labelled_batches()
    expected = reference_theta_hg(model, batches, 3, 4, 200.0)
    minus = torch.cat([-v.flatten() for v in expected.values()])  # the paper's S(-theta)
    for sparsity in (0.2, 0.5, 0.8):
        mask = prune_checking_collapse(model, "grasp", sparsity=sparsity, data=batches,
                                       samples_per_class=3)
        removed = torch.cat([~mask[n].flatten() for n in expected])
        n_removed = minus.numel() - kept_count(1 - sparsity, minus.numel())
        assert int(removed.sum()) == n_removed
        largest = torch.topk(minus, n_removed).indices
        assert set(largest.tolist()) == set(torch.nonzero(removed).flatten().tolist())


def test_temperature_changes_scores() -> None:
    model, batches = tanh_net(), labelled_batches()
    hot, cold = RecordingGraSP(temperature=1.0), RecordingGraSP(temperature=200.0)
    paizoo.prune(model, hot, sparsity=0.5, data=batches)
    paizoo.prune(model, cold, sparsity=0.5, data=batches)
    ref = reference_theta_hg(model, batches, 10, 4, 1.0)
    torch.testing.assert_close(hot._recorded[0]["0.weight"], ref["0.weight"], rtol=1e-9,
                               atol=1e-18)
    assert not torch.allclose(hot._recorded[0]["0.weight"], cold._recorded[0]["0.weight"])


def test_target_outside_output_width() -> None:
    model = tanh_net()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 4, 5])
    with pytest.raises(MissingDataError, match="outside"):
        paizoo.prune(model, "grasp", sparsity=0.5, data=(x, y))


def test_targets_that_are_not_class_indices_are_refused() -> None:
    """GraSP samples per class from class indices. One-hot targets were read as indices
    (``nonzero(y == c)`` over a 2-D y picks rows with duplicates, every row for class 0) and
    fewer targets than inputs silently dropped inputs: both gave a mask from a sample that is
    not the stratified one. Both are refused; the class indices the message names
    (``argmax(1)``) give the mask of the hand-made stratified sample of those indices."""
    model, batches = tanh_net(), labelled_batches()
    one_hot = [(x, F.one_hot(y, 4).double()) for x, y in batches]
    with pytest.raises(MissingDataError, match=r"class-index targets.*shape \(8, 4\) "
                                               r"\(torch.float64\).*argmax\(1\)"):
        paizoo.prune(model, "grasp", sparsity=0.5, data=one_hot)
    x, y = batches[0]
    with pytest.raises(MissingDataError, match=r"batch of 8 inputs has targets of shape \(6,\)"):
        paizoo.prune(model, "grasp", sparsity=0.5, data=(x, y[:6]))
    indices = [(x, t.argmax(1)) for x, t in one_hot]
    mask = paizoo.prune(model, "grasp", sparsity=0.5, data=indices, samples_per_class=2)
    scores = reference_theta_hg(model, batches, per_class=2, num_classes=4, temperature=200.0)
    flat = torch.cat([scores[n].flatten() for n in mask])
    kept = torch.cat([mask[n].flatten() for n in mask])
    assert flat[kept].min() >= flat[~kept].max()


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9, 0.995])
def test_exact_global_counts(sparsity: float) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    data = (torch.randn(24, 3, 8, 8), torch.arange(24) % 4)
    mask = prune_checking_collapse(model, "grasp", sparsity=sparsity, data=data)
    assert mask.num_kept == kept_count(1 - sparsity, mask.num_total)


def test_layer_scope_and_rounds_counts() -> None:
    model, batches = tanh_net(), labelled_batches()
    mask = paizoo.prune(model, "grasp", sparsity=0.6, data=batches, scope="layer", rounds=3)
    for layer in mask.layers():
        assert layer.kept == kept_count(0.4, layer.total)


def test_determinism() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))
    data = labelled_batches(torch.float32)
    a = paizoo.prune(model, "grasp", sparsity=0.7, data=data, seed=11)
    b = paizoo.prune(model, "grasp", sparsity=0.7, data=data, seed=11)
    assert a == b


def test_missing_data_error() -> None:
    with pytest.raises(MissingDataError, match="data="):
        paizoo.prune(tanh_net(), "grasp", sparsity=0.5)


def test_nan_scores_raise() -> None:
    model = tanh_net()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(ScoreError, match="NaN"):
        paizoo.prune(model, "grasp", sparsity=0.5, data=labelled_batches())


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="samples_per_class"):
        GraSP(samples_per_class=0)
    with pytest.raises(ValueError, match="temperature"):
        GraSP(temperature=0.0)


def test_model_unchanged() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 4))
    model[3].eval()
    model[4].bias.requires_grad_(False)
    data = (torch.randn(16, 3, 8, 8), torch.arange(16) % 4)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    paizoo.prune(model, "grasp", sparsity=0.7, data=data, samples_per_class=2)
    assert modes == {n: m.training for n, m in model.named_modules()}
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # BN running statistics included


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_resnet18_small_input(source: str) -> None:
    model = create_model(source, num_classes=4, seed=0)
    gen = torch.Generator().manual_seed(0)
    data = (torch.randn(4, 3, 32, 32, generator=gen), torch.arange(4))  # two halves of 2
    if source.startswith("timm"):  # zero_init_last: the residual branches score exactly 0
        with pytest.warns(BranchCollapseWarning, match="zero_init_last=False"):
            mask = paizoo.prune(model, "grasp", sparsity=0.9, data=data, samples_per_class=1)
    else:
        mask = prune_checking_collapse(model, "grasp", sparsity=0.9, data=data,
                                       samples_per_class=1)
    assert mask.num_kept == kept_count(0.1, mask.num_total)


class _HardActivationNet(nn.Module):
    """MobileNetV3-style: hardswish and a squeeze-excitation gate through hardsigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.gate_fc, self.gate = (nn.Linear(3, 6), nn.Hardswish(),
                                                       nn.Linear(6, 6), nn.Hardsigmoid())
        self.fc2 = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(3.0 * self.fc1(x))  # scaled so that every piece of hardswish is visited
        return self.fc2(h * self.gate(3.0 * self.gate_fc(h)))


class _AttentionNet(nn.Module):
    """One self-attention head over 3 tokens through F.scaled_dot_product_attention."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv, self.head = nn.Linear(2, 6), nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x.view(-1, 3, 2)).unsqueeze(1).chunk(3, dim=-1)
        return self.head(F.scaled_dot_product_attention(q, k, v).flatten(1))


def _check_against_finite_differences(model: nn.Module, batches: list, eps: float = 1e-6,
                                      rtol: float = 1e-5, atol: float = 1e-9) -> None:
    """theta * Hg recorded by GraSP against theta * (grad L(theta + eps g) - grad L(theta - eps g))
    / (2 eps), in float64, with L = L_1 + L_2 over the halves of the stratified sample."""
    pruner = RecordingGraSP(samples_per_class=3, temperature=1.0)
    paizoo.prune(model, pruner, sparsity=0.5, data=batches)
    x, y = stratified_by_hand(batches, 3, 4)
    names, loss = half_losses_fn(model, x, y, 1.0)
    theta = [paizoo.prunable_parameters(model)[n].detach().clone() for n in names]

    def grad_at(ws: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        ws = [w.clone().requires_grad_() for w in ws]
        return torch.autograd.grad(loss(*ws), ws)

    g = grad_at(theta)
    plus = grad_at([t + eps * gi for t, gi in zip(theta, g, strict=True)])
    minus = grad_at([t - eps * gi for t, gi in zip(theta, g, strict=True)])
    for name, t, gp, gm in zip(names, theta, plus, minus, strict=True):
        assert pruner._recorded[0][name].abs().max() > 0, name
        torch.testing.assert_close(pruner._recorded[0][name], t * (gp - gm) / (2 * eps),
                                   rtol=rtol, atol=atol)


def test_hard_activations_get_a_second_derivative() -> None:
    """nn.Hardsigmoid has no double backward; GraSP scores a twice-differentiable twin
    of the working copy and matches finite differences of the real model's gradients."""
    torch.manual_seed(0)
    model = _HardActivationNet().double()
    x = torch.randn(8, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="not implemented"):  # what the swap works around
        g = torch.autograd.grad(model(x).sum(), model.fc1.weight, create_graph=True)[0]
        torch.autograd.grad(g.sum(), model.fc1.weight)
    _check_against_finite_differences(model, labelled_batches())
    assert isinstance(model.act, nn.Hardswish) and isinstance(model.gate, nn.Hardsigmoid)


def test_attention_gets_a_second_derivative() -> None:
    torch.manual_seed(1)
    model = _AttentionNet().double()
    gen = torch.Generator().manual_seed(5)
    batches = [(torch.randn(len(y), 6, generator=gen, dtype=torch.float64), y)
               for _, y in labelled_batches()]
    with pytest.raises(RuntimeError, match="not implemented"):  # the default CPU kernel
        g = torch.autograd.grad(model(batches[0][0]).sum(), model.qkv.weight,
                                create_graph=True)[0]
        torch.autograd.grad(g.sum(), model.qkv.weight)
    _check_against_finite_differences(model, batches)


def test_composite_activations_equal_pytorch() -> None:
    from paizoo.pruners._second_order import CompositeHardsigmoid

    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    x = x[(x + 3).abs().gt(1e-3) & (x - 3).abs().gt(1e-3)].requires_grad_()  # off the kinks
    a, b = CompositeHardsigmoid()(x), nn.Hardsigmoid()(x)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-15)
    ga, = torch.autograd.grad(a.sum(), x)
    gb, = torch.autograd.grad(b.sum(), x)
    torch.testing.assert_close(ga, gb, rtol=1e-7, atol=1e-15)  # PyTorch's backward: float 1/6


class _FunctionalHardsigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)  # a call, not a module: nothing to swap


def test_functional_hard_activation_is_a_clear_error() -> None:
    model = nn.Sequential(nn.Linear(3, 6), _FunctionalHardsigmoid(), nn.Linear(6, 4))
    with pytest.raises(paizoo.UnsupportedLayerError, match="second derivative"):
        paizoo.prune(model, "grasp", sparsity=0.5, data=labelled_batches(torch.float32))
