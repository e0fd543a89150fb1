"""Checking every entry of a grid before anything runs.

A typo in a pruner option (``distribution: zzz``, ``bogus: 1``) or a model argument would
otherwise surface only when the runner reaches that entry, after hours of other runs.
:func:`validate_entries` constructs every pruner with its options and builds every model with
its arguments for the dataset, on the CPU, and feeds it one batch of two zero images of the
dataset's input shape, so a model that cannot take the dataset's images fails here too.
Nothing is trained and no data is read.

The CPU, not PyTorch's ``meta`` device: the first meta operation of a process imports
``torch._dynamo`` and SymPy (about 1.2 CPU-seconds), while building and running every model of
the zoo on the CPU takes about as long in all; a driver handing runs to Ray or SLURM workers
never needs those imports itself. A model that cannot be built on this machine's CPU (too
large for its memory) is checked on the ``meta`` device instead.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import PaizooError
from ..results.record import DENSE, RunSpec
from ..training.config import ConfigError
from .config import LeaderboardConfig


def validate_entries(config: LeaderboardConfig, dataset: str | None = None) -> None:
    """Raise one :class:`~paizoo.training.ConfigError` naming every bad (model, pruner) entry of
    ``config`` for ``dataset`` (default: the config's dataset); return ``None`` if all are fine.
    """
    from ..data import dataset_info
    from ..pruners import create_pruner

    dataset = dataset or config.dataset
    config.pruner_requirements()  # unknown pruner names, listed together
    problems = []
    for p in config.pruners:
        try:
            create_pruner(p.name, **p.config)
        except Exception as exc:  # any failure to construct it is a config problem
            problems.append(f"pruners[{p.label}]: {_one_line(exc)}")
    info = dataset_info(dataset)
    for m in config.models:
        spec = RunSpec(dataset=dataset, model=m.name, pruner=DENSE, sparsity=0.0,
                       seed=config.seeds[0], train=config.train_for(m, dataset),
                       model_config=m.config)
        try:
            _check_model(spec, info)
        except Exception as exc:
            problems.append(f"models[{m.label}] ({m.name} with {dict(m.config)}) on {dataset} "
                            f"{tuple(info.input_shape)}: {_one_line(exc)}")
    if problems:
        raise ConfigError(f"{config.name}: {len(problems)} bad entr"
                          f"{'y' if len(problems) == 1 else 'ies'}, nothing was run: "
                          + "; ".join(problems) + ". Fix the config (see `paizoo pruners`, "
                          "`paizoo models` and each one's docstring)")


def _check_model(spec: RunSpec, info: Any) -> None:
    """Build ``spec``'s model on the CPU and run one batch through it; if that fails, do the
    same on the meta device (shapes only, no memory), so that a model too large for this
    machine is not a false alarm: a bad entry fails both ways and the meta error is raised.
    """
    from ..training.experiment import build_model

    try:
        with torch.device("cpu"), torch.no_grad():
            build_model(spec, info).eval()(torch.zeros(2, *info.input_shape))
    except Exception:
        with torch.device("meta"), torch.no_grad():
            build_model(spec, info).eval()(torch.empty(2, *info.input_shape))


def _one_line(exc: BaseException) -> str:
    """The error on one line; built-in exception types are named (``TypeError: ...``)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if isinstance(exc, PaizooError) else f"{type(exc).__name__}: {text}"
