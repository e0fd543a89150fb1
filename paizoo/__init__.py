"""paizoo: a zoo of pruning-at-initialization (PaI) algorithms for PyTorch.

Quick start::

    import paizoo
    mask = paizoo.prune(model, "synflow", sparsity=0.99, input_shape=(3, 32, 32), apply=True)
    print(mask.report())
"""

from __future__ import annotations

from . import diagnostics, graph, models
from .api import prune
from .errors import (
    CoverageError,
    DatasetNotFoundError,
    MaskMismatchError,
    MissingDataError,
    NoPrunableParametersError,
    PaizooError,
    ScoreError,
    SparsityError,
    UnknownModelError,
    UnknownPrunerError,
    UnsupportedLayerError,
)
from .masks import CoverageWarning, LayerCollapseWarning, Mask
from .params import prunable_parameters
from .pruners import PruneContext, Pruner, create_pruner, list_pruners, register_pruner
from .reparam import apply_mask, remove_masks

__version__ = "0.1.0"

__all__ = [
    "CoverageError",
    "CoverageWarning",
    "DatasetNotFoundError",
    "LayerCollapseWarning",
    "Mask",
    "MaskMismatchError",
    "MissingDataError",
    "NoPrunableParametersError",
    "PaizooError",
    "PruneContext",
    "Pruner",
    "ScoreError",
    "SparsityError",
    "UnknownModelError",
    "UnknownPrunerError",
    "UnsupportedLayerError",
    "__version__",
    "apply_mask",
    "create_pruner",
    "diagnostics",
    "graph",
    "list_pruners",
    "models",
    "prunable_parameters",
    "prune",
    "register_pruner",
    "remove_masks",
]
