"""Saving and loading predictors with skops (safe loading, never pickle).

A predictor file (``.skops``) holds one dict::

    {"format": "paizoo-predictor", "version": 1,
     "estimator": AccuracyDropRegressor(...),       # fitted
     "info": {...}}                                 # JSON-like: training data, validated error

Loading lists the file's non-builtin types with :func:`skops.io.get_untrusted_types` and only
proceeds when each is in :data:`TRUSTED_TYPES` (or in the caller's explicit ``trusted`` list), so
a tampered file cannot make paizoo instantiate arbitrary classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import PredictorFileError
from .estimator import AccuracyDropRegressor

FORMAT = "paizoo-predictor"
FORMAT_VERSION = 1

#: the types a paizoo predictor file may contain beyond skops' built-in trusted ones
TRUSTED_TYPES: frozenset[str] = frozenset({
    "paizoo.regression.estimator.AccuracyDropRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
    "numpy.dtype",
})

#: the predictor ``paizoo rank`` uses by default (package data)
DEFAULT_PREDICTOR = "default.skops"


@dataclass
class Predictor:
    """A fitted :class:`AccuracyDropRegressor` with what it was trained on and how well it does.

    ``info`` keys written by :func:`paizoo.regression.train.train_predictor`: ``trained_on``
    (table path and sha256, rows, datasets, models, pruners, sparsity range), ``validation``
    (split name -> R^2 / MAE / Spearman), ``command`` (the command that retrains it), ``groups``,
    ``model``, ``paizoo_version``.
    """

    estimator: AccuracyDropRegressor
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def predict(self, table: Any) -> Any:
        return self.estimator.predict(table)

    def describe(self, splits: Sequence[str] | None = None) -> str:
        """The validated error of ``splits`` (split labels such as ``"leave one architecture
        out"``; default: all recorded), then the validity domain (training data)."""
        lines = []
        val = self.info.get("validation", {})
        for split, scores in val.items():
            if splits is not None and split not in splits:
                continue
            lines.append(
                f"validated ({split}): MAE {scores.get('mae', float('nan')):.2f} points, "
                f"R^2 {scores.get('r2', float('nan')):.3f}, "
                f"Spearman {scores.get('spearman', float('nan')):.3f} (over the masks of "
                "every sparsity: mostly their order by sparsity)")
            if "rank_tau_mean" in scores:
                lines.append(
                    f"  pruner order ({split}): Kendall tau "
                    f"{scores['rank_tau_mean']:.3f} of the ranking by the mean over "
                    f"sparsities (the one printed), "
                    f"{scores.get('rank_tau_per_sparsity', float('nan')):.3f} per sparsity")
            else:
                lines.append(f"  pruner order ({split}): not recorded in this predictor "
                             "(retrained with this paizoo it records it; for the shipped one "
                             "see leaderboards/regression.md, 'Rankings of the pruners on an "
                             "architecture')")
        on = self.info.get("trained_on", {})
        if on:
            sp = on.get("sparsity_range", [None, None])
            shapes = on.get("input_shapes") or {}
            data = ", ".join(
                f"{d}" + (f" ({'x'.join(map(str, shapes[d]))})" if shapes.get(d) else "")
                for d in on.get("datasets", [])) or "?"
            lines.append(
                f"validity domain: {on.get('rows', '?')} runs"
                + (f" ({on['date']})" if on.get("date") else "") + f" on {data}; "
                f"{len(on.get('models', []))} architectures ({', '.join(on.get('models', []))})"
                + (f" in {len(on['families'])} families ({', '.join(on['families'])})"
                   if on.get("families") else "")
                + f"; {len(on.get('pruners', []))} pruners; "
                f"sparsity {_fmt(sp[0])}..{_fmt(sp[1])}"
                + (f"; from {on['table']}" if on.get("table") else ""))
            if on.get("note"):
                lines.append(f"domain note: {on['note']}")
        if not lines:
            lines.append("predictor with no recorded training data or validation")
        return "\n".join(lines)


def _fmt(v: object) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else "?"


def save_predictor(estimator: AccuracyDropRegressor, path: str | os.PathLike,
                   info: dict[str, Any] | None = None) -> Path:
    """Write a fitted estimator and its ``info`` to ``path`` (skops format)."""
    import skops.io as sio
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(estimator, AccuracyDropRegressor):
        raise TypeError(f"expected an AccuracyDropRegressor, got {type(estimator).__name__}")
    check_is_fitted(estimator, "model_")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    sio.dump({"format": FORMAT, "version": FORMAT_VERSION, "estimator": estimator,
              "info": dict(info or {})}, tmp)
    os.replace(tmp, path)
    return path


def load_predictor(path: str | os.PathLike | None = None,
                   trusted: Sequence[str] = ()) -> Predictor:
    """Read a predictor written by :func:`save_predictor`; ``None`` loads the shipped default.

    Args:
        trusted: extra type names to trust (only for files you made yourself with custom
            estimators); the file is refused if it holds any other untrusted type.

    Raises:
        PredictorFileError: no such file, untrusted types, or not a paizoo predictor.
    """
    import skops.io as sio

    default = path is None
    path = default_predictor_path() if path is None else Path(path)
    if default and not path.is_file():
        from .train import RETRAIN_COMMAND

        raise PredictorFileError(
            f"this paizoo has no default predictor ({path} is missing); rebuild it from the "
            f"committed leaderboard stores with `{RETRAIN_COMMAND}` (`make regression`), or "
            "pass --predictor FILE")
    if not path.is_file():
        raise PredictorFileError(f"no predictor file at {path}; train one with `paizoo regress "
                                 "train --table TABLE.csv --out FILE.skops`")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise PredictorFileError(f"{path} is not a readable skops file: {exc}") from exc
    allowed = TRUSTED_TYPES | set(trusted)
    refused = sorted(set(untrusted) - allowed)
    if refused:
        raise PredictorFileError(
            f"{path} holds types paizoo does not trust: {refused}. Only load predictor files "
            "from sources you trust; if you made it yourself, pass trusted=[...] with these names")
    obj = sio.load(path, trusted=sorted(set(untrusted)))
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        raise PredictorFileError(f"{path} is a skops file but not a paizoo predictor")
    if int(obj.get("version", 0)) > FORMAT_VERSION:
        raise PredictorFileError(f"{path} has predictor format version {obj.get('version')}; "
                                 "this paizoo reads up to version 1: upgrade paizoo")
    est = obj.get("estimator")
    if not isinstance(est, AccuracyDropRegressor):
        raise PredictorFileError(f"{path} holds no AccuracyDropRegressor")
    return Predictor(estimator=est, info=dict(obj.get("info") or {}), path=path)


def default_predictor_path() -> Path:
    """Where the shipped predictor lives (``paizoo/regression/predictors/default.skops``)."""
    return Path(str(resources.files("paizoo.regression") / "predictors" / DEFAULT_PREDICTOR))
