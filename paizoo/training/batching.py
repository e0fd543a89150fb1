"""Mini-batches for training and evaluation.

In-memory datasets (``paizoo.data`` datasets expose ``.x``, an ``(N, C, H, W)`` float tensor, and
``.y``, ``(N,)`` int64) are batched by tensor indexing, ``x[perm[i:i + b]]``: no per-sample
``__getitem__``, no collation, and on CUDA the whole dataset is moved to the device once. This is
many times faster than a ``DataLoader`` for small models such as LeNet. Augmenting datasets that
offer a batched ``get_batch(index, generator=...)`` (``paizoo.data.InMemoryDataset``: random
crop + flip as tensor ops) are batched through it with the same seeded generator; any other
dataset goes through a ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

Batch = tuple[torch.Tensor, torch.Tensor]


def in_memory_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(x, y)`` when ``dataset`` exposes whole-dataset tensors (``.x``/``.y``, or the two
    ``.tensors`` of a ``TensorDataset``), else ``None``."""
    x, y = getattr(dataset, "x", None), getattr(dataset, "y", None)
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        tensors = getattr(dataset, "tensors", None)
        if not (isinstance(tensors, tuple) and len(tensors) == 2):
            return None
        x, y = tensors
    if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and len(x) == len(y):
        return x, y
    return None


def training_subset(dataset: Any, size: int) -> Any:
    """The first ``size`` samples of ``dataset`` in its stored order (``TrainConfig.train_subset``);
    ``dataset`` itself when ``size`` is 0. In-memory ``paizoo.data`` datasets keep their type
    (``.subset``), others become a ``torch.utils.data.Subset``.

    Raises:
        ValueError: ``size`` exceeds the dataset's length.
    """
    if size == 0:
        return dataset
    n = len(dataset)
    if size > n:
        raise ValueError(f"train_subset {size} exceeds the {n} samples of the training split; "
                         "use at most that many, or 0 for the whole split")
    if callable(getattr(dataset, "subset", None)):
        return dataset.subset(torch.arange(size))
    return torch.utils.data.Subset(dataset, range(size))


def augments(dataset: Any) -> bool:
    """Whether ``dataset`` applies random augmentation when indexed."""
    return bool(getattr(dataset, "augment", False))


class Batches:
    """A re-iterable sequence of ``(inputs, targets)`` mini-batches over a dataset.

    Args:
        dataset: an in-memory ``paizoo.data`` dataset or any map-style ``Dataset`` returning
            ``(input, target)`` pairs.
        batch_size: mini-batch size.
        shuffle: draw a new permutation from ``generator`` on every iteration.
        device: where batches are delivered (in-memory data is moved there once).
        generator: a CPU ``torch.Generator`` for the permutations (and augmentation).
        num_workers: loader workers for the ``DataLoader`` path.
        drop_singleton: skip a last batch of a single sample (batch-norm cannot train on one).
    """

    def __init__(
        self,
        dataset: Dataset | Any,
        batch_size: int,
        *,
        shuffle: bool,
        device: torch.device,
        generator: torch.Generator | None = None,
        num_workers: int = 0,
        drop_singleton: bool = True,
    ) -> None:
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.device = device
        self.generator = generator if generator is not None else torch.Generator()
        self.drop_singleton = drop_singleton
        get_batch: Callable[..., Batch] | None = getattr(dataset, "get_batch", None)
        self._get_batch = get_batch if augments(dataset) and callable(get_batch) else None
        tensors = None if augments(dataset) else in_memory_tensors(dataset)
        self._loader: DataLoader | None = None
        self._x = self._y = None
        if tensors is not None:
            x, y = tensors
            self._x = x.to(device, non_blocking=True)
            self._y = y.to(device, non_blocking=True)
            self._n = len(x)
        else:
            self._n = len(dataset)
        if tensors is None and self._get_batch is None:
            self._loader = DataLoader(
                dataset, batch_size=self.batch_size, shuffle=shuffle, generator=self.generator,
                num_workers=num_workers, pin_memory=device.type == "cuda",
                persistent_workers=num_workers > 0)

    @property
    def vectorised(self) -> bool:
        """True on the tensor-indexing paths, False when a ``DataLoader`` is used."""
        return self._loader is None

    @property
    def num_samples(self) -> int:
        return self._n

    def __len__(self) -> int:
        full, rest = divmod(self._n, self.batch_size)
        keep_rest = rest > 1 or (rest == 1 and (not self.drop_singleton or self._n == 1))
        return full + (1 if keep_rest else 0)

    def __iter__(self) -> Iterator[Batch]:
        if self._loader is not None:
            for item in self._loader:
                x, y = item[0], item[1]
                if self.drop_singleton and len(x) == 1:
                    continue
                yield (x.to(self.device, non_blocking=True),
                       y.to(self.device, non_blocking=True))
            return
        order = torch.randperm(self._n, generator=self.generator) if self.shuffle else None
        if order is not None and self._x is not None:
            order = order.to(self._x.device)
        for start in range(0, self._n, self.batch_size):
            stop = min(start + self.batch_size, self._n)
            if self.drop_singleton and stop - start == 1 and self._n > 1:
                break
            if self._get_batch is not None:
                idx = order[start:stop] if order is not None else torch.arange(start, stop)
                x, y = self._get_batch(idx, generator=self.generator)
                yield (x.to(self.device, non_blocking=True),
                       y.to(self.device, non_blocking=True))
                continue
            assert self._x is not None and self._y is not None
            if order is None:
                yield self._x[start:stop], self._y[start:stop]
            else:
                idx = order[start:stop]
                yield self._x[idx], self._y[idx]
