"""Every registered pruner on three model families beyond Conv/Linear stacks (issue #12).

(a) a ``nn.TransformerEncoder`` classifier with a token embedding, with the default coverage and
with ``cover="attention"``; (b) an LSTM language model whose head is tied to its embedding, with
``cover="recurrent"``; (c) an MLP whose first layer is weight-normed. Each mask is applied, the
model is trained for one optimizer step, and then

* the pruned entries are exactly 0 in the tensor every using module computes with (both the
  embedding and the head for the tied weight, the LSTM's ``_flat_weights``, the weight-normed
  layer's effective ``weight``), and
* the masked model computes exactly what an independent plain twin computes, built from the
  state dict alone (``x = x_orig * x_mask``), in train and in eval/no-grad mode (the fused
  fast paths of ``nn.TransformerEncoderLayer``).

No warning is filtered: every warning a pruner emits on a family is asserted (coverage warnings
where the coverage leaves weights dense, layer collapse where a pruner's scores vanish). Where
a pruner cannot support a family it must say so with a paizoo error, asserted here.

Test budgets: the multi-round pruners run fewer rounds than their defaults to keep the test in
seconds (SynFlow 10 instead of 100, FORCE/iterative SNIP 5 instead of 60, NTK-SAP 2 rounds of 2
draws of 8 inputs instead of 20 x 5 x 100); the code paths are the same.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _pruner_testlib import plain_twin
from torch import nn
from torch.nn.utils import parametrizations

import paizoo
import paizoo.reparam
from paizoo.params import parameter_table

VOCAB, EMBED, SEQ, CLASSES = 24, 16, 6, 4

FAST: dict[str, dict[str, Any]] = {
    "synflow": {"rounds": 10},
    "force": {"rounds": 5},
    "iterative_snip": {"rounds": 5},
    "ntksap": {"rounds": 2, "draws": 2, "batch_size": 8},
    "grasp": {"samples_per_class": 2},
}


class TokenTransformer(nn.Module):
    """Token embedding + learnt positions + one post-norm encoder layer + mean pool + head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.pos = nn.Parameter(torch.randn(1, SEQ, EMBED) * 0.1)
        layer = nn.TransformerEncoderLayer(EMBED, 2, dim_feedforward=32, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.head = nn.Linear(EMBED, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens) + self.pos).mean(1))


