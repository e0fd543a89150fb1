"""Accuracy-drop regression from topological mask metrics, and ranking pruners without training.

* :class:`AccuracyDropRegressor`: a scikit-learn regressor on metric columns selected by group.
* :mod:`~paizoo.regression.schema`: the metrics-table schema and the feature-group table.
* :func:`evaluate` / :func:`write_report`: feature sets x splits, importance, ranking validation.
* :func:`train_predictor`, :func:`save_predictor`, :func:`load_predictor`: skops predictors.
* :func:`rank_pruners`: prune, measure, predict and rank (``paizoo rank``).
* :func:`kendall_tau`, :func:`rbo_ext`: comparing rankings.
"""

from __future__ import annotations

from .errors import PredictorFileError, RegressionError, TableError
from .estimator import MODELS, AccuracyDropRegressor
from .evaluate import Evaluation, evaluate, ranking_summary, validate_ranking
from .persistence import Predictor, default_predictor_path, load_predictor, save_predictor
from .predict import RankResult, rank_pruners
from .ranking import compare_rankings, kendall_tau, ranked, rbo_ext
from .report import write_report
from .schema import (
    FEATURE_GROUPS,
    FEATURE_SETS,
    TARGET,
    load_table,
    select_features,
    validate_table,
)
from .splits import SPLITS, make_folds
from .train import train_predictor

__all__ = [
    "FEATURE_GROUPS",
    "FEATURE_SETS",
    "MODELS",
    "SPLITS",
    "TARGET",
    "AccuracyDropRegressor",
    "Evaluation",
    "Predictor",
    "PredictorFileError",
    "RankResult",
    "RegressionError",
    "TableError",
    "compare_rankings",
    "default_predictor_path",
    "evaluate",
    "kendall_tau",
    "load_predictor",
    "load_table",
    "make_folds",
    "rank_pruners",
    "ranked",
    "ranking_summary",
    "rbo_ext",
    "save_predictor",
    "select_features",
    "train_predictor",
    "validate_ranking",
    "validate_table",
    "write_report",
]
