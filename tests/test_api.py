"""paizoo.prune and the Pruner base machinery (rounds, existing masks, model left untouched)."""

from __future__ import annotations

import math

import pytest
import torch
from _pruner_testlib import prune_checking_collapse
from torch import nn

import paizoo
import paizoo.reparam
from paizoo.masks import Mask


class TinyAttention(nn.Module):
    """A model whose masked ``out_proj`` is read directly by ``nn.MultiheadAttention``."""

    def __init__(self) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.mha(x, x, x, need_weights=False)[0].mean(1))


def test_prune_masked_model_after_forward_with_grad() -> None:
    """Regression: a masked model holds non-leaf ``weight`` tensors, which ``deepcopy`` refuses."""
    torch.manual_seed(0)
    model = TinyAttention()
    with pytest.warns(paizoo.CoverageWarning, match=r"attention .*mha\.in_proj_weight"):
        first = paizoo.prune(model, "magnitude", sparsity=0.5, apply=True)
    model(torch.randn(2, 4, 8)).sum().backward()
    hooks_before = len(model.mha._forward_pre_hooks)
    with pytest.warns(paizoo.CoverageWarning, match=r"mha\.in_proj_weight"):
        second = paizoo.prune(model, "magnitude", sparsity=0.8)
    assert second.num_kept == round(0.2 * first.num_total)
    assert all(bool((second[n] <= first[n]).all()) for n in first)  # pruned stays pruned
    assert len(model.mha._forward_pre_hooks) == hooks_before  # caller's hooks untouched
    assert Mask.from_model(model) == first


class _ForgetfulPruner(paizoo.Pruner):
    """Scores only the first layer."""

    name = "forgetful-test"

    def score(self, ctx: paizoo.PruneContext) -> dict[str, torch.Tensor]:
        first = next(iter(ctx.params))
        return {first: ctx.params[first].detach().abs()}


def test_missing_scores_raise_score_error() -> None:
    """Regression: a pruner that omits a layer got an AttributeError on ``None.shape``."""
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(paizoo.ScoreError, match=r"no scores for \['2.weight'\]"):
        paizoo.prune(model, _ForgetfulPruner(), sparsity=0.5)


# ---- paizoo.prune leaves the model alone ---------------------------------------------------------


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                      nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


class _GradMagnitude(paizoo.Pruner):
    """SNIP-like test pruner: forward/backward in train mode on the working copy, consumes the
    global RNG (dropout-style) so that RNG isolation is exercised."""

    name = "grad-magnitude-test"
    requires_data = True

    def prepare(self, ctx: paizoo.PruneContext) -> None:
        ctx.model.train()

    def score(self, ctx: paizoo.PruneContext) -> dict[str, torch.Tensor]:
        torch.rand(10)  # the global RNG, inside base's fork_rng
        for x, y in ctx.device_batches():
            ctx.loss_fn(ctx.model(x), y).backward()
        return {n: (p.grad * p).abs().detach() for n, p in ctx.params.items()}


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "params": {n: (p.detach().clone(), p.requires_grad, p.grad) for n, p in
                   model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "modes": [m.training for m in model.modules()],
        "hooks": [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()],
        "ids": [id(p) for p in model.parameters()],
    }


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a["modes"] == b["modes"] and a["hooks"] == b["hooks"] and a["ids"] == b["ids"]
    for n, (value, requires_grad, grad) in a["params"].items():  # type: ignore[union-attr]
        value2, requires_grad2, grad2 = b["params"][n]  # type: ignore[index]
        assert torch.equal(value, value2) and requires_grad == requires_grad2
        assert grad is None and grad2 is None
    for n, buf in a["buffers"].items():  # type: ignore[union-attr]
        assert torch.equal(buf, b["buffers"][n])  # type: ignore[index]


@pytest.mark.parametrize("pruner", ["magnitude", "random", "expander", _GradMagnitude()])
def test_prune_leaves_model_unchanged(pruner: str | paizoo.Pruner) -> None:
    torch.manual_seed(0)
    model = Net().eval()
    model.features[0].bias.requires_grad_(False)
    before = _snapshot(model)
    data = (torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,)))
    rng = torch.random.get_rng_state()
    paizoo.prune(model, pruner, sparsity=0.7, data=data)
    _assert_same(before, _snapshot(model))
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert not paizoo.reparam.is_masked(model)


