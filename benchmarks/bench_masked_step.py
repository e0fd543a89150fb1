"""Masked vs dense training step: time ratio per model (target <= 1.05x).

For each model, three variants of one SGD training step (forward, cross-entropy, backward,
momentum + weight-decay step) on the same batch:

* ``dense``: the unpruned model;
* ``hook``: the model with a 90% magnitude mask applied in the ``torch.nn.utils.prune``
  convention (each forward recomputes ``weight = weight_orig * weight_mask``);
* ``project``: paizoo's default (:class:`paizoo.training.MaskEnforcer` in ``"project"`` mode):
  plain weights, projected onto the mask after each step with one ``_foreach_mul_``.

plus ``dense again``, a second identical dense model timed the same way: its ratio to ``dense``
shows the measurement noise, and ``dense contiguous``, the dense model in the default NCHW layout
(the models are timed in the layout ``paizoo.training.train`` uses: channels-last for conv nets on
CPU; ``--layout`` overrides it). The variants are timed in interleaved rounds and the median
round is reported, which keeps the comparison fair on a busy machine. Usage::

    python benchmarks/bench_masked_step.py                       # LeNet-300-100, LeNet-5, ResNet-20
    python benchmarks/bench_masked_step.py --models resnet20 vgg16_bn --device cuda --batch 128
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import paizoo
from paizoo.models import create_model
from paizoo.training import MaskEnforcer, TrainConfig
from paizoo.training.loop import use_channels_last

SHAPES = {  # model -> input shape and classes of its usual dataset
    "lenet_300_100": ((1, 28, 28), 10),
    "lenet5": ((1, 28, 28), 10),
    "conv6": ((3, 32, 32), 10),
    "resnet20": ((3, 32, 32), 10),
    "resnet32": ((3, 32, 32), 10),
    "resnet56": ((3, 32, 32), 10),
    "vgg11_bn": ((3, 32, 32), 10),
    "vgg16_bn": ((3, 32, 32), 10),
    "vgg19_bn": ((3, 32, 32), 100),
    "resnet18": ((3, 32, 32), 10),
    "wrn_28_2": ((3, 32, 32), 10),
}


def make_step(variant: str, name: str, device: torch.device, sparsity: float,
              channels_last: bool = False) -> Callable[[torch.Tensor, torch.Tensor], None]:
    shape, classes = SHAPES.get(name, ((3, 32, 32), 10))
    model: nn.Module = create_model(name, num_classes=classes, in_channels=shape[0], seed=0)
    model.to(device).train()
    enforcer = None
    if variant != "dense":
        paizoo.prune(model, "magnitude", sparsity=sparsity, apply=True)
        enforcer = MaskEnforcer(model, variant)  # type: ignore[arg-type]
    if channels_last:  # as paizoo.training.train does: after the enforcer, before the optimiser
        if enforcer is not None:
            enforcer.to_memory_format(torch.channels_last)
        else:
            model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if enforcer is not None:
            enforcer.after_step()

    return step


def uses_channels_last(name: str, device: torch.device) -> bool:
    """The layout ``paizoo.training.train`` picks for this model (project mode, default config)."""
    shape, classes = SHAPES.get(name, ((3, 32, 32), 10))
    model = create_model(name, num_classes=classes, in_channels=shape[0], seed=0)
    return use_channels_last(TrainConfig(), model, device, "project")


def bench(name: str, batch: int, device: torch.device, rounds: int, steps: int,
          sparsity: float, clock: Callable[[], float] = time.perf_counter,
          channels_last: bool = False) -> dict[str, float]:
    shape, classes = SHAPES.get(name, ((3, 32, 32), 10))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=g).to(device)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    variants = ("dense", "hook", "project", "dense again", "dense contiguous")
    fns = {v: make_step("dense" if v.startswith("dense") else v, name, device, sparsity,
                        channels_last=channels_last and v != "dense contiguous")
           for v in variants}
    for fn in fns.values():  # warm-up
        for _ in range(3):
            fn(x, y)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = clock()
            for _ in range(steps):
                fns[v](x, y)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[v].append((clock() - t0) / steps)
    return {v: statistics.median(t) for v, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["lenet_300_100", "lenet5", "resnet20"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=10, help="steps per round")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--layout", choices=["auto", "channels_last", "contiguous"], default="auto",
                   help="memory layout of the timed models (auto: as paizoo.training.train, "
                        "channels-last for conv nets on CPU)")
    p.add_argument("--wall", action="store_true",
                   help="on CPU, time wall-clock instead of process CPU time")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    # On a shared CPU the process's CPU time is far less noisy than wall-clock time (other
    # processes' load does not count); CUDA is always timed wall-clock after synchronising.
    cpu_clock = device.type == "cpu" and not args.wall
    clock = time.process_time if cpu_clock else time.perf_counter
    print(f"device {device}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"sparsity {args.sparsity}, {'CPU' if cpu_clock else 'wall-clock'} time, median of "
          f"{args.rounds} interleaved rounds x {args.steps} steps")
    header = (f"{'model':<15} {'layout':<8} {'dense ms':>9} {'hook ms':>9} {'project ms':>11} "
              f"{'hook/dense':>11} {'project/dense':>14} {'noise':>7} {'contiguous ms':>14}")
    print(header)
    print("-" * len(header))
    for name in args.models:
        last = uses_channels_last(name, device) if args.layout == "auto" else (
            args.layout == "channels_last")
        t = bench(name, args.batch, device, args.rounds, args.steps, args.sparsity, clock,
                  channels_last=last)
        print(f"{name:<15} {'NHWC' if last else 'NCHW':<8} {1e3 * t['dense']:>9.2f} "
              f"{1e3 * t['hook']:>9.2f} {1e3 * t['project']:>11.2f} "
              f"{t['hook'] / t['dense']:>10.3f}x {t['project'] / t['dense']:>13.3f}x "
              f"{t['dense again'] / t['dense']:>6.3f}x {1e3 * t['dense contiguous']:>14.2f}",
              flush=True)


if __name__ == "__main__":
    main()
