"""Group ``scatter``: how evenly the connections of fully connected junctions are spread
(Dey, Huang, Chugg & Beerel 2018, "Characterizing sparse connectivity patterns in neural
networks"; Dey et al. 2019, "Pre-defined sparse neural networks with hardware acceleration").

For a junction with 0/1 (or path-count) matrix A of shape (n_out, n_in) and mean entry
rho = sum(A) / (n_in n_out) (the density, or for a product of junctions the mean number of paths
per input/output pair; for the regular junctions of the paper rho = fan_out / n_out =
fan_in / n_in):

* forward view - the inputs are cut into consecutive windows of ``w`` neurons; for output neuron
  k and window j, woam[k, j] = sum_{i in window j} A[k, i], compared with the ideal w * rho:
  s_k = mean_j min(woam[k, j] / (w rho), 1);
* backward view - the same with windows over the outputs and, per input neuron, the connections
  to each window;
* a view's scatter is the mean of its per-neuron vector; ``scatter`` of a network is the minimum
  over all views of every junction and of the end-to-end input-output matrix (the product of the
  junctions' matrices, which counts paths).

Windows are non-overlapping and a trailing partial window is dropped, as in the authors' code;
``window="auto"`` (default) takes w = ceil(1 / rho) clipped to [1, n], so one window ideally
carries one connection per neuron.

Junctions are the masked ``nn.Linear`` layers; the end-to-end matrix is formed over the last run
of consecutive Linear layers (in parameter order) whose widths chain; for a network of Linear
layers only with a flat input it is the path-count matrix of the linearised network
(:mod:`paizoo.metrics.linearize`), so that residual shortcuts count. Metrics:
``forward.<param>``, ``backward.<param>``, ``io_forward``, ``io_backward`` and ``min``; all NaN
when the model has no masked Linear layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .context import MetricContext
from .registry import register_metric_group


@dataclass
class ScatterReport:
    """Scatter values (``{view: float}``) and the per-neuron vectors behind them."""

    values: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def scatter(self) -> float:
        finite = [v for v in self.values.values() if not math.isnan(v)]
        return min(finite) if finite else math.nan


def _window_size(window: int | str, n: int, rho: float) -> int:
    if window == "auto":
        w = math.ceil(1.0 / rho) if rho > 0 else n
    else:
        w = int(window)
        if w < 1:
            raise ValueError(f"scatter window must be >= 1 or 'auto', got {window!r}")
    return max(1, min(w, n))


def view_scatter(matrix: np.ndarray, window: int | str = "auto") -> np.ndarray:
    """Per-row scatter of ``matrix`` (rows = neurons scored, columns = neurons windowed)."""
    rows, cols = matrix.shape
    rho = float(matrix.sum()) / (rows * cols) if rows and cols else 0.0
    if rho <= 0:
        return np.zeros(rows)
    w = _window_size(window, cols, rho)
    windows = cols // w
    woam = matrix[:, : windows * w].reshape(rows, windows, w).sum(axis=2)
    return np.minimum(woam / (w * rho), 1.0).mean(axis=1)


def junction_scatter(matrix: np.ndarray, window: int | str = "auto") -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """(forward vector over the n_out output neurons, backward vector over the n_in inputs) of a
    junction matrix of shape (n_out, n_in)."""
    m = np.asarray(matrix, dtype=np.float64)
    return view_scatter(m, window), view_scatter(m.T, window)


def scatter_report(junctions: dict[str, np.ndarray], window: int | str = "auto",
                   io_chain: list[str] | None = None) -> ScatterReport:
    """Scatter of each junction ``{name: (n_out, n_in) 0/1 matrix}`` and of the product over
    ``io_chain`` (names in data-flow order; all junctions by default)."""
    report = ScatterReport()
    for name, matrix in junctions.items():
        fwd, bwd = junction_scatter(matrix, window)
        report.values[f"forward.{name}"] = float(fwd.mean()) if fwd.size else math.nan
        report.values[f"backward.{name}"] = float(bwd.mean()) if bwd.size else math.nan
        report.vectors[f"forward.{name}"], report.vectors[f"backward.{name}"] = fwd, bwd
    chain = list(junctions) if io_chain is None else io_chain
    if chain:
        product = np.asarray(junctions[chain[0]], dtype=np.float64)
        for name in chain[1:]:
            product = np.asarray(junctions[name], dtype=np.float64) @ product
        fwd, bwd = junction_scatter(product, window)
        report.values["io_forward"], report.values["io_backward"] = (float(fwd.mean()),
                                                                     float(bwd.mean()))
        report.vectors["io_forward"], report.vectors["io_backward"] = fwd, bwd
    return report


def _linear_chain(ctx: MetricContext) -> tuple[dict[str, np.ndarray], list[str]]:
    junctions = {n: ctx.mask[n].cpu().numpy().astype(np.float64)
                 for n, m in ctx.modules.items() if isinstance(m, nn.Linear)}
    chain: list[str] = []
    for name, matrix in junctions.items():
        if chain and junctions[chain[-1]].shape[0] != matrix.shape[1]:
            chain = []
        chain.append(name)
    return junctions, chain


def _io_paths(ctx: MetricContext, chain: list[str]) -> np.ndarray | None:
    """The end-to-end path counts (n_out, n_in) of a network made of Linear layers only, with a
    flat input, from its linearised copy (which also adds residual branches, unlike the
    product of the chain); ``None`` for other networks (the chain's product stands)."""
    from ..params import prunable_modules

    shape = ctx.input_shape
    if (shape is None or len(shape) != 1 or set(chain) != set(ctx.modules)
            or len(prunable_modules(ctx.model)) != len(chain)):
        return None
    lin = ctx.linearized()
    param = next(lin.parameters(), None)
    with torch.no_grad():
        out = lin(torch.eye(shape[0], dtype=torch.float64,
                            device=param.device if param is not None else "cpu"))
    return out.reshape(shape[0], -1).T.cpu().numpy()


@register_metric_group("scatter", options=("window",),
                       description="scatter of fully connected junctions (forward/backward views)")
def scatter_metrics(ctx: MetricContext) -> dict[str, float]:
    """Scatter of every Linear junction and of the end-to-end product of the last Linear chain."""
    junctions, chain = _linear_chain(ctx)
    out: dict[str, float] = {"min": math.nan, "io_forward": math.nan, "io_backward": math.nan}
    if not junctions:
        return out
    window = ctx.option("scatter", "window", "auto")
    report = scatter_report(junctions, window, chain)
    io = _io_paths(ctx, chain)
    if io is not None:
        fwd, bwd = junction_scatter(io, window)
        report.values["io_forward"], report.values["io_backward"] = (float(fwd.mean()),
                                                                     float(bwd.mean()))
        report.vectors["io_forward"], report.vectors["io_backward"] = fwd, bwd
    out.update(report.values)
    out["min"] = report.scatter
    return out
