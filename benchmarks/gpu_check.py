"""GPU check, for a machine with CUDA (exits cleanly with a message on one without).

    PYTHONPATH=. python benchmarks/gpu_check.py [--dataset fashion-mnist] [--epochs 2]
        [--packing 1 2 4 8] [--runs 16] [--pack-model lenet5] [--pack-epochs 2]
        [--packer auto|ray|processes] [--synflow-rounds 100] [--checks 1 2 3 4]

1. **Masked training on CUDA** (AMP as `paizoo train` uses it: on by default on CUDA): one SNIP
   run of LeNet-300-100 at 90% sparsity, trained on the GPU and, with the same seed, on the
   CPU. Checks that every pruned weight is exactly 0 after training on the GPU (read from the
   model, independently of the trainer's own mask check) and that the test accuracies agree
   within 2 points (AMP and CUDA kernels are not bit-identical to the CPU).
2. **Data-free masks on CPU and GPU**: random, magnitude and SynFlow masks of the same
   freshly initialised model, computed on each device; counts the entries that differ.
3. **Packed runs per GPU**: ``--runs`` dense runs (``--pack-model``, ``--pack-epochs``) of a
   grid, N at a time on one GPU, for each N of ``--packing``; prints runs per minute and the
   speed-up over N = 1. ``--packer ray``: a local Ray cluster with one GPU, each run asking for
   ``1/N`` of it (fractional ``gpus``); ``--packer processes``: N ``paizoo leaderboard run
   --device cuda`` processes sharing one store (they claim runs with leases, as on a cluster
   without Ray); ``auto`` (default): Ray when it is installed, else processes.
4. **SynFlow at ImageNet scale on the GPU**: timm resnet50 at 3x224x224 (``zero_init_last=False``),
   sparsity 0.99, ``--synflow-rounds`` rounds, in float64, scaled32 and float32: seconds, and the
   mask's IoU with the float64 one (0 rounds skips it).

Figures from an H200: ``benchmarks/results/gpu-check.txt``. Exit status 0 when every check
passes (or there is no GPU), 1 otherwise.
"""

from __future__ import annotations

import argparse
import operator
import shutil
import sys
import tempfile
import time
from pathlib import Path


def masked_training(dataset: str, epochs: int) -> bool:
    import torch

    from paizoo.results import RunSpec
    from paizoo.training import PruneDataConfig, TrainConfig, train
    from paizoo.training.experiment import build_model, load_experiment_data, prune_for

    accs, ok = {}, True
    for device in ("cuda", "cpu"):
        data = load_experiment_data(dataset, device=device)
        spec = RunSpec(dataset=data.name, model="lenet_300_100", pruner="snip", sparsity=0.9,
                       seed=0, train=TrainConfig(epochs=epochs, batch_size=128, lr=0.05,
                                                 momentum=0.9, device=device),
                       prune_data=PruneDataConfig())
        model = build_model(spec, data.info).to(device)
        mask, _ = prune_for(spec, model, data)
        mask.apply(model)
        result = train(model, data.train, data.test, spec.train, seed=spec.seed, progress=False)
        accs[device] = result.final.test_acc
        if device == "cuda":
            nonzero = 0
            for name in mask:
                weight = operator.attrgetter(name)(model).detach()
                nonzero += int((weight[mask[name].to(weight.device) == 0] != 0).sum())
            print(f"  CUDA run ({result.amp or 'no'} AMP): {mask.num_total - mask.num_kept} "
                  f"pruned weights, {nonzero} of them non-zero after training")
            ok &= nonzero == 0 and str(result.device).startswith("cuda")
        del model
        torch.cuda.empty_cache()
    gap = abs(accs["cuda"] - accs["cpu"])
    print(f"  test accuracy: CUDA {accs['cuda']:.2%}, CPU {accs['cpu']:.2%} "
          f"(gap {gap:.2%}, allowed 2.00%)")
    return ok and gap <= 0.02


