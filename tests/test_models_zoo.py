"""The PaI model zoo: parameter counts by hand formula, shapes, torch.fx, seeding, init."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.fx
from torch import nn

from paizoo.errors import UnknownModelError
from paizoo.models import NATIVE_INPUT_SHAPES, create_model, list_models, model_descriptions

ZOO = ["lenet_300_100", "lenet5", "lenet5_caffe", "conv6", "vgg11_bn", "vgg16_bn", "vgg19_bn",
       "resnet20", "resnet32", "resnet56", "resnet18", "wrn_28_2", "mlp_1x512", "mlp_4x128",
       "vgg_mini_bn", "resnet8_narrow", "mobilenet_mini"]


# ---- independent parameter counts, from the papers' layer tables ----------------------------
def conv(ci: int, co: int, k: int, bias: bool) -> int:
    return ci * co * k * k + (co if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def lin(i: int, o: int) -> int:
    return i * o + o


def count_lenet_300_100(c: int, h: int, w: int, nc: int) -> int:
    return lin(c * h * w, 300) + lin(300, 100) + lin(100, nc)


def count_lenet5(c: int, s_after: int, nc: int) -> int:
    # conv1 6@5x5 pad 2 keeps 28 -> pool 14 -> conv2 16@5x5 -> 10 -> pool 5  (s_after = 5)
    return (conv(c, 6, 5, True) + conv(6, 16, 5, True) + lin(16 * s_after**2, 120)
            + lin(120, 84) + lin(84, nc))


def count_lenet5_caffe(c: int, nc: int) -> int:
    # 28 -> conv 24 -> pool 12 -> conv 8 -> pool 4: 50 * 4 * 4 = 800 features
    return conv(c, 20, 5, True) + conv(20, 50, 5, True) + lin(800, 500) + lin(500, nc)


def count_conv6(c: int, s: int, nc: int) -> int:
    convs = (conv(c, 64, 3, True) + conv(64, 64, 3, True) + conv(64, 128, 3, True)
             + conv(128, 128, 3, True) + conv(128, 256, 3, True) + conv(256, 256, 3, True))
    return convs + lin(256 * (s // 8) ** 2, 256) + lin(256, 256) + lin(256, nc)


def count_vgg_bn(widths: list[int], c: int, nc: int) -> int:
    total, prev = 0, c
    for w in widths:
        total += conv(prev, w, 3, True) + bn(w)
        prev = w
    return total + lin(512, nc)


VGG_WIDTHS = {
    11: [64, 128, 256, 256, 512, 512, 512, 512],
    16: [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    19: [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512],
}


def count_mlp(widths: list[int], c: int, h: int, w: int, nc: int) -> int:
    sizes = [c * h * w, *widths, nc]
    return sum(lin(a, b) for a, b in itertools.pairwise(sizes))


def count_mobilenet_mini(c: int, nc: int) -> int:
    # stem 3x3 (no bias) + BN; per block: depthwise 3x3 (one 3x3 filter per channel) + BN,
    # pointwise 1x1 + BN; channels 16 -> 32 -> 64 -> 64 -> 128
    total, prev = conv(c, 16, 3, False) + bn(16), 16
    for out in (32, 64, 64, 128):
        total += prev * 9 + bn(prev) + conv(prev, out, 1, False) + bn(out)
        prev = out
    return total + lin(128, nc)


def count_cifar_resnet(n: int, c: int, nc: int, projection: bool = True,
                       widths: tuple[int, int, int] = (16, 32, 64)) -> int:
    total = conv(c, widths[0], 3, False) + bn(widths[0])
    prev = widths[0]
    for w in widths:
        for _ in range(n):
            total += conv(prev, w, 3, False) + bn(w) + conv(w, w, 3, False) + bn(w)
            if prev != w and projection:
                total += conv(prev, w, 1, False) + bn(w)
            prev = w
    return total + lin(widths[-1], nc)


def count_wrn(depth: int, k: int, c: int, nc: int) -> int:
    n = (depth - 4) // 6
    total, prev = conv(c, 16, 3, False), 16
    for w in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += bn(prev) + conv(prev, w, 3, False) + bn(w) + conv(w, w, 3, False)
            if prev != w:
                total += conv(prev, w, 1, False)
            prev = w
    return total + bn(prev) + lin(prev, nc)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "kwargs", "expected"), [
    ("lenet_300_100", {"in_channels": 1}, count_lenet_300_100(1, 28, 28, 10)),
    ("lenet_300_100", {"in_channels": 3, "input_size": 32, "num_classes": 100},
     count_lenet_300_100(3, 32, 32, 100)),
    ("lenet5", {"in_channels": 1}, count_lenet5(1, 5, 10)),
    ("lenet5", {"in_channels": 3, "input_size": 32}, count_lenet5(3, 6, 10)),  # 32-16-12-6
    ("lenet5_caffe", {"in_channels": 1}, count_lenet5_caffe(1, 10)),
    ("conv6", {}, count_conv6(3, 32, 10)),
    ("conv6", {"input_size": 64, "num_classes": 200}, count_conv6(3, 64, 200)),
    ("vgg11_bn", {}, count_vgg_bn(VGG_WIDTHS[11], 3, 10)),
    ("vgg16_bn", {}, count_vgg_bn(VGG_WIDTHS[16], 3, 10)),
    ("vgg19_bn", {"num_classes": 100}, count_vgg_bn(VGG_WIDTHS[19], 3, 100)),
    ("resnet20", {}, count_cifar_resnet(3, 3, 10)),
    ("resnet32", {}, count_cifar_resnet(5, 3, 10)),
    ("resnet56", {"in_channels": 1}, count_cifar_resnet(9, 1, 10)),
    ("wrn_28_2", {}, count_wrn(28, 2, 3, 10)),
    ("mlp_1x512", {"in_channels": 1}, count_mlp([512], 1, 28, 28, 10)),
    ("mlp_4x128", {"in_channels": 1}, count_mlp([128] * 4, 1, 28, 28, 10)),
    ("mlp_4x128", {"in_channels": 3, "input_size": 32, "num_classes": 100},
     count_mlp([128] * 4, 3, 32, 32, 100)),
    ("vgg_mini_bn", {"in_channels": 1}, conv(1, 16, 3, True) + bn(16) + conv(16, 32, 3, True)
     + bn(32) + conv(32, 64, 3, True) + bn(64) + conv(64, 64, 3, True) + bn(64) + lin(64, 10)),
    ("resnet8_narrow", {"in_channels": 1}, count_cifar_resnet(1, 1, 10, widths=(8, 16, 32))),
    ("mobilenet_mini", {"in_channels": 1}, count_mobilenet_mini(1, 10)),
    ("mobilenet_mini", {"in_channels": 3, "num_classes": 100}, count_mobilenet_mini(3, 100)),
])
def test_parameter_counts_match_hand_formulas(name: str, kwargs: dict, expected: int) -> None:
    assert n_params(create_model(name, **kwargs)) == expected


def test_known_totals_from_the_literature() -> None:
    # the classic headline numbers (exact where the papers give them)
    assert count_lenet_300_100(1, 28, 28, 10) == 266_610
    assert count_lenet5(1, 5, 10) == 61_706
    assert count_lenet5_caffe(1, 10) == 431_080  # "LeNet-5-Caffe, 431K" (SNIP, Table 1)
    assert count_conv6(3, 32, 10) == 2_262_602  # "Conv-6 ... 2.26M" (Frankle & Carbin, Fig. 2)
    # He et al. 2016, Table 6 (option A shortcuts): 0.27M, 0.46M, 0.85M
    for n, published in ((3, 0.27), (5, 0.46), (9, 0.85)):
        assert round(count_cifar_resnet(n, 3, 10, projection=False) / 1e6, 2) == published
    # option B adds two 1x1 projections + BN: 16*32 + 64 + 32*64 + 128 = 2752 parameters
    assert count_cifar_resnet(3, 3, 10) - count_cifar_resnet(3, 3, 10, projection=False) == 2752
    assert round(count_wrn(28, 2, 3, 10) / 1e6, 2) == 1.47  # WRN-28-2 ~1.5M (Table 1 family)
    assert round(count_vgg_bn(VGG_WIDTHS[16], 3, 10) / 1e6, 1) == 14.7
    # the small models of the multi-architecture Fashion-MNIST corpus (their docstrings' counts)
    assert count_mlp([512], 1, 28, 28, 10) == 407_050
    assert count_mlp([128] * 4, 1, 28, 28, 10) == 151_306
    assert count_cifar_resnet(1, 1, 10, widths=(8, 16, 32)) == 19_810
    assert count_mobilenet_mini(1, 10) == 18_826


def test_new_small_models_shapes_and_families() -> None:
    """The corpus models: output sizes of their stages on 1x28x28 and their families."""
    from paizoo.models import FAMILIES, MODEL_FAMILIES

    assert set(ZOO) <= set(MODEL_FAMILIES) and set(MODEL_FAMILIES.values()) <= set(FAMILIES)
    assert [MODEL_FAMILIES[n] for n in ("lenet_300_100", "mlp_4x128", "lenet5", "vgg_mini_bn",
                                        "resnet8_narrow", "mobilenet_mini")] == \
        ["mlp", "mlp", "cnn", "cnn-bn", "resnet", "mobilenet"]
    x = torch.randn(2, 1, 28, 28)
    mobile = create_model("mobilenet_mini", in_channels=1, seed=0).eval()
    with torch.no_grad():
        out = mobile.stem_relu(mobile.stem_bn(mobile.stem(x)))
        sizes = []
        for block in mobile.blocks:
            out = block(out)
            sizes.append(tuple(out.shape[1:]))
    # strides 2, 2, 1, 2 on the depthwise convs: 28 -> 14 -> 7 -> 7 -> 4
    assert sizes == [(32, 14, 14), (64, 7, 7), (64, 7, 7), (128, 4, 4)]
    dws = [b.dw for b in mobile.blocks]
    assert all(d.groups == d.in_channels == d.out_channels and d.weight.shape[1] == 1 for d in dws)
    vgg = create_model("vgg_mini_bn", in_channels=1, seed=0).eval()
    with torch.no_grad():
        assert tuple(vgg.features(x).shape) == (2, 64, 7, 7)
    res = create_model("resnet8_narrow", in_channels=1, seed=0).eval()
    assert [len(getattr(res, f"layer{i}")) for i in (1, 2, 3)] == [1, 1, 1]
    assert [getattr(res, f"layer{i}")[0].conv2.out_channels for i in (1, 2, 3)] == [8, 16, 32]


def test_resnet18_against_torchvision() -> None:
    """CIFAR ResNet-18 = torchvision's ResNet-18 with a 3x3 (not 7x7) stem conv."""
    import torchvision

    tv = n_params(torchvision.models.resnet18(weights=None, num_classes=10))
    assert n_params(create_model("resnet18")) == tv - conv(3, 64, 7, False) + conv(3, 64, 3, False)


