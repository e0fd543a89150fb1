"""ProsPr: the meta-gradient against central finite differences of a hand-written inner loop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import paizoo
from paizoo.errors import MissingDataError, UnsupportedLayerError
from paizoo.pruners.prospr import prospr_meta_gradient
from paizoo.sparsity import kept_count


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).double()


def _mlp_logits(p: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    w1, b1, w2, b2 = p
    return torch.relu(x @ w1.T + b1) @ w2.T + b2


class _ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _convbn_logits(p: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    cw, cb, g, b, fw, fb = p
    h = F.batch_norm(F.conv2d(x, cw, cb), None, None, g, b, training=True, eps=1e-5)
    return torch.relu(h).flatten(1) @ fw.T + fb


def _inner_loop(params: list[torch.Tensor], logits_fn, batches, steps: int, lr: float,
                momentum: float, new_data: bool) -> list[torch.Tensor]:
    """Plain SGD on detached leaves: values only, no graph through the steps."""
    vel: list[torch.Tensor | None] = [None] * len(params)
    for k in range(steps):
        x, y = batches[k % len(batches)] if new_data else batches[0]
        leaves = [p.detach().requires_grad_(True) for p in params]
        grads = torch.autograd.grad(F.cross_entropy(logits_fn(leaves, x), y), leaves)
        new = []
        for i, (p, g) in enumerate(zip(leaves, grads, strict=True)):
            if momentum:
                g = g if vel[i] is None else vel[i] * momentum + g
                vel[i] = g
            new.append((p - lr * g).detach())
        params = new
    return params


def _final_loss(c: dict[int, torch.Tensor], base: list[torch.Tensor], logits_fn, batches,
                steps, lr, momentum, new_data) -> float:
    params = [base[i] * c[i] if i in c else base[i] for i in range(len(base))]
    params = _inner_loop(params, logits_fn, batches, steps, lr, momentum, new_data)
    x, y = batches[steps % len(batches)] if new_data else batches[0]
    with torch.no_grad():
        return float(F.cross_entropy(logits_fn(params, x), y))


def _directions(base, masked_idx, seed: int, entries: int = 8, gaussian: int = 3):
    """Unit vectors at ``entries`` random positions per masked tensor, plus random directions."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in masked_idx:
        for j in torch.randperm(base[i].numel(), generator=g)[:entries].tolist():
            v = {k: torch.zeros_like(base[k]) for k in masked_idx}
            v[i].view(-1)[j] = 1.0
            out.append(v)
    for _ in range(gaussian):
        out.append({k: torch.randn(base[k].shape, generator=g, dtype=base[k].dtype)
                    for k in masked_idx})
    return out


def _check_against_finite_differences(meta, names, base, masked_idx, logits_fn, batches, steps,
                                      lr, momentum, new_data, mask=None, h: float = 1e-5):
    """<dL/dc, v> from the meta-gradient vs the central difference of L along v."""
    c0 = {k: (mask[k] if mask is not None else torch.ones_like(base[k])) for k in masked_idx}
    for v in _directions(base, masked_idx, seed=steps):
        vals = [_final_loss({k: c0[k] + sign * h * v[k] for k in masked_idx}, base, logits_fn,
                            batches, steps, lr, momentum, new_data) for sign in (1.0, -1.0)]
        fd = (vals[0] - vals[1]) / (2 * h)
        analytic = sum(float((meta[n] * v[k]).sum()) for n, k in zip(names, masked_idx,
                                                                       strict=True))
        assert analytic == pytest.approx(fd, rel=1e-5, abs=1e-8)


def _batches(shape: tuple[int, ...], n: int, classes: int, count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *shape, generator=g, dtype=torch.float64),
             torch.randint(0, classes, (n,), generator=g)) for _ in range(count)]


