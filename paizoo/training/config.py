"""Training and pruning-data configurations: validated dataclasses with a stable hash.

:class:`TrainConfig` holds everything that changes what a training run computes (optimiser,
schedule, epochs, batch size, augmentation, mixed precision); settings that only change how fast
or where it runs (device, evaluation batch size, loader workers) are kept out of its
:meth:`~TrainConfig.hash`, which keys runs in the results store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from ..errors import PaizooError

Optimizer = Literal["sgd", "adam", "adamw"]
LRSchedule = Literal["step", "cosine", "constant"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("step", "cosine", "constant")


class ConfigError(PaizooError, ValueError):
    """A training, pruning-data or leaderboard configuration is invalid."""


C = TypeVar("C")


def from_mapping(cls: type[C], data: Mapping[str, Any] | None, where: str) -> C:
    """Build the dataclass ``cls`` from ``data``, rejecting unknown keys with a clear message.

    ``where`` names the place in the configuration (e.g. ``"train"``) for error messages.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of options, got {type(data).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {', '.join(map(repr, unknown))}; "
                          f"valid options are {', '.join(names)}")
    try:
        return cls(**data)
    except TypeError as exc:  # a missing required field
        raise ConfigError(f"{where}: {exc}") from exc


def _canonical(value: Any) -> Any:
    """JSON-ready canonical form: tuples -> lists, floats normalised, mapping keys sorted."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return float(repr(value)) if math.isfinite(value) else repr(value)
    return str(value)


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for hashing and store keys."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))


def short_hash(value: Any, length: int = 12) -> str:
    """First ``length`` hex digits of the SHA-256 of :func:`canonical_json` of ``value``."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]