def data_free_masks() -> bool:
    import copy

    from paizoo.api import prune
    from paizoo.models import create_model

    ok = True
    for pruner in ("random", "magnitude", "synflow"):
        masks = {}
        for device in ("cpu", "cuda"):
            model = copy.deepcopy(create_model("lenet5", num_classes=10, in_channels=1,
                                               input_size=28, seed=0)).to(device)
            masks[device] = prune(model, pruner, sparsity=0.98, input_shape=(1, 28, 28), seed=0,
                                  progress=False).cpu()
        differ = sum(int((masks["cpu"][n] != masks["cuda"][n]).sum()) for n in masks["cpu"])
        print(f"  {pruner:<10} {differ} of {masks['cpu'].num_total} mask entries differ")
        ok &= differ == 0
    return ok


def packed_grid(n: int, dataset: str, model: str, epochs: int, runs: int, device: str, *,
                ray_gpus: bool) -> dict:
    """The grid of check 3: ``runs`` dense runs (one seed each); with ``ray_gpus`` each asks Ray
    for ``1/n`` of a GPU."""
    entry: dict = {"name": model}
    if ray_gpus:
        entry["resources"] = {"cpus": 1, "gpus": 1 / n}
    return {"name": f"packed{n}", "dataset": dataset, "models": [entry], "pruners": [],
            "seeds": list(range(runs)),
            "train": {"epochs": epochs, "batch_size": 128, "lr": 0.05, "device": device}}


