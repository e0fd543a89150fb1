"""The pruner registry: built-ins, the decorator, ``module:Class`` specs and entry points."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint

import pytest
import torch
from torch import nn

import paizoo
from paizoo.pruners import registry
from paizoo.pruners.magnitude import MagnitudePruner


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Undo registrations (and entry-point loading) made by a test."""
    saved = dict(registry._REGISTRY)
    loaded = registry._ENTRY_POINTS_LOADED
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved)
    registry._ENTRY_POINTS_LOADED = loaded


class SpecPruner(paizoo.Pruner):
    """Keeps the first weights (a test pruner imported by spec)."""

    def score(self, ctx: paizoo.PruneContext) -> dict[str, torch.Tensor]:
        return {n: -torch.arange(p.numel(), dtype=torch.float32).reshape(p.shape)
                for n, p in ctx.params.items()}


class EntryPointPruner(SpecPruner):
    """Loaded through a (mocked) entry point."""


def test_builtins_are_registered_and_sorted() -> None:
    names = paizoo.list_pruners()
    assert {"magnitude", "random", "expander"} <= set(names)
    assert names == sorted(names)
    assert registry.get_pruner_class("Magnitude") is MagnitudePruner  # case-insensitive
    summaries = registry.pruner_summaries()
    assert summaries["magnitude"].startswith("Keep the largest |theta|")
    assert set(summaries) == set(names)


def test_unknown_pruner_lists_the_known_ones() -> None:
    with pytest.raises(paizoo.UnknownPrunerError) as info:
        paizoo.create_pruner("snipp")
    message = str(info.value)
    assert "unknown pruner 'snipp'" in message
    for name in paizoo.list_pruners():
        assert name in message
    assert "'paizoo.pruners' entry-point group" in message
    with pytest.raises(paizoo.UnknownPrunerError):
        paizoo.prune(nn.Linear(2, 2), "snipp", sparsity=0.5)


def test_register_decorator(clean_registry: None) -> None:
    @paizoo.register_pruner("My-Test")
    class Mine(SpecPruner):
        pass

    assert Mine.name == "my-test"
    assert registry.get_pruner_class("MY-TEST") is Mine
    assert "my-test" in paizoo.list_pruners()
    assert paizoo.register_pruner("my-test")(Mine) is Mine  # same class again: fine
    with pytest.raises(ValueError, match="'my-test' is already registered"):
        @paizoo.register_pruner("my-test")
        class Other(SpecPruner):
            pass

    @paizoo.register_pruner()
    class Named(SpecPruner):
        name = "NamedByAttribute"

    assert registry.get_pruner_class("namedbyattribute") is Named
    mask = paizoo.prune(nn.Linear(4, 2), "my-test", density=0.25)
    assert mask["weight"].reshape(-1).tolist() == [True, True] + [False] * 6


def test_module_class_spec() -> None:
    spec = f"{__name__}:SpecPruner"
    assert registry.get_pruner_class(spec) is SpecPruner
    assert registry.get_pruner_class("paizoo.pruners.magnitude:MagnitudePruner") is MagnitudePruner
    mask = paizoo.prune(nn.Linear(4, 2), spec, density=0.5)
    assert mask["weight"].reshape(-1).tolist() == [True] * 4 + [False] * 4
    with pytest.raises(paizoo.UnknownPrunerError, match="cannot import pruner 'no_such_mod:X'"):
        registry.get_pruner_class("no_such_mod:X")
    with pytest.raises(paizoo.UnknownPrunerError, match="cannot import pruner"):
        registry.get_pruner_class(f"{__name__}:Missing")
    with pytest.raises(paizoo.UnknownPrunerError, match="is not a paizoo Pruner subclass"):
        registry.get_pruner_class("torch.nn:Linear")


