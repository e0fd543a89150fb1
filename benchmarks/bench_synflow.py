"""SynFlow at scale: float64 (the default until now) vs the power-of-two scaled float32 path.

For each model, SynFlow (100 rounds, exponential schedule, global scope, sparsity 0.99 unless
told otherwise) runs once per precision in the same process:

* ``float64``: the working copy in double precision;
* ``scaled32``: float32 with a power-of-two exponent per activation tensor
  (:mod:`paizoo.pruners._scaled`), the path that cannot overflow;
* ``float32``: plain float32 (the reference code's precision), which overflows on deep nets;
* ``float64-perturbed`` (on request): float64 on a copy whose prunable weights are multiplied by
  (1 + 2^-E u), u uniform in (-1, 1), E = ``--perturb-exponent`` (default 24): how far noise of
  float32's size alone moves the mask.

Columns: ``cpu s`` = CPU seconds of the process for the whole ``paizoo.prune`` call (the fairer
measure on a shared, oversubscribed machine), then its wall-clock seconds, split into forward (the
model on the all-ones input, scaled or not), backward (``autograd.grad`` of R), the rest of
``score`` (|theta * grad|, the finiteness check), ``select`` (the base class's top-k over the
eligible weights and the new mask) and the rest of the base-class loop (resetting the weights,
masks); ``x f64`` = float64 CPU seconds / this row's CPU seconds; ``IoU`` and ``differ`` compare
the final mask with the float64 one (intersection over union of the kept sets, and the number of
weights on which they differ); ``tied`` = in the last round, the number of eligible scores exactly
equal to the threshold score (the k-th largest), where the deterministic tie-break (lower index
wins) decides, and ``at thr`` = how many of the float64 kept/pruned decisions of that last round
sit within float32 rounding (relative 2^-20) of the float64 threshold.

``--baseline-rev REV`` adds a row ``float64@REV``: the float64 default with paizoo as of git
revision REV (``git archive`` into a temporary folder, run in a child process of the same
invocation, under the same load), and under each row of this code its speed-up over that
revision and the IoU of the two masks (1.0 when a speed-up left the result unchanged).

Models: timm ``resnet50`` at 3x224x224 (``pretrained=False``, ``zero_init_last=False`` so the
residual branches carry flow; 1000 classes) and paizoo's ``vgg16_bn`` at 3x32x32 (10 classes).
``--quick``: 10 rounds, resnet50 at 3x64x64. The machine is shared: the load average at the
start and end is printed with the table.

Usage::

    PYTHONPATH=. python benchmarks/bench_synflow.py                     # full table (slow)
    PYTHONPATH=. python benchmarks/bench_synflow.py --quick
    PYTHONPATH=. python benchmarks/bench_synflow.py --baseline-rev 9586984  # vs an older paizoo
    PYTHONPATH=. python benchmarks/bench_synflow.py --models vgg16_bn --precisions float64,scaled32
    PYTHONPATH=. python benchmarks/bench_synflow.py --models timm:resnet50 --precisions float64 \\
        --save-masks /tmp/sf    # one precision per (background) run, masks saved ...
    PYTHONPATH=. python benchmarks/bench_synflow.py --models timm:resnet50 --precisions saved \\
        --compare-masks /tmp/sf # ... and compared with the float64 one afterwards
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import paizoo
import paizoo.pruners.base as pruner_base
import paizoo.pruners.synflow as synflow_module
from paizoo.masks import Mask
from paizoo.models import create_model
from paizoo.pruners._scaled import ScaledForward


def build(name: str, quick: bool) -> tuple[nn.Module, tuple[int, ...]]:
    if name == "timm:resnet50":
        import timm

        torch.manual_seed(0)
        model = timm.create_model("resnet50", pretrained=False, zero_init_last=False)
        return model, (3, 64, 64) if quick else (3, 224, 224)
    return create_model(name, num_classes=10, seed=0), (3, 32, 32)


PERTURBED = "float64-perturbed"


def perturbed(model: nn.Module, exponent: int = 24) -> nn.Module:
    """A copy whose prunable weights are multiplied by (1 + 2^-exponent u), u ~ U(-1, 1) (seed 0):
    float64 SynFlow on it shows how far float32-sized rounding noise alone moves the mask."""
    import copy

    copied = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in paizoo.prunable_parameters(copied).values():
            noise = torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1
            p.copy_((p.double() * (1 + 2.0 ** -exponent * noise)).to(p.dtype))
    return copied


class Profile:
    """Seconds in forward / backward / rest of score / select, and the last round's state."""

    def __init__(self) -> None:
        self.forward = self.backward = self.score = self.select = 0.0
        self.last_scores: dict[str, torch.Tensor] | None = None
        self.last_eligible: Mask | None = None
        self.last_budget = 0
        self.rounds_done = 0

    @contextlib.contextmanager
    def patched(self, pruner: paizoo.Pruner) -> Iterator[None]:
        original_select = pruner_base.select_scored
        original_grads = synflow_module.grads_or_zeros
        original_score, original_run = pruner.score, ScaledForward.run
        profile = self

        def timed_select(scores: Any, budget: Any, eligible: Any = None,
                         keep_one: Any = None) -> Any:
            t0 = time.perf_counter()
            try:
                return original_select(scores, budget, eligible, keep_one=keep_one)
            finally:
                profile.select += time.perf_counter() - t0
                profile.last_scores = {n: s.detach() for n, s in scores.items()}
                profile.last_eligible, profile.last_budget = eligible, budget

        def timed_grads(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original_grads(*args, **kwargs)
            finally:
                profile.backward += time.perf_counter() - t0

        def timed_run(self: ScaledForward, *args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original_run(self, *args)
            finally:
                profile.forward += time.perf_counter() - t0

        def timed_score(ctx: Any) -> Any:
            t0 = time.perf_counter()
            model = ctx.model
            handle = None
            if pruner.precision != "scaled32":
                start: list[float] = []
                pre = model.register_forward_pre_hook(lambda *_: start.append(
                    time.perf_counter()))
                handle = (pre, model.register_forward_hook(lambda *_: setattr(
                    profile, "forward", profile.forward + time.perf_counter() - start[-1])))
            try:
                return original_score(ctx)
            finally:
                if handle is not None:
                    for h in handle:
                        h.remove()
                profile.score += time.perf_counter() - t0
                profile.rounds_done += 1
                if os.environ.get("BENCH_SYNFLOW_VERBOSE"):
                    print(f"    round {profile.rounds_done}: {time.perf_counter() - t0:.1f}s "
                          f"score", file=sys.stderr, flush=True)

        pruner_base.select_scored = timed_select
        synflow_module.grads_or_zeros = timed_grads
        ScaledForward.run = timed_run  # type: ignore[method-assign]
        pruner.score = timed_score  # type: ignore[method-assign]
        try:
            yield
        finally:
            pruner_base.select_scored = original_select
            synflow_module.grads_or_zeros = original_grads
            ScaledForward.run = original_run  # type: ignore[method-assign]
            del pruner.score


def tie_stats(profile: Profile) -> tuple[int, float, torch.Tensor | None]:
    """(eligible scores equal to the last round's threshold, the threshold, flat scores)."""
    if profile.last_scores is None or not isinstance(profile.last_budget, int):
        return 0, math.nan, None
    names = list(profile.last_scores)
    parts = []
    for n in names:
        s = profile.last_scores[n].reshape(-1).double()
        if profile.last_eligible is not None:
            s = torch.where(profile.last_eligible[n].reshape(-1), s, torch.full_like(s, -1.0))
        parts.append(s)
    flat = torch.cat(parts)
    threshold = float(torch.topk(flat, profile.last_budget).values[-1])
    return int((flat == threshold).sum()), threshold, flat


def compare_saved(folder: Path, model_name: str, reference_path: Path) -> None:
    """Table rows from masks saved by earlier runs (``--precisions saved``)."""
    stem = model_name.replace(":", "_")
    ref = Mask.load(reference_path)
    ref_seconds = float(str(Mask.load_metadata(reference_path)["seconds"]))
    for path in sorted(folder.glob(f"{stem}-*.safetensors")):
        precision = path.stem.removeprefix(f"{stem}-")
        meta = Mask.load_metadata(path)
        mask = Mask.load(path)
        seconds = float(str(meta["seconds"]))
        differ = sum(int((mask[n] != ref[n]).sum()) for n in mask)
        print(f"{model_name:16} {precision:9} {seconds:8.1f} (saved run, {meta['rounds']} rounds) "
              f"x f64 {ref_seconds / seconds:6.2f}  IoU {mask.iou(ref):.4f}  differ {differ}  "
              f"tied {meta.get('tied', '?')}", flush=True)


def stepwise(model_name: str, quick: bool, rounds: int, sparsity: float) -> None:
    """The float64 trajectory, with each round also scored in scaled32 from the *same* mask.

    Each round, the float64 pruner's working copy (its weights at ``initial * mask``) is copied
    into a float32 model and scored by a scaled32 SynFlow; both rounds' scores are selected with
    the same budget and eligible set. Rows: how many kept/pruned decisions differ in that round
    (``differ``), how many of those weights have float64 scores within float32 rounding of the
    float64 threshold (relative 2^-20: ``near tie``), and the round's IoU. The compounded run
    (each precision on its own trajectory) is compared on the last line: where it departs from
    float64, and how the number of differing weights grows from there.
    """
    import copy
    import dataclasses

    model, shape = build(model_name, quick)
    f64 = paizoo.create_pruner("synflow", precision="float64", rounds=rounds)
    s32 = paizoo.create_pruner("synflow", precision="scaled32", rounds=rounds)
    original_score, original_select = f64.score, pruner_base.select_scored
    state: dict[str, Any] = {}
    rows: list[tuple[int, int, int, float]] = []
    ref_trajectory: list[Mask] = []  # the float64 run's mask after every round

    def score(ctx: Any) -> Any:
        scores64 = original_score(ctx)
        if "ctx32" not in state:
            model32 = copy.deepcopy(ctx.model).float()
            named = dict(model32.named_parameters())
            state["ctx32"] = dataclasses.replace(
                ctx, model=model32, params={n: named[n] for n in ctx.params})
        ctx32 = state["ctx32"]
        with torch.no_grad():
            for n, p in ctx.params.items():
                ctx32.params[n].copy_(p)
        ctx32.round = ctx.round
        state["scores32"] = s32.score(ctx32)
        return scores64

    def select(scores: Any, budget: Any, eligible: Any = None, keep_one: Any = None) -> Any:
        selection = original_select(scores, budget, eligible, keep_one=keep_one)
        kept64 = selection.masks
        kept32 = original_select(state["scores32"], budget, eligible, keep_one=keep_one).masks
        flat = torch.cat([torch.where(eligible[n], scores[n], -1.0).reshape(-1).double()
                          if eligible is not None else scores[n].reshape(-1).double()
                          for n in scores])
        threshold = float(torch.topk(flat, budget).values[-1])
        differ = near = 0
        for n in scores:
            changed = kept64[n] != kept32[n]
            differ += int(changed.sum())
            gap = (scores[n][changed].double() / threshold - 1).abs()
            near += int((gap <= 2.0 ** -20).sum())
        iou = Mask(kept32).iou(kept64)
        rows.append((len(rows) + 1, differ, near, iou))
        ref_trajectory.append(Mask(kept64))
        return selection

    f64.score = score  # type: ignore[method-assign]
    pruner_base.select_scored = select
    try:
        reference = paizoo.prune(model, f64, sparsity=sparsity, input_shape=shape,
                                 progress=False)
    finally:
        pruner_base.select_scored = original_select
        del f64.score
    print(f"# {model_name}: each round of the float64 run also scored in scaled32 from the same "
          f"mask ({rounds} rounds, sparsity {sparsity}); rounds where a decision differs:")
    print(f"{'round':>5} {'differ':>7} {'near tie':>9} {'IoU':>9}")
    for r, differ, near, iou in rows:
        if differ:
            print(f"{r:5d} {differ:7d} {near:9d} {iou:9.6f}")
    bad = sum(differ - near for _, differ, near, _ in rows)
    worst = min(iou for *_, iou in rows)
    differing = sum(1 for row in rows if row[1])
    print(f"# {differing} of {rounds} rounds differ at all; lowest per-round IoU {worst:.6f}; "
          f"decisions that differ without a float32-level near tie: {bad}")
    # the compounded run: scaled32 on its own trajectory (the float64 one is recorded above)
    trajectory: list[Mask] = []

    def record(scores: Any, budget: Any, eligible: Any = None, keep_one: Any = None) -> Any:
        selection = original_select(scores, budget, eligible, keep_one=keep_one)
        trajectory.append(Mask(selection.masks))
        return selection

    pruner_base.select_scored = record
    try:
        paizoo.prune(model, "synflow", precision="scaled32", rounds=rounds, sparsity=sparsity,
                     input_shape=shape, progress=False)
    finally:
        pruner_base.select_scored = original_select
    counts = [sum(int((a[n] != b[n]).sum()) for n in a)
              for a, b in zip(ref_trajectory, trajectory, strict=True)]
    first = next((i for i, c in enumerate(counts) if c), None)
    if first is None:
        print("# compounded: scaled32's own trajectory equals float64's in every round")
    else:
        step = max(1, rounds // 10)
        every = ", ".join(f"{r + 1}: {counts[r]}" for r in range(first, rounds, step))
        print(f"# compounded (each precision on its own trajectory): first differs in round "
              f"{first + 1}; weights differing by round ({every}, {rounds}: {counts[-1]}); "
              f"final IoU {trajectory[-1].iou(reference):.4f}\n")


_BASELINE_CHILD = """
import json, sys, time
import torch
sys.path[:0] = [sys.argv[1], sys.argv[2]]  # the revision's paizoo first, then benchmarks/
import paizoo
from bench_synflow import build
torch.set_num_threads(int(sys.argv[4]))
model, shape = build(sys.argv[3], sys.argv[5] == "1")
t0, c0 = time.perf_counter(), time.process_time()
mask = paizoo.prune(model, "synflow", precision="float64", rounds=int(sys.argv[6]),
                    sparsity=float(sys.argv[7]), input_shape=shape, progress=False)
seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
mask.save(sys.argv[8])
print(json.dumps({"seconds": seconds, "cpu": cpu, "file": paizoo.__file__}))
"""


class BaselineError(RuntimeError):
    """``--baseline-rev`` cannot be run: the revision is unknown, or its child process failed."""


def resolve_revision(rev: str) -> str:
    """The commit hash of git revision ``rev`` of this checkout, which must hold ``paizoo/``;
    :class:`BaselineError` saying what is wrong otherwise (checked before any benchmark)."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        found = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                                f"{rev}^{{commit}}"], capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise BaselineError("--baseline-rev needs git, which is not installed") from exc
    if found.returncode != 0:
        raise BaselineError(f"--baseline-rev {rev!r} is not a commit of {repo} (git rev-parse "
                            "finds none); give a commit hash, tag or branch of this repository")
    commit = found.stdout.strip()
    has = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}:paizoo"],
                         capture_output=True)
    if has.returncode != 0:
        raise BaselineError(f"--baseline-rev {rev!r} ({commit[:12]}) has no paizoo/ folder")
    return commit


def baseline_run(rev: str, model_name: str, quick: bool, rounds: int, sparsity: float,
                 threads: int) -> tuple[float, float, Mask]:
    """float64 SynFlow with paizoo as of git revision ``rev`` (``git archive`` into a temporary
    folder, run in a child process of this run): (wall s, CPU s, mask). Raises
    :class:`BaselineError` with the child's last error line when it fails."""
    import json
    import subprocess
    import tarfile
    import tempfile

    repo = Path(__file__).resolve().parent.parent
    commit = resolve_revision(rev)
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(repo), "archive", commit, "paizoo"],
                                 check=True, capture_output=True).stdout
        with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        mask_path = Path(tmp) / "mask.safetensors"
        child = subprocess.run(
            [sys.executable, "-c", _BASELINE_CHILD, tmp, str(repo / "benchmarks"), model_name,
             str(threads), "1" if quick else "0", str(rounds), str(sparsity), str(mask_path)],
            capture_output=True, text=True,
            env={**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": str(threads)})
        if child.returncode != 0:
            lines = child.stderr.strip().splitlines() or [f"exit status {child.returncode}"]
            raise BaselineError(f"the baseline run of {model_name} with paizoo at {rev!r} "
                                f"failed: {lines[-1]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        if not result["file"].startswith(tmp):  # pragma: no cover - a broken sys.path
            raise RuntimeError(f"the baseline imported {result['file']}, not revision {rev}")
        return result["seconds"], result["cpu"], Mask.load(mask_path)


FINITE_MODELS = ("torchvision:resnet50", "timm:resnet50", "timm:vit_base_patch16_224")


def finite_check(threads: int) -> None:
    """One SynFlow round at 224x224 per model and precision: does it stay finite?"""
    print(f"# one SynFlow round at 3x224x224, {threads} threads (pretrained=False; timm "
          "resnet50 with zero_init_last=False; the ViT's zero-initialised head re-drawn "
          "N(0, 0.02), else R = 0)", flush=True)
    for name in FINITE_MODELS:
        extra: dict[str, Any] = {"zero_init_last": False} if name == "timm:resnet50" else {}
        model = create_model(name, seed=0, **extra)
        if "vit" in name:
            with torch.no_grad():
                model.get_submodule("head").weight.normal_(0, 0.02)
        for precision in ("float32", "scaled32"):
            pruner = paizoo.create_pruner("synflow", precision=precision, rounds=1)
            t0 = time.process_time()
            try:
                paizoo.prune(model, pruner, sparsity=0.99, input_shape=(3, 224, 224),
                             progress=False)
                result = f"finite; R = 2^({pruner._flow_exponent} + log2 of the mantissa sum)"
            except paizoo.errors.ScoreError as exc:
                result = f"ScoreError: {str(exc)[:80]}"
            print(f"{name:28} {precision:9} {time.process_time() - t0:7.1f} cpu s  {result}",
                  flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="timm:resnet50,vgg16_bn")
    parser.add_argument("--precisions", default="float64,scaled32,float32")
    parser.add_argument("--rounds", type=int, default=None, help="default 100 (10 with --quick)")
    parser.add_argument("--sparsity", type=float, default=0.99)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--finite", action="store_true",
                        help="only check one round at 224x224 on " + ", ".join(FINITE_MODELS))
    parser.add_argument("--perturb-exponent", type=int, default=24,
                        help="float64-perturbed: weights times (1 + 2^-E u)")
    parser.add_argument("--stepwise", action="store_true",
                        help="per-round agreement of scaled32 with float64 from the same mask, "
                             "and where the compounded runs part")
    parser.add_argument("--save-masks", type=Path, default=None)
    parser.add_argument("--baseline-rev", default=None, metavar="REV",
                        help="also run float64 with paizoo as of git revision REV (e.g. the "
                             "commit before a speed-up), in a child process of this run; its "
                             "row is 'float64@REV' and its mask is compared with this code's")
    parser.add_argument("--compare-masks", type=Path, default=None,
                        help="a --save-masks folder holding the float64 masks of an earlier run")
    args = parser.parse_args(argv)
    try:
        if args.baseline_rev is not None:
            resolve_revision(args.baseline_rev)  # an unknown revision fails before any work
        return run(args)
    except BaselineError as exc:
        print(f"bench_synflow.py: error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    """The benchmark :func:`main` parsed the options of."""
    torch.set_num_threads(args.threads)
    if args.finite:
        finite_check(args.threads)
        return 0
    rounds = args.rounds or (10 if args.quick else 100)
    if args.stepwise:
        for model_name in args.models.split(","):
            stepwise(model_name, args.quick, rounds, args.sparsity)
        return 0
    print(f"# SynFlow, {rounds} rounds, sparsity {args.sparsity}, {args.threads} threads, "
          f"torch {torch.__version__}; load average at start: {os.getloadavg()}", flush=True)
    header = (f"{'model':16} {'precision':15} {'cpu s':>8} {'seconds':>8} {'forward':>8} "
              f"{'backward':>8} {'score+':>7} {'select':>7} {'rest':>6} {'x f64':>6} {'IoU':>7} "
              f"{'differ':>7} {'tied':>6} {'at thr':>7}")
    print(header, flush=True)
    for model_name in args.models.split(","):
        model, shape = build(model_name, args.quick)
        reference: tuple[Mask, torch.Tensor | None, float] | None = None
        f64_cpu = math.nan
        if args.compare_masks is not None:
            path = args.compare_masks / f"{model_name.replace(':', '_')}-float64.safetensors"
            if args.precisions == "saved":  # only compare the masks saved by earlier runs
                compare_saved(args.compare_masks, model_name, path)
                continue
            if path.exists():
                reference = (Mask.load(path), None, math.nan)
                f64_cpu = float(str(Mask.load_metadata(path).get("cpu", "nan")))
        if args.baseline_rev is not None:
            seconds, cpu, base_mask = baseline_run(args.baseline_rev, model_name, args.quick,
                                                   rounds, args.sparsity, args.threads)
            base_cpu, base_label = cpu, f"float64@{args.baseline_rev[:7]}"
            print(f"{model_name:16} {base_label:15} {cpu:8.1f} {seconds:8.1f} "
                  f"{'(older revision: no split)':>40}", flush=True)
        for precision in args.precisions.split(","):
            subject = model
            if precision == PERTURBED:  # float64 on weights moved by float32 rounding noise
                subject = perturbed(model, args.perturb_exponent)
            pruner = paizoo.create_pruner("synflow", precision=precision.split("-")[0],
                                          rounds=rounds)
            profile = Profile()
            label = f"{model_name:16} {precision:15}"
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                with profile.patched(pruner):
                    mask = paizoo.prune(subject, pruner, sparsity=args.sparsity,
                                        input_shape=shape, progress=False)
            except paizoo.errors.ScoreError as exc:
                seconds = time.perf_counter() - t0
                print(f"{label} fails after {profile.rounds_done} round(s), {seconds:.1f}s: "
                      f"{str(exc)[:90]}", flush=True)
                continue
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            tied, threshold, flat = tie_stats(profile)
            if precision == "float64":
                f64_cpu = cpu
                reference = (mask, flat, threshold)
            if args.save_masks is not None:
                args.save_masks.mkdir(parents=True, exist_ok=True)
                meta = {"seconds": f"{seconds:.2f}", "cpu": f"{cpu:.2f}", "rounds": rounds,
                        "tied": tied}
                mask.save(args.save_masks / f"{model_name.replace(':', '_')}-{precision}"
                          ".safetensors", metadata=meta)
            iou = differ = near = "-"
            if reference is not None and precision != "float64":
                ref_mask = reference[0]
                iou = f"{mask.iou(ref_mask):.4f}"
                differ = str(sum(int((mask[n] != ref_mask[n]).sum()) for n in mask))
            if reference is not None and reference[1] is not None and precision == "float64":
                near = str(int(((reference[1] - threshold).abs()
                                <= 2.0 ** -20 * abs(threshold)).sum()))
            rest = seconds - profile.score - profile.select
            score_rest = profile.score - profile.forward - profile.backward
            speedup = f64_cpu / cpu if math.isfinite(f64_cpu) else math.nan
            print(f"{label} {cpu:8.1f} {seconds:8.1f} {profile.forward:8.1f} "
                  f"{profile.backward:8.1f} {score_rest:7.1f} {profile.select:7.1f} {rest:6.1f} "
                  f"{speedup:6.2f} {iou:>7} {differ:>7} {tied:6d} {near:>7}", flush=True)
            if args.baseline_rev is not None:
                same = sum(int((mask[n] != base_mask[n]).sum()) for n in mask)
                print(f"{'':16} {'':15} vs {base_label}: {base_cpu / cpu:.2f}x CPU s; mask IoU "
                      f"{mask.iou(base_mask):.4f} ({same} weights differ)", flush=True)
    print(f"# load average at end: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
