"""One run, end to end: build the model, prune it at initialisation, train it, record it.

:func:`run_experiment` turns a :class:`~paizoo.results.RunSpec` into a
:class:`~paizoo.results.RunRecord` (it does not write the store; the caller does, in one
transaction, once the run has finished). The same seed drives the model's initialisation, the
pruner, the pruning batches and the training batch order.
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..masks import LayerCollapseWarning, Mask
from ..results.record import RunRecord, RunSpec, library_versions
from .batching import training_subset
from .logs import WandbOptions
from .loop import EpochMetrics, TrainingStopped, select_device, train
from .masking import MaskMode


@dataclass
class ExperimentData:
    """The datasets a grid's runs share (loaded once): the train and test splits.

    ``name`` is the dataset actually loaded (it may be a fallback of the requested one);
    ``info`` its ``paizoo.data.DatasetInfo`` (num_classes, input_shape, ...).
    """

    name: str
    train: Any
    test: Any
    info: Any


def load_experiment_data(name: str, *, root: str | None = None, augment: bool = False,
                         device: str | torch.device | None = None) -> ExperimentData:
    """Load the train (with augmentation if asked) and test splits of ``name``.

    With a CUDA ``device``, datasets that can move (``paizoo.data``'s in-memory datasets have
    ``.to``) are moved there once, so batches are cut and augmented on the GPU.

    Raises:
        paizoo.DatasetNotFoundError: the dataset's files are not found.
    """
    from ..data import dataset_info, load_dataset

    info = dataset_info(name)
    train_set = load_dataset(name, split="train", root=root, augment=augment)
    test_set = load_dataset(name, split="test", root=root, augment=False)
    if device is not None and torch.device(device).type == "cuda":
        for ds in (train_set, test_set):
            if callable(getattr(ds, "to", None)):
                ds.to(device)
    return ExperimentData(name=name, train=train_set, test=test_set, info=info)


def _accepts_input_size(name: str) -> bool:
    """Whether the paizoo model ``name`` takes an ``input_size`` keyword (the zoo's models do)."""
    from ..errors import UnknownModelError
    from ..models import get_model_factory

    try:
        factory = get_model_factory(name)
    except UnknownModelError:
        return False
    try:
        return "input_size" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def build_model(spec: RunSpec, info: Any) -> Any:
    """The freshly initialised model of ``spec`` for a dataset described by ``info``.

    Zoo models taking ``input_size`` get the dataset's ``(H, W)`` unless the spec's model config
    sets it, so one grid config serves datasets of different image sizes (e.g. a fallback).
    """
    from ..models import create_model

    kwargs = dict(spec.model_config)
    fixed = sorted({"num_classes", "in_channels", "seed"} & set(kwargs))
    if fixed:
        from .config import ConfigError

        raise ConfigError(
            f"model {spec.model!r}: {', '.join(fixed)} come(s) from the dataset "
            f"({info.input_shape[0]} channels, {info.num_classes} classes) and the run's seed; "
            "remove it from the model config")
    if "input_size" not in kwargs and len(info.input_shape) == 3 and \
            _accepts_input_size(spec.model):
        kwargs["input_size"] = (int(info.input_shape[1]), int(info.input_shape[2]))
    return create_model(spec.model, num_classes=info.num_classes,
                        in_channels=int(info.input_shape[0]), seed=spec.seed, **kwargs)


def prune_for(spec: RunSpec, model: Any, data: ExperimentData) -> tuple[Mask, float]:
    """Prune ``model`` as ``spec`` says; returns the mask and the pruning time in seconds.

    Data-driven pruners get ``paizoo.data.pruning_batches`` of the training split, built with
    ``spec.prune_data`` and the run's seed (building them is not timed). Layer-collapse
    warnings are silenced: collapse is recorded with the run instead. Pruners that can miss
    the requested sparsity (an ``allow_off_target`` option: Dey's patterns, expander) get
    ``allow_off_target=True`` unless the config sets it: the run records the achieved
    sparsity and the rendered leaderboard marks it (§). It is not part of ``pruner_config``,
    so stored run keys do not change.
    """
    from ..api import prune
    from ..diagnostics import OffTargetWarning
    from ..pruners import get_pruner_class
    from ..pruners.registry import allowing_off_target

    batches = None
    if get_pruner_class(spec.pruner).requires_data:
        from ..data import pruning_batches

        cfg = spec.prune_data
        kwargs = cfg.to_dict() if cfg is not None else {}
        batches = pruning_batches(training_subset(data.train, spec.train.train_subset),
                                  spec.pruner, num_classes=data.info.num_classes,
                                  seed=spec.seed, **kwargs)
    options = allowing_off_target(spec.pruner, dict(spec.pruner_config))
    device = next(model.parameters()).device
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayerCollapseWarning)
        warnings.simplefilter("ignore", OffTargetWarning)  # recorded: achieved sparsity, §
        mask = prune(model, spec.pruner, sparsity=spec.sparsity, data=batches,
                     input_shape=tuple(data.info.input_shape), seed=spec.seed, progress=False,
                     **options)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return mask, time.perf_counter() - start


