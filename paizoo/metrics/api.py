"""The entry points: :func:`compute` (one flat row) and :func:`compute_many` (a DataFrame)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import MissingDataError
from ..masks import Mask
from .context import DEFAULT_EDGE_BUDGET, MetricContext, Scale
from .registry import MetricOptionError, get_metric_group, list_metric_groups


def _as_mask(mask: Mapping[str, torch.Tensor]) -> Mask:
    return (mask if isinstance(mask, Mask) else Mask(mask)).cpu()


def _group_names(groups: str | Iterable[str] | None) -> list[str]:
    if groups is None:
        return list_metric_groups(default_only=True)
    names = [groups] if isinstance(groups, str) else list(groups)
    out: list[str] = []
    for name in names:
        key = get_metric_group(name).name
        if key not in out:
            out.append(key)
    return out


def compute(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    input_shape: Sequence[int] | None = None,
    groups: str | Iterable[str] | None = None,
    *,
    graph: Any = None,
    scale: Scale = "auto",
    edge_budget: int = DEFAULT_EDGE_BUDGET,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Topological metrics of a masked network as one flat row ``{"<group>.<metric>": float}``.

    Args:
        model: the network; it is not modified. Its current weights are used by the weighted
            metrics (``ramanujan.wgap``, ``mge.strength``, ...).
        mask: a :class:`~paizoo.masks.Mask` or ``{param: bool tensor}``; prunable weights it does
            not name count as dense in the path/graph metrics.
        input_shape: one sample's shape without batch dimension, e.g. ``(3, 32, 32)``; needed by
            the ``effective`` and ``mge`` groups and the network-level ``spectral`` metrics.
        groups: group names (default: every registered default group; see
            :func:`paizoo.metrics.list_metric_groups`).
        graph: a precomputed multipartite graph (:func:`paizoo.graph.multipartite`) to reuse.
        scale: ``"exact"`` materialises the explicit graph where a metric needs it and raises
            :class:`~paizoo.metrics.GraphTooLargeError` above ``edge_budget``;
            ``"matrix_free"`` never materialises it (the combinatorial ``mge`` metrics, which
            need it, are NaN; everything else runs on tensors); ``"auto"`` (default) is
            ``"exact"`` within the budget and ``"matrix_free"`` above it.
        edge_budget: the largest explicit graph, in edges.
        seed: seeds the sampled estimates (``mge.motifs4``, sampled ``mge.two_hop``).
        options: per-group options, e.g. ``{"scatter": {"window": 8},
            "mge": {"motif_samples": 50000}}``.
        progress: show a progress bar over groups (default: only on a terminal).

    Returns:
        ``{name: value}``; a metric that is undefined for this mask (e.g. a Ramanujan metric of a
        layer with mean degree < 3) is NaN. Names are listed in :mod:`paizoo.metrics`.
    """
    mask = _as_mask(mask)
    mask.check_compatible(model)
    names = _group_names(groups)
    if input_shape is None and graph is None:
        needing = [n for n in names if get_metric_group(n).needs_input_shape]
        if needing:
            raise MissingDataError(
                f"metric group(s) {', '.join(needing)} need input_shape= (one sample's shape "
                "without the batch dimension, e.g. (3, 32, 32)); pass it, or choose groups= "
                f"among those that do not ({', '.join(n for n in names if n not in needing)})")
    _check_options(options or {}, names)
    ctx = MetricContext(model, mask, tuple(input_shape) if input_shape is not None else None,
                        scale=scale, edge_budget=int(edge_budget), seed=int(seed),
                        options=dict(options or {}), graph=graph)
    row: dict[str, float] = {}
    bar = tqdm(names, desc="metrics", disable=True if progress is None and len(names) < 2
               else (None if progress is None else not progress), leave=False)
    with _single_thread_blas():
        for name in bar:
            bar.set_postfix_str(name)
            values = get_metric_group(name).func(ctx)
            for key, value in values.items():
                row[f"{name}.{key}"] = float(value) if value is not None else math.nan
    return row


def _check_options(options: Mapping[str, Mapping[str, Any]], names: list[str]) -> None:
    """Every option must belong to a computed group and be one that group reads."""
    problems = []
    for group, values in options.items():
        if group not in names:
            problems.append(f"{group!r} is not a computed group ({', '.join(names)})")
            continue
        known = get_metric_group(group).options
        if known is None:
            continue
        for key in values:
            if key not in known:
                problems.append(f"{group}.{key} is not an option of {group!r} (its options: "
                                f"{', '.join(f'{group}.{k}' for k in known) or 'none'})")
    if problems:
        raise MetricOptionError("unknown metric option(s): " + "; ".join(problems))


def _single_thread_blas() -> Any:
    """BLAS limited to one thread while metrics run: the dense decompositions and Krylov
    iterations here are small per call, and OpenBLAS threads spinning on a loaded machine make
    them 10-100 times slower. (torch's own thread pool is left alone.)"""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=1, user_api="blas")
    except Exception:  # pragma: no cover - threadpoolctl missing
        import contextlib

        return contextlib.nullcontext()


def compute_many(
    model: nn.Module,
    masks: Mapping[str, Mapping[str, torch.Tensor]] | Sequence[Mapping[str, torch.Tensor]],
    input_shape: Sequence[int] | None = None,
    groups: str | Iterable[str] | None = None,
    *,
    progress: bool | None = None,
    **kwargs: Any,
) -> Any:
    """:func:`compute` for many masks of one architecture: a ``pandas.DataFrame``, one row per
    mask (index: the mapping's keys, or 0..n-1), one column per metric."""
    import pandas as pd

    items = list(masks.items()) if isinstance(masks, Mapping) else list(enumerate(masks))
    rows = {}
    for key, mask in tqdm(items, desc="masks", disable=progress is False or len(items) < 2,
                          leave=False):
        rows[key] = compute(model, mask, input_shape, groups, progress=False, **kwargs)
    return pd.DataFrame.from_dict(rows, orient="index")
