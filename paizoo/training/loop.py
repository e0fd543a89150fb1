"""The masked training loop.

:func:`train` trains a model that may carry a mask (``torch.nn.utils.prune`` convention, as left
by :meth:`paizoo.Mask.apply`) and keeps the mask enforced throughout (see
:mod:`paizoo.training.masking`): after training every pruned weight is exactly 0, which is
checked, not assumed. Cross-entropy loss; SGD with momentum, Adam or AdamW; step, cosine or
constant learning rate per epoch; mixed precision on CUDA. Everything random (batch order,
augmentation, dropout) is seeded, so on the CPU the same seed gives the same accuracy.

A run whose loss becomes NaN or infinite has diverged (:mod:`paizoo.training.divergence`): training
stops at once and the result says where (``TrainResult.diverged``) instead of failing; the
pruned weights are still handed back exactly 0 (the kept ones are not finite).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..errors import DeviceError, PaizooError
from ..masks import Mask
from ..reparam import is_masked
from .batching import Batches, training_subset
from .config import TrainConfig
from .divergence import NONFINITE, Divergence
from .logs import JsonlLog, WandbLog, WandbOptions
from .masking import MaskCheck, MaskEnforcer, MaskMode, _masked_uses

TopologyUpdate = Callable[[int, nn.Module, torch.optim.Optimizer, Mask], "Mask | None"]
"""``(step, model, optimizer, mask) -> new mask or None``, called after every optimiser step
(``step`` 1-based, counted across epochs) with the mask currently enforced; a returned mask (same
names, shapes) replaces it from the next step on. See :class:`paizoo.training.set.SETSchedule`."""


class TrainingStopped(PaizooError, RuntimeError):
    """:func:`train` was stopped by its ``should_stop`` callback (e.g. the leaderboard runner
    lost the run's lease to another runner); the model is left as it was at that step."""


@dataclass(frozen=True)
class EpochMetrics:
    """Metrics of one epoch (``epoch`` is 1-based).

    ``train_loss``/``train_acc`` are running averages over the epoch's mini-batches in training
    mode (the model changes during the epoch); ``test_*`` are measured after the epoch in
    evaluation mode. Accuracies are fractions in [0, 1].
    """

    epoch: int
    lr: float
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    train_time_s: float
    eval_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    history: list[EpochMetrics]
    train_time_s: float
    eval_time_s: float
    device: str
    amp: str | None
    mask_check: MaskCheck | None
    extra: dict[str, Any] = field(default_factory=dict)
    #: where the loss became non-finite (training stopped there), else ``None``
    diverged: Divergence | None = None

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]

    @property
    def final_test_acc(self) -> float:
        return self.history[-1].test_acc

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the highest test accuracy (the first one on ties)."""
        best = max(self.history, key=lambda m: (m.test_acc, -m.epoch))
        return best.epoch

    @property
    def best_test_acc(self) -> float:
        return self.history[self.best_epoch - 1].test_acc


def select_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU.

    Raises:
        paizoo.errors.DeviceError: ``device`` is not a PyTorch device name, or it is CUDA and
            CUDA is not available.
    """
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise DeviceError(f"unknown device {device!r}; use cpu, cuda or cuda:N (or mps on "
                              "Apple silicon)") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available here; "
                              "use --device cpu (or leave it out: CUDA when present, else CPU)")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _amp_setup(config: TrainConfig, device: torch.device
               ) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """Autocast dtype and gradient scaler: bf16 (no scaler) or fp16 (+ scaler) on CUDA only."""
    use = config.amp if config.amp is not None else device.type == "cuda"
    if not use:
        return None, None
    if device.type != "cuda":
        raise RuntimeError("amp=true is only supported on CUDA; set amp to null or false")
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def use_channels_last(config: TrainConfig, model: nn.Module, device: torch.device,
                      mask_mode: MaskMode) -> bool:
    """``config.channels_last``, or (``None``) whether training runs on CPU with a Conv2d and
    plain weights (not hook mode on a masked model: its per-forward ``orig * mask`` product
    drops the channels-last strides of single-input-channel convolutions)."""
    if config.channels_last is not None:
        return config.channels_last
    if mask_mode == "hook" and is_masked(model):
        return False
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def make_optimizer(params: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config`` over ``params`` (learning rate set per epoch later)."""
    params = list(params)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=config.betas,
                                weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas,
                             weight_decay=config.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             autocast: Callable[[], AbstractContextManager[Any]] = nullcontext
             ) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (put in eval mode) over ``batches``."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.int64)
    n = 0
    for x, y in batches:
        with autocast():
            out = model(x)
        loss_sum = loss_sum + F.cross_entropy(out.float(), y, reduction="sum").double().cpu()
        correct = correct + (out.argmax(1) == y).sum().cpu()
        n += len(y)
    if n == 0:
        raise ValueError("evaluation data is empty")
    return float(loss_sum) / n, int(correct) / n


def train(
    model: nn.Module,
    train_set: Any,
    test_set: Any,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    mask_mode: MaskMode = "project",
    log_path: str | None = None,
    log_context: dict[str, Any] | None = None,
    wandb: WandbOptions | None = None,
    progress: bool | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    topology_update: TopologyUpdate | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``model`` in place, keeping its mask (if any) enforced; return the metrics.

    Args:
        model: a dense model or one carrying masks (``weight_orig`` + ``weight_mask``); it is
            moved to the training device and handed back in the prune convention with every
            pruned weight exactly 0.
        train_set / test_set: ``paizoo.data`` datasets (in-memory ``.x``/``.y``, batched by
            tensor indexing) or any map-style dataset of ``(input, target)`` pairs.
        config: the :class:`TrainConfig` (defaults if ``None``).
        seed: seeds batch order, augmentation and any randomness in the model (dropout); the
            global RNG state is restored afterwards.
        mask_mode: ``"project"`` (default) or ``"hook"``; see :mod:`paizoo.training.masking`.
        log_path: append JSON-lines metrics here (``"start"``, one ``"epoch"`` per epoch,
            ``"end"``).
        log_context: extra fields for the ``"start"`` record (e.g. the run key).
        wandb: log to Weights & Biases with these options.
        progress: tqdm bars (``None``: only on a terminal).
        on_epoch: called with each epoch's :class:`EpochMetrics`.
        topology_update: dynamic sparse training (e.g. SET): called after every optimiser step
            as ``topology_update(step, model, optimizer, mask)``; a returned :class:`Mask`
            becomes the enforced mask (the callback zeroes the weights it regrows). The final
            mask is ``Mask.from_model(model)``; ``result.extra["topology_updates"]`` counts the
            replacements. Needs a masked model.
        should_stop: checked before the first step and after every optimiser step; when it
            returns ``True`` training ends at once by raising :class:`TrainingStopped` (no
            ``"end"`` record, no result).

    A non-finite training loss stops training at that step: the epoch is evaluated and
    recorded (its ``train_loss`` is NaN) and ``result.diverged`` gives the epoch and step.

    Raises:
        paizoo.training.MaskViolationError: a pruned weight is not exactly 0 after training.
        paizoo.training.TrainingStopped: ``should_stop`` returned ``True``.
    """
    config = config or TrainConfig()
    device = select_device(config.device)
    model.to(device)
    channels_last = use_channels_last(config, model, device, mask_mode)
    amp_dtype, scaler = _amp_setup(config, device)

    def autocast() -> AbstractContextManager[Any]:
        if amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=amp_dtype)

    generator = torch.Generator().manual_seed(int(seed))
    train_set = training_subset(train_set, config.train_subset)
    train_batches = Batches(train_set, config.batch_size, shuffle=True, device=device,
                            generator=generator, num_workers=config.num_workers)
    test_batches = Batches(test_set, config.eval_batch_size, shuffle=False, device=device,
                           num_workers=config.num_workers, drop_singleton=False)
    disable = None if progress is None else not progress

    log = JsonlLog(log_path)
    enforcer = MaskEnforcer(model, mask_mode)
    if channels_last:  # after the enforcer (it may replace parameters), before the optimiser
        enforcer.to_memory_format(torch.channels_last)
    if topology_update is not None and enforcer.mask is None:
        raise ValueError("topology_update needs a masked model: apply a mask first "
                         "(e.g. paizoo.prune(model, 'random', sparsity=0.9, apply=True))")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, config)
    step = 0
    updates = 0
    epoch = 0

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            log.write({"event": "stopped", "step": step})
            raise TrainingStopped(f"training stopped by the caller at step {step} (epoch "
                                  f"{epoch + 1} of {config.epochs})")

    def on_step() -> None:
        nonlocal step, updates
        step += 1
        check_stop()
        if step < config.warmup_steps:  # linear warm-up: the next step's rate
            for group in optimizer.param_groups:
                group["lr"] = config.lr_at_step(epoch, step)
        if topology_update is None:
            return
        assert enforcer.mask is not None
        new = topology_update(step, model, optimizer, enforcer.mask)
        if new is not None:
            _replace_mask(enforcer, new)
            updates += 1
    start_record = {
        "event": "start", "config": config.to_dict(), "train_hash": config.hash(),
        "seed": seed, "device": str(device),
        "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
        "channels_last": channels_last, "mask_mode": mask_mode,
        "params": sum(p.numel() for p in params),
        "masked": enforcer.active, "train_samples": train_batches.num_samples,
        "test_samples": test_batches.num_samples, "vectorised_batches": train_batches.vectorised,
        **(log_context or {}),
    }
    if enforcer.mask is not None:
        start_record["kept"] = enforcer.mask.num_kept
        start_record["density"] = enforcer.mask.density
    log.write(start_record)
    wb = WandbLog(wandb, {**config.to_dict(), "seed": seed, **(log_context or {})})

    history: list[EpochMetrics] = []
    diverged: Divergence | None = None
    # how often (in steps) the loss is checked for NaN/inf: each check syncs a CUDA device
    check_every = 1 if device.type == "cpu" else 25
    train_time = eval_time = 0.0
    cuda_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(int(seed))
            bar = tqdm(range(config.epochs), desc="epochs", unit="ep", disable=disable,
                       leave=False)
            for epoch in bar:
                check_stop()
                lr = config.lr_at(epoch)
                for group in optimizer.param_groups:
                    group["lr"] = config.lr_at_step(epoch, step)
                t0 = time.perf_counter()
                first_step = step
                loss_avg, acc, bad = _train_epoch(
                    model, train_batches, optimizer, enforcer, scaler, autocast,
                    desc=f"epoch {epoch + 1}/{config.epochs}", disable=disable, on_step=on_step,
                    check_every=check_every, grad_clip=config.grad_clip)
                if bad is not None:
                    diverged = Divergence(epoch=epoch + 1, step=first_step + bad + 1,
                                          reason=NONFINITE)
                    enforcer.clear_pruned()  # NaN * 0 is NaN: pruned weights back to exact 0
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t1 = time.perf_counter()
                test_loss, test_acc = evaluate(model, test_batches, autocast)
                t2 = time.perf_counter()
                train_time += t1 - t0
                eval_time += t2 - t1
                metrics = EpochMetrics(epoch=epoch + 1, lr=lr, train_loss=loss_avg,
                                       train_acc=acc, test_loss=test_loss, test_acc=test_acc,
                                       train_time_s=t1 - t0, eval_time_s=t2 - t1)
                history.append(metrics)
                log.write({"event": "epoch", **metrics.to_dict()})
                wb.log({k: v for k, v in metrics.to_dict().items() if k != "epoch"},
                       step=epoch + 1)
                bar.set_postfix(loss=f"{loss_avg:.3f}", test=f"{test_acc:.2%}")
                if on_epoch is not None:
                    on_epoch(metrics)
                if diverged is not None:
                    log.write({"event": "diverged", **diverged.to_dict()})
                    break
        check = enforcer.finish()
        result = TrainResult(history=history, train_time_s=train_time, eval_time_s=eval_time,
                             device=str(device),
                             amp=str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
                             mask_check=check, diverged=diverged)
        if topology_update is not None:
            result.extra["topology_updates"] = updates
        end = {"event": "end", "final_test_acc": result.final_test_acc,
               "best_test_acc": result.best_test_acc, "best_epoch": result.best_epoch,
               "train_time_s": train_time, "eval_time_s": eval_time,
               "mask_check": check.to_dict() if check else None,
               "diverged": diverged.to_dict() if diverged else None}
        log.write(end)
        wb.summary({k: v for k, v in end.items() if k != "event"})
        return result
    finally:
        if channels_last:
            model.to(memory_format=torch.contiguous_format)
        log.close()
        wb.finish()


