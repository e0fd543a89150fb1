"""Ranking pruners before training them: prune, compute the mask metrics, predict the drop.

:func:`rank_pruners` prunes a freshly initialised model with every pruner at every sparsity
(and seed), computes the metrics the predictor was fit on (:func:`paizoo.metrics.compute`, only
the groups it needs), predicts the accuracy drop of each mask and ranks the pruners by their
predicted drop averaged over the sparsities (lower is better). Nothing is trained.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..diagnostics import OffTargetWarning
from ..masks import LayerCollapseWarning, Mask
from ..pruners.registry import allowing_off_target
from ..sparsity import off_target
from .build import config_label
from .errors import RegressionError
from .persistence import Predictor
from .ranking import ranked
from .schema import finite_metrics

MetricsFn = Callable[[nn.Module, Mask, tuple[int, ...], "list[str] | None"], Mapping[str, float]]
ModelFactory = Callable[[int], nn.Module]


def paizoo_metrics(model: nn.Module, mask: Mask, input_shape: tuple[int, ...],
                   groups: list[str] | None) -> Mapping[str, float]:
    """The default metrics function: :func:`paizoo.metrics.compute`."""
    from .. import metrics

    if groups:
        return metrics.compute(model, mask, input_shape, groups=groups)
    return metrics.compute(model, mask, input_shape)


@dataclass
class RankResult:
    """The outcome of :func:`rank_pruners`.

    Attributes:
        rows: one row per (pruner, sparsity, seed): identifiers, metrics, ``predicted_drop``.
        ranking: one row per pruner, best first: predicted drop (points) per sparsity (mean
            over seeds), ``mean`` over sparsities, and ``rank``.
        notes: warnings about the predictor's range of validity.
    """

    rows: pd.DataFrame
    ranking: pd.DataFrame
    predictor: Predictor
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def format(self) -> str:
        """The ranking as a plain-text table with the predictor's provenance and caveats."""
        sp_cols = [c for c in self.ranking.columns if c.startswith("s=")]
        name_w = max([len("pruner"), *(len(str(p)) for p in self.ranking["pruner"])])
        head = (f"{'rank':>4}  {'pruner':<{name_w}}  "
                + "  ".join(f"{c:>9}" for c in sp_cols) + f"  {'mean':>9}")
        lines = [self.title, "", "predicted accuracy drop in points (lower is better):", head,
                 "-" * len(head)]
        for r in self.ranking.to_dict("records"):
            vals = "  ".join(f"{r[c]:>9.2f}" for c in sp_cols)
            lines.append(f"{r['rank']:>4}  {r['pruner']:<{name_w}}  {vals}  {r['mean']:>9.2f}")
        lines += ["", self.predictor.describe()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def validity_notes(predictor: Predictor, *, dataset: str | None, model: str,
                   sparsities: Sequence[float], pruners: Sequence[str]) -> list[str]:
    """Where the request leaves the predictor's training data (its range of validity)."""
    on = predictor.info.get("trained_on", {})
    notes = []
    if not on:
        return ["the predictor records no training data; its range of validity is unknown"]
    if dataset is not None and on.get("datasets") and dataset not in on["datasets"]:
        notes.append(f"dataset {dataset!r} is not in the predictor's training data "
                     f"({', '.join(on['datasets'])}); predictions extrapolate")
    if on.get("models") and model not in on["models"]:
        notes.append(f"model {model!r} is not in the predictor's training data "
                     f"({', '.join(on['models'])}); predictions extrapolate "
                     "(see the leave-one-model-out error in leaderboards/regression.md)")
    lo, hi = on.get("sparsity_range", [None, None])
    if lo is not None:
        out = [s for s in sparsities if s < lo - 1e-9 or s > hi + 1e-9]
        if out:
            how = ("tree models predict a constant beyond it"
                   if predictor.estimator.model in ("hgb", "forest")
                   else "predictions extrapolate")
            notes.append(f"sparsities {', '.join(f'{s:g}' for s in out)} lie outside the trained "
                         f"range {lo:g}..{hi:g}; {how}")
    lopo = predictor.info.get("validation", {}).get("leave one pruner out", {})
    if lopo and not lopo.get("r2", 0.0) >= 0.5:
        notes.append(f"the predictor's leave-one-pruner-out R^2 is {lopo.get('r2', math.nan):.2f}: "
                     "rankings of unseen pruners by it are unreliable")
    unseen = [p for p in pruners if on.get("pruners") and p not in on["pruners"]]
    if unseen:
        notes.append(f"pruners not in the training data: {', '.join(unseen)} (the use case; the "
                     "leave-one-pruner-out error above applies to them)")
    return notes


def rank_pruners(
    model: str | ModelFactory,
    pruners: Sequence[str],
    sparsities: Sequence[float],
    *,
    predictor: Predictor,
    dataset: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    data: object = None,
    data_root: str | None = None,
    seeds: Sequence[int] = (0,),
    model_options: Mapping[str, Any] | None = None,
    pruner_options: Mapping[str, Mapping[str, Any]] | None = None,
    metrics_fn: MetricsFn | None = None,
    allow_missing: bool = False,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> RankResult:
    """Prune, measure and predict; see the module docstring.

    Args:
        model: a model name for :func:`paizoo.models.create_model`, or ``factory(seed)``.
        pruners: pruner names (``"snip"``, ``"mypkg:MyPruner"``, ...).
        sparsities: fractions of weights removed.
        predictor: a loaded :class:`~paizoo.regression.persistence.Predictor`.
        dataset: dataset name: gives ``input_shape``/``num_classes`` and the pruning batches of
            data-driven pruners; or pass ``input_shape`` (and ``data``) yourself.
        data: ``(inputs, targets)`` batches for data-driven pruners (overrides ``dataset``).
        model_options: keyword arguments of the model factory (e.g. ``{"input_size": 8}``).
        pruner_options: ``{pruner: {option: value}}``.
        metrics_fn: ``fn(model, mask, input_shape, groups) -> {name: value}``; default
            :func:`paizoo.metrics.compute`.
        allow_missing: predict even if some of the predictor's columns are not produced (NaN).
    """
    from ..api import prune
    from ..pruners import get_pruner_class

    if not pruners or not sparsities:
        raise RegressionError("give at least one pruner and one sparsity")
    metrics_fn = metrics_fn or paizoo_metrics
    info = None
    if dataset is not None:
        from ..data import dataset_info

        info = dataset_info(dataset)
        input_shape = input_shape or tuple(info.input_shape)
        num_classes = num_classes or info.num_classes
    if input_shape is None:
        raise RegressionError(
            "give dataset= or input_shape= (one sample's shape, e.g. (1, 28, 28))")
    input_shape = tuple(int(v) for v in input_shape)
    classes = [get_pruner_class(p) for p in pruners]  # fails early on unknown pruners
    labels = [config_label(p, (pruner_options or {}).get(p, {})) for p in pruners]
    if len(set(labels)) != len(labels):
        raise RegressionError(f"a pruner is listed twice: {list(pruners)}")
    model_name = (config_label(model, model_options, implied=("input_size",))
                  if isinstance(model, str) else getattr(model, "__name__", "model"))

    def build(seed: int) -> nn.Module:
        if isinstance(model, str):
            from types import SimpleNamespace

            from ..training.experiment import build_model

            # the leaderboard runner's own model builder (zoo models sized from the data), so
            # the masks measured here are of the networks the predictor was trained on
            spec = SimpleNamespace(model=model, seed=seed, model_config=dict(model_options or {}))
            shape = SimpleNamespace(input_shape=input_shape, num_classes=num_classes or 10)
            net = build_model(spec, shape)  # type: ignore[arg-type]  # reads these fields
        else:
            net = model(seed)
        return net.to(device)

    est = predictor.estimator
    if allow_missing and not est.allow_missing:
        est = copy.copy(est).set_params(allow_missing=True)  # fitted state shared, not mutated
    groups = est.metrics_groups_ or None
    if metrics_fn is paizoo_metrics and groups:
        from .. import metrics

        unknown = sorted(set(groups) - set(metrics.list_metric_groups()))
        if unknown:
            raise RegressionError(
                f"the predictor was fit on columns of group(s) {unknown}, which paizoo.metrics "
                f"does not compute (it has {', '.join(metrics.list_metric_groups())}); train "
                "it on paizoo metric columns, or pass metrics_fn= to compute them")
    loaded_split = None
    rows: list[dict[str, Any]] = []
    collapse_notes: list[str] = []
    jobs = [(p, c, s, seed) for seed in seeds for p, c in zip(pruners, classes, strict=True)
            for s in sparsities]
    for pruner, cls, sparsity, seed in tqdm(jobs, desc="paizoo rank", disable=_quiet(progress)):
        batches = None
        if cls.requires_data:
            if data is not None:
                batches = data
            elif dataset is not None:
                from ..data import load_dataset, pruning_batches

                if loaded_split is None:
                    loaded_split = load_dataset(dataset, split="train", root=data_root)
                batches = pruning_batches(loaded_split, pruner, num_classes=num_classes,
                                          seed=seed)
            else:
                raise RegressionError(f"pruner {pruner!r} is data-driven: give dataset= or data=")
        net = build(seed)
        opts = dict((pruner_options or {}).get(pruner, {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayerCollapseWarning)  # reported in the notes
            warnings.simplefilter("ignore", OffTargetWarning)  # reported in the notes
            mask = prune(net, pruner, sparsity=sparsity, data=batches, input_shape=input_shape,
                         seed=seed, **allowing_off_target(pruner, opts))
        if off_target(mask.num_kept, mask.num_total, 1.0 - sparsity):
            collapse_notes.append(f"off target: {pruner} at sparsity {sparsity:g} (seed {seed})"
                                  f" reaches {mask.sparsity:.4g} only")
        collapsed = mask.collapsed_layers()
        if collapsed:
            collapse_notes.append(f"layer collapse: {pruner} at sparsity {sparsity:g} (seed "
                                  f"{seed}) keeps no weight in {', '.join(collapsed)}")
        values = finite_metrics(metrics_fn(net, mask, input_shape, groups))  # as in build
        rows.append({"dataset": dataset or "", "model": model_name,
                     "pruner": config_label(pruner, opts),
                     "sparsity": float(sparsity), "seed": int(seed), **values})
        if len(rows) == 1:
            est.feature_matrix(pd.DataFrame(rows))  # missing columns fail now, not at the end
    table = pd.DataFrame(rows)
    table["predicted_drop"] = est.predict(table)
    ranking = _ranking(table, labels, sparsities)
    title = (f"paizoo rank: {model_name}"
             + (f" on {dataset}" if dataset else f", input {'x'.join(map(str, input_shape))}")
             + f", {len(pruners)} pruner(s) x {len(sparsities)} sparsit"
             + ("y" if len(sparsities) == 1 else "ies")
             + f", seed(s) {', '.join(map(str, seeds))} - predicted, nothing trained")
    notes = validity_notes(predictor, dataset=dataset, model=model_name,
                           sparsities=sparsities, pruners=labels) + collapse_notes
    return RankResult(rows=table, ranking=ranking, predictor=predictor, title=title, notes=notes)


def _quiet(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _ranking(table: pd.DataFrame, pruners: Sequence[str],
             sparsities: Sequence[float]) -> pd.DataFrame:
    wide = table.pivot_table(index="pruner", columns="sparsity", values="predicted_drop",
                             aggfunc="mean")
    out = pd.DataFrame({"pruner": list(pruners)})
    for s in sparsities:
        out[f"s={s:g}"] = out["pruner"].map(wide[float(s)]).astype(float)
    out["mean"] = out[[f"s={s:g}" for s in sparsities]].mean(axis=1)
    order = ranked(dict(zip(out["pruner"], out["mean"], strict=True)))
    out = out.set_index("pruner").loc[order].reset_index()
    out.insert(0, "rank", range(1, len(out) + 1))
    return out
