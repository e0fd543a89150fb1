"""Writing ``paizoo regress eval`` results: a Markdown report and a predicted-vs-actual plot."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .estimator import MODELS
from .evaluate import RANK_P, Evaluation, ranking_rows, ranking_summary, seed_rank_noise
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


def scores_wide(ev: Evaluation, model: str | None = None,
                splits: Sequence[str] | None = None) -> pd.DataFrame:
    """Feature sets as rows, ``<split> R2 / MAE / rho`` as columns, for one model (``splits``:
    these splits only, in this order)."""
    model = model or ev.model
    sub = ev.scores[ev.scores["model"] == model]
    out = sub.drop_duplicates("feature_set")[["feature_set", "n_features"]].reset_index(drop=True)
    out.columns = ["feature set", "features"]
    present = list(sub["split"].unique())
    for split in [k for k in splits if k in present] if splits is not None else present:
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


GOALS = {"loao_spearman": 0.9, "loao_r2": 0.8, "pair_rank_error": 1.0}
LEAVE_OUT = ("loao", "lofo")
WITHIN = ("lopo", "kfold")


def _pairs_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pruners as rows, held-out architectures as columns, cells ``predicted/actual`` rank (one
    per training config of the architecture, joined by ``;``); a last row with each
    architecture's mean absolute rank error."""
    archs = sorted(pairs["model"].unique())
    out = pd.DataFrame({"held-out pruner": sorted(pairs["pruner"].unique())})
    for a in archs:
        cells = {p: "; ".join(f"{int(r.predicted_rank)}/{int(r.actual_rank)}"
                              for r in sub.itertuples())
                 for p, sub in pairs[pairs["model"] == a].groupby("pruner")}
        out[a] = [cells.get(p, "-") for p in out["held-out pruner"]]
    err = {a: f"{pairs.loc[pairs['model'] == a, 'abs_error'].mean():.2f}" for a in archs}
    out.loc[len(out)] = ["mean abs. rank error", *[err[a] for a in archs]]
    return out


#: the column headers of :func:`ranking_summary` in the report, as in the rankings table
SUMMARY_HEADERS = {"held_out": "held-out pruner", "tau_per_sparsity": "τ per sparsity",
                   "rbo_per_sparsity": "RBO per sparsity", "tau_mean_ranking": "τ mean ranking",
                   "rbo_mean_ranking": "RBO mean ranking", "rank_predicted": "rank predicted",
                   "rank_actual": "rank actual"}


