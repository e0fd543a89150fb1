"""Prediction intervals from out-of-fold residuals (split-conformal, CV style).

For a cross-validation split (leave one pruner out, leave one architecture out, ...), every
training row ``i`` has an out-of-fold prediction ``p_i`` from the model that did not see its fold,
and a residual ``r_i = |y_i - p_i|``. A new prediction ``p`` gets the interval
``[p - q, p + q]`` with

    q = the ceil((n + 1) * coverage)-th smallest of the n residuals      (inf if that exceeds n)

(the split-conformal quantile; Vovk et al. 2005, Lei et al. 2018). Because the residuals come
from folds held out the way the new request is held out (a new architecture is like another
held-out architecture), ``coverage`` is the probability that the actual drop of a new mask lies in
its interval, under exchangeability of the new case with the folds. The full model (fit on all
rows) gives ``p``, as in the "CV" variant of Barber et al. (2021, Jackknife+); its guarantee is
approximate (CV+ would use the fold models), which the synthetic coverage test checks.

**Feasible range.** ``paizoo rank`` clips predictions and interval bounds to the drops that can
happen (:func:`feasible_drop_range`): an interval reaching past them (a wide bin, or an
infinite half-width when a bin holds too few residuals for the coverage) is cut there, which
keeps its coverage (no actual drop lies outside).

**Mondrian bins.** Errors grow with the drop (masks at 50 % sparsity lose ~0 points, at 99 %
dozens), so residuals are calibrated separately within ``bins`` ranges of the out-of-fold
prediction (edges at its quantiles, at least ``min_bin`` rows per bin) and a new prediction uses
the quantile of its range (Mondrian conformal prediction: coverage holds within each range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: the coverage of ``paizoo rank``'s intervals unless asked otherwise
DEFAULT_COVERAGE = 0.9


def conformal_quantile(residuals: np.ndarray, coverage: float) -> float:
    """The ``ceil((n + 1) coverage)``-th smallest residual (``inf`` when that exceeds ``n``)."""
    r = np.sort(np.asarray(residuals, dtype=float))
    r = r[np.isfinite(r)]
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    # rounded first: a whole (n + 1) * coverage such as 100 * 0.55 comes out of float
    # arithmetic as 55.000000000000007, whose ceil would take the next residual
    k = math.ceil(round((len(r) + 1) * coverage, 9))
    return float(r[k - 1]) if 1 <= k <= len(r) else math.inf


@dataclass
class Calibration:
    """Interval half-widths of one split: ``quantile[b]`` for predictions in bin ``b``.

    ``edges`` are the inner bin edges on the predicted drop (``len(quantile) - 1`` of them);
    ``residuals`` the sorted absolute out-of-fold residuals per bin (kept so another coverage can
    be asked for later).
    """

    split: str
    coverage: float
    edges: list[float]
    residuals: list[list[float]]
    quantile: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.quantile:
            self.quantile = [conformal_quantile(np.array(r), self.coverage)
                             for r in self.residuals]

    def at(self, coverage: float) -> Calibration:
        """The same residuals at another coverage level."""
        return Calibration(self.split, coverage, list(self.edges), self.residuals)

    def half_width(self, predicted: Any) -> np.ndarray:
        """The interval half-width for each predicted drop."""
        pred = np.asarray(predicted, dtype=float)
        bins = np.searchsorted(np.asarray(self.edges, dtype=float), pred, side="right")
        return np.asarray(self.quantile, dtype=float)[bins]

    def interval(self, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
        pred = np.asarray(predicted, dtype=float)
        w = self.half_width(pred)
        return pred - w, pred + w

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "coverage": self.coverage, "edges": list(self.edges),
                "residuals": [list(map(float, r)) for r in self.residuals],
                "quantile": list(map(float, self.quantile))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(str(d["split"]), float(d["coverage"]), [float(e) for e in d["edges"]],
                   [[float(v) for v in r] for r in d["residuals"]],
                   [float(q) for q in d.get("quantile", [])])


def calibrate(y: Any, oof_pred: Any, *, split: str, coverage: float = DEFAULT_COVERAGE,
              bins: int = 4, min_bin: int = 50) -> Calibration:
    """A :class:`Calibration` from targets ``y`` and out-of-fold predictions ``oof_pred``."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(oof_pred, dtype=float)
    ok = np.isfinite(y) & np.isfinite(p)
    y, p = y[ok], p[ok]
    n_bins = max(1, min(int(bins), len(y) // max(1, int(min_bin))))
    edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)[1:-1])) if n_bins > 1 \
        else np.array([])
    # tied predictions can put several quantiles on one value, leaving a bin (nearly) empty and
    # its half-width inf: drop an edge whose bin below holds fewer than min_bin rows
    keep: list[float] = []
    for e in edges:
        if np.sum((p >= (keep[-1] if keep else -np.inf)) & (p < e)) >= min(min_bin, len(p)):
            keep.append(float(e))
    if keep and np.sum(p >= keep[-1]) < min(min_bin, len(p)):
        keep.pop()  # the top bin is too small: merge it into the one below
    edges = np.asarray(keep, dtype=float)
    which = np.searchsorted(edges, p, side="right")
    res = np.abs(y - p)
    residuals = [np.sort(res[which == b]).tolist() for b in range(len(edges) + 1)]
    return Calibration(split=split, coverage=float(coverage), edges=edges.tolist(),
                       residuals=residuals)


def feasible_drop_range(dense_accuracy: float | None = None) -> tuple[float, float]:
    """The accuracy drops (points) that can happen: an accuracy lies in [0, 100], so with the
    dense network's accuracy ``d`` the drop ``d - acc`` lies in ``[d - 100, d]``; without it
    (``paizoo rank`` trains nothing) in ``[-100, 100]``, the union over ``d`` in [0, 100]."""
    if dense_accuracy is None:
        return -100.0, 100.0
    d = float(dense_accuracy)
    if not 0.0 <= d <= 100.0:
        raise ValueError(f"a dense accuracy is in points, 0..100; got {dense_accuracy}")
    return d - 100.0, d


def overlapping(lo: np.ndarray, hi: np.ndarray) -> list[list[int]]:
    """For each interval ``i``, the indices ``j != i`` whose interval overlaps it."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    hit = (lo[:, None] <= hi[None, :]) & (lo[None, :] <= hi[:, None])
    np.fill_diagonal(hit, False)
    return [np.flatnonzero(row).tolist() for row in hit]
