"""A synthetic metrics table with a known structure, for tests, examples and trying the tools
without a leaderboard.

Rows: ``models x pruners x sparsities x seeds``. Features follow the schema's names
(``density.global``, ``density.layer.<param>`` per model, ``mge.*``, ``ramanujan.*``, plus a pure
noise column). The target is a known function of two features,

    accuracy_drop = 40 * (1 - density.global)^4 + 6 * mge.log_paths_deficit + noise,

where ``mge.log_paths_deficit`` depends on the pruner (its "quality") and the sparsity, so the
pruners have a definite true ranking at every sparsity.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

DEFAULT_PRUNERS: dict[str, float] = {
    "synflow": 0.2, "snip": 0.6, "grasp": 0.9, "magnitude": 1.3, "random": 2.0}
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "lenet5": ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight"),
    "mlp": ("fc1.weight", "fc2.weight", "fc3.weight"),
}


def synthetic_drop(density: np.ndarray, deficit: np.ndarray) -> np.ndarray:
    """The noiseless target: ``40 (1 - d)^4 + 6 * deficit``."""
    return 40.0 * (1.0 - density) ** 4 + 6.0 * deficit


def make_synthetic_table(
    *,
    pruners: dict[str, float] | None = None,
    models: dict[str, Sequence[str]] | None = None,
    sparsities: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99),
    seeds: Sequence[int] = (0, 1),
    noise: float = 0.05,
    dataset: str = "synthetic",
    random_state: int = 0,
) -> pd.DataFrame:
    """Build the table described in the module docstring."""
    rng = np.random.default_rng(random_state)
    pruners = DEFAULT_PRUNERS if pruners is None else pruners
    models = DEFAULT_MODELS if models is None else models
    rows = []
    for model, layers in models.items():
        for pruner, quality in pruners.items():
            for s in sparsities:
                for seed in seeds:
                    density = 1.0 - s
                    # pruner-specific deficit of input-output paths, growing with sparsity
                    deficit = quality * s ** 3 * (1.0 + 0.05 * rng.standard_normal())
                    # per-layer densities scattered around the global one
                    spread = rng.uniform(0.5, 1.5, size=len(layers))
                    layer_d = np.clip(density * spread / spread.mean(), 0.0, 1.0)
                    row: dict[str, object] = {
                        "dataset": dataset, "model": model, "pruner": pruner,
                        "sparsity": s, "seed": seed,
                        "density.global": density,
                        **{f"density.layer.{name}": d for name, d in
                           zip(layers, layer_d, strict=True)},
                        "mge.log_paths_deficit": deficit,
                        "mge.mean_degree": 2.0 * density + 0.1 * rng.standard_normal(),
                        "ramanujan.gap_mean": 0.5 * np.sqrt(density) + 0.3 * deficit
                        + 0.2 * rng.standard_normal(),
                        "spectral.noise": rng.standard_normal(),
                    }
                    row["accuracy_drop"] = float(
                        synthetic_drop(np.array(density), np.array(deficit))
                        + noise * rng.standard_normal())
                    rows.append(row)
    return pd.DataFrame(rows)
