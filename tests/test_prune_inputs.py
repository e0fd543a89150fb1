"""What pruning feeds the model is checked before scoring (issue 13, item 8): inputs that do not
fit, labels outside the model's classes (one shared check, the same message for every
data-driven pruner), a model on the meta device, input shapes with a batch dimension or
non-positive sizes, and a compression that underflows to density 0."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import paizoo
from paizoo.errors import MissingDataError, ModelConfigError, SparsityError
from paizoo.models import create_model


def _lenet5() -> nn.Module:
    return create_model("lenet5", num_classes=10, in_channels=1, input_size=(28, 28), seed=0)


def _data(shape: tuple[int, ...] = (1, 28, 28), high: int = 10) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(20) % high
    return torch.randn(20, *shape, generator=gen), y


@pytest.mark.parametrize("pruner", ["snip", "grasp", "force", "iterative_snip", "prospr"])
def test_labels_outside_the_classes_are_explained_the_same_way(pruner):
    with pytest.raises(MissingDataError, match=r"target 19 outside \[0, 10\) for the model's 10 "
                                               r"output logits.*num_classes"):
        paizoo.prune(_lenet5(), pruner, sparsity=0.5, data=_data(high=20))


def test_negative_labels_are_caught_too():
    x, y = _data()
    y[3] = -1
    with pytest.raises(MissingDataError, match=r"target -1 outside \[0, 10\)"):
        paizoo.prune(_lenet5(), "snip", sparsity=0.5, data=(x, y))


@pytest.mark.parametrize("pruner", ["snip", "grasp"])
def test_inputs_of_the_wrong_shape_say_so(pruner):
    with pytest.raises(MissingDataError, match=r"LeNet5 cannot take the data's inputs of shape "
                                               r"\(3, 32, 32\).*without the batch dimension"):
        paizoo.prune(_lenet5(), pruner, sparsity=0.5, data=_data((3, 32, 32)))


def test_an_input_shape_with_a_batch_dimension_is_named():
    with pytest.raises(MissingDataError, match=r"input_shape=\(1, 1, 28, 28\).*includes a batch "
                                               r"dimension, drop it: \(1, 28, 28\)"):
        paizoo.prune(_lenet5(), "synflow", sparsity=0.5, input_shape=(1, 1, 28, 28))


@pytest.mark.parametrize("shape", [(1, 0, 28), (1, -28, 28), (), (1.5, 28, 28), 28, "1,28,28"])
def test_non_positive_or_non_integer_input_shapes_are_refused(shape):
    with pytest.raises(MissingDataError, match="positive integers"):
        paizoo.prune(_lenet5(), "synflow", sparsity=0.5, input_shape=shape)


def test_a_model_on_the_meta_device_is_refused():
    with torch.device("meta"):
        model = _lenet5()
    with pytest.raises(ModelConfigError, match=r"meta device.*initialised weights"):
        paizoo.prune(model, "magnitude", sparsity=0.5)


def test_compression_that_underflows_names_compression():
    with pytest.raises(SparsityError, match=r"compression=400 .*underflows to 0"):
        paizoo.prune(_lenet5(), "magnitude", compression=400)
    with pytest.raises(SparsityError, match=r"keeps 0 of .*lower sparsity or compression"):
        paizoo.prune(_lenet5(), "magnitude", compression=10)


def test_checks_leave_valid_pruning_bit_identical():
    """The probe forward pass changes neither the mask nor the global RNG stream."""
    model = _lenet5()
    torch.manual_seed(123)
    a = paizoo.prune(model, "snip", sparsity=0.9, data=_data(), seed=3)
    after_a = torch.rand(3)
    torch.manual_seed(123)
    b = paizoo.prune(model, "snip", sparsity=0.9, data=_data(), seed=3)
    assert a == b and torch.equal(after_a, torch.rand(3))


@pytest.mark.parametrize("pruner", ["synflow", "phew"])
def test_data_free_pruners_take_a_float64_model(pruner):
    """The input probe fed float32 zeros whatever the model's dtype, so a float64 model was
    refused ("cannot take inputs of input_shape") before SynFlow or PHEW ran. Both compute in
    a dtype of their own (SynFlow float64, PHEW from kernel norms), so the float64 copy of a
    float32 model, which holds exactly its values, must get the float32 model's mask."""
    options = {"rounds": 3} if pruner == "synflow" else {}
    model = _lenet5()
    mask = paizoo.prune(model, pruner, sparsity=0.9, input_shape=(1, 28, 28), **options)
    double = _lenet5().double()
    assert all(torch.equal(a.double(), b) for a, b in
               zip(model.parameters(), double.parameters(), strict=True))
    assert paizoo.prune(double, pruner, sparsity=0.9, input_shape=(1, 28, 28),
                        **options) == mask


def test_data_of_another_dtype_than_the_model_names_both_dtypes():
    """Float32 data into a float64 model fails in the first layer; the message named the
    input *shape* as the likely problem. It names the two dtypes and the casts instead."""
    with pytest.raises(MissingDataError, match=r"inputs are torch.float32 but the model's "
                                               r"parameters are torch.float64: cast the data "
                                               r"\(inputs.to\(torch.float64\)\)"):
        paizoo.prune(_lenet5().double(), "snip", sparsity=0.5, data=_data())


