"""Scatter of Dey et al.'s pre-defined sparse patterns next to random masks at equal count.

    python benchmarks/dey_scatter_table.py [--seeds 5]

For a few Linear junctions (p left -> n right neurons, fan-out fo, fan-in fi = p * fo / n), each
pattern of :mod:`paizoo.pruners.dey` is drawn ``--seeds`` times and scored with the scatter
metric of Dey, Huang, Beerel, Chugg, "Characterizing sparse connectivity patterns in neural
networks" (ITA 2018) from :mod:`paizoo.metrics.scatter` (the minimum of the forward and backward
views of the ``(n, p)`` boolean adjacency of a Linear weight).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable

import numpy as np
import torch

from paizoo.metrics.scatter import junction_scatter
from paizoo.pruners.dey import (
    basic_pattern,
    clash_free_pattern,
    cyclic_pattern,
    random_pattern,
)

JUNCTIONS = [(784, 112, 8), (112, 10, 5), (64, 32, 4)]  # (p, n, fo)


def scatter(adjacency: torch.Tensor) -> float:
    """Scatter of one junction: the smaller of its forward and backward views (Dey et al. 2018;
    :func:`paizoo.metrics.scatter.junction_scatter`, windows of ceil(1 / density) neurons)."""
    forward, backward = junction_scatter(adjacency.numpy().astype(np.float64))
    return min(float(forward.mean()), float(backward.mean()))


def patterns(p: int, n: int, fo: int) -> dict[str, Callable[[torch.Generator], torch.Tensor]]:
    fi = p * fo // n
    z = math.gcd(p, fi)
    out: dict[str, Callable[[torch.Generator], torch.Tensor]] = {
        "basic": lambda g: basic_pattern(n, p, fo, g),
        "cyclic": lambda g: cyclic_pattern(n, p, fo),
        "random (equal count)": lambda g: random_pattern(n, p, p * fo, g),
    }
    for kind in (1, 2, 3):
        out[f"clash_free t{kind} z={z}"] = (
            lambda g, kind=kind: clash_free_pattern(n, p, fo, z, kind=kind, generator=g))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    header = (f"{'junction':<22} {'pattern':<24} {'fan-in':>11} {'fan-out':>11}"
              f" {'scatter mean':>12} {'std':>7}")
    print(header)
    print("-" * len(header))
    for p, n, fo in JUNCTIONS:
        fi = p * fo // n
        label = f"{p}->{n} fo={fo} fi={fi}"
        for name, draw in patterns(p, n, fo).items():
            values, fan_in, fan_out = [], set(), set()
            for seed in range(args.seeds):
                adj = draw(torch.Generator().manual_seed(seed))
                fan_in |= set(adj.sum(1).tolist())
                fan_out |= set(adj.sum(0).tolist())
                values.append(scatter(adj))
            fi_s = f"{min(fan_in)}-{max(fan_in)}" if len(fan_in) > 1 else str(min(fan_in))
            fo_s = f"{min(fan_out)}-{max(fan_out)}" if len(fan_out) > 1 else str(min(fan_out))
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"{label:<22} {name:<24} {fi_s:>11} {fo_s:>11} "
                  f"{statistics.mean(values):>12.4f} {std:>7.4f}")


if __name__ == "__main__":
    main()