def test_torchvision_backbones_are_not_downloaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's detection and segmentation builders (fcn_*, deeplabv3_*, lraspp_*,
    fasterrcnn_*, ...) load ImageNet backbone weights by default even with ``weights=None``:
    ``torchvision:lraspp_mobilenet_v3_large`` downloaded them. Every builder that takes
    ``weights_backbone`` gets None, a model builds with downloads made impossible, and asking
    for a backbone is refused."""
    import inspect

    import torchvision
    from torchvision.models._api import WeightsEnum

    from paizoo.errors import ModelConfigError

    def no_download(self: object, *args: object, **kwargs: object) -> None:
        raise AssertionError(f"create_model loaded pretrained weights {self}")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", no_download)
    model = create_model("torchvision:lraspp_mobilenet_v3_large", num_classes=3)
    assert model(torch.randn(1, 3, 64, 64))["out"].shape == (1, 3, 64, 64)
    with pytest.raises(ModelConfigError, match="without pretrained weights"):
        create_model("torchvision:fcn_resnet50", weights_backbone="DEFAULT")
    seen: dict[str, dict] = {}
    monkeypatch.setattr(torchvision.models, "get_model",
                        lambda name, **kwargs: seen.setdefault(name, kwargs))
    with_backbone = [n for n in torchvision.models.list_models() if "weights_backbone" in
                     inspect.signature(torchvision.models.get_model_builder(n)).parameters]
    assert len(with_backbone) >= 10  # detection and segmentation models
    for name in with_backbone:
        create_model(f"torchvision:{name}")
        assert seen[name]["weights"] is None and seen[name]["weights_backbone"] is None


def test_vgg16_features_against_torchvision() -> None:
    """Same conv/BN stack as torchvision's vgg16_bn features (which has one more max pool)."""

    from torchvision.models.vgg import cfgs, make_layers

    tv_features = make_layers(cfgs["D"], batch_norm=True)  # vgg16_bn's features only
    ours = create_model("vgg16_bn")
    assert n_params(ours.features) == n_params(tv_features)
    tv_shapes = [tuple(m.weight.shape) for m in tv_features if isinstance(m, nn.Conv2d)]
    our_shapes = [tuple(m.weight.shape) for m in ours.features if isinstance(m, nn.Conv2d)]
    assert our_shapes == tv_shapes
    assert sum(isinstance(m, nn.MaxPool2d) for m in ours.features) == 4