class TiedLSTMLM(nn.Module):
    """Two-layer LSTM language model predicting the token after the sequence; the output head
    is tied to the embedding (``head.weight is embed.weight``)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, EMBED)
        self.rnn = nn.LSTM(EMBED, EMBED, num_layers=2, batch_first=True)
        self.head = nn.Linear(EMBED, VOCAB)
        self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(tokens))[0][:, -1])


def weight_normed_mlp() -> nn.Module:
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, CLASSES))
    parametrizations.weight_norm(model[0])
    return model


@dataclass
class Family:
    name: str
    build: Callable[[], nn.Module]
    cover: str | None
    tokens: bool
    classes: int
    #: kinds a CoverageWarning must name (empty: no coverage warning)
    dense_kinds: tuple[str, ...] = ()
    #: pruner -> exception class and message pattern, where the family is unsupported
    refused: dict[str, tuple[type[Exception], str]] = field(default_factory=dict)

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(1)
        if self.tokens:
            x = torch.randint(VOCAB, (16, SEQ), generator=g)
        else:
            x = torch.randn(16, 32, generator=g)
        return x, torch.randint(self.classes, (16,), generator=g)


_PHEW_TOKENS = (paizoo.UnsupportedLayerError, "PHEW .*cannot start from token ids")
FAMILIES = [
    Family("transformer", TokenTransformer, None, True, CLASSES,
           dense_kinds=("attention", "embedding", "other"), refused={"phew": _PHEW_TOKENS}),
    Family("transformer-attention", TokenTransformer, "attention", True, CLASSES,
           dense_kinds=("embedding", "other"), refused={"phew": _PHEW_TOKENS}),
    Family("lstm-lm-tied", TiedLSTMLM, "recurrent", True, VOCAB,
           refused={"phew": _PHEW_TOKENS}),
    # plain FORCE would prune one hidden unit of the weight-normed layer entirely (0/0 in weight
    # norm); every pruner keeps a weight in each of its rows (tests/test_coverage.py)
    Family("weight-norm-mlp", weight_normed_mlp, None, False, CLASSES),
]


def _uses(model: nn.Module, name: str) -> list[torch.Tensor]:
    """Every tensor a module computes with for the mask entry ``name`` (all tied uses; the
    parametrized module's effective weight; the LSTM's flat weights)."""
    info = next(i for i in parameter_table(model).values() if name in (i.name, *i.aliases))
    tensors = []
    for use in info.logical:
        path, _, attr = use.rpartition(".")
        module = model.get_submodule(path) if path else model
        tensors.append(getattr(module, attr))
        if isinstance(module, nn.RNNBase):
            tensors.append(module._flat_weights[module._flat_weights_names.index(attr)])
    return tensors


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def _run(family: Family, pruner: str
         ) -> tuple[nn.Module, paizoo.Mask, list[warnings.WarningMessage]]:
    torch.manual_seed(0)
    model = family.build()
    x, y = family.data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = paizoo.prune(model, pruner, sparsity=0.5, data=(x, y),
                            input_shape=tuple(x.shape[1:]), cover=family.cover,
                            **FAST.get(pruner, {}))
    return model, mask, caught


@pytest.mark.parametrize("pruner", paizoo.list_pruners())
@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_pruner_on_family(family: Family, pruner: str) -> None:
    if pruner in family.refused:
        error, pattern = family.refused[pruner]
        with pytest.raises(error, match=pattern):
            _run(family, pruner)
        return
    model, mask, caught = _run(family, pruner)
    coverage = [w for w in caught if issubclass(w.category, paizoo.CoverageWarning)]
    others = [w for w in caught if w not in coverage]
    assert not others, [f"{w.category.__name__}: {w.message}" for w in others]
    if family.dense_kinds:
        assert len(coverage) == 1
        for kind in family.dense_kinds:
            assert f"{kind} weights (" in str(coverage[0].message)
        assert mask.coverage is not None and list(mask.coverage.dense) == list(family.dense_kinds)
    else:
        assert not coverage, [str(w.message) for w in coverage]

    # the requested coverage is what was pruned, each tied tensor once
    kinds = {parameter_table(model)[n].kind for n in mask}
    if family.cover == "attention":
        assert "attention" in kinds
    if family.cover == "recurrent":
        assert "recurrent" in kinds and "embed.weight" in mask and "head.weight" not in mask
    assert mask.num_kept == round(0.5 * mask.num_total)

    if family.name == "weight-norm-mlp":
        assert bool(mask["0.parametrizations.weight.original1"].any(1).all())
    mask.apply(model)
    paizoo.Mask.from_model(model).check_compatible(model)
    assert paizoo.Mask.from_model(model) == mask
    x, y = family.data()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    opt.zero_grad()
    _loss(model(x), y).backward()
    opt.step()
    for name, keep in mask.items():
        for tensor in _uses(model, name):
            assert bool((tensor.detach()[~keep] == 0).all()), name
    assert torch.allclose(model(x), plain_twin(model, family.build)(x), atol=1e-5)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), plain_twin(model, family.build)(x), atol=1e-5)


def test_tied_head_is_one_entry_masked_in_both_modules() -> None:
    """The tied LM head: one mask entry, counted once; after apply and training both the
    embedding lookup and the head's logits use the masked tensor (checked against plain
    F.embedding / F.linear with the masked values)."""
    torch.manual_seed(0)
    model = TiedLSTMLM()
    with pytest.warns(paizoo.CoverageWarning, match=r"recurrent weights \(4 tensor"):
        mask = paizoo.prune(model, "magnitude", sparsity=0.75)
    assert list(mask) == ["embed.weight"]  # the head's weight is the same tensor
    assert mask.num_total == VOCAB * EMBED
    mask.apply(model)
    keep = mask["embed.weight"]
    assert model.head.weight_orig is model.embed.weight_orig
    tokens = torch.arange(VOCAB).unsqueeze(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(tokens[:, :SEQ]), torch.tensor([3])).backward()
        opt.step()
    masked = model.embed.weight_orig.detach() * keep
    assert bool((model.embed.weight_orig.detach()[~keep] != 0).any())  # decay/momentum moved them
    model(tokens)  # the pre-hooks refresh both modules' weights
    assert torch.equal(model.embed(tokens).detach(), F.embedding(tokens, masked))
    h = torch.randn(2, EMBED)
    assert torch.allclose(model.head(h), F.linear(h, masked, model.head.bias))


def test_tied_mask_save_load_roundtrip(tmp_path: Any) -> None:
    torch.manual_seed(0)
    model = TiedLSTMLM()
    mask = paizoo.prune(model, "random", sparsity=0.5, cover="recurrent")
    mask.save(tmp_path / "m.safetensors")
    loaded = paizoo.Mask.load(tmp_path / "m.safetensors", model)  # must not raise
    assert loaded == mask
    twin = copy.deepcopy(model)
    loaded.apply(twin)
    assert paizoo.Mask.load(tmp_path / "m.safetensors", twin) == mask  # and on the masked one