@pytest.mark.parametrize(("steps", "momentum", "new_data"), [(3, 0.0, False), (2, 0.9, True)])
def test_meta_gradient_matches_finite_differences_mlp(steps, momentum, new_data):
    model = _mlp()
    batches = _batches((4,), 8, 3, 3, seed=1)
    names = ["0.weight", "2.weight"]
    initial = {n: dict(model.named_parameters())[n].detach().clone() for n in names}
    mask = {n: torch.ones_like(t) for n, t in initial.items()}
    meta = prospr_meta_gradient(model, initial, mask, batches, F.cross_entropy, steps=steps,
                                lr=0.5, momentum=momentum, new_data_in_inner=new_data)
    base = [p.detach().clone() for p in model.parameters()]
    _check_against_finite_differences(meta, names, base, [0, 2], _mlp_logits, batches, steps,
                                      0.5, momentum, new_data)


def test_meta_gradient_matches_finite_differences_conv_batchnorm():
    torch.manual_seed(3)
    model = _ConvBN().double().train()
    with torch.no_grad():  # non-trivial BN affine parameters, trained in the inner loop too
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.uniform_(-0.2, 0.2)
    batches = _batches((2, 4, 4), 6, 3, 1, seed=4)
    names = ["conv.weight", "fc.weight"]
    params = dict(model.named_parameters())
    initial = {n: params[n].detach().clone() for n in names}
    mask = {n: torch.ones_like(t) for n, t in initial.items()}
    running = model.bn.running_mean.clone()
    meta = prospr_meta_gradient(model, initial, mask, batches, F.cross_entropy, steps=3, lr=0.2)
    assert torch.equal(model.bn.running_mean, running)  # the model's buffers are untouched
    base = [p.detach().clone() for p in model.parameters()]  # conv w/b, bn g/b, fc w/b
    _check_against_finite_differences(meta, names, base, [0, 4], _convbn_logits, batches, 3,
                                      0.2, 0.0, False)


def test_meta_gradient_at_a_partial_mask():
    model = _mlp()
    batches = _batches((4,), 8, 3, 1, seed=5)
    names = ["0.weight", "2.weight"]
    initial = {n: dict(model.named_parameters())[n].detach().clone() for n in names}
    g = torch.Generator().manual_seed(0)
    mask = {n: (torch.rand(t.shape, generator=g) > 0.4).double() for n, t in initial.items()}
    meta = prospr_meta_gradient(model, initial, mask, batches, F.cross_entropy, steps=2, lr=0.5)
    base = [p.detach().clone() for p in model.parameters()]
    _check_against_finite_differences(meta, names, base, [0, 2], _mlp_logits, batches, 2, 0.5,
                                      0.0, False, mask={0: mask["0.weight"], 2: mask["2.weight"]})


def test_first_order_is_gradient_at_adapted_weights_times_theta0_and_differs_from_full():
    model = _mlp()
    batches = _batches((4,), 8, 3, 1, seed=6)
    names = ["0.weight", "2.weight"]
    initial = {n: dict(model.named_parameters())[n].detach().clone() for n in names}
    mask = {n: torch.ones_like(t) for n, t in initial.items()}
    kw = dict(steps=3, lr=0.5)
    fo = prospr_meta_gradient(model, initial, mask, batches, F.cross_entropy, first_order=True,
                              **kw)
    full = prospr_meta_gradient(model, initial, mask, batches, F.cross_entropy, **kw)
    base = [p.detach().clone() for p in model.parameters()]
    adapted = [p.requires_grad_(True) for p in _inner_loop(base, _mlp_logits, batches, 3, 0.5,
                                                           0.0, False)]
    x, y = batches[0]
    g = torch.autograd.grad(F.cross_entropy(_mlp_logits(adapted, x), y), adapted)
    torch.testing.assert_close(fo["0.weight"], g[0] * initial["0.weight"])
    torch.testing.assert_close(fo["2.weight"], g[2] * initial["2.weight"])
    diff = max(float((fo[n] - full[n]).abs().max()) for n in names)
    scale = max(float(full[n].abs().max()) for n in names)
    assert diff > 1e-3 * scale  # the second-order terms matter


def test_zero_steps_is_snip_gradient():
    model = _mlp()
    batches = _batches((4,), 8, 3, 1, seed=7)
    initial = {"0.weight": model[0].weight.detach().clone()}
    meta = prospr_meta_gradient(model, initial, {"0.weight": torch.ones(5, 4)}, batches,
                                F.cross_entropy, steps=0)
    x, y = batches[0]
    w = model[0].weight
    g = torch.autograd.grad(F.cross_entropy(model(x), y), w)[0]
    torch.testing.assert_close(meta["0.weight"], g * w.detach())