def _check(cond: bool, where: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {message}")


@dataclass(frozen=True)
class TrainConfig:
    """How a (masked) network is trained.

    Attributes:
        epochs: passes over the training set.
        batch_size: training mini-batch size.
        optimizer: ``"sgd"`` (with ``momentum``/``nesterov``), ``"adam"`` or ``"adamw"``.
        lr: initial learning rate.
        momentum: SGD momentum (ignored by Adam).
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (decoupled for AdamW, coupled otherwise, as in torch.optim).
        betas: Adam/AdamW betas.
        schedule: learning-rate schedule, applied per epoch: ``"step"`` (multiply by ``gamma`` at
            each of ``milestones``), ``"cosine"`` (lr_e = lr (1 + cos(pi e / E)) / 2, Loshchilov &
            Hutter 2017) or ``"constant"``.
        milestones: epochs (0-based count of finished epochs) where the step schedule drops.
        gamma: the step schedule's drop factor.
        augment: train with the dataset's augmentation (random crop + flip for CIFAR).
        amp: mixed precision; ``None`` = on when training on CUDA (bfloat16 when supported,
            else float16 with a gradient scaler), never on CPU.
        channels_last: train models with 2-D convolutions in the channels-last memory layout;
            ``None`` = on CPU, where oneDNN's channels-last kernels are faster (LeNet-5 training
            step about 1.3-1.5x faster, measured with ``benchmarks/bench_masked_step.py``),
            except for a masked model in hook mode. The layout changes float rounding only, not
            the computation (not part of the hash, like ``device``); the model is handed back in
            the default layout.
        eval_batch_size: batch size for evaluation (not part of the hash).
        num_workers: DataLoader workers when the dataset is not an in-memory tensor dataset
            (not part of the hash).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` = CUDA when available (not part
            of the hash: the same run on another device is the same cell of a leaderboard).
        warmup_steps: linear learning-rate warm-up over the first ``warmup_steps`` optimiser
            steps (counted across epochs): step ``t`` (0-based) uses the scheduled rate times
            ``(t + 1) / warmup_steps`` (see :meth:`lr_at_step`); 0 = none. Left out of the hash
            at 0, so configs without warm-up keep their hash.
        train_subset: train on the first ``train_subset`` samples of the training split, in the
            split's stored order (data-driven pruners draw their batches from the same subset);
            0 = the whole split. Left out of the hash at 0.
        grad_clip: clip the global L2 norm of the gradient (of the weights training updates:
            pruned weights' gradients are zeroed first) to ``grad_clip`` before every optimiser
            step (:func:`torch.nn.utils.clip_grad_norm_`); 0 = no clipping. Guards against the
            exploding first steps of some pruned networks (a mask that leaves a layer's kept
            weights mostly positive can start at a loss of hundreds). Left out of the hash at 0.
    """

    epochs: int = 10
    batch_size: int = 128
    optimizer: Optimizer = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: LRSchedule = "cosine"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    augment: bool = False
    amp: bool | None = None
    channels_last: bool | None = None
    eval_batch_size: int = 1024
    num_workers: int = 0
    device: str | None = None
    warmup_steps: int = 0
    train_subset: int = 0
    grad_clip: float = 0.0

    #: fields that do not change the computed result and stay out of :meth:`hash`
    UNHASHED: ClassVar[tuple[str, ...]] = ("eval_batch_size", "num_workers", "device",
                                           "channels_last")
    #: fields added later, left out of :meth:`hash` while at these defaults (so the hash of every
    #: config written before they existed is unchanged)
    HASHED_UNLESS_DEFAULT: ClassVar[dict[str, Any]] = {"warmup_steps": 0, "train_subset": 0,
                                                        "grad_clip": 0.0}

    def __post_init__(self) -> None:
        w = "train"
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones or ()))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        for name in ("lr", "momentum", "weight_decay", "gamma", "grad_clip"):
            value = getattr(self, name)
            _check(isinstance(value, (int, float)) and not isinstance(value, bool)
                   and math.isfinite(value), w, f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("epochs", "batch_size", "eval_batch_size", "num_workers", "warmup_steps",
                     "train_subset"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool), w,
                   f"{name} must be an integer, got {value!r}")
        _check(self.epochs >= 1, w, f"epochs must be >= 1, got {self.epochs}")
        _check(self.batch_size >= 1, w, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.eval_batch_size >= 1, w, "eval_batch_size must be >= 1")
        _check(self.num_workers >= 0, w, "num_workers must be >= 0")
        _check(self.warmup_steps >= 0, w, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(self.train_subset >= 0, w,
               f"train_subset must be >= 0 (0 = the whole split), got {self.train_subset}")
        _check(self.optimizer in OPTIMIZERS, w,
               f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        _check(self.schedule in SCHEDULES, w,
               f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        _check(self.lr > 0, w, f"lr must be > 0, got {self.lr}")
        _check(self.grad_clip >= 0, w,
               f"grad_clip must be >= 0 (0 = no clipping), got {self.grad_clip}")
        _check(0 <= self.momentum < 1, w, f"momentum must be in [0, 1), got {self.momentum}")
        _check(self.weight_decay >= 0, w, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(0 < self.gamma <= 1, w, f"gamma must be in (0, 1], got {self.gamma}")
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), w,
               f"betas must be two numbers in [0, 1), got {self.betas}")
        _check(not (self.nesterov and (self.optimizer != "sgd" or self.momentum == 0)), w,
               "nesterov needs optimizer 'sgd' with momentum > 0")
        _check(list(self.milestones) == sorted(set(self.milestones)), w,
               f"milestones must be strictly increasing, got {list(self.milestones)}")
        _check(all(0 < m < self.epochs for m in self.milestones), w,
               f"milestones must lie in 1..epochs-1 = 1..{self.epochs - 1}, got "
               f"{list(self.milestones)}")
        _check(self.schedule == "step" or not self.milestones, w,
               f"milestones are only used by schedule 'step' (schedule is {self.schedule!r})")
        _check(self.amp is None or isinstance(self.amp, bool), w, "amp must be true, false or null")
        _check(self.channels_last is None or isinstance(self.channels_last, bool), w,
               "channels_last must be true, false or null")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "train") -> TrainConfig:
        return from_mapping(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        out["betas"] = list(self.betas)
        return out

    def hashed_dict(self) -> dict[str, Any]:
        """The fields that define the result: everything but :attr:`UNHASHED` and the
        :attr:`HASHED_UNLESS_DEFAULT` fields that are at their default."""
        return {k: v for k, v in self.to_dict().items() if k not in self.UNHASHED
                and not (k in self.HASHED_UNLESS_DEFAULT and v == self.HASHED_UNLESS_DEFAULT[k])}

    def hash(self) -> str:
        """Stable 12-hex-digit hash of :meth:`hashed_dict` (the results store's training key)."""
        return short_hash(self.hashed_dict())

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during ``epoch`` (0-based)."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "step":
            drops = sum(1 for m in self.milestones if epoch >= m)
            return self.lr * self.gamma ** drops
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))

    def lr_at_step(self, epoch: int, step: int) -> float:
        """Learning rate of optimiser step ``step`` (0-based, counted across epochs), taken during
        ``epoch`` (0-based): :meth:`lr_at` times the warm-up factor
        ``min(1, (step + 1) / warmup_steps)``."""
        lr = self.lr_at(epoch)
        if step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        return lr

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class PruneDataConfig:
    """Which training samples data-driven pruners (SNIP, GraSP, ...) see.

    Passed to ``paizoo.data.pruning_batches``: ``num_batches`` batches of ``batch_size``, with
    ``samples_per_class`` samples of each class for pruners that sample class-balanced data
    (GraSP's protocol, Wang et al. 2020; SynFlow's code uses 10 per class, Tanaka et al. 2020).
    """

    batch_size: int = 256
    samples_per_class: int = 10
    num_batches: int = 1

    def __post_init__(self) -> None:
        for name in ("batch_size", "samples_per_class", "num_batches"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                   "pruning_data", f"{name} must be an integer >= 1, got {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None,
                  where: str = "pruning_data") -> PruneDataConfig:
        return from_mapping(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