def test_registry_lists_the_zoo_with_descriptions() -> None:
    assert set(ZOO) <= set(list_models())
    descriptions = model_descriptions()
    for name in ZOO:
        assert descriptions[name]
        assert NATIVE_INPUT_SHAPES[name] in ((1, 28, 28), (3, 32, 32))


@pytest.mark.parametrize("name", ZOO)
def test_output_shape_and_fx_trace(name: str) -> None:
    c, h, w = NATIVE_INPUT_SHAPES[name]
    if c == 3:
        h = w = 16  # small inputs keep the test fast; tracing does not depend on the size
    model = create_model(name, num_classes=7, in_channels=c, input_size=(h, w), seed=0).eval()
    x = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 7)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), y)
    # every weighted layer shows up as a module call (graph encoders rely on this)
    called = {n.target for n in traced.graph.nodes if n.op == "call_module"}
    weighted = {n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert weighted <= called
    assert not any(n.op == "call_function" and "relu" in str(n.target) for n in traced.graph.nodes)


@pytest.mark.parametrize(("name", "size"), [("lenet5", 32), ("conv6", 64), ("lenet_300_100", 8),
                                            ("vgg11_bn", 28), ("resnet20", 40), ("wrn_28_2", 28)])
def test_other_input_sizes(name: str, size: int) -> None:
    model = create_model(name, num_classes=3, in_channels=1, input_size=size).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, size, size)).shape == (1, 3)