def test_a_shuffling_dataloader_is_read_under_the_seed() -> None:
    """A ``DataLoader(shuffle=True)`` draws its order from the global RNG: pruning reads it
    under ``seed``, so the caller's RNG is untouched and the mask is the one of the batches the
    loader yields after ``torch.manual_seed(seed)`` (batch-norm in train mode makes the SNIP
    scores depend on how the samples are grouped into batches)."""
    from torch.utils.data import DataLoader, TensorDataset

    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8, generator=gen), torch.randint(0, 4, (32,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    model = Net()
    torch.manual_seed(5)
    rng = torch.random.get_rng_state()
    mask = paizoo.prune(model, "snip", sparsity=0.8, data=loader, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert paizoo.prune(model, "snip", sparsity=0.8, data=loader, seed=3) == mask
    torch.manual_seed(3)
    seeded = list(loader)
    assert paizoo.prune(model, "snip", sparsity=0.8, data=seeded, seed=3) == mask
    torch.manual_seed(4)  # another order: another mask, so the equalities above say something
    assert paizoo.prune(model, "snip", sparsity=0.8, data=list(loader), seed=3) != mask


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("pruner", ["snip", "synflow", "grasp"])
def test_pruning_inside_no_grad_or_inference_mode(grad_mode, pruner) -> None:
    """Called inside ``torch.no_grad()`` (an evaluation script), gradient pruners failed with
    "the pruning loss does not depend on the model's weights" or autograd's raw error. They
    give the mask of a call in the default mode, and a mask applied there trains outside it
    with the pruned weights still exactly zero."""
    data = (torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,)))
    model = Net()
    options = {"rounds": 2} if pruner == "synflow" else {}
    expected = paizoo.prune(model, pruner, sparsity=0.7, data=data, **options)
    with grad_mode():
        assert paizoo.prune(model, pruner, sparsity=0.7, data=data, **options) == expected
        paizoo.prune(model, pruner, sparsity=0.7, data=data, apply=True, **options)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    nn.functional.cross_entropy(model(data[0]), data[1]).backward()
    optimizer.step()
    model(data[0])  # the hooks recompute the masked weights
    assert Mask.from_model(model) == expected
    for name, keep in expected.items():
        assert bool((model.get_submodule(name.rsplit(".", 1)[0]).weight[~keep] == 0).all())


def test_mask_applied_inside_inference_mode_trains_outside() -> None:
    """``mask.apply`` inside ``torch.inference_mode()`` stored inference-tensor masks, and the
    first training forward outside failed ("Inference tensors cannot be saved for
    backward"). The applied model trains, the pruned weights stay exactly zero and the kept
    ones move."""
    model = Net()
    mask = paizoo.prune(model, "magnitude", sparsity=0.7)
    with torch.inference_mode():
        mask.apply(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    nn.functional.cross_entropy(model(x), y).backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model(x)
    for name, keep in mask.items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        assert bool((module.weight[~keep] == 0).all())
        moved = module.weight_orig.detach() != before[name.replace("weight", "weight_orig")]
        assert bool(moved[keep].any())


def test_a_numpy_integer_seed_is_a_seed() -> None:
    """``for seed in np.arange(3)`` gave NumPy integers, which the seeding refused ("an integer
    is required"); a float, string, bool or None got torch's raw message. A NumPy integer
    seeds like the same int; the others are refused naming the seed."""
    np = pytest.importorskip("numpy")
    model = Net()
    for seed in np.arange(3):
        assert paizoo.prune(model, "random", sparsity=0.5, seed=seed) == paizoo.prune(
            model, "random", sparsity=0.5, seed=int(seed))
    for bad in (1.5, "3", True, None):
        with pytest.raises(paizoo.errors.PrunerOptionError, match=r"seed must be an integer"):
            paizoo.prune(model, "random", sparsity=0.5, seed=bad)  # type: ignore[arg-type]


def test_prune_apply_true_masks_the_model() -> None:
    model = Net()
    mask = paizoo.prune(model, "magnitude", sparsity=0.8, apply=True)
    assert Mask.from_model(model) == mask
    x = torch.randn(2, 3, 8, 8)
    model(x)
    for name, keep in mask.items():
        assert bool((model.get_submodule(name.rsplit(".", 1)[0]).weight[~keep] == 0).all())


def test_seeded_pruner_is_deterministic() -> None:
    data = (torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,)))
    model = Net()
    a = paizoo.prune(model, _GradMagnitude(), sparsity=0.5, data=data, seed=1)
    b = paizoo.prune(model, _GradMagnitude(), sparsity=0.5, data=data, seed=1)
    assert a == b


