"""Normalising the ``data=`` argument of data-driven pruners into a list of (inputs, targets)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.utils.data

from .errors import MissingDataError

Batch = tuple[torch.Tensor, torch.Tensor]


def as_batches(data: object, max_batches: int | None = None) -> list[Batch]:
    """Accept a ``DataLoader``, any iterable of ``(inputs, targets)`` pairs, or one such pair.

    Only the first two items of each element are used, so loaders yielding extra fields work.
    Iterates at most ``max_batches`` batches (all when ``None``).
    """
    if data is None:
        raise MissingDataError("no data given")
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        return as_batches([data])
    if isinstance(data, torch.Tensor):
        raise MissingDataError(
            "data is a single tensor; data-driven pruners need targets too: pass (inputs, "
            "targets), a list of such pairs, or a DataLoader")
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, Iterable):
        raise MissingDataError(
            f"data is a {type(data).__name__} (a dataset of single samples), not batches; pass "
            "DataLoader(dataset, batch_size=...) or paizoo.data.pruning_batches(dataset, "
            "pruner, num_classes=...), which draws the batches the pruner needs")
    if not isinstance(data, Iterable):
        raise MissingDataError(
            f"data of type {type(data).__name__} is not iterable; pass (inputs, targets), a "
            "list of such pairs, or a DataLoader")
    out: list[Batch] = []
    for item in data:
        if max_batches is not None and len(out) >= max_batches:
            break
        if not (isinstance(item, (tuple, list)) and len(item) >= 2
                and isinstance(item[0], torch.Tensor) and isinstance(item[1], torch.Tensor)):
            got = type(item).__name__
            if isinstance(item, (tuple, list)):
                got += f" of ({', '.join(type(v).__name__ for v in item)})"
            raise MissingDataError(
                f"each batch must be an (inputs, targets) pair of tensors, got a {got}; a "
                "model taking several or named inputs needs a wrapper module whose forward() "
                "takes one tensor")
        out.append((item[0], item[1]))
    for i, (x, _) in enumerate(out):
        if x.dim() == 0 or x.shape[0] == 0:
            raise MissingDataError(
                f"batch {i} has no samples (inputs of shape {tuple(x.shape)}); the pruning data "
                "must hold at least one sample per batch")
    if not out:
        raise MissingDataError("the data yielded no batch")
    return out


def check_target_range(targets: torch.Tensor, num_classes: int) -> None:
    """Class targets must lie in ``[0, num_classes)`` for a model with that many logits: the one
    check every data-driven pruner shares (instead of an opaque error inside the loss)."""
    if targets.numel() == 0:
        return
    lo, hi = int(targets.min()), int(targets.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise MissingDataError(
            f"target {bad} outside [0, {num_classes}) for the model's {num_classes} output "
            "logits: the data's labels do not match the model's number of classes (build the "
            "model with num_classes = the dataset's)")


def stratified_sample(batches: Iterable[Batch], num_classes: int, per_class: int) -> Batch:
    """Draw the first ``per_class`` samples of each class, scanning batches in order.

    Stops as soon as every class is full (GraSP's sampling, Wang et al. 2020). Classes with fewer
    samples in the data contribute what there is.

    Raises:
        MissingDataError: a batch's targets are not class indices, one integer per input
            (one-hot or soft targets, float labels, another length than the inputs).
    """
    counts = torch.zeros(num_classes, dtype=torch.long)
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for x, y in batches:
        if (y.dim() != 1 or y.shape[0] != x.shape[0] or y.dtype == torch.bool
                or y.dtype.is_floating_point or y.dtype.is_complex):
            raise MissingDataError(
                f"sampling per class (GraSP) needs class-index targets, one integer per input, "
                f"but a batch of {x.shape[0]} inputs has targets of shape {tuple(y.shape)} "
                f"({y.dtype}); pass class indices of shape ({x.shape[0]},) "
                "(targets.argmax(1) for one-hot targets, targets.long() for float labels)")
        y_cpu = y.detach().cpu().long()
        check_target_range(y_cpu, num_classes)
        for c in torch.unique(y_cpu).tolist():
            room = per_class - int(counts[c])
            if room <= 0:
                continue
            idx = torch.nonzero(y_cpu == c, as_tuple=True)[0][:room]
            xs.append(x[idx.to(x.device)])
            ys.append(y[idx.to(y.device)])
            counts[c] += idx.numel()
        if bool((counts >= per_class).all()):
            break
    if not xs:
        raise MissingDataError("the data yielded no sample")
    x_all, y_all = torch.cat(xs), torch.cat(ys)
    order = torch.argsort(y_all.cpu(), stable=True).to(y_all.device)  # class-sorted, deterministic
    return x_all[order], y_all[order]