def test_seeded_creation_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = create_model("resnet20", seed=0).state_dict()
    b = create_model("resnet20", seed=0).state_dict()
    c = create_model("resnet20", seed=1).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


def test_kaiming_normal_fan_in_initialisation() -> None:
    model = create_model("vgg16_bn", seed=0)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            if m.weight.numel() >= 500_000:  # enough samples for a 1% check of the std
                std = float(m.weight.detach().std())
                assert abs(std / math.sqrt(2.0 / fan_in) - 1) < 0.01
                assert abs(float(m.weight.detach().mean())) < 0.01 * std
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0
        elif isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    last = model.classifier.weight  # 512 -> 10: std sqrt(2/512), from 5120 samples
    assert abs(float(last.detach().std()) / math.sqrt(2 / 512) - 1) < 0.05


def test_resnet_shortcuts_are_option_b_projections() -> None:
    model = create_model("resnet20")
    first = model.layer2[0].shortcut
    assert isinstance(first, nn.Sequential)
    assert isinstance(first[0], nn.Conv2d) and first[0].kernel_size == (1, 1)
    assert first[0].stride == (2, 2) and first[0].bias is None
    assert isinstance(first[1], nn.BatchNorm2d)
    assert isinstance(model.layer1[0].shortcut, nn.Identity)
    assert isinstance(model.layer2[1].shortcut, nn.Identity)


def test_resnet18_has_cifar_stem() -> None:
    model = create_model("resnet18")
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert [getattr(model, f"layer{i}")[0].conv1.out_channels for i in (1, 2, 3, 4)] == \
        [64, 128, 256, 512]


@pytest.mark.parametrize(("name", "kwargs", "match"), [
    ("lenet5", {"input_size": 8}, "at least 12x12"),
    ("vgg16_bn", {"input_size": 8}, "at least 16x16"),
    ("conv6", {"input_size": (3, 32, 32)}, "input_size must be an int or an"),
    ("lenet_300_100", {"input_size": 0}, "positive"),
    ("resnet20", {"num_classes": 0}, "num_classes"),
])
def test_bad_arguments_raise_clear_errors(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


def test_unknown_keyword_and_unknown_model() -> None:
    with pytest.raises(TypeError):
        create_model("resnet20", pretrained=True)
    with pytest.raises(UnknownModelError, match="resnet20"):
        create_model("resnet21")


def test_cli_lists_models(capsys: pytest.CaptureFixture[str]) -> None:
    from paizoo.cli import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ZOO:
        assert name in out