def packed_runs_processes(dataset: str, packing: list[int], runs: int,
                          device: str = "cuda", model: str = "lenet_300_100",
                          epochs: int = 1) -> None:
    """N runner processes on one SQLite store per N (leases share the grid), all on ``device``."""
    import os
    import sqlite3
    import subprocess

    import yaml

    work = Path(tempfile.mkdtemp(prefix="paizoo-gpu-check-"))
    rates: dict[int, float] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        for n in packing:
            config = work / f"packed{n}.yaml"
            config.write_text(yaml.safe_dump(
                packed_grid(n, dataset, model, epochs, runs, device, ray_gpus=False)))
            store = work / f"p{n}" / "paizoo.db"
            command = [sys.executable, "-m", "paizoo", "leaderboard", "run", str(config),
                       "--store", str(store), "--device", device, "--threads", "1",
                       "--no-render", "--quiet"]
            start = time.perf_counter()
            procs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for _ in range(n)]
            errors = [p.communicate()[1] for p in procs]
            seconds = time.perf_counter() - start
            failed = [e for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
            if failed:
                raise RuntimeError(f"a runner process failed: {failed[0][-2000:]}")
            with sqlite3.connect(store) as db:
                recorded = db.execute(
                    "SELECT COUNT(*), COUNT(DISTINCT run_key) FROM runs").fetchone()
            assert recorded == (runs, runs), f"{recorded} rows for {runs} runs"
            rates[n] = 60 * runs / seconds
            print(f"  {n} process(es) on {device}: {runs} runs in {seconds:.1f} s = "
                  f"{rates[n]:.1f} runs/min ({rates[n] / rates[packing[0]]:.2f}x), each run "
                  "recorded once", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def synflow_at_scale(rounds: int) -> bool:
    """SynFlow on timm resnet50 at 224 on the GPU in each precision: finite, time, IoU."""
    import torch

    import paizoo
    from paizoo.errors import ScoreError

    try:
        import timm
    except ImportError:
        print("  skipped: timm is not installed")
        return True
    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, zero_init_last=False).cuda()
    masks, ok = {}, True
    for precision in ("float64", "scaled32", "float32"):
        torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            masks[precision] = paizoo.prune(model, "synflow", sparsity=0.99,
                                            input_shape=(3, 224, 224), precision=precision,
                                            rounds=rounds, progress=False)
        except ScoreError as exc:
            print(f"  {precision:<9} fails: {str(exc)[:120]}")
            ok &= precision == "float32"  # plain float32 overflows on resnet50; the others must not
            continue
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        iou = masks[precision].iou(masks["float64"]) if "float64" in masks else float("nan")
        print(f"  {precision:<9} {rounds} rounds in {seconds:6.1f} s, IoU with float64 "
              f"{iou:.4f}", flush=True)
    return ok


def packed_runs(dataset: str, packing: list[int], runs: int, model: str = "lenet_300_100",
                epochs: int = 1) -> None:
    import ray

    from paizoo.leaderboard import parse_config, run_leaderboard
    from paizoo.leaderboard.ray_executor import RayExecutor
    from paizoo.results import open_store

    work = Path(tempfile.mkdtemp(prefix="paizoo-gpu-check-"))
    executor = RayExecutor(num_gpus=1)
    executor.start()
    rates = {}
    try:
        for n in packing:
            config = parse_config(packed_grid(n, dataset, model, epochs, runs, "cuda",
                                              ray_gpus=True))
            start = time.perf_counter()
            report = run_leaderboard(config, open_store(work / f"p{n}" / "paizoo.db"),
                                     executor=RayExecutor(), progress=False,
                                     echo=lambda _m: None)
            seconds = time.perf_counter() - start
            assert len(report.ran) == runs
            rates[n] = 60 * runs / seconds
            print(f"  {n} run(s) per GPU: {runs} runs in {seconds:.1f} s = {rates[n]:.1f} "
                  f"runs/min ({rates[n] / rates[packing[0]]:.2f}x)")
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist",
                        help="falls back to digits when not installed")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--packing", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--packer", choices=("auto", "ray", "processes"), default="auto")
    parser.add_argument("--pack-model", default="lenet5",
                        help="the model of the packed runs (dense, --pack-epochs epochs each)")
    parser.add_argument("--pack-epochs", type=int, default=2)
    parser.add_argument("--checks", type=int, nargs="+", default=[1, 2, 3, 4],
                        help="which of the four checks to run")
    parser.add_argument("--synflow-rounds", type=int, default=100,
                        help="SynFlow rounds on resnet50@224 (0 skips the check)")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing "
              "to check. Run it on a machine with a GPU.")
        return 0
    from paizoo.data import load_dataset
    from paizoo.errors import DatasetNotFoundError

    dataset = args.dataset
    try:
        load_dataset(dataset, split="test")
    except DatasetNotFoundError:
        print(f"{dataset} is not installed; using digits")
        dataset = "digits"
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
          f"dataset {dataset}")
    ok = True
    if 1 in args.checks:
        print("1. masked training on CUDA vs CPU", flush=True)
        ok &= masked_training(dataset, args.epochs)
    if 2 in args.checks:
        print("2. data-free masks on CPU and CUDA", flush=True)
        ok &= data_free_masks()
    packer = args.packer
    if packer == "auto":
        try:
            import ray  # noqa: F401
            packer = "ray"
        except ImportError:
            packer = "processes"
    where = f"{args.runs} dense {args.pack_model} runs of {args.pack_epochs} epoch(s)"
    if 3 in args.checks and packer == "ray":
        print(f"3. packed runs per GPU (Ray, fractional gpus): {where}", flush=True)
        packed_runs(dataset, args.packing, args.runs, args.pack_model, args.pack_epochs)
    elif 3 in args.checks:
        print(f"3. packed runs per GPU (runner processes sharing one store): {where}", flush=True)
        packed_runs_processes(dataset, args.packing, args.runs, model=args.pack_model,
                              epochs=args.pack_epochs)
    if 4 in args.checks and args.synflow_rounds:
        print("4. SynFlow, timm resnet50 at 3x224x224, sparsity 0.99, on the GPU", flush=True)
        ok &= synflow_at_scale(args.synflow_rounds)
    print("gpu_check: " + ("all checks passed" if ok else "SOME CHECKS FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
