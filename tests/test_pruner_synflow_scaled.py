"""SynFlow's power-of-two scaled float32 path (precision="scaled32") vs float64 and brute force."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from _pruner_testlib import ScoreRecorder
from torch import nn

import paizoo
from paizoo.errors import ScoreError
from paizoo.masks import CoverageWarning, LayerCollapseWarning, Mask
from paizoo.models.registry import create_model
from paizoo.pruners.synflow import SynFlow
from paizoo.sparsity import kept_count


class Recording(ScoreRecorder, SynFlow):
    """Keeps each round's scores and the power of two they were divided by."""

    def score(self, ctx):  # type: ignore[no-untyped-def]
        scores = super().score(ctx)
        self.__dict__.setdefault("_exponents", []).append(self._flow_exponent)
        return scores

    def true_scores(self, round_index: int = 0) -> dict[str, torch.Tensor]:
        scale = 2.0 ** self.__dict__["_exponents"][round_index]
        return {n: s.double() * scale for n, s in self._recorded[round_index].items()}


def prune(model: nn.Module, pruner: object, *, dense: str | None = None, **kw: object) -> Mask:
    """``paizoo.prune``; a layer-collapse warning is asserted exactly when a layer collapsed
    (tiny nets at one round do collapse), a coverage warning exactly when ``dense`` names a
    parameter left dense, and no other warning may occur."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = paizoo.prune(model, pruner, **kw)  # type: ignore[arg-type]
    collapse = [w for w in caught if issubclass(w.category, LayerCollapseWarning)]
    coverage = [w for w in caught if issubclass(w.category, CoverageWarning)]
    assert bool(collapse) == bool(mask.collapsed_layers())
    assert len(coverage) == (dense is not None)
    assert all(dense in str(w.message) for w in coverage)
    assert len(caught) == len(collapse) + len(coverage), [str(w.message) for w in caught]
    return mask


def record(model: nn.Module, precision: str, shape: tuple[int, ...],
           dense: str | None = None) -> Recording:
    pruner = Recording(precision=precision, rounds=1)
    prune(model, pruner, sparsity=0.5, input_shape=shape, dense=dense)
    return pruner


def assert_scores_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
                        rtol: float) -> None:
    """Each layer's scores agree to ``rtol`` relative to that layer's largest float64 score."""
    assert set(got) == set(want)
    for name, value in want.items():
        scale = float(value.abs().max())
        err = float((got[name] - value).abs().max())
        assert err <= rtol * scale, (name, err / scale)


def mlp(widths: list[int], seed: int = 0, gain: float = 1.0, bias: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layer = nn.Linear(a, b, bias=bias)
        with torch.no_grad():
            layer.weight.mul_(gain)
        layers.append(layer)
        if i < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def brute_force_path_scores(model: nn.Sequential) -> tuple[dict[str, torch.Tensor], float]:
    """R = sum over input-output paths of prod |w|, and each weight's score = the sum of the
    products of the paths through it (= |w dR/dw|, R being linear in every single weight)."""
    names = [f"{i}.weight" for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    mats = [model.get_parameter(n).detach().double().abs().tolist() for n in names]
    widths = [len(mats[0][0])] + [len(m) for m in mats]
    scores = [[[0.0] * len(m[0]) for _ in m] for m in mats]
    total = 0.0
    for path in itertools.product(*(range(w) for w in widths)):
        product = math.prod(mats[layer][path[layer + 1]][path[layer]]
                            for layer in range(len(mats)))
        total += product
        for layer in range(len(mats)):
            scores[layer][path[layer + 1]][path[layer]] += product
    return {n: torch.tensor(s, dtype=torch.float64) for n, s in zip(names, scores,
                                                                    strict=True)}, total


@pytest.mark.parametrize("gain", [1.0, 2.0 ** 45])
def test_scores_equal_brute_force_path_sums(gain: float) -> None:
    """Weights of 2^45: R ~ 2^150 overflows float32 (plain float32 refuses), not scaled32."""
    model = mlp([3, 4, 3, 2], seed=1, gain=gain)
    expected, _ = brute_force_path_scores(model)
    pruner = record(model, "scaled32", (3,))
    assert_scores_close(pruner.true_scores(), expected, rtol=1e-6)
    for name, value in expected.items():  # entry by entry too, not only against the maximum
        torch.testing.assert_close(pruner.true_scores()[name], value, rtol=1e-5, atol=0.0)
    if gain > 1:
        assert max(float(v.max()) for v in expected.values()) > 1e40
        with pytest.raises(ScoreError, match="not finite"):
            record(model, "float32", (3,))


def test_deep_mlp_plain_float32_overflows_scaled32_gives_the_float64_mask() -> None:
    """60 Linear layers with large weights: R ~ 2^250."""
    model = mlp([32] * 61, seed=0, gain=4.0)
    f64 = Recording(precision="float64", rounds=3)
    mask64 = prune(model, f64, sparsity=0.9, input_shape=(32,))
    assert max(float(s.max()) for s in f64._recorded[0].values()) > 1e60
    with torch.no_grad():  # plain float32 really gives inf
        positive = mlp([32] * 61, seed=0, gain=4.0)
        for p in positive.parameters():
            p.abs_()
        assert torch.isinf(positive(torch.ones(1, 32)).sum())
    with pytest.raises(ScoreError, match="not finite"):
        prune(model, "synflow", sparsity=0.9, input_shape=(32,), rounds=3,
                     precision="float32")
    s32 = Recording(precision="scaled32", rounds=3)
    mask32 = prune(model, s32, sparsity=0.9, input_shape=(32,))
    assert s32.__dict__["_exponents"][0] > 200
    assert_scores_close(s32.true_scores(0), f64._recorded[0], rtol=1e-5)
    assert mask32 == mask64
    assert mask32.num_kept == kept_count(0.1, mask32.num_total)


def test_tiny_mlp_100_rounds_same_mask() -> None:
    model = mlp([6, 16, 12, 3], seed=2)
    a = prune(model, "synflow", sparsity=0.95, input_shape=(6,), precision="float64")
    b = prune(model, "synflow", sparsity=0.95, input_shape=(6,), precision="scaled32")
    assert a == b


def test_resnet20_same_scores_and_mask() -> None:
    model = create_model("resnet20", num_classes=10, seed=0)
    f64 = record(model, "float64", (3, 32, 32))
    s32 = record(model, "scaled32", (3, 32, 32))
    assert s32.__dict__["_exponents"][0] > 40  # the flow is far from 1: rescaling happened
    assert_scores_close(s32.true_scores(), f64._recorded[0], rtol=1e-5)
    a = prune(model, "synflow", sparsity=0.9, input_shape=(3, 32, 32), rounds=5)
    b = prune(model, "synflow", sparsity=0.9, input_shape=(3, 32, 32), rounds=5,
                     precision="scaled32")
    assert a == b


class Block(nn.Module):
    """relu(x + bn(fc(x))) with a branch far louder than the shortcut; in-place or not."""

    def __init__(self, width: int, inplace: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.bn = nn.BatchNorm1d(width)
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.bn(self.fc(x))
        if self.inplace:  # torchvision's Bottleneck: out += identity; relu(out, inplace=True)
            branch += x
            return F.relu(branch, inplace=True)
        return F.relu(x + branch)


class ResidualNet(nn.Module):
    def __init__(self, inplace: bool, depth: int = 20, width: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Linear(4, width)
        self.blocks = nn.Sequential(*[Block(width, inplace) for _ in range(depth)])
        self.head = nn.Linear(width, 3)
        with torch.no_grad():
            # branches of uneven, growing gain; each BN mean is half of its input in the
            # linearised net (a real subtraction, no catastrophic cancellation), at most 2^100
            h = F.linear(torch.ones(1, 4, dtype=torch.float64), self.stem.weight.double().abs(),
                         self.stem.bias.double().abs())
            for i, block in enumerate(self.blocks):
                block.fc.weight.mul_(2.0 ** (6 + 3 * (i % 3)))
                block.bn.bias.uniform_(0, 2.0 ** i)
                z = F.linear(h, block.fc.weight.double().abs(), block.fc.bias.double().abs())
                block.bn.running_mean.copy_((0.5 * z[0]).clamp(max=2.0 ** 100))
                out = F.batch_norm(z, block.bn.running_mean.double(), block.bn.running_var.double(),
                                   block.bn.weight.double().abs(), block.bn.bias.double().abs())
                h = F.relu(h + out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(x))
        return self.head(torch.cat([h[:, :4], h[:, 4:]], dim=1))


@pytest.mark.parametrize("inplace", [False, True])
def test_residual_branches_of_different_scales_are_aligned(inplace: bool) -> None:
    model = ResidualNet(inplace)
    f64 = record(model, "float64", (4,))
    s32 = record(model, "scaled32", (4,))
    with torch.no_grad():
        plain = ResidualNet(inplace).eval()
        for t in [*plain.parameters(), *plain.buffers()]:
            if t.is_floating_point():
                t.abs_()
        assert not torch.isfinite(plain(torch.ones(1, 4))).all()  # plain float32 overflows
    # float32 rounding through 20 subtracting BNs; a misaligned branch would be off by O(1)
    assert_scores_close(s32.true_scores(), f64._recorded[0], rtol=1e-4)
    # sparsity 0.5: at 0.8 the flow of this net dies after the first round (its BNs subtract
    # their inputs' means), and an all-zero round raises ScoreError in either precision
    assert prune(model, "synflow", sparsity=0.5, input_shape=(4,), rounds=4,
                 precision="scaled32") == prune(
        model, "synflow", sparsity=0.5, input_shape=(4,), rounds=4)
    with pytest.raises(ScoreError, match="every score of pruner 'synflow' is zero"):
        prune(model, "synflow", sparsity=0.8, input_shape=(4,), rounds=4)


def test_dead_activation_with_a_large_exponent_keeps_the_bias() -> None:
    """An all-zero activation labelled 2^100 plus a bias of 1 is the bias, not 0 (alignment
    goes by the operands' magnitudes, not by their labels)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3),
                          nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.fill_(2.0 ** 100)
        model[1].running_mean.fill_(2.0 ** 110)  # x - mean < 0: ReLU gives exact zeros
        model[3].bias.uniform_(0.5, 1.0)
    f64 = record(model, "float64", (4,))
    s32 = record(model, "scaled32", (4,))
    assert float(f64._recorded[0]["4.weight"].min()) > 0
    torch.testing.assert_close(s32.true_scores()["4.weight"], f64._recorded[0]["4.weight"],
                               rtol=1e-6, atol=0.0)


class Attention(nn.Module):
    def __init__(self, gain: float, dim: int = 8, tokens: int = 5) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pos = nn.Parameter(torch.randn(tokens, dim))
        self.embed = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, 2)
        with torch.no_grad():
            self.embed.weight.mul_(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x + self.pos)
        q, k, v = self.qkv(h + F.gelu(self.norm(h))).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))
        return self.proj(out.squeeze(1).mean(1))


