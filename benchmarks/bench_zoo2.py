"""Mask time of ProsPr, NTK-SAP, PHEW, Dey's patterns, iterative SNIP and FORCE on LeNet-5 and
ResNet-20.

    python benchmarks/bench_zoo2.py [--sparsity 0.9] [--device cpu] [--threads N] [--quick]
                                    [--pruners prospr,force]

Times one ``paizoo.prune`` call per row (after one untimed warm-up call on a tiny model), with
the pruners' default settings unless ``--quick`` (NTK-SAP with 2 rounds x 1 draw). ProsPr gets
one synthetic batch of 128 samples (so do iterative SNIP and FORCE: 60 rounds on that one
batch, as the official FORCE code's CIFAR runs; random inputs and labels: timing only, nothing is
downloaded). Models come from ``paizoo.models.create_model``; rows whose model is not in the
zoo are skipped with a message.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import paizoo
from paizoo.models import create_model

MODELS = {
    "lenet5": (dict(in_channels=1, input_size=28), (1, 28, 28)),
    "resnet20": ({}, (3, 32, 32)),
}


def rows(quick: bool) -> list[tuple[str, str, dict]]:
    ntk = dict(rounds=2, draws=1) if quick else {}
    return [
        ("prospr", "M=3, full", {}),
        ("prospr", "M=3, first order", dict(first_order=True)),
        ("ntksap", "T=2, R=1" if quick else "T=20, R=5", ntk),
        ("phew", "", {}),
        ("dey", "basic", dict(pattern="basic")),
        ("dey", "clash_free type 2", dict(pattern="clash_free")),
        ("iterative_snip", "T=60", {}),
        ("force", "T=60", {}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--pruners", default=None, help="comma-separated subset of the rows")
    args = parser.parse_args()
    chosen = set(args.pruners.split(",")) if args.pruners else None
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    warm = nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).to(device)
    for name, _, config in rows(True):
        data = (torch.randn(4, 4, device=device), torch.randint(0, 2, (4,), device=device))
        paizoo.prune(warm, name, sparsity=0.5, data=data, input_shape=(4,), **config)

    print(f"device {device}, sparsity {args.sparsity}, torch threads {torch.get_num_threads()}")
    header = (f"{'model':<9} {'pruner':<14} {'config':<18} {'kept':>9} {'total':>9} "
              f"{'time (s)':>9}")
    print(header)
    print("-" * len(header))
    for model_name, (kwargs, shape) in MODELS.items():
        try:
            model = create_model(model_name, seed=0, **kwargs).to(device)
        except Exception as exc:  # the model zoo may not have it yet
            print(f"{model_name:<9} skipped: {exc}")
            continue
        g = torch.Generator().manual_seed(0)
        x = torch.randn(args.batch, *shape, generator=g).to(device)
        y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
        for name, label, config in rows(args.quick):
            if chosen is not None and name not in chosen:
                continue
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            try:
                mask = paizoo.prune(model, name, sparsity=args.sparsity, data=(x, y),
                                    input_shape=shape, progress=False, **config)
            except Exception as exc:
                print(f"{model_name:<9} {name:<14} {label:<18} failed: {exc}")
                continue
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            print(f"{model_name:<9} {name:<14} {label:<18} {mask.num_kept:>9,} "
                  f"{mask.num_total:>9,} {elapsed:>9.2f}")


if __name__ == "__main__":
    main()
