"""Rendering a leaderboard from the results store: Markdown table, CSV and plot.

Everything shown is read from the store (never typed by hand): the runs of the grid are looked up
by their keys, aggregated per cell (model x pruner x sparsity) as mean and sample standard
deviation (ddof = 1) over seeds, and written as

* ``NAME.md``: one table per model (rows: pruners, columns: sparsities; the best mean per
  sparsity in bold; a dagger where some seed's mask suffered layer collapse, an infinity sign
  where some seed's training diverged (:mod:`paizoo.training.divergence`: a non-finite loss, or
  a blow-up above 1.1 ln C followed by a final loss at chance), a double dagger where some
  seed's training stayed at chance without diverging, i.e. its final training loss is at least
  0.99 ln C for C classes; a section sign and the achieved sparsity where the pruner could not
  reach the requested one, e.g. Dey patterns that need whole fan-ins), the dense
  reference, notes (the config's ``notes`` and every diverged cell, with where it diverged),
  pruning times, the exact command and configuration, library versions and, when the runs
  come from several code versions, their commits and dates;
* ``NAME.csv``: one row per cell with means, standard deviations, seed counts, collapse counts
  and times (accuracies as fractions in [0, 1]);
* ``NAME.png``: final test accuracy vs sparsity per pruner, one panel per model, sparsity on a
  log-scale axis of density 1 - s (the achieved density), the dense accuracy as a dashed line,
  error bars of one standard deviation clipped to [0, 100] %, cells with a seed at chance or
  diverged circled.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..results.store import BaseStore
from ..sparsity import off_target
from ..training.config import canonical_json
from ..training.divergence import (
    BLOWUP_FACTOR,
    CHANCE_LOSS_FRACTION,
    NONFINITE,
    blowup_divergence,
)
from .config import LeaderboardConfig
from .runner import dataset_in_store

COLLAPSE_MARK = "†"
CHANCE_MARK = "‡"
DIVERGED_MARK = "∞"
OFF_TARGET_MARK = "§"


@dataclass
class Rendered:
    """Paths written by :func:`render_leaderboard` and the Markdown text."""

    markdown: Path
    csv: Path
    png: Path
    text: str
    runs: int
    total: int
    dataset: str


def collect_runs(config: LeaderboardConfig, store: BaseStore, dataset: str | None = None
                 ) -> pd.DataFrame:
    """One row per finished run of the grid (looked up by run key), with display labels."""
    from ..data import dataset_info

    dataset = dataset or dataset_in_store(config, store)
    specs = config.specs(dataset)
    records = store.get_many(s.key for s in specs)
    num_classes = dataset_info(dataset).num_classes
    chance_loss = CHANCE_LOSS_FRACTION * math.log(num_classes)
    rows = []
    for spec in specs:
        rec = records.get(spec.key)
        if rec is None:
            continue
        model_label, pruner_label = config.label_of(spec)
        diverged = _divergence(rec, num_classes)
        rows.append({
            "model": model_label, "model_name": spec.model, "pruner": pruner_label,
            "pruner_name": spec.pruner, "pruner_config": canonical_json(spec.pruner_config),
            "sparsity": spec.sparsity, "seed": spec.seed, "run_key": spec.key,
            "final_test_acc": rec.final_test_acc, "best_test_acc": rec.best_test_acc,
            "dense_test_acc": rec.dense_test_acc, "density": rec.density,
            "off_target": _off_target(rec.kept, rec.total, spec.sparsity),
            "layer_collapse": rec.layer_collapse,
            "at_chance": diverged is None and (
                rec.final_train_loss is None or not math.isfinite(rec.final_train_loss)
                or rec.final_train_loss >= chance_loss),
            "diverged": diverged is not None,
            "diverged_at": diverged or "",
            "prune_time_s": rec.prune_time_s,
            "train_time_s": rec.train_time_s, "epochs": rec.epochs, "device": rec.device,
            "versions": canonical_json(rec.versions), "created_at": rec.created_at,
        })
    columns = ["model", "model_name", "pruner", "pruner_name", "pruner_config", "sparsity",
               "seed", "run_key", "final_test_acc", "best_test_acc", "dense_test_acc",
               "density", "off_target", "layer_collapse", "at_chance", "diverged",
               "diverged_at", "prune_time_s", "train_time_s", "epochs", "device", "versions",
               "created_at"]
    return pd.DataFrame(rows, columns=columns)


def _divergence(rec: Any, num_classes: int) -> str | None:
    """How ``rec`` diverged, in words (``None`` if it did not): the non-finite loss recorded by
    the trainer, else a blow-up then chance judged from its per-epoch training losses."""
    if rec.diverged:
        return f"{NONFINITE} at epoch {rec.diverged_epoch}, step {rec.diverged_step}"
    losses = [h.get("train_loss") for h in rec.history or []]
    if not losses:  # no history: judge the final loss alone (NULL = it was not finite)
        losses = [rec.final_train_loss]
    found = blowup_divergence(losses, num_classes)
    if found is None:
        return None
    peak = losses[found.epoch - 1]
    value = f"{peak:.2f}" if peak is not None and math.isfinite(peak) else "not finite"
    return f"epoch-{found.epoch} loss {value}"


def _off_target(kept: int, total: int, sparsity: float) -> bool:
    """Whether a mask keeping ``kept`` of ``total`` weights missed the requested sparsity."""
    return sparsity > 0.0 and off_target(kept, total, 1.0 - sparsity)


def aggregate(runs: pd.DataFrame) -> pd.DataFrame:
    """Per-cell statistics over seeds (std with ddof=1, NaN for a single seed)."""
    keys = ["model", "model_name", "pruner", "pruner_name", "pruner_config", "sparsity"]
    if runs.empty:
        return pd.DataFrame(columns=[*keys, "seeds", "final_acc_mean", "final_acc_std",
                                     "best_acc_mean", "best_acc_std", "dense_acc_mean",
                                     "density_mean", "off_target_seeds", "collapsed_seeds",
                                     "chance_seeds", "diverged_seeds",
                                     "prune_time_mean_s",
                                     "train_time_mean_s"])
    grouped = runs.groupby(keys, sort=False, dropna=False)
    out = grouped.agg(
        seeds=("seed", "count"),
        final_acc_mean=("final_test_acc", "mean"),
        final_acc_std=("final_test_acc", "std"),
        best_acc_mean=("best_test_acc", "mean"),
        best_acc_std=("best_test_acc", "std"),
        dense_acc_mean=("dense_test_acc", "mean"),
        density_mean=("density", "mean"),
        off_target_seeds=("off_target", "sum"),
        collapsed_seeds=("layer_collapse", "sum"),
        chance_seeds=("at_chance", "sum"),
        diverged_seeds=("diverged", "sum"),
        prune_time_mean_s=("prune_time_s", "mean"),
        train_time_mean_s=("train_time_s", "mean"),
    ).reset_index()
    out["off_target_seeds"] = out["off_target_seeds"].astype(int)
    out["collapsed_seeds"] = out["collapsed_seeds"].astype(int)
    out["chance_seeds"] = out["chance_seeds"].astype(int)
    out["diverged_seeds"] = out["diverged_seeds"].astype(int)
    return out


def _fmt_cell(mean: float, std: float, n: int, seeds: int) -> str:
    text = f"{100 * mean:.2f}"
    if n > 1 and not math.isnan(std):
        text += f" ± {100 * std:.2f}"
    if n < seeds:
        text += f" (n={n})"
    return text


def _train_summary(train: Any) -> str:
    opt = train.optimizer.upper() if train.optimizer == "sgd" else train.optimizer.capitalize()
    parts = [f"{train.epochs} epoch{'s' if train.epochs != 1 else ''}",
             f"batch {train.batch_size}", f"{opt} lr {train.lr:g}"]
    if train.optimizer == "sgd":
        parts.append(f"momentum {train.momentum:g}" + (" (Nesterov)" if train.nesterov else ""))
    parts.append(f"weight decay {train.weight_decay:g}")
    if train.schedule == "step":
        drops = ", ".join(str(m) for m in train.milestones) or "none"
        parts.append(f"lr x{train.gamma:g} at epochs {drops}")
    else:
        parts.append(f"{train.schedule} schedule")
    if getattr(train, "warmup_steps", 0):
        parts.append(f"linear warm-up over the first {train.warmup_steps} steps")
    if getattr(train, "grad_clip", 0):
        parts.append(f"gradient norm clipped to {train.grad_clip:g}")
    if getattr(train, "train_subset", 0):
        parts.append(f"trained on the first {train.train_subset:,} training images only")
    if train.augment:
        parts.append("augmentation")
    return ", ".join(parts)


def markdown_tables(config: LeaderboardConfig, cells: pd.DataFrame) -> dict[str, str]:
    """``{model label: Markdown table}`` (rows: pruners, columns: sparsities)."""
    seeds = len(config.seeds)
    out = {}
    for model in config.models:
        sub = cells[cells["model"] == model.label]
        header = "| Pruner | " + " | ".join(f"s = {s:g}" for s in config.sparsities) + " |"
        rule = "|:--|" + "--:|" * len(config.sparsities)
        lines = [header, rule]
        best: dict[float, float] = {}
        for s in config.sparsities:
            col = sub[(sub["sparsity"] == s) & (sub["pruner"] != config.DENSE_LABEL)
                      & (sub["off_target_seeds"] == 0) & (sub["diverged_seeds"] == 0)]
            if len(col):
                best[s] = round(100 * float(col["final_acc_mean"].max()), 2)
        for pruner in config.pruners:
            if not pruner.applies_to(model):
                continue
            row = [pruner.label]
            for s in config.sparsities:
                cell = sub[(sub["pruner"] == pruner.label) & (sub["sparsity"] == s)]
                if cell.empty:
                    row.append("—")
                    continue
                c = cell.iloc[0]
                text = _fmt_cell(float(c["final_acc_mean"]), float(c["final_acc_std"]),
                                 int(c["seeds"]), seeds)
                if round(100 * float(c["final_acc_mean"]), 2) == best.get(s):
                    text = f"**{text}**"
                if int(c["collapsed_seeds"]):
                    text += f" {COLLAPSE_MARK}"
                if int(c["diverged_seeds"]):
                    text += f" {DIVERGED_MARK}"
                if int(c["chance_seeds"]):
                    text += f" {CHANCE_MARK}"
                if int(c["off_target_seeds"]):
                    text += f" {OFF_TARGET_MARK} (s = {1.0 - float(c['density_mean']):.4g})"
                row.append(text)
            lines.append("| " + " | ".join(row) + " |")
        out[model.label] = "\n".join(lines)
    return out


def _dense_line(config: LeaderboardConfig, cells: pd.DataFrame, model_label: str) -> str:
    if not config.dense:
        return ""
    dense = cells[(cells["model"] == model_label) & (cells["pruner"] == config.DENSE_LABEL)]
    if dense.empty:
        return "Dense (unpruned) reference: not in the store yet."
    c = dense.iloc[0]
    mark = f" {DIVERGED_MARK}" if int(c["diverged_seeds"]) else ""
    return ("Dense (unpruned) reference: **"
            + _fmt_cell(float(c["final_acc_mean"]), float(c["final_acc_std"]), int(c["seeds"]),
                        len(config.seeds)) + f"** %{mark}")


def _timing_table(config: LeaderboardConfig, cells: pd.DataFrame) -> str:
    header = "| Pruner | " + " | ".join(m.label for m in config.models) + " |"
    lines = [header, "|:--|" + "--:|" * len(config.models)]
    for pruner in config.pruners:
        row = [pruner.label]
        for m in config.models:
            sub = cells[(cells["model"] == m.label) & (cells["pruner"] == pruner.label)]
            missing = "—" if pruner.applies_to(m) else "n/a"
            row.append(f"{sub['prune_time_mean_s'].mean():.3f}" if len(sub) else missing)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _versions_line(versions_json: str) -> str:
    v = json.loads(versions_json)
    main = ", ".join(f"{k} {v[k]}" for k in ("paizoo", "torch", "numpy", "python") if k in v)
    extra = f" (git {v['git']})" if "git" in v else ""
    return f"{main}{extra} on {v.get('platform', 'unknown platform')}"


def _code_versions_line(runs: pd.DataFrame) -> list[str]:
    """A header line when the runs come from several code versions (paizoo version + git
    commit, as recorded with each run): each with its run count and dates."""
    if runs.empty:
        return []
    def code(versions_json: str) -> str:
        v = json.loads(versions_json)
        return f"paizoo {v.get('paizoo', '?')}" + (f" (git {v['git']})" if "git" in v else "")
    frame = pd.DataFrame({"code": runs["versions"].map(code),
                          "time": runs["created_at"].astype(str).str[:16].str.replace("T", " ")})
    if frame["code"].nunique() < 2:
        return []
    groups = frame.groupby("code", sort=False)["time"].agg(["count", "min", "max"])
    groups = groups.sort_values("min", kind="stable")
    items = [f"{name}: {int(g['count'])} runs, {g['min']}" + (
        "" if g["min"] == g["max"] else f" to {g['max']}") for name, g in groups.iterrows()]
    return [f"- **Code versions:** the runs come from {len(items)} code versions "
            f"(finish times UTC; {'; '.join(items)})"]


def _notes(config: LeaderboardConfig, runs: pd.DataFrame) -> list[str]:
    """The config's ``notes``, then one line per cell with a diverged seed (where it did)."""
    lines = [f"- {note}" for note in config.notes]
    diverged = runs[runs["diverged"]] if len(runs) else runs
    if diverged.empty:
        return lines
    lines.append(f"- {DIVERGED_MARK} Diverged seeds: the training loss became NaN/inf (training "
                 f"stopped there), or an epoch's mean training loss exceeded {BLOWUP_FACTOR:g} "
                 f"ln C (worse than a uniform guess) and the final one was at chance "
                 f"(>= {CHANCE_LOSS_FRACTION:g} ln C):")
    for (model, pruner, sparsity), sub in diverged.groupby(["model", "pruner", "sparsity"],
                                                           sort=False):
        where = "; ".join(f"seed {int(r.seed)}: {r.diverged_at}" for r in sub.itertuples())
        level = "" if pruner == config.DENSE_LABEL else f", s = {sparsity:g}"
        lines.append(f"  - {pruner} on {model}{level}: {where}")
    return lines