def test_attention_logit_scale_moves_into_the_softmax_scale() -> None:
    model = Attention(gain=2.0 ** 10)  # logits ~ 2^20: finite in float32, exact exponents
    f64 = record(model, "float64", (5, 8), dense="pos")  # the raw positional parameter
    s32 = record(model, "scaled32", (5, 8), dense="pos")
    assert_scores_close(s32.true_scores(), f64._recorded[0], rtol=1e-4)


def test_refuses_instead_of_guessing_outside_float32() -> None:
    """Attention logits of 2^140 and a GELU of 2^150-sized inputs have no exact rule."""
    with pytest.raises(ScoreError, match=r"attention logits.*float64"):
        record(Attention(gain=2.0 ** 70), "scaled32", (5, 8), dense="pos")
    model = nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.fill_(2.0 ** 100)
        model[0].bias.zero_()
    with pytest.raises(ScoreError, match=r"gelu.*float64"):
        record(model, "scaled32", (4,))
    assert record(model, "float64", (4,))._recorded  # float64 copes with 2^102


@pytest.mark.parametrize("source", ["torchvision:resnet18", "timm:resnet18"])
def test_library_resnets_match_float64(source: str) -> None:
    """torchvision's in-place ``out += identity`` / ReLU(inplace), timm's blocks
    (``zero_init_last=False``: otherwise the residual branches carry no flow)."""
    extra = {"zero_init_last": False} if source.startswith("timm") else {}
    model = create_model(source, num_classes=10, seed=0, **extra)
    f64 = record(model, "float64", (3, 32, 32))
    s32 = record(model, "scaled32", (3, 32, 32))
    assert_scores_close(s32.true_scores(), f64._recorded[0], rtol=1e-5)