def _train_epoch(
    model: nn.Module,
    batches: Batches,
    optimizer: torch.optim.Optimizer,
    enforcer: MaskEnforcer,
    scaler: torch.amp.GradScaler | None,
    autocast: Callable[[], AbstractContextManager[Any]],
    *,
    desc: str,
    disable: bool | None,
    on_step: Callable[[], None] | None = None,
    check_every: int = 1,
    grad_clip: float = 0.0,
) -> tuple[float, float, int | None]:
    """One pass over ``batches``; returns the running mean loss and accuracy, and the 0-based
    index of the first step whose loss was not finite (the pass stops at the next check, every
    ``check_every`` steps and at the end), else ``None``."""
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=batches.device)
    correct = torch.zeros((), dtype=torch.int64, device=batches.device)
    n = 0
    unchecked: list[torch.Tensor] = []  # losses since the last check (no device sync per step)
    checked = 0
    bad: int | None = None
    with tqdm(batches, desc=desc, unit="batch", leave=False, disable=disable) as bar:
        for x, y in bar:
            with autocast():
                out = model(x)
                loss = F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if grad_clip:
                    scaler.unscale_(optimizer)
                    enforcer.clip_grad_norm(grad_clip)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if grad_clip:
                    enforcer.clip_grad_norm(grad_clip)
                optimizer.step()
            enforcer.after_step()
            if on_step is not None:
                on_step()
            with torch.no_grad():
                loss_sum += loss.detach().double() * len(y)
                correct += (out.argmax(1) == y).sum()
            n += len(y)
            unchecked.append(loss.detach())
            if len(unchecked) >= check_every:
                bad = _first_nonfinite(unchecked, checked)
                checked += len(unchecked)
                unchecked = []
                if bad is not None:
                    break
    if bad is None and unchecked:
        bad = _first_nonfinite(unchecked, checked)
    mean_loss = float(loss_sum) / max(n, 1)
    if not math.isfinite(mean_loss):
        mean_loss = float("nan")
    return mean_loss, int(correct) / max(n, 1), bad


