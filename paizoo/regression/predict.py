"""Ranking pruners before training them: prune, compute the mask metrics, predict the drop.

:func:`rank_pruners` prunes a freshly initialised model with every pruner at every sparsity
(and seed), computes the metrics the predictor was fit on (:func:`paizoo.metrics.compute`, only
the groups it needs), predicts the accuracy drop of each mask and ranks the pruners by their
predicted drop averaged over the sparsities (lower is better). Nothing is trained.

Every predicted drop gets an interval (:mod:`paizoo.regression.conformal`) calibrated on the
out-of-fold residuals of the split that matches the request: leave one pruner out when the model
is one of the predictor's training architectures, leave one architecture out otherwise. The
interval of a pruner's mean over sparsities is the mean of its per-sparsity bounds; pruners
whose mean intervals overlap are reported as tied. The per-mask intervals have the stated
coverage; the mean's interval has it when a pruner's errors at its sparsities are equal (they
are strongly correlated in practice), not in general.
"""

from __future__ import annotations

import copy
import math
import numbers
import operator
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..diagnostics import OffTargetWarning
from ..masks import LayerCollapseWarning, Mask
from ..progress import round_progress
from ..pruners.registry import allowing_off_target
from ..sparsity import off_target, resolve_density
from .agnostic import agnostic_features, is_agnostic_column, layout_of
from .build import config_label
from .conformal import DEFAULT_COVERAGE, Calibration, feasible_drop_range, overlapping
from .errors import RegressionError
from .persistence import Predictor
from .ranking import ranked
from .schema import finite_metrics
from .splits import SPLITS

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
        rows: one row per (pruner, sparsity, seed): identifiers, metrics, ``predicted_drop``
            and, with a calibration, ``predicted_low`` / ``predicted_high``.
        ranking: one row per pruner, best first: predicted drop (points) per sparsity (mean
            over seeds), ``mean`` over sparsities, and ``rank``; with a calibration ``low`` /
            ``high`` (the per-mask interval bounds averaged like the drops) and ``tied_with``
            (the ranks of the pruners whose intervals overlap, comma-separated).
        predictor: the predictor used; title: the first line of :meth:`format`.
        notes: warnings about the predictor's range of validity.
        split: the split whose error and calibration apply (``"lopo"`` or ``"loao"``).
        coverage: the intervals' coverage, ``None`` without a calibration (no intervals).
        drop_range: the feasible drops predictions and bounds were clipped to.
    """

    rows: pd.DataFrame
    ranking: pd.DataFrame
    predictor: Predictor
    title: str = ""
    notes: list[str] = field(default_factory=list)
    split: str = ""
    coverage: float | None = None
    drop_range: tuple[float, float] = (-100.0, 100.0)

    def format(self) -> str:
        """The ranking as a plain-text table with intervals, ties, the error of the split that
        applies, the predictor's validity domain and caveats."""
        sp_cols = [c for c in self.ranking.columns if c.startswith("s=")]
        name_w = max([len("pruner"), *(len(str(p)) for p in self.ranking["pruner"])])
        has_iv = "low" in self.ranking.columns
        head = (f"{'rank':>4}  {'pruner':<{name_w}}  "
                + "  ".join(f"{c:>9}" for c in sp_cols) + f"  {'mean':>9}"
                + (f"  {'interval':>17}  tied with" if has_iv else ""))
        what = "predicted accuracy drop in points (lower is better)"
        if has_iv:
            lo, hi = self.drop_range
            n_sp = len(sp_cols)
            what += (f"; interval: {self.coverage:.0%} split-conformal interval"
                     + (" of each mask, averaged over the sparsities (the mean has that "
                        "coverage only when its errors at the sparsities move together)"
                        if n_sp > 1 else "")
                     + f", calibrated on {SPLITS.get(self.split, self.split)} residuals and "
                     "clipped "
                     f"to the drops an accuracy in [0, 100] allows, [{lo:g}, {hi:g}]; pruners "
                     "whose intervals overlap are tied (their order is not known)")
        lines = [self.title, "", what + ":", head, "-" * len(head)]
        for r in self.ranking.to_dict("records"):
            vals = "  ".join(f"{_fixed(r[c], 2):>9}" for c in sp_cols)
            line = f"{r['rank']:>4}  {r['pruner']:<{name_w}}  {vals}  {_fixed(r['mean'], 2):>9}"
            if has_iv:
                iv = f"[{_fixed(r['low'], 1)}, {_fixed(r['high'], 1)}]"
                line += f"  {iv:>17}  {r['tied_with'] or '-'}"
            lines.append(line)
        label = SPLITS.get(self.split, self.split)
        lines += ["", f"error that applies ({label}"
                  + (", the model is one of the training architectures)" if self.split == "lopo"
                     else ", the model is none of the training architectures)") + ":"]
        lines += [self.predictor.describe(splits=[label]) if label else
                  self.predictor.describe()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fixed(value: float, digits: int) -> str:
    """``value`` to ``digits`` decimals, without the sign of a value that rounds to zero
    (-0.04 -> "0.0", not "-0.0")."""
    return f"{round(float(value), digits) + 0.0:.{digits}f}"


def _pruner_defaults(name: str) -> dict[str, Any]:
    """The keyword defaults of pruner ``name``'s constructor (``{}`` if it cannot be read)."""
    import inspect

    from ..pruners import get_pruner_class

    try:
        sig = inspect.signature(get_pruner_class(name).__init__)
    except Exception:  # an unknown or odd pruner: compare the labels as written
        return {}
    return {k: p.default for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty}


def same_pruner(a: str, b: str) -> bool:
    """Whether pruner labels ``a`` and ``b`` (``name{config}``) name the same setting once the
    pruner's default options are filled in (``random`` is ``random{"distribution":"uniform"}``)."""
    from .agnostic import parse_label

    (na, ca), (nb, cb) = parse_label(a), parse_label(b)
    if na != nb:
        return False
    if ca == cb:
        return True
    defaults = _pruner_defaults(na)
    return all(ca.get(k, defaults.get(k, _MISSING)) == cb.get(k, defaults.get(k, _MISSING))
               for k in set(ca) | set(cb))


_MISSING = object()


def training_architectures(predictor: Predictor, model: str) -> list[dict[str, float]]:
    """The ``arch.*`` descriptors of the predictor's training architecture(s) named ``model``
    (several when its tables held several networks under that label): as recorded when it was
    trained (``trained_on["architectures"]``), or, for a predictor that predates that record,
    those of the paizoo zoo model of that label built as the leaderboard runner builds it for
    each buildable training dataset; empty when neither is known (not a training model, or no
    zoo model of that name)."""
    from .agnostic import layout_for_label

    on = predictor.info.get("trained_on", {})
    if model not in on.get("models", []):
        return []
    recorded = on.get("architectures", {}).get(model)
    if recorded is not None:
        many = recorded if isinstance(recorded, list) else [recorded]
        return [{str(k): float(v) for k, v in one.items()} for one in many]
    rebuilt = []
    for dataset in on.get("datasets", []):
        try:
            rebuilt.append(layout_for_label(model, dataset, dense_paths=False).descriptors())
        except Exception:  # not a zoo model, or a dataset this paizoo does not know
            continue
    return rebuilt


def in_domain(predictor: Predictor, model: str, descriptors: Mapping[str, float] | None
              ) -> tuple[str, str | None]:
    """``(split, note)``: ``"lopo"`` when the request is one of the predictor's training
    architectures, by name and, given the request's ``arch.*`` ``descriptors``, by architecture
    (equal descriptors to one of :func:`training_architectures`); else ``"loao"`` (the error of an
    architecture never seen), with a note when the name is a training model's but the network
    is another (a width changed by options, a user model with a clashing name). When the
    training architecture is unknown (no record, no zoo model of that name), the name decides
    and the note says so."""
    if model not in predictor.info.get("trained_on", {}).get("models", []):
        return "loao", None
    if descriptors is None:
        return "lopo", None
    candidates = [t for t in training_architectures(predictor, model)
                  if set(t) & set(descriptors)]
    if not candidates:  # e.g. a per-layer predictor of a user's model, from a table without arch.*
        return "lopo", (f"model {model!r} is taken to be the training architecture of that "
                        "name by its name alone: the predictor records no architecture for it "
                        "and no paizoo model of that name rebuilds it (retrain it on a table "
                        "with the arch.* columns to have it checked)")
    differs = []
    for trained in candidates:
        common = sorted(set(trained) & set(descriptors))
        differ = [k for k in common if not math.isclose(descriptors[k], trained[k],
                                                        rel_tol=1e-6, abs_tol=1e-9)]
        if not differ:
            return "lopo", None
        differs.append((trained, differ))
    trained, differ = differs[0]
    shown = ", ".join(f"{k} {descriptors[k]:.4g} vs {trained[k]:.4g}" for k in differ[:3])
    return "loao", (f"model {model!r} has the name of a training architecture but is another "
                    f"network ({shown} in training): the leave-one-architecture-out error "
                    "and intervals apply")


def applicable_split(predictor: Predictor, model: str,
                     descriptors: Mapping[str, float] | None = None) -> str:
    """The split whose error applies to ``model``: see :func:`in_domain`."""
    return in_domain(predictor, model, descriptors)[0]


def validity_notes(predictor: Predictor, *, dataset: str | None, model: str,
                   sparsities: Sequence[float], pruners: Sequence[str],
                   split: str | None = None,
                   input_shape: Sequence[int] | None = None) -> list[str]:
    """Where the request leaves the predictor's training data (its range of validity);
    ``split``: the one that applies (default: :func:`applicable_split` by name);
    ``input_shape``: one sample's shape, compared with the training datasets' shapes."""
    on = predictor.info.get("trained_on", {})
    notes = []
    if not on:
        return ["the predictor records no training data; its range of validity is unknown"]
    if dataset is not None and on.get("datasets") and dataset not in on["datasets"]:
        notes.append(f"dataset {dataset!r} is not in the predictor's training data "
                     f"({', '.join(on['datasets'])}); predictions extrapolate")
    shapes = [tuple(v) for v in (on.get("input_shapes") or {}).values() if v]
    if input_shape is not None and shapes and tuple(input_shape) not in shapes:
        notes.append(f"input shape {'x'.join(map(str, input_shape))} is none of the training "
                     f"data's ({', '.join('x'.join(map(str, v)) for v in sorted(set(shapes)))})"
                     ": the masks' metrics and the drops extrapolate to another input size")
    if on.get("models") and model not in on["models"]:
        notes.append(f"model {model!r} is in no training table: the leave-one-architecture-out "
                     "error and intervals apply")
    lo, hi = on.get("sparsity_range", [None, None])
    if lo is not None:
        out = [s for s in sparsities if s < lo - 1e-9 or s > hi + 1e-9]
        if out:
            how = ("tree models predict a constant beyond it"
                   if predictor.estimator.model in ("hgb", "forest")
                   else "predictions extrapolate")
            notes.append(f"sparsities {', '.join(f'{s:g}' for s in out)} lie outside the trained "
                         f"range {lo:g}..{hi:g}; {how}")
    label = SPLITS[split or applicable_split(predictor, model)]
    val = predictor.info.get("validation", {}).get(label, {})
    if val and not val.get("r2", 0.0) >= 0.5:
        notes.append(f"the predictor's {label} R^2 is {val.get('r2', math.nan):.2f}: rankings "
                     "by it are unreliable")
    trained = on.get("pruners") or []
    unseen = [p for p in pruners if trained and not any(same_pruner(p, t) for t in trained)]
    if unseen:
        # the error of an unseen pruner is leave-one-pruner-out's, printed only when that split
        # applies: quote it here, and say when the intervals were calibrated on seen pruners
        lopo = predictor.info.get("validation", {}).get(SPLITS["lopo"], {})
        err = (f"; the {SPLITS['lopo']} error, on the training architectures: MAE "
               f"{lopo.get('mae', math.nan):.2f} points, R^2 {lopo.get('r2', math.nan):.3f}"
               if lopo else "; the predictor records no leave-one-pruner-out error")
        if label != SPLITS["lopo"]:
            err += (f"; their intervals are calibrated on {label} residuals of pruners that "
                    "were seen, and may be too narrow for them")
        notes.append(f"pruners not in the training data: {', '.join(unseen)} (predicted as "
                     f"unseen pruners{err})")
    return notes


def rank_pruners(
    model: str | ModelFactory,
    pruners: str | Sequence[str],
    sparsities: float | Sequence[float],
    *,
    predictor: Predictor | None = None,
    dataset: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    data: object = None,
    data_root: str | None = None,
    seeds: int | Sequence[int] = (0,),
    model_options: Mapping[str, Any] | None = None,
    pruner_options: Mapping[str, Mapping[str, Any]] | None = None,
    metrics_fn: MetricsFn | None = None,
    allow_missing: bool = False,
    coverage: float = DEFAULT_COVERAGE,
    dense_accuracy: float | None = None,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> RankResult:
    """Prune, measure and predict; see the module docstring.

    Args:
        model: a model name for :func:`paizoo.models.create_model`, or ``factory(seed)``
            returning a new ``nn.Module`` (not a module instance: each mask is of a freshly
            initialised model).
        pruners: pruner names (``"snip"``, ``"mypkg:MyPruner"``, ...); one name alone is one
            pruner.
        sparsities: fractions of weights removed (one number alone is one sparsity).
        seeds: seeds of model initialisation and pruning (one int alone is one seed); the
            predicted drops are averaged over them.
        predictor: a loaded :class:`~paizoo.regression.persistence.Predictor`; default: the
            one shipped with paizoo (:func:`~paizoo.regression.persistence.load_predictor`).
        dataset: dataset name: gives ``input_shape``/``num_classes`` and the pruning batches of
            data-driven pruners; or pass ``input_shape`` (and ``data``) yourself (an
            ``input_shape`` other than the dataset's is refused unless ``data`` is given).
        num_classes: the classes of a model given by name when no ``dataset`` is given
            (default 10); with a dataset, refused unless it is the dataset's.
        data: ``(inputs, targets)`` batches for data-driven pruners (overrides ``dataset``).
        model_options: keyword arguments of a model given by name (e.g.
            ``{"input_size": 8}``); refused with a factory (set them in it).
        pruner_options: ``{pruner: {option: value}}``, each pruner one of ``pruners``.
        metrics_fn: ``fn(model, mask, input_shape, groups) -> {name: value}``; default
            :func:`paizoo.metrics.compute`.
        allow_missing: predict even if some of the predictor's columns are not produced (NaN).
            Implied for a model in no training table (its per-layer columns cannot exist; a
            note counts them).
        coverage: the coverage of the intervals (:mod:`paizoo.regression.conformal`),
            calibrated on the out-of-fold residuals of the split that applies: leave one pruner
            out for a model of the training data, leave one architecture out otherwise.
        dense_accuracy: the dense model's test accuracy in points, if known: predictions and
            intervals are clipped to ``[dense_accuracy - 100, dense_accuracy]``; without it to
            ``[-100, 100]`` (:func:`~paizoo.regression.conformal.feasible_drop_range`). Values
            in (0, 1] are refused as a likely fraction (they would clip every drop to <= 1).
    """
    from ..api import prune
    from ..pruners import get_pruner_class

    # one pruner, sparsity or seed may be given alone (a string is one name, not its letters)
    pruners = [pruners] if isinstance(pruners, str) else list(pruners)
    sparsities = [float(v) for v in ([sparsities] if isinstance(sparsities, numbers.Real)
                                     else sparsities)]
    try:
        seeds = [operator.index(v) for v in ([seeds] if isinstance(seeds, numbers.Integral)
                                             else seeds)]
    except TypeError as exc:
        raise RegressionError(f"seeds must be integers, got {seeds!r}") from exc
    if not pruners or not sparsities or not seeds:
        raise RegressionError("give at least one pruner, one sparsity and one seed")
    for sparsity in sparsities:  # all of them before any mask (prune checks each in turn)
        resolve_density(sparsity=sparsity)
    for what, values in (("sparsity", sparsities), ("seed", seeds)):
        if len({round(v, 9) for v in values}) != len(values):
            raise RegressionError(f"give each {what} once: got {values}")
    if isinstance(model, nn.Module):
        raise RegressionError(
            f"model= is a {type(model).__name__} instance, not a factory: each pruner, "
            "sparsity and seed prunes a freshly initialised model, so pass a function of the "
            "seed returning a new nn.Module, e.g. lambda seed: MyNet()")
    if model_options and not isinstance(model, str):
        raise RegressionError(
            f"model_options {dict(model_options)} are given for a model factory, which is "
            "called as factory(seed) only: set them in the factory (paizoo rank: -m KEY=VALUE "
            "applies to paizoo, timm and torchvision model names)")
    unranked = sorted(set(pruner_options or {}) - set(pruners))
    if unranked:
        raise RegressionError(
            f"options given for pruner(s) {', '.join(map(repr, unranked))}, which are not "
            f"among the pruners ranked ({', '.join(pruners)}); key pruner_options by one of "
            "them (paizoo rank: -o PRUNER.KEY=VALUE with PRUNER in --pruners)")
    if not 0.0 < coverage < 1.0:
        raise RegressionError(f"coverage must lie in (0, 1), e.g. 0.9, got {coverage}")
    if dense_accuracy is not None and 0.0 < dense_accuracy <= 1.0:
        raise RegressionError(
            f"dense_accuracy {dense_accuracy:g} is read in points (percent): every drop would "
            f"be clipped to at most {dense_accuracy:g}; give the dense model's test accuracy "
            f"in percent, e.g. {100 * dense_accuracy:g} for a fraction of {dense_accuracy:g} "
            "(paizoo rank --dense-accuracy PERCENT)")
    try:
        drop_range = feasible_drop_range(dense_accuracy)
    except ValueError as exc:
        raise RegressionError(f"{exc} (the dense model's test accuracy in percent)") from exc
    metrics_fn = metrics_fn or paizoo_metrics
    if predictor is None:
        from .persistence import load_predictor

        predictor = load_predictor()
    info = None
    if dataset is not None:
        from ..data import dataset_info

        info = dataset_info(dataset)
        if data is None and input_shape is not None and \
                tuple(int(v) for v in input_shape) != tuple(info.input_shape):
            raise RegressionError(
                f"input_shape {'x'.join(map(str, input_shape))} is not the shape of dataset "
                f"{dataset!r} ({'x'.join(map(str, info.input_shape))}), whose samples the "
                "data-driven pruners are given: give the dataset alone (it sets the shape), or "
                "input_shape alone (paizoo rank: --dataset or --input-shape)")
        input_shape = input_shape or tuple(info.input_shape)
        if data is None and num_classes is not None and num_classes != info.num_classes:
            raise RegressionError(
                f"num_classes {num_classes} is not dataset {dataset!r}'s {info.num_classes}: "
                "give the dataset alone (it sets the classes), or num_classes alone "
                "(paizoo rank: --dataset or --num-classes)")
        num_classes = num_classes or info.num_classes
    if input_shape is None:
        raise RegressionError(
            "give dataset= or input_shape= (one sample's shape, e.g. (1, 28, 28))")
    input_shape = tuple(int(v) for v in input_shape)
    classes = [get_pruner_class(p) for p in pruners]  # fails early on unknown pruners
    if data is None and dataset is None:
        needy = [p for p, c in zip(pruners, classes, strict=True) if c.requires_data]
        if needy:  # before any mask is computed
            raise RegressionError(f"pruner {needy[0]!r} is data-driven: give dataset= or data= "
                                  "(paizoo rank: --dataset)")
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
            try:
                net = model(seed)
            except Exception as exc:  # e.g. a class whose constructor takes no seed
                raise RegressionError(
                    f"the model factory {model_name}(seed) failed ({type(exc).__name__}: "
                    f"{exc}); it must take the seed (an int) and return a new nn.Module"
                ) from exc
            if not isinstance(net, nn.Module):
                raise RegressionError(f"the model factory {model_name}(seed) returned "
                                      f"{type(net).__name__}, not an nn.Module")
        return net.to(device)

    first = build(int(seeds[0]))
    _check_input_shape(first, input_shape)
    est = predictor.estimator
    # in-domain by architecture, not by name alone
    descriptors = layout_of(first, input_shape, dense_paths=False).descriptors()
    split, domain_note = in_domain(predictor, model_name, descriptors)
    if (allow_missing or split != "lopo") and not est.allow_missing:
        est = copy.copy(est).set_params(allow_missing=True)  # fitted state shared, not mutated
    needs_agnostic = any(is_agnostic_column(c) for c in est.feature_names_in_)
    layout = None
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
    for pruner, cls, sparsity, seed in round_progress(list(jobs), "paizoo rank", progress):
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
        net = build(seed)
        if layout is None and needs_agnostic:
            layout = layout_of(net, input_shape)
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
        if layout is not None:
            values = {**values, **finite_metrics(agnostic_features(values, layout))}
        rows.append({"dataset": dataset or "", "model": model_name,
                     "pruner": config_label(pruner, opts),
                     "sparsity": float(sparsity), "seed": int(seed), **values})
        if len(rows) == 1:
            est.feature_matrix(pd.DataFrame(rows))  # missing columns fail now, not at the end
    table = pd.DataFrame(rows)
    missing = [c for c in est.feature_names_in_ if c not in table.columns]
    table["predicted_drop"] = est.predict(table).clip(*drop_range)
    cal_info = predictor.info.get("calibration", {}).get(split)
    cal = Calibration.from_dict(cal_info).at(coverage) if cal_info else None
    if cal is not None:
        low, high = cal.interval(table["predicted_drop"])
        table["predicted_low"], table["predicted_high"] = (np.clip(low, *drop_range),
                                                           np.clip(high, *drop_range))
    ranking = _ranking(table, labels, sparsities)
    title = (f"paizoo rank: {model_name}"
             + (f" on {dataset}" if dataset else f", input {'x'.join(map(str, input_shape))}")
             + f", {len(pruners)} pruner(s) x {len(sparsities)} sparsit"
             + ("y" if len(sparsities) == 1 else "ies")
             + f", seed(s) {', '.join(map(str, seeds))} - predicted, nothing trained")
    notes = ([domain_note] if domain_note else []) + validity_notes(
        predictor, dataset=dataset, model=model_name, sparsities=sparsities, pruners=labels,
        split=split, input_shape=input_shape) + collapse_notes
    if missing:
        notes.append(f"{len(missing)} of the predictor's {len(est.feature_names_in_)} feature "
                     f"columns are not defined for this model (e.g. {', '.join(missing[:3])}) "
                     "and are treated as missing; a predictor on agnostic features "
                     "(`paizoo regress train --groups agnostic`) has none")
    if cal is None:
        notes.append(f"the predictor records no {SPLITS[split]} calibration: no intervals "
                     "(retrain it with this paizoo)")
    return RankResult(rows=table, ranking=ranking, predictor=predictor, title=title, notes=notes,
                      split=split, coverage=coverage if cal is not None else None,
                      drop_range=drop_range)


def _check_input_shape(net: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Refuse an ``input_shape`` the model cannot run on (the metrics run it); token-input
    models (an embedding: they take ids, not this float probe) are left to the metrics."""
    from ..pruners._tokens import embedding_names

    if embedding_names(net):
        return
    param = next(net.parameters(), None)
    x = torch.zeros((1, *input_shape), device=param.device if param is not None else "cpu")
    try:
        with torch.no_grad():
            net.eval()(x)
    except Exception as exc:  # any failure: the shape does not fit this model
        raise RegressionError(
            f"the model does not run on an input of shape {'x'.join(map(str, input_shape))} "
            f"({type(exc).__name__}: {exc}); give one sample's shape (input_shape=, "
            "paizoo rank --input-shape C,H,W) or the dataset it was built for") from exc


def _ranking(table: pd.DataFrame, pruners: Sequence[str],
             sparsities: Sequence[float]) -> pd.DataFrame:
    wide = table.pivot_table(index="pruner", columns="sparsity", values="predicted_drop",
                             aggfunc="mean")
    out = pd.DataFrame({"pruner": list(pruners)})
    for s in sparsities:
        out[f"s={s:g}"] = out["pruner"].map(wide[float(s)]).astype(float)
    out["mean"] = out[[f"s={s:g}" for s in sparsities]].mean(axis=1)
    if "predicted_low" in table.columns:
        # the interval of the mean over sparsities: the mean of the per-sparsity bounds (exact
        # when a pruner's errors at its sparsities are equal; see the module docstring)
        for col, src in (("low", "predicted_low"), ("high", "predicted_high")):
            w = table.pivot_table(index="pruner", columns="sparsity", values=src,
                                  aggfunc="mean")
            out[col] = pd.DataFrame({s: out["pruner"].map(w[float(s)]) for s in sparsities}
                                    ).mean(axis=1).astype(float)
    order = ranked(dict(zip(out["pruner"], out["mean"], strict=True)))
    out = out.set_index("pruner").loc[order].reset_index()
    out.insert(0, "rank", range(1, len(out) + 1))
    if "low" in out.columns:
        ties = overlapping(out["low"].to_numpy(), out["high"].to_numpy())
        out["tied_with"] = [",".join(str(j + 1) for j in t) for t in ties]
    return out