def run_experiment(
    spec: RunSpec,
    data: ExperimentData,
    *,
    masks_dir: str | Path | None = None,
    logs_dir: str | Path | None = None,
    dense_test_acc: float | None = None,
    mask_mode: MaskMode = "project",
    progress: bool | None = None,
    wandb: WandbOptions | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    log_path: str | Path | None = None,
    mask_path: str | Path | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RunRecord:
    """Run ``spec`` on ``data`` and return its record (nothing is written to a store).

    Args:
        spec: the run (``spec.dataset`` should equal ``data.name``).
        data: the loaded datasets.
        masks_dir: save the mask as ``<masks_dir>/<run key>.safetensors`` (pruned runs).
        logs_dir: write the JSON-lines training log to ``<logs_dir>/<run key>.jsonl``.
        dense_test_acc: the dense reference to record (a dense run records its own accuracy).
        mask_mode / progress / wandb / on_epoch: passed to :func:`paizoo.training.train`.
        log_path / mask_path: explicit file paths, overriding ``logs_dir`` / ``masks_dir``.
        should_stop: checked after pruning and at every training step; ``True`` ends the run
            with :class:`~paizoo.training.TrainingStopped` (the leaderboard runner's lost
            lease).
    """
    if spec.dataset != data.name:
        raise ValueError(f"the run is for dataset {spec.dataset!r} but {data.name!r} is loaded")
    key = spec.key
    device = select_device(spec.train.device)
    model = build_model(spec, data.info).to(device)

    if spec.is_dense:
        mask, prune_time = Mask.ones(model), 0.0
    else:
        mask, prune_time = prune_for(spec, model, data)
        mask.apply(model)
    if should_stop is not None and should_stop():
        raise TrainingStopped(f"run {spec.describe()} stopped by the caller after pruning")

    if log_path is None and logs_dir is not None:
        log_path = Path(logs_dir) / f"{key}.jsonl"
    if log_path is not None:
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.unlink(missing_ok=True)  # a crashed earlier attempt leaves a partial log
    if wandb is not None and wandb.name is None:
        wandb = WandbOptions(project=wandb.project, entity=wandb.entity, name=spec.describe(),
                             group=wandb.group, tags=wandb.tags)
    result = train(model, data.train, data.test, spec.train, seed=spec.seed,
                   mask_mode=mask_mode, log_path=str(log_path) if log_path else None,
                   log_context={"run_key": key, "run": spec.identity(),
                                "prune_time_s": prune_time},
                   wandb=wandb, progress=progress, on_epoch=on_epoch, should_stop=should_stop)

    mask = mask.cpu()
    if mask_path is None and masks_dir is not None:
        mask_path = Path(masks_dir) / f"{key}.safetensors"
    saved_mask = None
    if mask_path is not None and not spec.is_dense:
        saved_mask = str(mask.save(mask_path, metadata={"run_key": key, **spec.identity()}))
    final = result.final
    collapsed = mask.collapsed_layers()
    return RunRecord(
        run_key=key,
        dataset=spec.dataset,
        model=spec.model,
        model_config=dict(spec.model_config),
        pruner=spec.pruner,
        pruner_config=dict(spec.pruner_config),
        prune_data_config=spec.prune_data.to_dict() if spec.prune_data else None,
        sparsity=spec.sparsity,
        seed=spec.seed,
        train_hash=spec.train.hash(),
        train_config=spec.train.to_dict(),
        final_test_acc=final.test_acc,
        best_test_acc=result.best_test_acc,
        best_epoch=result.best_epoch,
        final_train_acc=final.train_acc,
        final_train_loss=final.train_loss,
        final_test_loss=final.test_loss,
        dense_test_acc=final.test_acc if spec.is_dense else dense_test_acc,
        density=mask.density,
        kept=mask.num_kept,
        total=mask.num_total,
        layer_densities=mask.layer_densities(),
        layer_collapse=bool(collapsed),
        collapsed_layers=collapsed,
        prune_time_s=prune_time,
        train_time_s=result.train_time_s,
        eval_time_s=result.eval_time_s,
        epochs=len(result.history),
        history=[m.to_dict() for m in result.history],
        mask_path=saved_mask,
        log_path=str(log_path) if log_path else None,
        device=result.device,
        versions=library_versions(),
        status="diverged" if result.diverged else "ok",
        diverged_epoch=result.diverged.epoch if result.diverged else None,
        diverged_step=result.diverged.step if result.diverged else None,
    )
