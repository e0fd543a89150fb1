"""The Mask type: statistics, report, comparisons, persistence, apply/remove and training."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from _pruner_testlib import plain_twin
from torch import nn

import paizoo
import paizoo.reparam
from paizoo.errors import MaskMismatchError
from paizoo.masks import Mask


class _WithAttnMaskBuffer(nn.Module):
    """Swin-style: a buffer whose name ends in ``_mask`` but is no pruning mask."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("attn_mask", torch.ones(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) @ self.attn_mask


def test_from_model_ignores_buffers_that_are_not_pruning_masks() -> None:
    model = _WithAttnMaskBuffer()
    mask = paizoo.prune(model, "magnitude", sparsity=0.5, apply=True)
    assert list(Mask.from_model(model)) == ["fc.weight"]
    assert Mask.from_model(model) == mask


# ---- helpers -------------------------------------------------------------------------------------


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6, 12)
        self.fc2 = nn.Linear(12, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


def _mask_for(model: nn.Module, density: float = 0.4, seed: int = 0) -> Mask:
    return paizoo.prune(model, "random", density=density, seed=seed)


# ---- construction and statistics -------------------------------------------------------------


def test_construction_converts_and_validates() -> None:
    mask = Mask({"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([[0, 3]])})
    assert mask["a"].dtype == torch.bool and mask["a"].tolist() == [True, False]
    assert mask["b"].tolist() == [[False, True]]
    with pytest.raises(ValueError, match="'a' has values other than 0 and 1"):
        Mask({"a": torch.tensor([0.5])})
    with pytest.raises(TypeError, match="'a' is a list, expected a tensor"):
        Mask({"a": [1, 0]})  # type: ignore[dict-item]


def test_statistics() -> None:
    mask = Mask({"a": torch.tensor([[True, False], [True, True]]), "b": torch.zeros(3, dtype=bool)})
    assert (mask.num_kept, mask.num_total) == (3, 7)
    assert mask.density == pytest.approx(3 / 7) and mask.sparsity == pytest.approx(4 / 7)
    assert [(r.name, r.shape, r.kept, r.total) for r in mask.layers()] == [
        ("a", (2, 2), 3, 4), ("b", (3,), 0, 3)]
    assert mask.layer_densities() == {"a": 0.75, "b": 0.0}
    assert len(mask) == 2 and list(mask) == ["a", "b"]
    assert "kept 3/7" in repr(mask)


def test_ones_covers_the_prunable_parameters() -> None:
    model = SmallCNN()
    mask = Mask.ones(model)
    assert list(mask) == ["conv.weight", "fc1.weight", "fc2.weight"]
    assert mask.density == 1.0
    assert list(Mask.ones(model, exclude="fc*")) == ["conv.weight"]


def test_report_table_and_collapse_flag() -> None:
    mask = Mask({"layer1.weight": torch.tensor([[True, False], [False, False]]),
                 "head.weight": torch.zeros(2, 3, dtype=bool)})
    lines = mask.report().splitlines()
    assert lines[0].split() == ["layer", "shape", "kept", "total", "density"]
    row = next(line for line in lines if line.startswith("layer1.weight"))
    assert row.split() == ["layer1.weight", "2x2", "1", "4", "25.0000%"]
    head = next(line for line in lines if line.startswith("head.weight"))
    assert head.split()[-1] == "COLLAPSED" and "0.0000%" in head
    glob = next(line for line in lines if line.startswith("global"))
    assert glob.split() == ["global", "1", "10", "10.0000%"]
    assert lines[-1] == "layer collapse in 1 layer(s): head.weight"


def test_collapsed_layers_warning() -> None:
    mask = Mask({"a": torch.ones(2, dtype=bool), "b": torch.zeros(2, dtype=bool)})
    assert mask.collapsed_layers() == ["b"]
    with pytest.warns(paizoo.LayerCollapseWarning, match="1 layer.*b"):
        mask.warn_if_collapsed()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Mask({"a": torch.ones(2, dtype=bool)}).warn_if_collapsed()


def test_pruning_that_empties_a_layer_warns() -> None:
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 2))
    with torch.no_grad():
        model[1].weight.mul_(1e-6)  # global magnitude removes the tiny last layer entirely
    with pytest.warns(paizoo.LayerCollapseWarning, match="1.weight"):
        mask = paizoo.prune(model, "magnitude", sparsity=0.5)
    assert mask.collapsed_layers() == ["1.weight"]


# ---- comparisons ---------------------------------------------------------------------------------


def test_iou_eq_and_set_operations() -> None:
    a = Mask({"x": torch.tensor([True, True, False, False]), "y": torch.tensor([True])})
    b = Mask({"x": torch.tensor([True, False, True, False]), "y": torch.tensor([True])})
    assert a.iou(b) == pytest.approx(2 / 4)  # intersection {x0, y0}, union {x0, x1, x2, y0}
    assert a.iou(a) == 1.0
    empty = Mask({"x": torch.zeros(4, dtype=bool), "y": torch.zeros(1, dtype=bool)})
    assert empty.iou(empty) == 1.0
    assert (a & b)["x"].tolist() == [True, False, False, False]
    assert (a | b)["x"].tolist() == [True, True, True, False]
    assert a == Mask({"x": torch.tensor([1.0, 1.0, 0.0, 0.0]), "y": torch.tensor([1.0])})
    assert a != b
    assert a == {"x": torch.tensor([True, True, False, False]), "y": torch.tensor([True])}
    assert a != "mask"
    with pytest.raises(MaskMismatchError, match=r"only in first \['y'\]"):
        a.iou(Mask({"x": a["x"]}))
    with pytest.raises(MaskMismatchError, match=r"'x': shape \(4,\) vs \(2, 2\)"):
        a & Mask({"x": torch.ones(2, 2, dtype=bool), "y": torch.ones(1, dtype=bool)})


def test_eq_ignores_entry_order() -> None:
    x, y = torch.tensor([True, False]), torch.tensor([[False, True]])
    a, b = Mask({"x": x, "y": y}), Mask({"y": y, "x": x})
    assert list(a) != list(b)  # the order differs ...
    assert a == b and b == a and not (a != b)  # ... the masks do not
    assert a == {"y": y, "x": x}
    assert a != Mask({"y": y, "x": ~x})  # same names, other values
    assert a != Mask({"x": x, "z": y})  # other names
    assert a != Mask({"x": x})  # fewer names
    assert a != Mask({"y": y.reshape(2), "x": x})  # same values, other shape
    assert a != {"x": x, "y": "not a tensor"}


def test_iou_against_brute_force_sets() -> None:
    model = SmallCNN()
    a, b = _mask_for(model, 0.3, seed=1), _mask_for(model, 0.5, seed=2)
    sa = {(n, i) for n in a for i in torch.nonzero(a[n].reshape(-1)).reshape(-1).tolist()}
    sb = {(n, i) for n in b for i in torch.nonzero(b[n].reshape(-1)).reshape(-1).tolist()}
    assert a.iou(b) == pytest.approx(len(sa & sb) / len(sa | sb))


# ---- persistence ---------------------------------------------------------------------------------


def test_save_load_round_trip_with_metadata(tmp_path: Path) -> None:
    model = SmallCNN()
    mask = _mask_for(model)
    meta = {"model": "smallcnn", "pruner": "random", "seed": 0, "config": {"a": [1, 2]}}
    path = mask.save(tmp_path / "sub" / "mask.safetensors", metadata=meta)
    assert path.is_file() and not list(tmp_path.glob("sub/*.tmp"))
    loaded = Mask.load(path, model=model)
    assert loaded == mask and list(loaded) == list(mask)
    assert all(loaded[n].dtype == torch.bool for n in loaded)
    assert Mask.load_metadata(path) == meta
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["format"] == "paizoo-mask"


def test_load_onto_the_wrong_model_names_the_mismatches(tmp_path: Path) -> None:
    path = _mask_for(SmallCNN(classes=5)).save(tmp_path / "m.safetensors")
    other = SmallCNN(classes=7)
    with pytest.raises(MaskMismatchError) as info:
        Mask.load(path, model=other)
    message = str(info.value)
    assert "fc2.weight: mask shape (5, 12) but parameter shape (7, 12)" in message
    assert "conv.weight" not in message  # only the mismatched entries are listed
    with pytest.raises(MaskMismatchError, match=r"mlp\.weight: no such parameter"):
        Mask({"mlp.weight": torch.ones(2, 2, dtype=bool)}).check_compatible(other)
    with pytest.raises(FileNotFoundError, match="no mask file"):
        Mask.load(tmp_path / "missing.safetensors")


# ---- apply / remove / training -----------------------------------------------------------------


def test_apply_uses_the_torch_prune_convention() -> None:
    model = SmallCNN()
    mask = _mask_for(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = mask.apply(model)
    assert out is model and paizoo.reparam.is_masked(model)
    assert isinstance(model.conv.weight_orig, nn.Parameter)
    assert torch.equal(model.conv.weight_orig, before["conv.weight"])
    assert torch.equal(model.conv.weight_mask, mask["conv.weight"].float())
    model(torch.randn(2, 3, 8, 8))
    assert torch.equal(model.conv.weight, before["conv.weight"] * mask["conv.weight"])
    keys = set(model.state_dict())
    assert {"conv.weight_orig", "conv.weight_mask", "fc1.weight_orig", "fc1.weight_mask"} <= keys
    assert "conv.weight" not in keys
    assert Mask.from_model(model) == mask
    assert list(paizoo.prunable_parameters(model)) == list(mask)  # logical names unchanged
    paizoo.remove_masks(model)
    assert not paizoo.reparam.is_masked(model)
    assert torch.equal(model.conv.weight, before["conv.weight"] * mask["conv.weight"])
    assert isinstance(model.conv.weight, nn.Parameter)
    assert set(model.state_dict()) == set(SmallCNN().state_dict())


def test_state_dict_round_trip_into_a_fresh_model() -> None:
    model = SmallCNN()
    mask = _mask_for(model)
    mask.apply(model)
    fresh = SmallCNN()
    Mask.ones(fresh).apply(fresh)  # same parametrisation, so the keys match
    fresh.load_state_dict(model.state_dict())
    assert Mask.from_model(fresh) == mask
    x = torch.randn(3, 3, 8, 8)
    model.eval()
    fresh.eval()
    assert torch.equal(fresh(x), model(x))


def test_apply_twice_intersects() -> None:
    model = SmallCNN()
    a, b = _mask_for(model, 0.5, seed=1), _mask_for(model, 0.5, seed=2)
    a.apply(model)
    b.apply(model)
    assert Mask.from_model(model) == (a & b)


def test_from_model_without_masks() -> None:
    with pytest.raises(MaskMismatchError, match="carries no '\\*_mask' buffers"):
        Mask.from_model(SmallCNN())


def _optimizers(params: list[nn.Parameter]) -> dict[str, torch.optim.Optimizer]:
    return {
        "sgd": torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        "adam": torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4),
        "adamw": torch.optim.AdamW(params, lr=1e-2),
    }


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
def test_pruned_weights_stay_exactly_zero_under_training(opt_name: str) -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    mask = paizoo.prune(model, "magnitude", sparsity=0.7, apply=True)
    opt = _optimizers(list(model.parameters()))[opt_name]
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
    start = {n: model.get_submodule(n.rsplit(".", 1)[0]).weight_orig.detach().clone()
             for n in mask}
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model(x)  # the forward pre-hook recomputes weight = weight_orig * weight_mask
    for name, keep in mask.items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        assert bool((module.weight[~keep] == 0).all())
        assert not torch.equal(module.weight_orig[keep], start[name][keep])  # it trained
    paizoo.remove_masks(model)
    for name, keep in mask.items():
        assert bool((model.get_submodule(name.rsplit(".", 1)[0]).weight[~keep] == 0).all())


def _plain_twin(layer: nn.TransformerEncoderLayer) -> nn.TransformerEncoderLayer:
    """An unmasked layer holding ``weight_orig * weight_mask``, built from the state dict alone."""
    return plain_twin(layer, lambda: nn.TransformerEncoderLayer(
        16, 4, dim_feedforward=32, dropout=0.0, batch_first=True))


def test_transformer_encoder_layer_masks_through_training() -> None:
    """nn.MultiheadAttention reads ``out_proj.weight`` directly (torchvision's vit_b_16 uses it
    the same way): the masked weight must be what attention uses, in train and eval mode."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)
    with pytest.warns(paizoo.CoverageWarning, match=r"self_attn\.in_proj_weight"):
        mask = paizoo.prune(layer, "random", sparsity=0.6, apply=True)
    assert "self_attn.out_proj.weight" in mask
    opt = torch.optim.Adam(layer.parameters(), lr=1e-2)
    x = torch.randn(4, 5, 16)
    for _ in range(3):
        opt.zero_grad()
        layer(x).pow(2).mean().backward()
        opt.step()
        assert torch.allclose(layer(x), _plain_twin(layer)(x), atol=1e-6)
    assert bool((layer.self_attn.out_proj.weight[~mask["self_attn.out_proj.weight"]] == 0).all())
    layer.eval()
    with torch.no_grad():  # eval + no_grad: PyTorch's fused paths where they apply
        assert torch.allclose(layer(x), _plain_twin(layer)(x), atol=1e-5)
        for module in (layer.self_attn.out_proj, layer.linear1):
            module.weight_orig.add_(1.0)  # the pruned entries must stay out of the computation
        assert torch.allclose(layer(x), _plain_twin(layer)(x), atol=1e-5)


def test_to_and_cpu() -> None:
    mask = Mask({"a": torch.tensor([True, False])})
    assert mask.cpu() == mask and mask.to("cpu")["a"].device.type == "cpu"