def render_markdown(config: LeaderboardConfig, runs: pd.DataFrame, cells: pd.DataFrame, *,
                    dataset: str, png_name: str, command: str, store_path: str) -> str:
    """The full ``NAME.md`` text."""
    total = len(config.specs(dataset, {p.name.lower(): False for p in config.pruners}))
    parts = [f"# Leaderboard: {config.name}", ""]
    if config.description:
        parts += [config.description, ""]
    notice = ""
    if dataset != config.dataset:
        notice = (f" (**fallback**: {config.dataset!r} was not installed when these runs were "
                  "made)")
    seeds = len(config.seeds)
    parts += [
        f"- **Dataset:** {dataset}{notice}",
        f"- **Metric:** top-1 test accuracy (%) at the end of training, mean ± sample standard "
        f"deviation over {seeds} seed{'s' if seeds != 1 else ''} "
        f"({', '.join(map(str, config.seeds))}); the best mean per sparsity is in **bold**; "
        f"{COLLAPSE_MARK} = in at least one seed the mask keeps no weight in some layer "
        f"(layer collapse); {DIVERGED_MARK} = in at least one seed training diverged (the loss "
        f"became NaN/inf, or an epoch's mean training loss exceeded {BLOWUP_FACTOR:g} ln C for C "
        f"classes and the run ended at chance; see Notes); {CHANCE_MARK} = in at least one seed "
        f"training stayed at chance without diverging (final training loss >= "
        f"{CHANCE_LOSS_FRACTION:g} ln C: no signal reached the output); "
        f"{OFF_TARGET_MARK} (s = x) = the pruner cannot reach this sparsity on this model and "
        "achieved x instead (not ranked). s = fraction of prunable weights removed (conv and "
        "linear weights).",
        f"- **Runs:** {len(runs)} of {total} in the store `{store_path}`"
        + ("" if len(runs) == total else " (incomplete: missing cells show —)"),
        *_code_versions_line(runs),
        f"- **Pruning data** (data-driven pruners): {config.pruning_data.samples_per_class} "
        f"samples per class, batch {config.pruning_data.batch_size}, "
        f"{config.pruning_data.num_batches} batch(es)",
        "",
    ]
    tables = markdown_tables(config, cells)
    for model in config.models:
        parts += [f"## {model.label}", "",
                  f"Training: {_train_summary(config.train_for(model, dataset))}.", ""]
        dense_line = _dense_line(config, cells, model.label)
        if dense_line:
            parts += [dense_line, ""]
        parts += [tables[model.label], ""]
    parts += [f"![test accuracy vs sparsity]({png_name})", ""]
    notes = _notes(config, runs)
    if notes:
        parts += ["## Notes", "", *notes, ""]
    if config.pruners:
        parts += ["## Pruning time", "",
                  "Seconds per pruning call (mean over seeds and sparsities; device "
                  f"{', '.join(sorted(set(runs['device']))) or 'n/a'}).", "",
                  _timing_table(config, cells), ""]
    versions = sorted({_versions_line(v) for v in runs["versions"]}) if len(runs) else []
    parts += ["## Reproduce", "", "```bash", command, "```", ""]
    if config.source is not None:
        where = f" (`{config.path.as_posix()}`)" if config.path else ""
        parts += [f"Configuration{where}:", "", "```yaml", config.source.rstrip(), "```", ""]
    if versions:
        parts += ["Library versions of the runs:", ""]
        parts += [f"- {v}" for v in versions]
        parts += [""]
    parts += [f"*Rendered from the results store by `paizoo leaderboard render {config.name}`; "
              "do not edit by hand.*", ""]
    return "\n".join(parts)


