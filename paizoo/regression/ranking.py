"""Comparing rankings of pruners: Kendall's tau and rank-biased overlap (RBO).

* **Kendall tau-b** (:func:`kendall_tau`) between two score vectors over the same items, from
  :func:`scipy.stats.kendalltau`: ``tau_b = (C - D) / sqrt((n0 - n1)(n0 - n2))`` with ``C``/``D``
  concordant/discordant pairs, ``n0 = n(n-1)/2`` and ``n1``/``n2`` the pairs tied in one vector.
* **Extrapolated rank-biased overlap** (:func:`rbo_ext`; Webber, Moffat & Zobel 2010, "A
  similarity measure for indefinite rankings", ACM TOIS 28(4), eq. 32). For a short list ``S`` of
  length ``s`` and a long list ``L`` of length ``l`` (no duplicates), with ``X_d`` the size of the
  overlap of the two depth-``d`` prefixes (for ``d > s`` all of ``S`` against ``L[:d]``)::

      RBO_ext = (1 - p)/p * [ sum_{d=1}^{l} X_d/d p^d + sum_{d=s+1}^{l} X_s (d - s)/(s d) p^d ]
                + [ (X_l - X_s)/l + X_s/s ] p^l

  For two lists of equal length ``k`` this is ``(1-p)/p sum_d X_d/d p^d + X_k/k p^k`` (eq. 30);
  identical lists score 1, disjoint lists 0. RBO is top-weighted: with ``p = 0.9`` the first
  ten ranks carry about 86% of the weight.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b between two equally long score vectors (NaN if either is constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"kendall_tau needs two 1-D vectors of equal length, got {x.shape} and "
                         f"{y.shape}")
    if len(x) < 2:
        return float("nan")
    return float(stats.kendalltau(x, y, variant="b").statistic)


def rbo_ext(first: Sequence[Hashable], second: Sequence[Hashable], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap of two ranked lists (Webber et al. 2010, eq. 32).

    Args:
        first, second: ranked items, best first, no duplicates within a list; they may differ in
            length and content.
        p: persistence in (0, 1); 0.9 puts ~86% of the weight on the top 10 ranks.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"RBO persistence p must lie in (0, 1), got {p}")
    for name, lst in (("first", first), ("second", second)):
        if len(set(lst)) != len(lst):
            raise ValueError(f"the {name} ranked list has duplicate items")
    if not first and not second:
        return 1.0
    if not first or not second:
        return 0.0
    short, long = (first, second) if len(first) <= len(second) else (second, first)
    s, ell = len(short), len(long)
    pos_short = {item: i for i, item in enumerate(short)}
    # depth at which each shared item enters both prefixes: max of its two 1-based ranks
    enter = np.array([max(pos_short[item], j) + 1 for j, item in enumerate(long)
                      if item in pos_short], dtype=np.int64)
    x = np.cumsum(np.bincount(enter, minlength=ell + 1)[1:]).astype(float)  # X_1..X_l
    d = np.arange(1, ell + 1, dtype=float)
    w = p ** d
    x_s, x_l = x[s - 1], x[ell - 1]
    tail = d > s
    total = np.sum(x / d * w) + np.sum(x_s * (d[tail] - s) / (s * d[tail]) * w[tail])
    return float((1.0 - p) / p * total + ((x_l - x_s) / ell + x_s / s) * p ** ell)


def ranked(scores: Mapping[Hashable, float], *, ascending: bool = True) -> list[Hashable]:
    """Items ordered by score (best first: lowest first when ``ascending``, e.g. accuracy drops);
    ties broken by the items' sort order, so the result is deterministic."""
    items = sorted(scores, key=lambda k: str(k))
    sign = 1.0 if ascending else -1.0
    return sorted(items, key=lambda k: sign * float(scores[k]))


def compare_rankings(predicted: Mapping[Hashable, float], actual: Mapping[Hashable, float],
                     p: float = 0.9) -> dict[str, float]:
    """Kendall tau-b and RBO_ext (lower score = better rank) between two score maps over the
    same items."""
    if set(predicted) != set(actual):
        raise ValueError(f"rankings over different items: {sorted(map(str, predicted))} vs "
                         f"{sorted(map(str, actual))}")
    keys = sorted(predicted, key=str)
    tau = kendall_tau([predicted[k] for k in keys], [actual[k] for k in keys])
    rbo = rbo_ext(ranked(predicted), ranked(actual), p)
    return {"kendall_tau": tau, "rbo": rbo}
