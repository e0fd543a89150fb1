"""Init-aware diagnostics: (near-)zero scales found before scoring, collapse warnings that tell a
removed residual branch from a disconnected network and name the cause and the fix, and errors
instead of tie-break masks (all-zero scores, degenerate pruning data)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import paizoo
from paizoo.diagnostics import (
    BranchCollapseWarning,
    ZeroScoreWarning,
    connectivity,
    find_near_zero_scales,
    with_unit_scales,
)
from paizoo.models import create_model


class ZeroBranchNet(nn.Module):
    """stem -> x + bn(conv(x)) -> mean -> head, with the branch's norm scale zero (timm's
    zero_init_last): the branch contributes nothing at initialisation."""

    def __init__(self, zero: bool = True) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.head = nn.Linear(4, 3)
        if zero:
            nn.init.zeros_(self.branch[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + self.branch(h)
        return self.head(h.mean((2, 3)))


def _data(n: int = 6, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 1, 6, 6, generator=gen), torch.randint(0, classes, (n,), generator=gen)


def _depends_on_input(model: nn.Module, mask: paizoo.Mask, shape: tuple[int, ...]) -> bool:
    """Independent check: the masked network (weights zeroed by hand) on two inputs."""
    work = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, keep in mask.items():
            work.get_parameter(name).mul_(keep)
        gen = torch.Generator().manual_seed(1)  # one sample per call: bit-identical if constant
        a, b = (work(torch.rand(1, *shape, generator=gen)) for _ in range(2))
    return not torch.equal(a, b)


# ---- finding (near-)zero scales -------------------------------------------------------------


def test_timm_resnet_zero_init_last_is_found() -> None:
    found = find_near_zero_scales(create_model("timm:resnet10t", 10, seed=0))
    assert [f.name for f in found] == [f"layer{i}.0.bn2.weight" for i in range(1, 5)]
    assert all(f.kind == "norm" and f.max_abs == 0.0 for f in found)
    assert found[0].block == "layer1.0"  # the residual block whose output it scales
    assert find_near_zero_scales(
        create_model("timm:resnet10t", 10, seed=0, zero_init_last=False)) == []


def test_layer_scales_are_found() -> None:
    convnext = find_near_zero_scales(create_model("timm:convnext_atto", 10, seed=0))
    assert len(convnext) == 2 + 2 + 6 + 2  # one gamma per block (depths 2, 2, 6, 2)
    assert convnext[0].name == "stages.0.blocks.0.gamma"
    assert convnext[0].kind == "layer_scale" and convnext[0].block == "stages.0.blocks.0"
    assert convnext[0].max_abs == pytest.approx(1e-6)
    vit = find_near_zero_scales(create_model("timm:vit_tiny_patch16_224", 10, seed=0,
                                             img_size=32, init_values=1e-5))
    assert [f.name for f in vit[:2]] == ["blocks.0.ls1.gamma", "blocks.0.ls2.gamma"]
    assert vit[0].block == "blocks.0"
    # default ViT (no layer scale), tokens and biases initialised near zero are not scales
    assert find_near_zero_scales(create_model("timm:vit_tiny_patch16_224", 10, seed=0,
                                              img_size=32)) == []


# ---- connectivity -----------------------------------------------------------------------------


def test_connectivity_tells_a_removed_branch_from_a_disconnected_network() -> None:
    model = ZeroBranchNet()
    full = paizoo.Mask.ones(model)
    no_branch = paizoo.Mask({**full, "branch.0.weight": torch.zeros(4, 4, 3, 3, dtype=bool)})
    no_stem = paizoo.Mask({**full, "stem.weight": torch.zeros(4, 1, 3, 3, dtype=bool)})
    no_head = paizoo.Mask({**full, "head.weight": torch.zeros(3, 4, dtype=bool)})
    assert connectivity(model, no_branch, (1, 6, 6)).connected is True
    assert _depends_on_input(model, no_branch, (1, 6, 6))
    for mask in (no_stem, no_head):
        state = connectivity(model, mask, (1, 6, 6))
        assert state.connected is False and "no input -> output path" in state.how
        assert not _depends_on_input(model, mask, (1, 6, 6))
    assert connectivity(model, no_branch, None).connected is None


class LayerScaleNet(ZeroBranchNet):
    """The branch scaled by a bare layer-scale parameter (no linearisation: decided by running
    the masked network)."""

    def __init__(self) -> None:
        super().__init__(zero=False)
        self.gamma = nn.Parameter(torch.full((4, 1, 1), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = h + self.gamma * self.branch(h)
        return self.head(h.mean((2, 3)))


def test_connectivity_without_a_linearisation_runs_the_masked_network() -> None:
    model = LayerScaleNet()
    full = paizoo.Mask.ones(model)
    no_branch = paizoo.Mask({**full, "branch.0.weight": torch.zeros(4, 4, 3, 3, dtype=bool)})
    no_stem = paizoo.Mask({**full, "stem.weight": torch.zeros(4, 1, 3, 3, dtype=bool)})
    state = connectivity(model, no_branch, (1, 6, 6))
    assert state.connected is True and "still depends on its input" in state.how
    state = connectivity(model, no_stem, (1, 6, 6))
    assert state.connected is False and "no longer depends" in state.how


class _GRUNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.GRU(4, 8, batch_first=True)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


def test_connectivity_of_masks_beyond_the_default_coverage() -> None:
    # a mask made with cover="recurrent" holds weights outside the default coverage; pruning
    # every input weight of the GRU leaves an output computed from biases alone
    model = _GRUNet()
    full = paizoo.Mask.ones(model, cover="recurrent")
    assert "rnn.weight_ih_l0" in full
    no_input = paizoo.Mask({**full, "rnn.weight_ih_l0": torch.zeros(24, 4, dtype=torch.bool)})
    state = connectivity(model, no_input, (5, 4))
    assert state.connected is False and "no longer depends" in state.how
    one_input = torch.zeros(24, 4, dtype=torch.bool)
    one_input[:, 0] = True
    state = connectivity(model, paizoo.Mask({**full, "rnn.weight_ih_l0": one_input}), (5, 4))
    assert state.connected is True and "still depends on its input" in state.how


class _TokenNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(12, 8)
        self.fc = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc(self.embed(tokens).mean(1))))


def test_connectivity_of_a_token_input_model_feeds_token_ids() -> None:
    model = _TokenNet()
    full = paizoo.Mask.ones(model)
    state = connectivity(model, full, (5,))
    assert state.connected is True and "still depends on its input" in state.how
    no_fc = paizoo.Mask({**full, "fc.weight": torch.zeros(8, 8, dtype=torch.bool)})
    state = connectivity(model, no_fc, (5,))
    assert state.connected is False and "no longer depends" in state.how


# ---- the warnings -----------------------------------------------------------------------------


def test_zero_branch_collapse_is_a_branch_warning_with_cause_and_fix() -> None:
    model = ZeroBranchNet()
    with pytest.warns(BranchCollapseWarning) as record:
        mask = paizoo.prune(model, "snip", sparsity=0.8, data=_data())
    assert mask.collapsed_layers() == ["branch.0.weight"]
    message = str(record[0].message)
    assert "stays connected" in message and "identically zero" in message
    assert "branch.1.weight=0" in message and "with_unit_scales" in message
    assert "disconnect" not in message
    # the fix: score a copy with unit scales; the mask fits the original model
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fixed = paizoo.prune(with_unit_scales(model), "snip", sparsity=0.8, data=_data())
    assert fixed.collapsed_layers() == []
    assert float(model.branch[1].weight.detach().abs().max()) == 0.0  # the model is untouched
    fixed.apply(model)


def test_zero_scores_kept_by_tie_break_are_said() -> None:
    with pytest.warns(ZeroScoreWarning, match=r"1 layer\(s\) are identically zero: "
                      r"branch.0.weight; .*tie-break.*branch.1.weight=0"):
        mask = paizoo.prune(ZeroBranchNet(), "snip", sparsity=0.2, data=_data())
    # 192 weights (stem 36, branch 144, head 12), 154 kept: every weight with a nonzero score
    # (stem and head), then the first 106 of the zero-scored branch in flat order
    assert mask.num_kept == 154 and not mask.collapsed_layers()
    assert mask["stem.weight"].all() and mask["head.weight"].all()
    flat = mask["branch.0.weight"].reshape(-1)
    assert flat[:106].all() and not flat[106:].any()


def test_disconnected_network_keeps_the_plain_collapse_warning() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 50), nn.ReLU(), nn.Linear(50, 50), nn.ReLU(),
                          nn.Linear(50, 4))
    with torch.no_grad():
        model[2].weight.mul_(1e-3)
    with pytest.warns(paizoo.LayerCollapseWarning) as record:
        mask = paizoo.prune(model, "magnitude", sparsity=0.9, input_shape=(10,))
    assert mask.collapsed_layers() == ["2.weight"]
    assert [w.category for w in record] == [paizoo.LayerCollapseWarning]  # not the branch kind
    assert "disconnect the network: no input -> output path is left" in str(record[0].message)


def _images(shape: tuple[int, ...] = (3, 32, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(4, *shape, generator=gen), torch.randint(0, 10, (4,), generator=gen)


def test_issue_cases_timm_resnet18_and_convnext() -> None:
    """The issue's reports: SynFlow 0.99 on timm resnet18 collapses 16 layers, SynFlow on
    ConvNeXt collapses blocks; each removes residual branches only, and says why. (SynFlow's
    scores do not depend on the input size: 16x16 is enough for the ResNet; ConvNeXt's four
    stride-2 stages need 32x32.)"""
    shape = (3, 16, 16)
    resnet18 = create_model("timm:resnet18", 10, seed=0)
    with pytest.warns(BranchCollapseWarning, match=r"16 layer\(s\) keep no weight.*"
                      r"stays connected.*zero_init_last=False"):
        mask = paizoo.prune(resnet18, "synflow", sparsity=0.99, input_shape=shape, rounds=2)
    assert len(mask.collapsed_layers()) == 16
    assert _depends_on_input(resnet18, mask, shape)
    convnext = create_model("timm:convnext_atto", 10, seed=0)
    with pytest.warns(BranchCollapseWarning, match=r"stays connected.*gamma=1e-06.*"
                      r"ls_init_value=1.0"):
        mask = paizoo.prune(convnext, "synflow", sparsity=0.9, input_shape=(3, 32, 32),
                            rounds=2)
    assert mask.collapsed_layers()
    assert _depends_on_input(convnext, mask, (3, 32, 32))


@pytest.mark.slow
def test_issue_case_snip_on_timm_resnet50() -> None:
    """SNIP 0.9 on timm resnet50: 48 of 54 layers collapse (the 16 bottleneck branches)."""
    resnet50 = create_model("timm:resnet50", 10, seed=0)
    with pytest.warns(BranchCollapseWarning, match=r"48 layer\(s\) keep no weight.*"
                      r"stays connected.*bn3.weight=0.*zero_init_last=False"):
        mask = paizoo.prune(resnet50, "snip", sparsity=0.9, data=_images())
    assert len(mask) == 54 and len(mask.collapsed_layers()) == 48


def test_zero_init_last_false_prunes_resnet18_without_collapse() -> None:
    model = create_model("timm:resnet18", 10, seed=0, zero_init_last=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = paizoo.prune(model, "snip", sparsity=0.9, data=_images())
    assert mask.collapsed_layers() == []


# ---- errors instead of tie-break masks --------------------------------------------------------


def test_all_zero_scores_raise() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with torch.no_grad():
        for m in model:
            m.weight.zero_()
    with pytest.raises(paizoo.ScoreError, match=r"every score of pruner 'magnitude' is zero.*"
                       "tie-break"):
        paizoo.prune(model, "magnitude", sparsity=0.5)


def _mlp(outputs: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, outputs))


DATA_DRIVEN = [n for n in paizoo.list_pruners()
               if paizoo.pruners.get_pruner_class(n).requires_data]
X = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2, 3])
DEGENERATE = {
    "empty batch": (dict(data=(X[:0], Y[:0])), paizoo.MissingDataError, "batch 0 has no samples"),
    "all targets ignored": (dict(data=(X, torch.full((4,), -100))), paizoo.PaizooError,
                            r"-100"),
    "loss without gradient": (dict(data=(X, Y), loss_fn=lambda out, y: torch.tensor(1.0)),
                              paizoo.ScoreError, "does not depend on the model's weights"),
    "detached loss": (dict(data=(X, Y), loss_fn=lambda out, y: out.detach().pow(2).mean()),
                      paizoo.ScoreError, "does not depend on the model's weights"),
    "one output class": (dict(data=(X, torch.zeros(4, dtype=torch.long)), model=1),
                         paizoo.ScoreError, "every score of pruner .* is zero"),
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("pruner", DATA_DRIVEN)
def test_degenerate_data_raises_instead_of_a_tie_break_mask(pruner: str, case: str) -> None:
    kwargs, error, match = DEGENERATE[case]
    kwargs = dict(kwargs)
    model = _mlp(kwargs.pop("model", 10))
    rounds = {"rounds": 2} if pruner in ("force", "iterative_snip") else {}
    with pytest.raises(error, match=match):
        paizoo.prune(model, pruner, sparsity=0.9, **kwargs, **rounds)