def plot(config: LeaderboardConfig, cells: pd.DataFrame, path: str | os.PathLike,
         dataset: str) -> Path:
    """Write :func:`plot_figure` to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = plot_figure(config, cells, dataset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_figure(config: LeaderboardConfig, cells: pd.DataFrame, dataset: str) -> Any:
    """Test accuracy vs sparsity per pruner, one panel per model (log axis of 1 - s), as a
    matplotlib figure (the legend below the panels; save it with ``bbox_inches="tight"``)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(config.models)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    markers = "osD^vP*Xh<>"
    densities = [1.0 - s for s in config.sparsities]
    for ax, model in zip(axes[0], config.models, strict=True):
        sub = cells[cells["model"] == model.label]
        collapse_labelled = False
        for i, pruner in enumerate(config.pruners):
            rows = sub[sub["pruner"] == pruner.label].sort_values("sparsity")
            if rows.empty:
                continue
            x = rows["density_mean"].to_numpy()
            y = 100 * rows["final_acc_mean"].to_numpy()
            err = 100 * rows["final_acc_std"].fillna(0.0).to_numpy()
            # one std either side, clipped to the possible accuracies [0, 100] %
            yerr = np.stack([np.minimum(err, y), np.minimum(err, 100.0 - y)])
            ax.errorbar(x, y, yerr=yerr, label=pruner.label, color=colors(i % 10),
                        linestyle=("-", "--", ":")[(i // 10) % 3],  # colours repeat after 10
                        marker=markers[i % len(markers)], markersize=4, capsize=2, linewidth=1.3)
            collapsed = rows["collapsed_seeds"].to_numpy() > 0
            if collapsed.any():
                ax.scatter(x[collapsed], y[collapsed], s=70, facecolors="none",
                           edgecolors="red", linewidths=1.2, zorder=5,
                           label="layer collapse" if not collapse_labelled else None)
                collapse_labelled = True
            for column, label, style in _MARKED:
                flagged = rows[column].to_numpy() > 0
                if flagged.any():
                    ax.scatter(x[flagged], y[flagged], zorder=6, label=label, **style)
        dense = sub[sub["pruner"] == config.DENSE_LABEL]
        if len(dense):
            acc = 100 * float(dense.iloc[0]["final_acc_mean"])
            ax.axhline(acc, color="black", linestyle="--", linewidth=1, label="dense")
        ax.set_xscale("log")
        if densities:
            ax.set_xticks(densities)
            ax.set_xticklabels([f"{s:g}" for s in config.sparsities], rotation=45)
            ax.minorticks_off()
            ax.set_xlim(max(densities) * 1.25, min(densities) / 1.25)  # sparser to the right
        ax.set_xlabel("sparsity s (log scale of 1 - s)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{model.label} on {dataset}")
        ax.grid(True, which="major", alpha=0.3)
    legend: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    order = ([p.label for p in config.pruners] + ["dense", "layer collapse"]
             + [label for _, label, _ in _MARKED])
    labels = [label for label in order if label in legend]
    handles = [legend[label] for label in labels]
    fig.tight_layout()
    if handles:  # below the axes (and their x labels); the tight bounding box makes room
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5),
                   frameon=False, bbox_to_anchor=(0.5, 0.0))
    return fig