def test_entry_points_are_loaded(clean_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_entry_points(*, group: str) -> list[EntryPoint]:
        calls.append(group)
        return [
            EntryPoint(name="ep-test", value=f"{__name__}:EntryPointPruner", group=group),
            # a name taken by a built-in is skipped, never overriding it
            EntryPoint(name="magnitude", value=f"{__name__}:SpecPruner", group=group),
        ]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    registry._ENTRY_POINTS_LOADED = False
    assert "ep-test" in paizoo.list_pruners()
    assert calls == ["paizoo.pruners"]
    assert registry.get_pruner_class("ep-test") is EntryPointPruner
    assert registry.get_pruner_class("magnitude") is MagnitudePruner
    paizoo.list_pruners()
    assert calls == ["paizoo.pruners"]  # loaded once
    mask = paizoo.prune(nn.Linear(2, 2), "ep-test", density=0.5)
    assert mask.num_kept == 2


def test_create_pruner_passes_options() -> None:
    pruner = paizoo.create_pruner("magnitude", scope="layer", rounds=3, schedule="linear")
    assert (pruner.scope, pruner.rounds, pruner.schedule) == ("layer", 3, "linear")
    assert "scope" in repr(pruner)
    with pytest.raises(ValueError, match="scope must be 'global' or 'layer'"):
        paizoo.create_pruner("magnitude", scope="network")
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        paizoo.create_pruner("magnitude", rounds=0)


class _SmallestFirst(paizoo.Pruner):
    """Unregistered: keeps the smallest |theta| (the opposite of magnitude)."""

    def __init__(self, *, offset: float = 0.0, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.offset = offset

    def score(self, ctx: paizoo.PruneContext) -> dict[str, torch.Tensor]:
        return {n: self.offset - p.detach().abs() for n, p in ctx.params.items()}


def test_a_pruner_class_works_where_a_name_does() -> None:
    """``paizoo.prune(model, MyPruner, ...)`` (the class just written, unregistered) failed
    with "type object has no attribute 'lower'", and a non-string was an AttributeError. A
    Pruner subclass is built with the options; the mask keeps the k smallest |theta|, counted
    by hand; anything else is an UnknownPrunerError saying what a pruner may be."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))
    mask = paizoo.prune(model, _SmallestFirst, sparsity=0.75, offset=1.0)
    weights = torch.cat([model[0].weight.flatten(), model[2].weight.flatten()]).abs()
    k = int(0.25 * weights.numel() + 0.5)  # floor(d N + 1/2): 13 of 50
    kept = torch.cat([mask["0.weight"].flatten(), mask["2.weight"].flatten()])
    assert int(kept.sum()) == k and weights[kept].max() < weights[~kept].min()
    assert paizoo.prune(model, MagnitudePruner, sparsity=0.75) == paizoo.prune(
        model, "magnitude", sparsity=0.75)
    with pytest.raises(paizoo.errors.PrunerOptionError, match="has no option 'bogus'"):
        paizoo.prune(model, MagnitudePruner, sparsity=0.5, bogus=1)
    with pytest.raises(paizoo.UnknownPrunerError, match="Pruner subclass or a Pruner instance; "
                                                        "got the int 3"):
        paizoo.prune(model, 3, sparsity=0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.detach().numpy().copy(), r"'weight' are a numpy\.ndarray, not a torch\.Tensor"),
    (lambda p: [1.0] * p.numel(), r"'weight' are a builtins\.list, not a torch\.Tensor"),
    (lambda p: torch.complex(p.detach(), p.detach()), r"'weight' are complex \(torch\.complex64\)"),
])
def test_scores_that_are_not_real_tensors_are_named(make, message) -> None:
    """A custom pruner's score() returning numpy arrays, lists or complex tensors gets one
    ScoreError naming the layer, what it returned and the fix (numpy gave an AttributeError,
    complex scores 'every score is zero')."""
    from paizoo.errors import ScoreError

    class Returns(paizoo.Pruner):
        def score(self, ctx: paizoo.PruneContext) -> dict:
            return {n: make(p) for n, p in ctx.params.items()}

    with pytest.raises(ScoreError, match=message):
        paizoo.prune(nn.Linear(4, 2, bias=False), Returns, density=0.5)