def _context_order(ranking: pd.DataFrame) -> str:
    """The (dataset, model, config) contexts of the mean-over-sparsities rows of ``ranking``,
    in their order (that of the ``/``-joined ranks of :func:`ranking_summary`), named by model,
    with the dataset and config only where the model has several."""
    mean = ranking[ranking["sparsity"].astype(str) == "mean"]
    mean = mean[mean["held_out"] == mean["held_out"].iloc[0]] if len(mean) else mean
    cols = [c for c in ("dataset", "model", "config") if c in mean.columns]
    keys = list(mean[cols].itertuples(index=False, name=None))
    labels = []
    for key in keys:
        d = dict(zip(cols, key, strict=True))
        same = [k for k in keys if k[cols.index("model")] == d["model"]]
        extra = [str(d[c]) for c in cols if c != "model" and len({k[cols.index(c)]
                                                                   for k in same}) > 1]
        labels.append(d["model"] + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(labels)


def _cells_of_pairs(pairs: pd.DataFrame) -> str:
    """``"N (pair, config) cells of M (architecture, pruner) pairs"``: an architecture trained
    with several recipes has one cell per recipe for each of its pairs."""
    n_pairs = len(pairs[["model", "pruner"]].drop_duplicates())
    return f"{len(pairs)} (pair, config) cells of {n_pairs} (architecture, pruner) pairs"


LOAO_RANKING = "architecture unseen, pruners seen (leave one architecture out)"


def _unseen_rows(ev: Evaluation) -> pd.DataFrame:
    """Kendall tau / RBO of the pruner rankings by out-of-fold predictions, one row per way of
    holding out: the architecture only (the leave-one-architecture-out predictions: what
    ``paizoo rank`` does for pruners of the training data on a new model), every pruner, both."""
    rows = []
    key = (ev.best, "loao", ev.model)
    loao = (pd.DataFrame(ranking_rows(ev.table.reset_index(drop=True), ev.predictions[key],
                                      "(architecture unseen)"))
            if key in ev.predictions and ev.table["pruner"].nunique() >= 2 else None)
    for name, table in ((LOAO_RANKING, loao),
                        ("every pruner unseen (leave one pruner out, architectures seen)",
                         None if ev.ranking is None
                         else ev.ranking[ev.ranking["held_out"] == "(all unseen)"]),
                        ("every pruner and architecture unseen ((architecture x pruner) "
                         "held out)", ev.pair_ranking)):
        if table is None or not len(table):
            continue
        per = table[table["sparsity"] != "mean"]
        mean = table[table["sparsity"] == "mean"]
        rows.append({"predictions": name, "contexts": len(per),
                     "τ per sparsity": per["kendall_tau"].mean(),
                     "RBO per sparsity": per["rbo"].mean(),
                     "τ mean ranking": mean["kendall_tau"].mean(),
                     "RBO mean ranking": mean["rbo"].mean()})
    return pd.DataFrame(rows)


def _transfer_text(unseen: pd.DataFrame) -> list[str]:
    """The line that answers "will the ranking transfer to my model?" for pruners of the
    training data: the first rankings row (architecture unseen), next to the goals."""
    row = unseen[unseen["predictions"] == LOAO_RANKING] if len(unseen) else unseen
    if not len(row):
        return []
    r = row.iloc[0]
    return [f"- will the pruners' order transfer to a new architecture? With the architecture "
            f"held out and the pruners seen (what `paizoo rank` does on your model), Kendall τ "
            f"{r['τ mean ranking']:.3f} between the predicted and actual ranking by drop "
            f"averaged over sparsities, {r['τ per sparsity']:.3f} per sparsity (the ρ above "
            "is over the runs of every sparsity, mostly their order by sparsity)"]


def per_architecture(ev: Evaluation) -> pd.DataFrame:
    """Leave-one-architecture-out scores of the main set, per held-out architecture."""
    key = (ev.best, "loao", ev.model)
    if key not in ev.predictions:
        return pd.DataFrame()
    from .evaluate import regression_scores

    t, pred = ev.table.reset_index(drop=True), ev.predictions[key]
    rows = []
    for model, idx in t.groupby("model").indices.items():
        sc = regression_scores(t[TARGET].to_numpy(float)[idx], pred[idx])
        order = pd.DataFrame(ranking_rows(t.iloc[idx].reset_index(drop=True), pred[idx], "-"))
        tau = (order.loc[order["sparsity"].astype(str) == "mean", "kendall_tau"].mean()
               if len(order) else float("nan"))
        rows.append({"held-out architecture": model,
                     **({"family": t["family"].iloc[idx[0]]} if "family" in t.columns else {}),
                     "runs": len(idx), "pruners": t["pruner"].iloc[idx].nunique(),
                     "sparsities": t["sparsity"].iloc[idx].nunique(),
                     "MAE": sc["mae"], "ρ": sc["spearman"], "τ pruner order": float(tau)})
    return pd.DataFrame(rows)


def goals_text(ev: Evaluation) -> list[str]:
    """One line per goal of issue #14, reached or not, from the default model's numbers."""
    if ev.best is None:
        return []
    sc = ev.scores[(ev.scores["model"] == ev.model) & (ev.scores["feature_set"] == ev.best)]
    loao = sc[sc["split"] == "loao"]
    out = []
    if len(loao):
        r = loao.iloc[0]
        rho_ok = r["spearman"] >= GOALS["loao_spearman"]
        r2_ok = r["r2"] >= GOALS["loao_r2"]
        out.append(f"- leave-one-architecture-out Spearman ρ {r['spearman']:.3f} (goal >= "
                   f"{GOALS['loao_spearman']}: {'reached' if rho_ok else 'not reached'}); "
                   f"R² {r['r2']:.3f} (goal >= {GOALS['loao_r2']}: "
                   f"{'reached' if r2_ok else 'not reached'})")
    if ev.pairs is not None and len(ev.pairs):
        e = ev.pairs["abs_error"].mean()
        out.append(f"- held-out pruner on a held-out architecture: mean absolute rank error "
                   f"{e:.2f} over {_cells_of_pairs(ev.pairs)} (goal <= "
                   f"{GOALS['pair_rank_error']:g}: "
                   f"{'reached' if e <= GOALS['pair_rank_error'] else 'not reached'})")
        noise = seed_rank_noise(ev.table)
        if len(noise):
            out.append(
                f"- seed noise of the actual ranks, for scale: a pruner's rank by one seed's "
                f"drops differs from its rank by the other seeds' by "
                f"{noise['abs_rank_diff'].mean():.2f} on average ({len(noise)} cells on "
                f"{noise['model'].nunique()} architecture(s) with >= 2 seeds; "
                "paizoo.regression.evaluate.seed_rank_noise); the actual ranks above average "
                "only the seeds there are")
    return out


def write_report(ev: Evaluation, path: str | os.PathLike, *, plot_path: str | os.PathLike | None,
                 source: str = "", command: str = "", top_features: int = 15,
                 extra_models: Sequence[str] = (), preamble: Sequence[str] = ()) -> Path:
    """Write the Markdown report (and the plot, when ``plot_path`` is given). ``preamble``:
    paragraphs put after the data summary (e.g. how thin the corpus is)."""
    t = ev.table
    lines = ["# Predicting the accuracy drop of a mask from its metrics, on architectures never "
             "seen", ""]
    if command:
        lines += [f"Produced by `{command}`" + (f" from `{source}`." if source else "."), ""]
    fams = (f" in {t['family'].nunique()} families ({', '.join(sorted(t['family'].unique()))})"
            if "family" in t.columns else "")
    per_model = t.groupby("model").size()
    lines += [
        f"{len(t)} pruned runs: datasets {', '.join(sorted(t['dataset'].unique()))}; "
        f"{t['model'].nunique()} architectures{fams}: "
        + ", ".join(f"{m} ({n})" for m, n in per_model.items()) + "; "
        f"{t['pruner'].nunique()} pruners ({', '.join(sorted(t['pruner'].unique()))}); "
        f"sparsities {', '.join(f'{s:g}' for s in sorted(t['sparsity'].unique()))}; "
        f"{t['seed'].nunique()} seed(s). Target: accuracy drop = dense test accuracy - pruned "
        "test accuracy (points), "
        f"mean {t[TARGET].mean():.2f}, sd {t[TARGET].std():.2f}, "
        f"range {t[TARGET].min():.2f}..{t[TARGET].max():.2f}.", "",
        *[para + "\n" for para in preamble],
        "Feature columns per group: " + ", ".join(
            f"{g} {len(c)}" for g, c in groups_present(t.columns).items()) + ". Feature sets: "
        "*global density* (one column); *per-layer (named)*: paizoo.metrics' raw columns, "
        "per-layer ones named after the layer (NaN on architectures without that layer); "
        "*agnostic*: profiles of per-layer metrics over normalised depth, size-free "
        "network-level values and `arch.*` descriptors (paizoo.regression.agnostic; "
        "definitions of every column in the table's `.features.json`); *agnostic (mask only)*: "
        "the same without the `arch.*` descriptors.", "",
        "## Leave one architecture out, leave one family out", "",
        f"Model: {ev.model} ({MODELS.get(ev.model, ev.model)}; settings fixed a priori, not "
        "tuned on this table). Scores on pooled out-of-fold predictions: R², mean absolute error "
        "in points, Spearman ρ. Leave one architecture out: each fold holds out every run of "
        "one architecture (model label); leave one family out: of one architecture family.",
        "",
    ]
    lead = scores_wide(ev, splits=LEAVE_OUT)
    if lead.shape[1] > 2:
        lines += [markdown_table(lead), ""]
    else:
        lines += ["The table has a single architecture: no leave-one-architecture-out scores.",
                  ""]
    unseen = _unseen_rows(ev)
    lines += [*goals_text(ev), *_transfer_text(unseen), ""]
    per = per_architecture(ev)
    if len(per):
        lines += [f"Per held-out architecture ({ev.best}, leave one architecture out; ρ within "
                  "one architecture's runs of every sparsity, n/a when its predictions do not "
                  "vary; τ pruner order: Kendall τ-b between its pruners ranked by predicted "
                  "and by actual drop averaged over sparsities, the ranking `paizoo rank` "
                  "prints, mean over its training configs):", "",
                  markdown_table(per), ""]
    if ev.pairs is not None and len(ev.pairs):
        lines += [
            "## Held-out pruner on a held-out architecture", "",
            f"For each (architecture A, pruner P), the regressor ({ev.best}, {ev.model}) is fit "
            "on the runs of neither A nor P and ranks the pruners on A by predicted drop "
            "(mean over seeds and the sparsities every pruner on A has); cells: P's predicted/"
            "actual rank among the pruners on A (one per training config, `;`-separated, when "
            f"A was trained with several recipes). Mean absolute rank error over all "
            f"{_cells_of_pairs(ev.pairs)}: **{ev.pairs['abs_error'].mean():.2f}** "
            "(exact rank in "
            f"{(ev.pairs['abs_error'] == 0).mean():.0%} of the cells, within one in "
            f"{(ev.pairs['abs_error'] <= 1).mean():.0%}).", "",
            markdown_table(_pairs_table(ev.pairs)), ""]
    if len(unseen):
        lines += [
            "## Rankings of the pruners on an architecture", "",
            "Kendall τ-b and rank-biased overlap (RBO_ext, Webber et al. 2010, "
            f"p={RANK_P}) between the ranking of the pruners by predicted and by actual drop, "
            "every run predicted by a model that did not see its architecture (first row: "
            "the question `paizoo rank` answers for pruners of the training data on your own "
            "model), its pruner, or both (cross-fitted). Per sparsity: mean over the "
            "(dataset, model, sparsity) contexts; "
            "mean ranking: pruners ranked by their drop averaged over sparsities (what `paizoo "
            "rank` prints), mean over (dataset, model, training config).", "",
            markdown_table(unseen), ""]
    within = scores_wide(ev, splits=WITHIN)
    if within.shape[1] > 2:
        lines += ["## Within the training architectures: leave one pruner out, random K-fold",
                  "",
                  "Random K-fold mixes seeds and sparsities of one pruner across folds "
                  "(interpolation); leave-one-pruner-out asks whether a pruner never seen can "
                  "be predicted on architectures that were seen.", "",
                  markdown_table(within), ""]
    if ev.skipped:
        lines += ["Not in this table: " + "; ".join(f"{k} ({v})" for k, v in ev.skipped.items())
                  + ".", ""]
    for model in extra_models:
        if model != ev.model and (ev.scores["model"] == model).any():
            lines += [f"### Model: {model}", "", markdown_table(scores_wide(ev, model)), ""]
    if ev.best is not None:
        lines += [f"Feature set analysed below and in the rank tables above: **{ev.best}**.",
                  ""]
    if plot_path is not None and ev.best is not None:
        p = plot_predictions(ev, plot_path)
        rel = os.path.relpath(p, Path(path).parent)
        lines += [f"![predicted vs actual accuracy drop]({rel})", ""]
    if ev.importance is not None and len(ev.importance):
        kind = "leave one architecture out" if (ev.scores["split"] == "loao").any() \
            else "leave one pruner out"
        lines += ["## Permutation feature importance", "",
                  f"{ev.best}, held-out folds of {kind}: increase of the MAE "
                  "(points) when one feature is shuffled (mean and sd over 5 repeats, weighted "
                  f"over folds). Top {top_features}:", "",
                  markdown_table(ev.importance.head(top_features)), ""]
    if ev.ranking is not None and len(ev.ranking):
        summary = ranking_summary(ev.ranking)
        lines += [
            "## Ranking one unseen pruner on the training architectures", "",
            f"For each pruner, the regressor ({ev.best}, {ev.model}) is fit without that "
            "pruner's runs and ranks all pruners (the others seen) by predicted drop; per "
            "sparsity and mean ranking as above, with the held-out pruner's predicted/actual "
            "rank (one value per (dataset, model, training config), in the order "
            f"{_context_order(ev.ranking)}; '-' where it has no runs). "
            "`(all unseen)`: every pruner predicted by the model that did not see it.", "",
            markdown_table(summary.rename(columns=SUMMARY_HEADERS)), "",
        ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
