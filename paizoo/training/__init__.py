"""Masked training: configuration, the training loop, mask enforcement, and one-run experiments.

Example::

    from paizoo.training import TrainConfig, train

    mask = paizoo.prune(model, "snip", sparsity=0.9, data=batches, apply=True)
    result = train(model, train_set, test_set, TrainConfig(epochs=5, lr=0.05))
    print(result.final_test_acc, result.mask_check)
"""

from __future__ import annotations

from .batching import Batches
from .config import ConfigError, PruneDataConfig, TrainConfig
from .logs import WandbOptions
from .loop import (
    EpochMetrics,
    TrainingStopped,
    TrainResult,
    evaluate,
    make_optimizer,
    select_device,
    train,
)
from .masking import MaskCheck, MaskEnforcer, MaskViolationError, check_mask_enforced
from .set import SETSchedule, SETUpdate

__all__ = [
    "Batches",
    "ConfigError",
    "EpochMetrics",
    "MaskCheck",
    "MaskEnforcer",
    "MaskViolationError",
    "PruneDataConfig",
    "SETSchedule",
    "SETUpdate",
    "TrainConfig",
    "TrainResult",
    "TrainingStopped",
    "WandbOptions",
    "check_mask_enforced",
    "evaluate",
    "make_optimizer",
    "select_device",
    "train",
]
