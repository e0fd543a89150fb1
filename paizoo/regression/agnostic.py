"""Architecture-agnostic features: per-layer metrics as profiles over normalised depth.

A per-layer metric column (``"<family>.<param>"``, e.g. ``ramanujan.d_left.layer1.0.conv1.weight``)
exists only for models that have that layer, so a regressor fit on such columns cannot say
anything about another architecture. This module turns the per-layer metrics of one mask into
columns every network has:

**Profiles.** The prunable layers ``0..L-1`` in forward order (the order their modules first run,
:func:`layout_of`) sit at normalised depth ``t_i = i / (L - 1)`` (``t = 0`` when ``L = 1``). For
each per-layer family of :data:`FAMILIES` the values ``v_i`` (after the size normalisation listed
there) give the columns ``"<name>@<stat>"``:

==========  =====================================================================================
stat        definition (over the layers where ``v_i`` is defined, i.e. finite)
==========  =====================================================================================
min, max    smallest / largest value
mean        arithmetic mean over layers
wmean       mean weighted by each layer's weight count
q25, q50,   quartiles (linear interpolation, ``numpy.quantile``)
q75
first       ``v_0`` (NaN if undefined there)
last        ``v_{L-1}`` (NaN if undefined there)
bneck       the value at the *bottleneck*, the layer of lowest density ``density.<param>`` (the
            first such layer on ties; NaN if the density columns are absent)
slope       least-squares slope of ``v_i`` on ``t_i`` (NaN with fewer than two defined layers)
undef       fraction of the ``L`` layers where ``v_i`` is undefined (e.g. Ramanujan metrics of
            layers with mean degree < 3)
==========  =====================================================================================

**Size normalisation.** Degree-like per-layer quantities grow with the layer's width; each is
divided by its value on the *dense* layer of the same shape (rolled biadjacency with
``n_L = prod(weight.shape[1:])`` fan-in positions and ``n_R = weight.shape[0]`` outputs), so it
lies in ``[0, 1]`` for any width (:data:`FAMILIES` gives the divisor of each).

**Global columns.** Network-level metrics that are already fractions or normalised
(:data:`SIZE_FREE_GLOBALS`) are kept as they are; counts become fractions (the ``*_frac``
columns paizoo.metrics already has, those that are size-free; the number of components
becomes ``mge.components_rel`` = (c - 1) / (n - 1)) and ``effective.paths_log10`` becomes
the log-ratio ``effective.paths_log10_ratio`` to the dense network's path count. Other
network-level counts (nodes, edges, weighted spectral quantities) are left out of the agnostic
set.

**Architecture descriptors** ``arch.*`` (:data:`ARCH_DEFINITIONS`): depth, log parameter count,
residual / normalisation present, conv and grouped-conv share; ``arch.log10_dense_paths`` is kept
in the layout for the ratio above and is not a feature.

:func:`feature_definitions` gives a one-line definition of any column of a metrics table (the
per-layer and raw columns included), written next to a table by ``paizoo regress build``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from .errors import RegressionError

#: the separator between a per-layer family and its profile statistic
STAT_SEP = "@"

#: per-layer family -> (source column family, divisor on the dense layer, definition)
#: divisor: "" (none), "nR", "nL", "sqrt_nLnR", "lambda2_K" (see spectral.lambda2_rel)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "density": ("density", "", "fraction of the layer's weights kept"),
    "effective.density": ("effective.density", "",
                          "fraction of the layer's weights on an input-output path (effective "
                          "density)"),
    "ramanujan.d_left_rel": ("ramanujan.d_left", "nR",
                             "mean fan-in-side degree of the rolled bipartite graph / n_R (its "
                             "dense value)"),
    "ramanujan.d_right_rel": ("ramanujan.d_right", "nL",
                              "mean output-side degree of the rolled bipartite graph / n_L"),
    "ramanujan.mu0_rel": ("ramanujan.mu0", "sqrt_nLnR",
                          "largest singular value of the rolled 0/1 biadjacency / sqrt(n_L n_R)"),
    "ramanujan.mu_hat_rel": ("ramanujan.mu_hat", "sqrt_nLnR",
                             "second singular value of the rolled 0/1 biadjacency / "
                             "sqrt(n_L n_R)"),
    "ramanujan.delta_r_norm": ("ramanujan.delta_r_norm", "",
                               "Ramanujan gap (bound - mu_hat) / bound (Hoang et al. 2023)"),
    "ramanujan.imdb_norm": ("ramanujan.imdb_norm", "",
                            "iterative mean difference of bound, normalised (Hoang et al. 2023)"),
    "spectral.gap_rel": ("spectral.gap", "sqrt_nLnR",
                         "spectral gap sigma_1 - sigma_2 of the rolled 0/1 biadjacency / "
                         "sqrt(n_L n_R)"),
    "spectral.lambda2_rel": ("spectral.lambda2", "lambda2_K",
                             "algebraic connectivity of the layer's bipartite graph / its value "
                             "on the complete bipartite graph K(n_L, n_R), min(n_L, n_R); on a "
                             "layer with a side of one node (a star; 1 x 1 included) every "
                             "connected graph is a star, lambda2 1, or a single edge, lambda2 2, "
                             "so lambda2 is read as min(lambda2, 1) there: 1 when it keeps a "
                             "weight, in [0, 1] for every layer"),
    "scatter.forward": ("scatter.forward", "",
                        "forward scatter of a Linear junction (Dey et al. 2018), in [0, 1]"),
    "scatter.backward": ("scatter.backward", "",
                         "backward scatter of a Linear junction (Dey et al. 2018), in [0, 1]"),
}

STATS: dict[str, str] = {
    "min": "smallest value over the layers where it is defined",
    "max": "largest value over the layers where it is defined",
    "mean": "mean over the layers where it is defined",
    "wmean": "mean weighted by the layers' weight counts",
    "q25": "first quartile over layers",
    "q50": "median over layers",
    "q75": "third quartile over layers",
    "first": "value at the first prunable layer (forward order)",
    "last": "value at the last prunable layer (forward order)",
    "bneck": "value at the bottleneck layer (lowest density; first on ties)",
    "slope": "least-squares slope against normalised depth t = i / (L - 1)",
    "undef": "fraction of the layers where the value is undefined (NaN)",
}

#: network-level columns that are already fractions or normalised: kept as they are
SIZE_FREE_GLOBALS: dict[str, str] = {
    "density.global": "fraction of all prunable weights kept",
    "effective.density": "fraction of the weights on an input-output path",
    "effective.sparsity": "1 - effective.density",
    "effective.inactive_frac": "fraction of the kept weights on no input-output path",
    "effective.nodes_frac": "fraction of the units on an input-output path",
    "effective.channels_frac": "fraction of the channels on an input-output path",
    "ramanujan.delta_r_norm_mean": "mean normalised Ramanujan gap over eligible layers",
    "ramanujan.delta_r_norm_min": "smallest normalised Ramanujan gap over eligible layers",
    "ramanujan.imdb_norm_mean": "mean normalised IMDB over eligible layers",
    "ramanujan.imdb_norm_min": "smallest normalised IMDB over eligible layers",
    "ramanujan.ramanujan_frac": "fraction of the masked layers that are Ramanujan (delta_r > 0)",
    "ramanujan.eligible_frac": "fraction of the masked layers with mean degrees >= 3",
    "scatter.io_forward": "forward scatter of the end-to-end Linear junction",
    "scatter.io_backward": "backward scatter of the end-to-end Linear junction",
    "scatter.min": "smallest scatter over all views",
}
PATHS_RATIO = "effective.paths_log10_ratio"
#: the ``mge.*_frac`` columns that are size-free (counts of nodes/edges over all nodes/edges);
#: the others divide a degree (one_hop, two_hop, coreness, strength) or a motif count by the
#: graph's size, which shrinks or grows with the width. ``components_frac`` (c / n: 1 / n for
#: a connected network) and ``component_size_frac`` (1 / c: it falls with n when a share of
#: the nodes is cut off) depend on the size too; :data:`COMPONENTS_REL` replaces them
MGE_FRACTIONS: tuple[str, ...] = tuple(
    f"mge.{m}_frac" for m in ("sources", "sinks", "disconnected", "r_in", "r_out", "bridges",
                              "articulation_points"))
#: (c - 1) / (n - 1) for c weakly connected components of the n-node multipartite graph: 0 when
#: it is connected, 1 when every node is isolated, whatever the network's size
COMPONENTS_REL = "mge.components_rel"

ARCH_DEFINITIONS: dict[str, str] = {
    "arch.depth": "number of prunable (Conv/Linear) layers",
    "arch.log10_params": "log10 of the number of prunable weights",
    "arch.residual": "1 if the data flow adds two data-dependent tensors (a skip connection)",
    "arch.norm": "1 if the model has a normalisation layer (BatchNorm/GroupNorm/LayerNorm/...)",
    "arch.conv_share": "fraction of the prunable weights in convolutions",
    "arch.grouped_share": "fraction of the prunable weights in grouped (e.g. depthwise) "
                          "convolutions",
}
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm,
               nn.modules.instancenorm._InstanceNorm, nn.LocalResponseNorm)


@dataclass
class Layout:
    """The prunable layers of an architecture in forward order, and its descriptors.

    Attributes:
        params: prunable parameter names in forward order.
        shapes: their weight shapes.
        kinds: ``"conv"`` or ``"linear"`` per parameter.
        groups: the ``groups`` of each convolution (1 for Linear).
        residual, norm: whether the model has skip additions / normalisation layers.
        dense_paths_log10: log10 of the input-output path count of the dense network (NaN if
            unknown).
        order: ``"forward"`` (from a forward pass) or ``"modules"`` (registration order, when the
            forward pass failed).
    """

    params: list[str]
    shapes: list[tuple[int, ...]]
    kinds: list[str]
    groups: list[int]
    residual: bool
    norm: bool
    dense_paths_log10: float = math.nan
    order: str = "forward"
    family: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def numels(self) -> np.ndarray:
        return np.array([math.prod(s) for s in self.shapes], dtype=float)

    def descriptors(self) -> dict[str, float]:
        """The ``arch.*`` columns (:data:`ARCH_DEFINITIONS`)."""
        n = self.numels
        total = float(n.sum())
        conv = np.array([k == "conv" for k in self.kinds])
        grouped = np.array([g > 1 for g in self.groups])
        return {
            "arch.depth": float(len(self.params)),
            "arch.log10_params": math.log10(total) if total > 0 else math.nan,
            "arch.residual": float(self.residual),
            "arch.norm": float(self.norm),
            "arch.conv_share": float(n[conv].sum() / total) if total else math.nan,
            "arch.grouped_share": float(n[grouped].sum() / total) if total else math.nan,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        d = json.loads(text)
        d["shapes"] = [tuple(s) for s in d["shapes"]]
        return cls(**d)


def structural_family(layout: Layout) -> str:
    """A family read off the structure (the zoo's family names): ``resnet`` (skip additions),
    ``mobilenet`` (grouped convolutions), ``cnn-bn`` (convolutions with normalisation), ``cnn``
    (convolutions), ``mlp`` (Linear layers only)."""
    if layout.residual:
        return "resnet"
    if any(g > 1 for g in layout.groups):
        return "mobilenet"
    if any(k == "conv" for k in layout.kinds):
        return "cnn-bn" if layout.norm else "cnn"
    return "mlp"


def model_family(name: str, layout: Layout | None = None) -> str:
    """The family of zoo model ``name`` (``paizoo.models.MODEL_FAMILIES``, when this paizoo has
    it), else :func:`structural_family` of ``layout``, else ``""``."""
    from .. import models

    families = getattr(models, "MODEL_FAMILIES", {})
    fam = families.get(str(name).lower())
    if fam:
        return str(fam)
    return structural_family(layout) if layout is not None else ""


def _has_skip_addition(model: nn.Module) -> bool | None:
    """Whether the traced data flow adds two non-constant tensors; ``None`` if not traceable."""
    from ..graph._trace import ADD_FUNCTIONS, ADD_METHODS, trace

    try:
        gm = trace(model)
    except Exception:  # any tracing failure means "unknown"
        return None
    for node in gm.graph.nodes:
        is_add = (node.op == "call_function" and node.target in ADD_FUNCTIONS) or (
            node.op == "call_method" and node.target in ADD_METHODS)
        if not is_add:
            continue
        data = [a for a in node.args if hasattr(a, "op") and a.op not in ("get_attr",)]
        if len(data) >= 2:
            return True
    return False


def _forward_order(model: nn.Module, modules: Mapping[str, nn.Module],
                   input_shape: Sequence[int]) -> list[str] | None:
    """Parameter names in the order their modules first run on a zero input; ``None`` if the
    forward pass fails."""
    order: list[str] = []
    by_module = {id(m): name for name, m in modules.items()}
    hooks = []

    def hook(mod: nn.Module, *_: Any) -> None:
        name = by_module.get(id(mod))
        if name is not None and name not in order:
            order.append(name)

    for m in modules.values():
        hooks.append(m.register_forward_pre_hook(hook))
    was_training = model.training
    try:
        model.eval()
        param = next(model.parameters(), None)
        x = torch.zeros((1, *map(int, input_shape)),
                        device=param.device if param is not None else "cpu")
        with torch.no_grad():
            model(x)
    except Exception:  # fall back to registration order
        return None
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return order + [n for n in modules if n not in order]


def layout_of(model: nn.Module, input_shape: Sequence[int] | None = None, *,
              dense_paths: bool = True) -> Layout:
    """The :class:`Layout` of ``model`` (not modified).

    The forward order comes from one forward pass on zeros of ``input_shape`` (registration
    order without it or if the pass fails, noted). ``dense_paths`` computes the dense network's
    path count (``paizoo.metrics`` group ``effective`` on an all-kept mask).
    """
    from ..params import prunable_modules

    modules = prunable_modules(model)
    if not modules:
        raise RegressionError(f"{type(model).__name__} has no prunable (Conv/Linear) layer")
    notes: list[str] = []
    order = _forward_order(model, modules, input_shape) if input_shape is not None else None
    how = "forward"
    if order is None:
        order, how = list(modules), "modules"
        notes.append("layer order: module registration order (no forward pass)")
    shapes, kinds, groups = [], [], []
    for name in order:
        mod = modules[name]
        w = getattr(mod, "weight_orig", None)
        w = w if w is not None else mod.weight
        shapes.append(tuple(int(s) for s in w.shape))
        is_conv = isinstance(mod, nn.modules.conv._ConvNd)
        kinds.append("conv" if is_conv else "linear")
        groups.append(int(getattr(mod, "groups", 1)) if is_conv else 1)
    residual = _has_skip_addition(model)
    if residual is None:
        names = " ".join(n.lower() for n, _ in model.named_modules())
        residual = any(k in names for k in ("shortcut", "downsample", "residual", "skip"))
        notes.append("residual: guessed from module names (the model is not fx-traceable)")
    norm = any(isinstance(m, _NORM_TYPES) for m in model.modules())
    layout = Layout(params=list(order), shapes=shapes, kinds=kinds, groups=groups,
                    residual=bool(residual), norm=norm, order=how, notes=notes)
    if dense_paths and input_shape is not None:
        layout.dense_paths_log10 = _dense_paths_log10(model, tuple(input_shape))
    return layout


def _dense_paths_log10(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    from .. import metrics
    from ..masks import Mask

    try:
        values = metrics.compute(model, Mask.ones(model), input_shape,
                                 groups=["effective"])
    except Exception:  # the ratio is then NaN
        return math.nan
    return float(values.get("effective.paths_log10", math.nan))


# ---- profiles ------------------------------------------------------------------------------
def _divisors(shapes: Sequence[tuple[int, ...]]) -> dict[str, np.ndarray]:
    n_r = np.array([s[0] for s in shapes], dtype=float)
    n_l = np.array([math.prod(s[1:]) if len(s) > 1 else 1 for s in shapes], dtype=float)
    return {"": np.ones(len(shapes)), "nR": n_r, "nL": n_l, "sqrt_nLnR": np.sqrt(n_l * n_r),
            "lambda2_K": np.minimum(n_l, n_r)}


def profile_stats(values: np.ndarray, weights: np.ndarray, bottleneck: int | None
                  ) -> dict[str, float]:
    """The :data:`STATS` of per-layer ``values`` (forward order; NaN = undefined)."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    ok = np.isfinite(v)
    t = np.arange(n) / (n - 1) if n > 1 else np.zeros(n)
    out = dict.fromkeys(STATS, math.nan)
    out["undef"] = float(1.0 - ok.mean()) if n else math.nan
    if not ok.any():
        return out
    d, w, td = v[ok], np.asarray(weights, dtype=float)[ok], t[ok]
    q = np.quantile(d, [0.25, 0.5, 0.75])
    out.update(min=float(d.min()), max=float(d.max()), mean=float(d.mean()),
               wmean=float(np.sum(w * d) / np.sum(w)) if np.sum(w) > 0 else math.nan,
               q25=float(q[0]), q50=float(q[1]), q75=float(q[2]),
               first=float(v[0]), last=float(v[-1]),
               bneck=float(v[bottleneck]) if bottleneck is not None else math.nan)
    if len(d) >= 2 and np.ptp(td) > 0:
        tc = td - td.mean()
        out["slope"] = float(np.sum(tc * (d - d.mean())) / np.sum(tc * tc))
    return out


def agnostic_features(metrics: Mapping[str, float], layout: Layout) -> dict[str, float]:
    """The architecture-agnostic columns of one mask from its paizoo.metrics row."""
    params = layout.params
    div = _divisors(layout.shapes)
    dens = np.array([metrics.get(f"density.{p}", math.nan) for p in params], dtype=float)
    bottleneck = int(np.nanargmin(dens)) if np.isfinite(dens).any() else None
    out: dict[str, float] = {}
    for name, (source, divisor, _) in FAMILIES.items():
        cols = [f"{source}.{p}" for p in params]
        if not any(c in metrics for c in cols):
            continue
        v = np.array([metrics.get(c, math.nan) for c in cols], dtype=float)
        if divisor == "lambda2_K":  # a star's lambda2 is 1, or 2 for a single edge (K_2)
            star = div[divisor] == 1
            v[star] = np.minimum(v[star], 1.0)
        v = v / div[divisor]
        v[~np.isfinite(v)] = np.nan
        for stat, value in profile_stats(v, layout.numels, bottleneck).items():
            out[f"{name}{STAT_SEP}{stat}"] = value
    for col in SIZE_FREE_GLOBALS:
        if col in metrics:
            out[col] = float(metrics[col])
    for col in MGE_FRACTIONS:
        if col in metrics:
            out[col] = float(metrics[col])
    if "mge.components" in metrics and "mge.nodes" in metrics:
        c, n = float(metrics["mge.components"]), float(metrics["mge.nodes"])
        out[COMPONENTS_REL] = (c - 1.0) / (n - 1.0) if n > 1 else math.nan
    if "effective.paths_log10" in metrics:
        paths = float(metrics["effective.paths_log10"])
        out[PATHS_RATIO] = (paths - layout.dense_paths_log10
                            if math.isfinite(paths) else math.nan)
    out.update(layout.descriptors())
    return out


def is_agnostic_column(name: str) -> bool:
    """Whether a column belongs to the agnostic feature set (defined for every architecture)."""
    return (STAT_SEP in name or name.startswith("arch.") or name in SIZE_FREE_GLOBALS
            or name in (PATHS_RATIO, COMPONENTS_REL) or name in MGE_FRACTIONS)


def add_agnostic_columns(table: pd.DataFrame, layouts: Mapping[str, Layout],
                         key: str = "model") -> pd.DataFrame:
    """``table`` with the agnostic columns of every row added (existing ones replaced), and a
    ``family`` column when it has none; ``layouts`` maps each ``table[key]`` to its layout."""
    lacking = sorted(set(table[key].astype(str)) - set(layouts))
    if lacking:
        raise RegressionError(f"no layout for model(s) {lacking}; cannot compute the "
                              "architecture-agnostic columns of their rows")
    records = table.to_dict("records")
    feats = pd.DataFrame([agnostic_features(r, layouts[str(r[key])]) for r in records],
                         index=table.index)
    base = table.drop(columns=[c for c in feats.columns if c in table.columns])
    if "family" not in base.columns:
        base = base.copy()
        base.insert(base.columns.get_loc(key) + 1, "family",
                    [layouts[str(m)].family for m in base[key]])
    return pd.concat([base, feats[sorted(feats.columns)]], axis=1)


# ---- model labels -> layouts ---------------------------------------------------------------
def parse_label(label: str) -> tuple[str, dict[str, Any]]:
    """``'resnet20{"width":2}'`` -> ``("resnet20", {"width": 2})`` (inverse of
    :func:`paizoo.regression.build.config_label`)."""
    label = str(label)
    i = label.find("{")
    if i < 0:
        return label, {}
    try:
        return label[:i], dict(json.loads(label[i:]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise RegressionError(f"cannot read the config of model label {label!r}: {exc}") from exc


def layout_for_label(label: str, dataset: str, *, dense_paths: bool = True) -> Layout:
    """The layout of zoo model ``label`` (``name{config}``) built for ``dataset`` as the
    leaderboard runner builds it (seed 0; the layout does not depend on the seed)."""
    from types import SimpleNamespace

    from ..data import dataset_info
    from ..training.experiment import build_model

    name, config = parse_label(label)
    info = dataset_info(dataset)
    net = build_model(SimpleNamespace(model=name, seed=0, model_config=config), info)
    layout = layout_of(net, tuple(info.input_shape), dense_paths=dense_paths)
    layout.family = model_family(name, layout)
    return layout


def layouts_for_table(table: pd.DataFrame) -> dict[str, Layout]:
    """One layout per model label of ``table`` (zoo models, built for the row's dataset)."""
    out: dict[str, Layout] = {}
    for (model, dataset), _ in table.groupby(["model", "dataset"], sort=True):
        if str(model) not in out:
            out[str(model)] = layout_for_label(str(model), str(dataset))
    return out


# ---- definitions ---------------------------------------------------------------------------
def feature_definitions(columns: Iterable[str], layer_names: Iterable[str] = ()) -> dict[str, str]:
    """A one-line definition of each column (``layer_names``: known parameter names, to read
    per-layer columns ``<metric>.<param>``)."""
    from .schema import NON_FEATURE_COLUMNS

    layers = sorted(set(layer_names), key=len, reverse=True)
    out: dict[str, str] = {}
    for col in columns:
        col = str(col)
        if col in NON_FEATURE_COLUMNS or col == "family":
            out[col] = _IDENTIFIER_DEFS.get(col, "identifier or information column, not a "
                                                 "feature")
        elif STAT_SEP in col:
            fam, stat = col.split(STAT_SEP, 1)
            base = FAMILIES.get(fam, (fam, "", fam))[2]
            out[col] = f"profile over normalised depth: {STATS.get(stat, stat)} of [{base}]"
        elif col in ARCH_DEFINITIONS:
            out[col] = "architecture descriptor: " + ARCH_DEFINITIONS[col]
        elif col in SIZE_FREE_GLOBALS:
            out[col] = "network-level, size-free: " + SIZE_FREE_GLOBALS[col]
        elif col == PATHS_RATIO:
            out[col] = ("log-ratio: effective.paths_log10 - log10(input-output paths of the "
                        "dense network)")
        elif col == COMPONENTS_REL:
            out[col] = ("network-level, size-free: (c - 1) / (n - 1) for the c weakly connected "
                        "components of the n-node multipartite graph (0: connected; 1: every "
                        "node isolated)")
        elif col in MGE_FRACTIONS:
            out[col] = (f"network-level fraction: mge.{col[4:-5]} / number of nodes or edges of "
                        "the multipartite graph (Cunegatti et al. 2024)")
        else:
            layer = next((p for p in layers if col.endswith("." + p)), None)
            if layer is not None:
                out[col] = (f"per-layer (named, architecture-specific): "
                            f"{col[:-len(layer) - 1]} of layer {layer}")
            else:
                out[col] = ("network-level raw paizoo.metrics value, not in the agnostic set (a "
                            "count, degree or weight scale that changes with the network's size; "
                            "see paizoo.metrics)")
    return out


_IDENTIFIER_DEFS = {
    "dataset": "identifier: dataset name",
    "model": "identifier: model label, name{config}",
    "family": "identifier: architecture family (paizoo.models.MODEL_FAMILIES, or read off the "
              "structure: resnet / mobilenet / cnn-bn / cnn / mlp)",
    "pruner": "identifier: pruner label, name{config}",
    "sparsity": "identifier: fraction of prunable weights removed",
    "seed": "identifier: seed of init, pruning and training",
    "config": "identifier: training-config hash",
    "accuracy_drop": "target: dense test accuracy - pruned test accuracy (points)",
    "accuracy": "information, not a feature: the run's test accuracy (points)",
    "dense_accuracy": "information, not a feature: mean test accuracy of the dense runs of the "
                      "same dataset/model/config (points)",
    "run_key": "information, not a feature: the results store's key of the run",
    "metrics_version": "information, not a feature: paizoo.metrics version of the metrics",
}

__all__ = ["ARCH_DEFINITIONS", "FAMILIES", "STATS", "STAT_SEP", "Layout", "add_agnostic_columns",
           "agnostic_features", "feature_definitions", "is_agnostic_column", "layout_for_label",
           "layout_of", "layouts_for_table", "model_family", "parse_label", "profile_stats",
           "structural_family"]
