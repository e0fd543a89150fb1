"""The multipartite encoding of models whose pooling sizes come from traced shapes
(``F.avg_pool2d(out, out.size()[3])``, ``out.shape[-1]``: the CIFAR-ResNet idiom), and what
``meta["raw_edges"]`` counts, each against an independent construction."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import paizoo
from paizoo.graph import multipartite
from paizoo.metrics.operator import multipartite_operator


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(F.relu(self.bn1(self.conv1(x)))) + x)


class ShapePooled(nn.Module):
    """A CIFAR ResNet in the style of the widely copied reference code: the final pooling size
    is read from the traced activation."""

    def __init__(self, style: str) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.style = style
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.block = Block(4)
        self.fixed = nn.AvgPool2d(6) if style == "module" else nn.MaxPool2d(6)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(F.relu(self.stem(x)))
        if self.style == "size()[3]":
            out = F.avg_pool2d(out, out.size()[3])
        elif self.style == "shape[-1]":
            out = F.avg_pool2d(out, out.shape[-1])
        elif self.style == "size(2), size(3)":
            out = F.avg_pool2d(out, (out.size(2), out.size(3)), stride=out.size(-1))
        elif self.style == "max size(3)":
            out = F.max_pool2d(out, kernel_size=out.size(3))
        else:  # "module", "max module": the same pooling as a module of fixed size
            out = self.fixed(out)
        out = out.view(out.size(0), -1)
        return self.fc(out)


def _same(a: paizoo.graph.LayeredGraph, b: paizoo.graph.LayeredGraph) -> None:
    assert [(x.kind, x.shape, x.start) for x in a.layers] == \
        [(x.kind, x.shape, x.start) for x in b.layers]
    assert a.num_edges == b.num_edges
    assert abs(a.adjacency - b.adjacency).max() == 0


@pytest.mark.parametrize(("style", "reference"), [
    ("size()[3]", "module"), ("shape[-1]", "module"), ("size(2), size(3)", "module"),
    ("max size(3)", "max module")])
def test_pooling_size_from_traced_shape_equals_the_fixed_size_module(style: str,
                                                                     reference: str) -> None:
    model, ref = ShapePooled(style), ShapePooled(reference)
    ref.load_state_dict(model.state_dict())
    mask = paizoo.prune(model, "random", sparsity=0.5, seed=0)
    g = multipartite(model, mask, (3, 6, 6))
    _same(g, multipartite(ref, mask, (3, 6, 6)))
    # by hand: stem and the block's convs (3x3, padding 1, 6x6) keep every tap of a kept weight
    # at the (6 - |dy|) (6 - |dx|) positions where it lands inside the map, the identity adds
    # 4*36 edges, the pooling 4*36 and fc its kept weights
    valid = np.array([[(6 - abs(dy)) * (6 - abs(dx)) for dx in (-1, 0, 1)] for dy in (-1, 0, 1)])
    convs = sum(int((mask[n].sum((0, 1)).numpy() * valid).sum())
                for n in ("stem.weight", "block.conv1.weight", "block.conv2.weight"))
    expected = convs + 4 * 36 + 4 * 36 + int(mask["fc.weight"].sum())
    assert g.num_edges == expected == g.meta["raw_edges"]
    # the matrix-free operator traces the same way: A^T x equals the explicit product
    op = multipartite_operator(model, mask, (3, 6, 6))
    x = np.random.default_rng(0).standard_normal(g.num_nodes)
    np.testing.assert_allclose(np.asarray(op.forward(x)).reshape(-1), g.adjacency.T @ x,
                               rtol=1e-5, atol=1e-5)


class TensorPooled(nn.Module):
    """Pooling sizes that are tensors: a buffer, or a value computed from the data."""

    def __init__(self, from_data: bool) -> None:
        super().__init__()
        self.from_data = from_data
        self.conv = nn.Conv2d(1, 2, 3)
        self.register_buffer("k", torch.tensor(1))
        self.fc = nn.Linear(18, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        size = out.detach().abs().amax().clamp(1, 1).long() if self.from_data else self.k
        return self.fc(F.avg_pool2d(out, size).flatten(1))


def test_pooling_sizes_that_are_tensors_are_refused_naming_the_node() -> None:
    with pytest.raises(paizoo.UnsupportedLayerError, match=r"avg_pool2d\(\) .*fx node "
                       r"'avg_pool2d'.*argument 'k' is a tensor"):
        multipartite(TensorPooled(from_data=False), None, (1, 5, 5))
    with pytest.raises(paizoo.UnsupportedLayerError, match=r"fx node 'long'"):
        multipartite(TensorPooled(from_data=True), None, (1, 5, 5))


def test_raw_edges_counts_entries_before_joined_pairs_are_summed() -> None:
    """Absorbed 3x3 stride-1 pooling between two convolutions: each edge of the second conv is
    copied from every unit of its window, and windows overlap, so pairs join. Brute force:
    raw = every (conv1 unit, conv2 unit) copy, num_edges = the distinct pairs."""
    torch.manual_seed(0)
    h = 5
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(3, stride=1, padding=1),
                          nn.Conv2d(2, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * h * h, 3))
    mask = paizoo.prune(model, "random", sparsity=0.5, seed=1)

    def conv_edges(keep: torch.Tensor) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        out = []
        for o, c, ky, kx in itertools.product(*(range(s) for s in keep.shape)):
            if keep[o, c, ky, kx]:
                for y, x in itertools.product(range(h), range(h)):
                    if 0 <= y + ky - 1 < h and 0 <= x + kx - 1 < h:
                        out.append(((c, y + ky - 1, x + kx - 1), (o, y, x)))
        return out

    first, last = len(conv_edges(mask["0.weight"])), int(mask["4.weight"].sum())
    copies = [((c, y + a, x + b), v) for (c, y, x), v in conv_edges(mask["2.weight"])
              for a, b in itertools.product((-1, 0, 1), repeat=2)
              if 0 <= y + a < h and 0 <= x + b < h]
    g = multipartite(model, mask, (1, h, h), absorb_pooling=True)
    assert g.meta["raw_edges"] == first + len(copies) + last
    assert g.num_edges == first + len(set(copies)) + last < g.meta["raw_edges"]
    plain = multipartite(model, mask, (1, h, h))  # no pair joins: raw == edges
    assert plain.meta["raw_edges"] == plain.num_edges
