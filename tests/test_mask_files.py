"""Mask files and read-only masks (issue 13, item 5): loading onto a model refuses a file that
lacks prunable layers (unless strict=False), a corrupt file is a paizoo error naming it, and
nothing done to a tensor taken out of (or put into) a Mask changes the mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import paizoo
from paizoo import Mask
from paizoo.errors import MaskFileError, MaskMismatchError


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def test_a_file_lacking_prunable_layers_is_refused_unless_not_strict(tmp_path):
    model = _net()
    full = paizoo.prune(model, "random", sparsity=0.5)
    partial = Mask({n: t for n, t in full.items() if n != "2.weight"})
    path = partial.save(tmp_path / "partial.safetensors")
    with pytest.raises(MaskMismatchError, match=r"lacks 1 of the 3 prunable layer\(s\).*2\.weight"
                                                r".*strict=False"):
        Mask.load(path, model)
    assert Mask.load(path, model, strict=False) == partial
    assert Mask.load(path) == partial  # without a model there is nothing to compare with
    assert Mask.load(full.save(tmp_path / "full.safetensors"), model) == full
    # a model that carries the mask already (weight_orig) is checked the same way
    full.apply(model)
    with pytest.raises(MaskMismatchError, match=r"2\.weight"):
        Mask.load(path, model)
    assert Mask.load(tmp_path / "full.safetensors", model) == full


def test_strict_load_onto_a_model_with_a_layer_that_cannot_be_masked(tmp_path):
    # a mask made with exclude= of a weight paizoo refuses to mask (legacy weight norm) lacks
    # nothing it could hold: strict loading accepts it instead of raising the pruning-time
    # CoverageError (which tells to pass exclude=, an argument Mask.load does not have)
    def legacy() -> nn.Module:
        torch.manual_seed(0)
        with pytest.warns(FutureWarning, match="deprecated"):
            first = torch.nn.utils.weight_norm(nn.Linear(6, 5))
        return nn.Sequential(first, nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))

    mask = paizoo.prune(legacy(), "random", sparsity=0.5, exclude="0.*")
    assert list(mask) == ["2.weight", "4.weight"]
    path = mask.save(tmp_path / "legacy.safetensors")
    assert Mask.load(path, legacy()) == mask
    partial = Mask({"2.weight": mask["2.weight"]}).save(tmp_path / "partial.safetensors")
    with pytest.raises(MaskMismatchError, match=r"lacks 1 of the 2 prunable layer\(s\).*4\.weight"):
        Mask.load(partial, legacy())


def test_strict_load_accepts_a_tied_tensor_under_any_of_its_names(tmp_path):
    a, b = nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False)
    b.weight = a.weight
    model = nn.Sequential(nn.Linear(6, 4), a, nn.ReLU(), b)
    keep = torch.rand(4, 4) > 0.5
    full = paizoo.prune(model, "random", sparsity=0.5)
    assert list(full) == ["0.weight", "1.weight"]
    by_alias = Mask({"0.weight": full["0.weight"], "3.weight": keep})
    path = by_alias.save(tmp_path / "alias.safetensors")
    assert Mask.load(path, model) == by_alias


def test_an_empty_mask_file_is_refused(tmp_path):
    path = Mask({}).save(tmp_path / "empty.safetensors")
    with pytest.raises(MaskFileError, match=f"{path}.*holds no tensor"):
        Mask.load(path, _net())
    with pytest.raises(MaskFileError, match="holds no tensor"):
        Mask.load(path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not_binary"])
def test_a_corrupt_file_is_a_paizoo_error_naming_it(tmp_path, damage):
    model = _net()
    path = paizoo.prune(model, "magnitude", sparsity=0.5).save(tmp_path / "m.safetensors")
    if damage == "garbage":
        path.write_bytes(b"this is not a safetensors file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-7])
    else:
        from safetensors.torch import save_file

        save_file({"0.weight": torch.full((5, 6), 3.0)}, str(path))
    with pytest.raises(MaskFileError, match=str(path)):
        Mask.load(path, model)
    if damage != "not_binary":
        with pytest.raises(MaskFileError, match=str(path)):
            Mask.load_metadata(path)
    with pytest.raises(FileNotFoundError, match="no mask file"):
        Mask.load(tmp_path / "nothing.safetensors")


@pytest.mark.parametrize("values", [torch.tensor([[0, 2], [1, 1]], dtype=torch.uint8),
                                    torch.tensor([[3, 0], [1, 2]]),  # int64 ranks
                                    torch.tensor([[1, 0], [-1, 1]], dtype=torch.int8)])
def test_a_file_of_integers_other_than_0_and_1_is_not_a_mask(tmp_path, values):
    """Mask.save writes 0/1 bytes; integers outside {0, 1} in a file are scores, ranks or
    counts, which "nonzero = kept" would silently turn into a mask (the documented
    MaskFileError for values other than 0/1 held for floats only)."""
    from safetensors.torch import save_file

    path = tmp_path / "ranks.safetensors"
    save_file({"w": values}, str(path))
    with pytest.raises(MaskFileError, match=rf"{path} is not a paizoo mask: entry 'w'.*other "
                                            "than 0 and 1"):
        Mask.load(path)
    save_file({"w": values.clamp(0, 1)}, str(path))  # the same file of 0/1 is a mask
    assert Mask.load(path)["w"].tolist() == (values.clamp(0, 1) == 1).tolist()


def test_mask_is_read_only():
    model = _net()
    mask = paizoo.prune(model, "magnitude", sparsity=0.5)
    kept = mask.num_kept
    mask["0.weight"].fill_(True)  # before the fix this changed the mask
    for tensor in mask.values():
        tensor.zero_()
    assert mask.num_kept == kept
    source = {"a": torch.tensor([True, False, True])}
    built = Mask(source)
    source["a"].fill_(False)  # the caller's tensor is not the mask's
    assert built.num_kept == 2 and built["a"].tolist() == [True, False, True]


def test_save_leaves_no_temporary_file_behind(tmp_path, monkeypatch):
    mask = paizoo.prune(_net(), "magnitude", sparsity=0.5)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        mask.save(tmp_path)
    import safetensors.torch

    def failing(tensors: object, filename: str, metadata: object = None) -> None:
        with open(filename, "wb") as fh:  # a partial write, then the disk is full
            fh.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", failing)
    with pytest.raises(OSError, match="No space left"):
        mask.save(tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
