"""Writing ``paizoo regress eval`` results: a Markdown report and a predicted-vs-actual plot."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluate import RANK_P, Evaluation, ranking_summary
from .schema import TARGET, groups_present
from .splits import SPLITS


def _num(v: object, digits: int = 3) -> str:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(v)
    return "n/a" if np.isnan(f) else f"{f:.{digits}f}"


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (floats to ``digits`` decimals)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---"
                         for c in df.columns) + "|"
    body = ["| " + " | ".join(_num(v, digits) if isinstance(v, float) else str(v)
                              for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def scores_wide(ev: Evaluation, model: str | None = None) -> pd.DataFrame:
    """Feature sets as rows, ``<split> R2 / MAE / rho`` as columns, for one model."""
    model = model or ev.model
    sub = ev.scores[ev.scores["model"] == model]
    out = sub.drop_duplicates("feature_set")[["feature_set", "n_features"]].reset_index(drop=True)
    out.columns = ["feature set", "features"]
    for split in sub["split"].unique():
        s = sub[sub["split"] == split].set_index("feature_set")
        label = SPLITS.get(split, split)
        out[f"{label}: R²"] = out["feature set"].map(s["r2"]).astype(float)
        out[f"{label}: MAE"] = out["feature set"].map(s["mae"]).astype(float)
        out[f"{label}: ρ"] = out["feature set"].map(s["spearman"]).astype(float)
    return out


def readable_label(label: str) -> str:
    """``random{"distribution":"erk"}`` (a pruner with its config as JSON, as in the tables) ->
    ``random (distribution=erk)`` for legends; labels without a config stay as they are."""
    name, brace, rest = label.partition("{")
    if not brace:
        return label
    try:
        config = json.loads(brace + rest)
    except ValueError:
        return label
    if not isinstance(config, dict):
        return label
    items = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}"
                      for k, v in config.items())
    return f"{name} ({items})"


def plot_predictions(ev: Evaluation, path: str | os.PathLike,
                     feature_set: str | None = None) -> Path:
    """Predicted vs actual accuracy drop of ``feature_set`` (default: the best), one panel per
    split, points coloured by pruner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fs = feature_set or ev.best
    splits = [k for (f, k, m) in ev.predictions if f == fs and m == ev.model]
    fig, axes = plt.subplots(1, max(len(splits), 1), figsize=(4.6 * max(len(splits), 1), 4.4),
                             squeeze=False)
    y = ev.table[TARGET].to_numpy(dtype=float)
    pruners = sorted(ev.table["pruner"].unique())
    cmap = plt.get_cmap("tab10" if len(pruners) <= 10 else "tab20")
    lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
    for ax, split in zip(axes[0], splits, strict=False):
        pred = ev.predictions[(fs, split, ev.model)]
        for i, pruner in enumerate(pruners):
            sel = (ev.table["pruner"] == pruner).to_numpy()
            ax.scatter(y[sel], pred[sel], s=14, alpha=0.8, color=cmap(i % cmap.N),
                       label=readable_label(pruner))
        lo_i, hi_i = min(lo, float(np.nanmin(pred))), max(hi, float(np.nanmax(pred)))
        ax.plot([lo_i, hi_i], [lo_i, hi_i], color="0.4", lw=1, ls="--")
        row = ev.scores[(ev.scores["feature_set"] == fs) & (ev.scores["split"] == split)
                        & (ev.scores["model"] == ev.model)].iloc[0]
        ax.set_title(f"{SPLITS.get(split, split)}\nR²={row['r2']:.3f}  MAE={row['mae']:.2f}  "
                     f"ρ={row['spearman']:.3f}", fontsize=10)
        ax.set_xlabel("actual accuracy drop (points)")
        ax.set_ylabel("predicted accuracy drop (points)")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = min(len(labels), 4)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(f"{fs} metrics, {ev.model}: out-of-fold predictions", fontsize=11)
    rows = -(-len(labels) // ncol) if labels else 0
    fig.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(ev: Evaluation, path: str | os.PathLike, *, plot_path: str | os.PathLike | None,
                 source: str = "", command: str = "", top_features: int = 15,
                 extra_models: Sequence[str] = ()) -> Path:
    """Write the Markdown report (and the plot, when ``plot_path`` is given)."""
    t = ev.table
    lines = ["# Predicting the accuracy drop of a mask from its metrics", ""]
    if command:
        lines += [f"Produced by `{command}`" + (f" from `{source}`." if source else "."), ""]
    lines += [
        f"{len(t)} pruned runs: datasets {', '.join(sorted(t['dataset'].unique()))}; "
        f"models {', '.join(sorted(t['model'].unique()))}; "
        f"{t['pruner'].nunique()} pruners ({', '.join(sorted(t['pruner'].unique()))}); "
        f"sparsities {', '.join(f'{s:g}' for s in sorted(t['sparsity'].unique()))}; "
        f"{t['seed'].nunique()} seed(s). Target: accuracy drop = dense test accuracy - pruned "
        "test accuracy (points), "
        f"mean {t[TARGET].mean():.2f}, sd {t[TARGET].std():.2f}, "
        f"range {t[TARGET].min():.2f}..{t[TARGET].max():.2f}.", "",
        "Feature columns per group: " + ", ".join(
            f"{g} {len(c)}" for g, c in groups_present(t.columns).items()) + ".", "",
        "## Feature sets", "",
        f"Model: {ev.model}. Scores on pooled out-of-fold predictions: R², mean absolute error "
        "in points, Spearman ρ. Random K-fold mixes seeds and sparsities of one pruner across "
        "folds (interpolation); leave-one-pruner-out asks whether a pruner never seen can be "
        "predicted; leave-one-model-out the same for an architecture.", "",
        markdown_table(scores_wide(ev)), "",
    ]
    if ev.skipped:
        lines += ["Not in this table: " + "; ".join(f"{k} ({v})" for k, v in ev.skipped.items())
                  + ".", ""]
    for model in extra_models:
        if model != ev.model and (ev.scores["model"] == model).any():
            lines += [f"### Model: {model}", "", markdown_table(scores_wide(ev, model)), ""]
    if ev.best is not None:
        lines += [f"Best feature set (highest leave-one-pruner-out R²): **{ev.best}**.", ""]
    if plot_path is not None and ev.best is not None:
        p = plot_predictions(ev, plot_path)
        rel = os.path.relpath(p, Path(path).parent)
        lines += [f"![predicted vs actual accuracy drop]({rel})", ""]
    if ev.importance is not None and len(ev.importance):
        lines += ["## Permutation feature importance", "",
                  f"{ev.best}, held-out folds of leave-one-pruner-out: increase of the MAE "
                  "(points) when one feature is shuffled (mean and sd over 5 repeats, weighted "
                  f"over folds). Top {top_features}:", "",
                  markdown_table(ev.importance.head(top_features)), ""]
    if ev.ranking is not None and len(ev.ranking):
        summary = ranking_summary(ev.ranking)
        lines += [
            "## Ranking pruners without training", "",
            f"For each pruner, the regressor ({ev.best}, {ev.model}) is fit without that "
            "pruner's runs and ranks all pruners by predicted drop (mean over seeds); the "
            "ranking is compared with the one from the actual leaderboard accuracies by "
            f"Kendall τ-b and rank-biased overlap (RBO_ext, Webber et al. 2010, p={RANK_P}). "
            "Per sparsity: mean over the (dataset, model, sparsity) contexts; mean ranking: the "
            "pruners ranked by their drop averaged over sparsities (what `paizoo rank` "
            "prints), with the held-out pruner's predicted/actual rank (one value per (dataset, "
            "model), in sorted order). "
            "`(all unseen)`: every pruner predicted by the model that did not see it.", "",
            markdown_table(summary), "",
        ]
        held = summary[summary["held_out"] != "(all unseen)"]
        lines += [
            f"Mean over the {len(held)} held-out pruners: τ per sparsity "
            f"{held['tau_per_sparsity'].mean():.3f}, RBO per sparsity "
            f"{held['rbo_per_sparsity'].mean():.3f}"
            + (f"; mean ranking τ {held['tau_mean_ranking'].mean():.3f}, RBO "
               f"{held['rbo_mean_ranking'].mean():.3f}" if "tau_mean_ranking" in held else "")
            + ".", "",
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