def test_sparsity_levels_reach_the_pruner() -> None:
    model = Net()
    total = sum(p.numel() for p in paizoo.prunable_parameters(model).values())
    for kwargs, density in [({"sparsity": 0.75}, 0.25), ({"density": 0.3}, 0.3),
                            ({"compression": 1.0}, 0.1)]:
        mask = prune_checking_collapse(model, "magnitude", **kwargs)
        assert mask.num_kept == math.floor(density * total + 0.5)
    with pytest.raises(paizoo.SparsityError, match="exactly one of"):
        paizoo.prune(model, "magnitude")
    with pytest.raises(paizoo.SparsityError, match="keeps 0 of"):
        paizoo.prune(model, "magnitude", density=1e-9)


def test_nothing_prunable_is_a_clear_error() -> None:
    model = nn.Sequential(nn.BatchNorm1d(4), nn.ReLU())
    with pytest.raises(paizoo.NoPrunableParametersError, match="Conv1d/Conv2d/Conv3d/Linear"):
        paizoo.prune(model, "magnitude", sparsity=0.5)
    with pytest.raises(paizoo.NoPrunableParametersError, match=r"include='nothing\.\*'"):
        paizoo.prune(Net(), "magnitude", sparsity=0.5, include="nothing.*")


def test_include_and_exclude_patterns() -> None:
    model = Net()
    mask = paizoo.prune(model, "magnitude", sparsity=0.5, include="features.*")
    assert list(mask) == ["features.0.weight", "features.3.weight"]
    mask = paizoo.prune(model, "magnitude", sparsity=0.5, exclude=["features.0.weight", "fc.*"])
    assert list(mask) == ["features.3.weight"]
    assert mask.num_kept == math.floor(0.5 * 6 * 8 * 9 + 0.5)
    paizoo.prune(model, "random", sparsity=0.5, exclude="fc.weight", apply=True)
    assert not hasattr(model.fc, "weight_mask") and hasattr(model.features[0], "weight_mask")


def test_data_and_input_shape_requirements() -> None:
    with pytest.raises(paizoo.MissingDataError, match="data-driven and needs data="):
        paizoo.prune(Net(), _GradMagnitude(), sparsity=0.5)

    class NeedsShape(paizoo.Pruner):
        name = "needs-shape-test"
        requires_input_shape = True
        seen: tuple[int, ...] | None = None

        def score(self, ctx: paizoo.PruneContext) -> dict[str, torch.Tensor]:
            NeedsShape.seen = ctx.input_shape
            return {n: p.detach().abs() for n, p in ctx.params.items()}

    with pytest.raises(paizoo.MissingDataError, match="needs input_shape="):
        paizoo.prune(Net(), NeedsShape(), sparsity=0.5)
    prune_checking_collapse(Net(), NeedsShape(), sparsity=0.5, data=(torch.randn(2, 3, 5, 7),
                                                          torch.zeros(2, dtype=torch.long)))
    assert NeedsShape.seen == (3, 5, 7)


def test_pruner_instance_with_options_is_rejected() -> None:
    with pytest.raises(TypeError, match="go to the pruner's constructor"):
        paizoo.prune(Net(), paizoo.create_pruner("magnitude"), sparsity=0.5, scope="layer")
    with pytest.raises(TypeError):
        paizoo.prune(Net(), "magnitude", sparsity=0.5, no_such_option=1)


# ---- continuing from an existing mask --------------------------------------------------------


@pytest.mark.parametrize("rounds", [1, 3])
def test_pruning_an_already_masked_model_further(rounds: int) -> None:
    model = Net()
    first = paizoo.prune(model, "magnitude", sparsity=0.5, scope="layer", apply=True)
    before = _snapshot(model)
    second = paizoo.prune(model, "random", sparsity=0.9, rounds=rounds)
    _assert_same(before, _snapshot(model))
    for name in first:  # a subset of the existing mask, per-layer exact counts
        assert not bool((second[name] & ~first[name]).any())
        assert int(second[name].sum()) == math.floor(0.1 * first[name].numel() + 0.5)
    assert Mask.from_model(model) == first  # the caller's mask is untouched
    paizoo.prune(model, "random", sparsity=0.9, apply=True)
    assert Mask.from_model(model).num_kept == second.num_kept


def test_existing_mask_asking_for_more_weights_is_an_error() -> None:
    model = Net()
    paizoo.prune(model, "magnitude", sparsity=0.9, scope="layer", apply=True)
    with pytest.raises(paizoo.SparsityError, match="already carries a mask"):
        paizoo.prune(model, "magnitude", sparsity=0.5)
