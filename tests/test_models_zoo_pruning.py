"""Every registered pruner on small nets (defined here, and paizoo's LeNet-300-100 and ResNet-20)
and on torchvision / timm architectures.

Inputs are small (3x32x32 for the CNNs, 3x64x64 for timm's ViT-Tiny built with ``img_size=64``;
the slow-marked torchvision ViT-B/16 runs at 3x224x224). Each pruner gets a small random batch
(``data``) and ``input_shape``, so data-driven and
input-driven pruners are covered as soon as they are registered. After pruning: the mask covers
exactly the prunable parameters, keeps the pruner's own budget, and, applied to a copy of the
model, a forward pass works and a few SGD steps (momentum + weight decay) leave every pruned
weight exactly zero.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

import paizoo
from paizoo.models import create_model

# dey keeps conv layers dense and says so; that is the expected behaviour on these conv nets
pytestmark = pytest.mark.filterwarnings("ignore:Dey patterns apply to Linear junctions only")

NUM_CLASSES = 10


class OwnMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32),
                                 nn.ReLU(), nn.Linear(32, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class OwnCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1, groups=2), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Conv2d(16, 16, 1), nn.ReLU())
        self.head = nn.Linear(16, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "own-mlp": (OwnMLP, (1, 8, 8)),
    "own-cnn": (OwnCNN, (3, 16, 16)),
    "lenet_300_100": (lambda: create_model("lenet_300_100", NUM_CLASSES, in_channels=1, seed=0),
                      (1, 28, 28)),
    "resnet20": (lambda: create_model("resnet20", NUM_CLASSES, seed=0), (3, 32, 32)),
    "torchvision:resnet18": (lambda: create_model("torchvision:resnet18", NUM_CLASSES, seed=0),
                             (3, 32, 32)),
    "torchvision:mobilenet_v3_small": (
        lambda: create_model("torchvision:mobilenet_v3_small", NUM_CLASSES, seed=0), (3, 32, 32)),
    "timm:resnet18": (lambda: create_model("timm:resnet18", NUM_CLASSES, seed=0), (3, 32, 32)),
    "timm:efficientnet_b0": (lambda: create_model("timm:efficientnet_b0", NUM_CLASSES, seed=0),
                             (3, 32, 32)),
    "timm:convnext_atto": (lambda: create_model("timm:convnext_atto", NUM_CLASSES, seed=0),
                           (3, 32, 32)),
    # img_size=64 only resizes the (unpruned) position embedding: every prunable weight has its
    # 224 shape, and a forward costs 1/12 of one at 224
    "timm:vit_tiny_patch16_224": (
        lambda: create_model("timm:vit_tiny_patch16_224", NUM_CLASSES, seed=0, img_size=64),
        (3, 64, 64)),
}
SLOW_MODELS = {
    "torchvision:vit_b_16": (lambda: create_model("torchvision:vit_b_16", NUM_CLASSES, seed=0),
                             (3, 224, 224)),
}

_BUILT: dict[str, nn.Module] = {}
# expensive defaults cut down for the smoke test (the pruners' own tests check their defaults)
BATCH = 4  # two GraSP halves of 2: batch-norm in train mode needs >= 2 samples
FAST: dict[str, dict[str, object]] = {
    "ntksap": {"rounds": 2, "draws": 1, "batch_size": 4},
    "synflow": {"rounds": 2},
    "force": {"rounds": 2},
    "iterative_snip": {"rounds": 2},
}

# the only (pruner, model) pairs that refuse, each with a clear error: PHEW follows channels from
# layer to layer and cannot through permute/transpose (ConvNeXt's channels-last blocks, ViT tokens)
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("phew", "timm:convnext_atto"): "PHEW cannot follow the channels through .*'permute'",
    ("phew", "timm:vit_tiny_patch16_224"): "PHEW cannot follow the channels through .*'transpose'",
}


#: weights these models have outside the default coverage, named by a CoverageWarning
DENSE_KINDS = {
    "timm:vit_tiny_patch16_224": r"other weights \(2 tensor\(s\).*cls_token, pos_embed",
    "torchvision:vit_b_16": r"attention weights \(12 tensor.*other weights \(2 tensor",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small convolutions on a shared CPU run much faster on one intra-op thread (with two,
    OpenMP workers spin while the other cores are busy: 20x slower measured under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name: str) -> tuple[nn.Module, tuple[int, ...]]:
    """Each architecture is built once per session; tests never modify the cached instance
    (``paizoo.prune`` does not touch it; ``apply`` goes to a copy)."""
    factory, shape = {**MODELS, **SLOW_MODELS}[name]
    if name not in _BUILT:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _BUILT[name] = factory()
    return _BUILT[name], shape


def _check_pruner_on(model_name: str, pruner_name: str, sparsity: float = 0.9) -> None:
    model, shape = _model(model_name)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, *shape, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (BATCH,), generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", paizoo.LayerCollapseWarning)
        if (pruner_name, model_name) in UNSUPPORTED:
            with pytest.raises(paizoo.UnsupportedLayerError, match=UNSUPPORTED[
                    (pruner_name, model_name)]):
                paizoo.prune(model, pruner_name, sparsity=sparsity, data=(x, y),
                             input_shape=shape, **FAST.get(pruner_name, {}))
            return
        with (pytest.warns(paizoo.CoverageWarning, match=DENSE_KINDS[model_name])
              if model_name in DENSE_KINDS else contextlib.nullcontext()):
            mask = paizoo.prune(model, pruner_name, sparsity=sparsity, data=(x, y),
                                input_shape=shape, **FAST.get(pruner_name, {}))

    params = paizoo.prunable_parameters(model)
    assert list(mask) == list(params)
    assert all(mask[n].shape == p.shape for n, p in params.items())
    budget = paizoo.create_pruner(pruner_name, **FAST.get(pruner_name, {})).budgets(
        {n: p.shape for n, p in params.items()}, 1.0 - sparsity)
    assert mask.num_kept == (budget if isinstance(budget, int) else sum(budget.values()))
    assert 0 < mask.num_kept < mask.num_total

    work = copy.deepcopy(model).train()
    mask.apply(work)
    opt = torch.optim.SGD(work.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(work(x), y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    work.eval()
    with torch.no_grad():
        out = work(x)  # the forward pre-hooks recompute every masked weight
    assert out.shape == (BATCH, NUM_CLASSES) and bool(torch.isfinite(out).all())
    for name, keep in mask.items():
        weight = work.get_submodule(name.rsplit(".", 1)[0]).weight
        assert bool((weight[~keep] == 0).all()), name
    assert paizoo.Mask.from_model(work) == mask


@pytest.mark.parametrize("pruner_name", paizoo.list_pruners())
@pytest.mark.parametrize("model_name", list(MODELS))
def test_pruner_on_model(model_name: str, pruner_name: str) -> None:
    _check_pruner_on(model_name, pruner_name)


@pytest.mark.slow
@pytest.mark.parametrize("pruner_name", paizoo.list_pruners())
@pytest.mark.parametrize("model_name", list(SLOW_MODELS))
def test_pruner_on_large_model(model_name: str, pruner_name: str) -> None:
    _check_pruner_on(model_name, pruner_name)