def test_pruner_mask_is_topk_of_abs_meta_gradient_and_leaves_model_untouched():
    model = _ConvBN()
    x = torch.randn(6, 2, 4, 4)
    y = torch.randint(0, 3, (6,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    mask = paizoo.prune(model, "prospr", density=0.3, data=(x, y), steps=2)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    total = sum(p.numel() for p in (model.conv.weight, model.fc.weight))
    assert mask.num_kept == kept_count(0.3, total)
    again = paizoo.prune(model, "prospr", density=0.3, data=(x, y), steps=2)
    assert mask == again
    # the same mask from the meta-gradient directly (train mode, as the pruner runs)
    ref = _ConvBN()
    ref.load_state_dict(model.state_dict())
    ref.train()
    names = ["conv.weight", "fc.weight"]
    params = dict(ref.named_parameters())
    meta = prospr_meta_gradient(ref, {n: params[n].detach() for n in names},
                                {n: torch.ones_like(params[n]) for n in names}, [(x, y)],
                                F.cross_entropy, steps=2)
    flat = torch.cat([meta[n].abs().flatten() for n in names])
    threshold = flat.sort(descending=True).values[mask.num_kept - 1]
    kept_scores = torch.cat([meta[n].abs()[mask[n]] for n in names])
    dropped = torch.cat([meta[n].abs()[~mask[n]] for n in names])
    assert kept_scores.min() >= threshold and dropped.max() <= threshold


def test_first_order_option_and_validation():
    model = _ConvBN()
    data = (torch.randn(4, 2, 4, 4), torch.randint(0, 3, (4,)))
    m1 = paizoo.prune(model, "prospr", density=0.5, data=data, first_order=True)
    assert m1.num_kept == kept_count(0.5, 2 * 3 * 9 + 12 * 3)
    with pytest.raises(MissingDataError):
        paizoo.prune(model, "prospr", density=0.5)
    with pytest.raises(ValueError, match="lr"):
        paizoo.create_pruner("prospr", lr=0.0)
    with pytest.raises(ValueError, match="steps"):
        paizoo.create_pruner("prospr", steps=-1)


class _FunctionalHardsigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.hardsigmoid(x)  # a call, not a module: nothing to swap


class _ClampHardsigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x / 6 + 0.5, 0.0, 1.0)  # the definition, twice differentiable


def test_hardsigmoid_module_is_scored_like_its_definition():
    """An nn.Hardsigmoid module (no double backward in PyTorch) is swapped in the working copy:
    the scores equal those of the same net written with clamp(x/6 + 1/2, 0, 1)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Hardsigmoid(), nn.Linear(5, 3)).double()
    twin = copy.deepcopy(model)
    twin[1] = _ClampHardsigmoid()
    data = (3 * torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 3, (6,)))
    scores = []
    for net in (model, twin):
        pruner = paizoo.create_pruner("prospr")
        recorded = []
        original = pruner.score
        pruner.score = lambda ctx, original=original, recorded=recorded: recorded.append(
            original(ctx)) or recorded[-1]
        paizoo.prune(net, pruner, density=0.5, data=data)
        scores.append(recorded[0])
    for name in scores[0]:
        assert scores[0][name].abs().max() > 0
        torch.testing.assert_close(scores[0][name], scores[1][name], rtol=1e-10, atol=1e-14)
    assert isinstance(model[1], nn.Hardsigmoid)  # the caller's model is untouched


def test_missing_second_derivative_is_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 5), _FunctionalHardsigmoid(), nn.Linear(5, 3))
    data = (torch.randn(6, 4), torch.randint(0, 3, (6,)))
    with pytest.raises(UnsupportedLayerError, match="first_order=True"):
        paizoo.prune(model, "prospr", density=0.5, data=data)
    assert paizoo.prune(model, "prospr", density=0.5, data=data, first_order=True).num_kept == 18