def _first_nonfinite(losses: list[torch.Tensor], offset: int) -> int | None:
    """``offset`` + the index of the first non-finite loss in ``losses`` (one sync), or None."""
    finite = torch.isfinite(torch.stack(losses).float())
    if bool(finite.all()):
        return None
    return offset + int((~finite).nonzero()[0, 0])


@torch.no_grad()
def _replace_mask(enforcer: MaskEnforcer, mask: Mask) -> None:
    """Make ``mask`` (same names and shapes) the mask ``enforcer`` enforces from now on.

    Project mode: the enforcer's multiplier tensors are overwritten in place and the weights
    projected at once. Hook mode: the modules' ``*_mask`` buffers are overwritten and the
    effective weights recomputed, so the next forward pass and :meth:`MaskEnforcer.finish` see the
    new mask.
    """
    old = enforcer.mask
    if old is None:
        raise ValueError("the model carries no mask to replace")
    old._check_same_layout(mask)
    if enforcer.mode == "project":
        for target, name in zip(enforcer._masks, old, strict=True):
            target.copy_(mask[name].to(device=target.device, dtype=target.dtype))
    else:
        for name, uses in _masked_uses(enforcer.model, old).items():
            for module, attr in uses:  # every module using a tied tensor
                buf = getattr(module, f"{attr}_mask")
                buf.copy_(mask[name].to(device=buf.device, dtype=buf.dtype))
                setattr(module, attr, getattr(module, f"{attr}_orig") * buf)
    enforcer.mask = Mask({n: mask[n] for n in old})
    enforcer.after_step()