@pytest.mark.parametrize("pruner", ["snip", "force", "iterative_snip", "prospr"])
def test_targets_the_loss_cannot_take_are_named_with_the_fix(pruner):
    """Float class labels (read from a CSV or numpy), targets of shape (B, 1) and fewer targets
    than inputs raised cross-entropy's own error from inside scoring. Each is a
    MissingDataError naming the shapes, the dtype and the fix; the fix it names (targets.long())
    gives the mask of integer labels."""
    x, y = _data()
    for targets, detail in [(y.float(), r"\(20,\) \(torch.float32\)"),
                            (y[:, None], r"\(20, 1\) \(torch.int64\)"),
                            (y[:10], r"\(10,\) \(torch.int64\)")]:
        with pytest.raises(MissingDataError, match=r"the pruning loss cannot take the model's "
                                                   rf"output of shape \(20, 10\) and the data's "
                                                   rf"targets of shape {detail}.*targets.long"):
            paizoo.prune(_lenet5(), pruner, sparsity=0.5, data=(x, targets))
    assert paizoo.prune(_lenet5(), pruner, sparsity=0.5, data=(x, y.float().long())) == \
        paizoo.prune(_lenet5(), pruner, sparsity=0.5, data=(x, y))


def test_a_dataset_instead_of_batches_names_the_dataloader():
    """A TensorDataset (single samples) was "not iterable"; the message says it is a dataset and
    names the DataLoader that batches it, which gives the mask of the same data as one pair."""
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data()
    with pytest.raises(MissingDataError, match=r"TensorDataset \(a dataset of single samples\)"
                                               r".*DataLoader\(dataset, batch_size=...\)"):
        paizoo.prune(_lenet5(), "snip", sparsity=0.5, data=TensorDataset(x, y))
    loader = DataLoader(TensorDataset(x, y), batch_size=len(x))
    assert paizoo.prune(_lenet5(), "snip", sparsity=0.5, data=loader) == \
        paizoo.prune(_lenet5(), "snip", sparsity=0.5, data=(x, y))


class _LogitsAndFeatures(nn.Module):
    """Returns ``(logits, features)``, as models with auxiliary outputs do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.a(x))
        return self.b(h), h


class _FirstOutput(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0]


@pytest.mark.parametrize("pruner", ["snip", "prospr", "ntksap"])
def test_a_model_returning_a_tuple_is_told_to_return_the_logits(pruner):
    """NTK-SAP and ProsPr failed inside their arithmetic on a tuple output ("unsupported
    operand type(s) for -: 'tuple' and 'tuple'", cross_entropy's argument error); every
    input-feeding pruner says to wrap the model, and the wrapped model is pruned."""
    gen = torch.Generator().manual_seed(1)
    data = (torch.randn(12, 8, generator=gen), torch.arange(12) % 3)
    options = {"rounds": 2} if pruner == "ntksap" else {}
    with pytest.raises(TypeError, match=r"_LogitsAndFeatures returned a tuple.*forward\(\) "
                                        r"returns the logits"):
        paizoo.prune(_LogitsAndFeatures(), pruner, sparsity=0.5, data=data, input_shape=(8,),
                     **options)
    wrapped = paizoo.prune(_FirstOutput(_LogitsAndFeatures()), pruner, sparsity=0.5, data=data,
                           input_shape=(8,), **options)
    assert list(wrapped) == ["inner.a.weight", "inner.b.weight"] and wrapped.density == 0.5


def test_a_batch_with_named_inputs_says_what_it_holds():
    """A batch of (dict of inputs, targets) was refused as "got tuple", which is what a pair
    is; the message names the types inside and the wrapper the pruners need."""
    x, y = _data()
    with pytest.raises(MissingDataError, match=r"got a tuple of \(dict, Tensor\); a model taking "
                                               r"several or named inputs needs a wrapper"):
        paizoo.prune(_lenet5(), "snip", sparsity=0.5, data=[({"pixels": x}, y)])


@pytest.mark.parametrize("pruner", ["synflow", "ntksap", "phew"])
def test_an_input_shape_that_disagrees_with_the_data_is_refused(pruner):
    """With data and input_shape, the input probe ran the data's inputs only; a pruner that
    feeds inputs of input_shape then failed with the layer's raw shape error ("mat1 and mat2
    shapes cannot be multiplied"). The disagreement is named up front; the data's own shape
    gives the mask of input_shape alone."""
    x, y = _data()
    options = {"rounds": 2} if pruner != "phew" else {}
    with pytest.raises(MissingDataError, match=r"input_shape=\(1, 32, 32\) but the data's inputs "
                                               r"have shape \(1, 28, 28\) per sample"):
        paizoo.prune(_lenet5(), pruner, sparsity=0.5, data=(x, y), input_shape=(1, 32, 32),
                     **options)
    assert paizoo.prune(_lenet5(), pruner, sparsity=0.5, data=(x, y), input_shape=(1, 28, 28),
                        **options) == paizoo.prune(_lenet5(), pruner, sparsity=0.5,
                                                   input_shape=(1, 28, 28), **options)