#: cells circled in the plot: (column of the cell table, legend label, scatter style)
_MARKED: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("chance_seeds", f"a seed at chance ({CHANCE_MARK})",
     {"marker": "s", "s": 80, "facecolors": "none", "edgecolors": "dimgray", "linewidths": 1.2}),
    ("diverged_seeds", f"a seed diverged ({DIVERGED_MARK})",
     {"marker": "x", "s": 80, "color": "black", "linewidths": 1.6}),
)


def render_leaderboard(
    config: LeaderboardConfig,
    store: BaseStore,
    *,
    out_dir: str | os.PathLike | None = None,
    command: str | None = None,
) -> Rendered:
    """Write ``NAME.md``, ``NAME.csv`` and ``NAME.png`` for ``config`` from ``store``.

    Args:
        out_dir: where to write (default: the config file's folder, else ``leaderboards``).
        command: the command line shown under "Reproduce" (default:
            ``paizoo leaderboard run <config path>``).
    """
    if out_dir is None:
        out_dir = config.path.parent if config.path is not None else Path("leaderboards")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = dataset_in_store(config, store)
    runs = collect_runs(config, store, dataset)
    cells = aggregate(runs)
    if command is None:
        target = config.path.as_posix() if config.path else f"leaderboards/{config.name}.yaml"
        command = f"paizoo leaderboard run {target}"
    md_path, csv_path, png_path = (out / f"{config.name}{ext}" for ext in (".md", ".csv", ".png"))
    text = render_markdown(config, runs, cells, dataset=dataset, png_name=png_path.name,
                           command=command, store_path=store.location)
    md_path.write_text(text, encoding="utf-8")
    cells.insert(0, "dataset", dataset)
    cells.to_csv(csv_path, index=False, float_format="%.6g")
    plot(config, cells, png_path, dataset)
    total = len(config.specs(dataset, {p.name.lower(): False for p in config.pruners}))
    return Rendered(markdown=md_path, csv=csv_path, png=png_path, text=text, runs=len(runs),
                    total=total, dataset=dataset)
