"""Cost of one run of the multi-architecture Fashion-MNIST corpus, per architecture, on 1x28x28.

    OMP_NUM_THREADS=1 python benchmarks/bench_archs.py [--train-samples 5000] [--threads 1]
        [--models lenet5,resnet8_narrow] [--pruners snip,ntksap] [--sparsity 0.9]

For each model of ``leaderboards/fashion-mnist-archs.yaml`` (default) it times, with paizoo's own
training loop (:func:`paizoo.training.train`, SGD, batch 128, channels-last on CPU like the
leaderboard runner): one training epoch over ``--train-samples`` Fashion-MNIST training images
(reported per 1,000 samples) and one evaluation of the 10,000 test images; then one
``paizoo.prune`` call at ``--sparsity`` for each pruner in ``--pruners`` (default: the pruners of
the grid; data-driven ones get the grid's pruning batches). LeNet-5 is the baseline row: the
leaderboard's committed Fashion-MNIST runs give its full-epoch cost (about 6 s on an idle core).
Needs the Fashion-MNIST files (``paizoo datasets``).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from paizoo.data import load_dataset, pruning_batches
from paizoo.masks import LayerCollapseWarning
from paizoo.models import MODEL_FAMILIES, create_model
from paizoo.training import TrainConfig, train
from paizoo.training.experiment import prune_for  # noqa: F401 - same code path as the runner

MODELS = ["lenet_300_100", "mlp_1x512", "mlp_4x128", "lenet5", "lenet5_caffe", "vgg_mini_bn",
          "resnet8_narrow", "mobilenet_mini"]
PRUNERS = ["random", "magnitude", "snip", "grasp", "synflow", "expander", "iterative_snip",
           "force", "prospr", "ntksap", "phew", "dey"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-samples", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--pruners", default=",".join(PRUNERS))
    ap.add_argument("--sparsity", type=float, default=0.9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train_set = load_dataset("fashion-mnist", split="train")
    test_set = load_dataset("fashion-mnist", split="test")
    subset = train_set.subset(torch.arange(args.train_samples))
    pruners = [p for p in args.pruners.split(",") if p]
    print(f"threads {torch.get_num_threads()}, {args.train_samples} training samples, "
          f"sparsity {args.sparsity}")
    header = (f"{'model':16s} {'family':10s} {'params':>9s} {'train s/1k':>10s} "
              f"{'eval s/10k':>10s}  " + " ".join(f"{p[:9]:>9s}" for p in pruners))
    print(header)
    print("-" * len(header))
    for name in args.models.split(","):
        model = create_model(name, in_channels=1, input_size=28, seed=0)
        params = sum(p.numel() for p in model.parameters())
        config = TrainConfig(epochs=1, lr=0.01, weight_decay=5e-4)
        result = train(model, subset, test_set, config, progress=False)
        per_1k = result.train_time_s / args.train_samples * 1000
        times = []
        for pruner in pruners:
            if pruner == "dey" and MODEL_FAMILIES[name] != "mlp":
                times.append("-")
                continue
            fresh = create_model(name, in_channels=1, input_size=28, seed=0)
            data = pruning_batches(train_set, pruner, num_classes=10, seed=0)
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", LayerCollapseWarning)
                    from paizoo import prune

                    prune(fresh, pruner, sparsity=args.sparsity, data=data,
                          input_shape=(1, 28, 28), seed=0, progress=False)
                times.append(f"{time.perf_counter() - start:.2f}")
            except Exception as exc:  # report and go on: the table shows which pruner fails
                times.append("ERR")
                print(f"  {name} {pruner}: {type(exc).__name__}: {exc}")
        print(f"{name:16s} {MODEL_FAMILIES[name]:10s} {params:9,d} {per_1k:10.3f} "
              f"{result.eval_time_s:10.2f}  " + " ".join(f"{t:>9s}" for t in times), flush=True)


if __name__ == "__main__":
    main()
