"""The README's Python examples run as written (in a fresh interpreter, in a temporary folder).

The default test runs the "Prune any model in one call" and "Write your own pruner" blocks with
one change: SynFlow at sparsity 0.8 in 2 rounds instead of 0.99 in its 100 default rounds
(about 80 s of float64 rounds on a 2-core CPU; with only 2 rounds, 0.9 or 0.99 remove
downsampling shortcuts, which the 100 rounds do not). The slow test runs every Python block
exactly as written, in order, in one namespace (later blocks use the model and masks of the
first).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # every warning is an error: the examples must run clean (timm's own deprecations aside)
    return subprocess.run(
        [sys.executable, "-W", "error", "-W", "ignore::DeprecationWarning", "-c", code],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)


def test_readme_has_the_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    assert "zero_init_last=False" in blocks[0] and "model2 = " in blocks[0]
    assert "images, labels = " in blocks[0]


def test_readme_prune_and_custom_pruner_examples_run(tmp_path: Path) -> None:
    first, second = python_blocks()[:2]
    call = '"synflow", sparsity=0.99, input_shape=(3, 32, 32), seed=0)'
    assert first.count(call) == 1
    code = first.replace(call, '"synflow", sparsity=0.8, input_shape=(3, 32, 32), seed=0, '
                               'rounds=2)') + "\n" + second
    code += ("\nassert mask.num_kept == round(0.2 * mask.num_total)"
             "\nassert mask2.num_kept == round(0.1 * mask2.num_total)"
             "\nassert 'gradnorm' in paizoo.list_pruners()\n")
    done = _run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "global" in done.stdout  # the report was printed
    assert (tmp_path / "resnet18-synflow-0.99.safetensors").is_file()


@pytest.mark.slow
def test_readme_python_blocks_run_as_written(tmp_path: Path) -> None:
    done = _run("\n".join(python_blocks()), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_readme_regression_steps_are_what_make_regression_runs() -> None:
    """The shell block of "Predicting accuracy drops ..." says `make regression` (= `paizoo
    regress rebuild`) is the steps below it: its `regress build` lines must build every
    rebuild source (store, dataset, table), `eval` and `train` must read all those tables, and
    every `paizoo regress` line must parse. (The block used to build, evaluate and train on
    the multi-architecture table alone, while the shipped predictor pools two.)"""
    import shlex

    from paizoo.cli import build_parser
    from paizoo.regression.rebuild import DEFAULT_PREDICTOR, DEFAULT_REPORT, DEFAULT_SOURCES

    text = (ROOT / "README.md").read_text()
    section = text.split("## Predicting accuracy drops", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    lines = [re.sub(r"\s+#.*$", "", ln) for ln in block.replace("\\\n", " ").splitlines()]
    variables = dict(re.findall(r'^(\w+)="([^"]*)"$', block, flags=re.M))
    loop = re.search(r"for (\w+) in ([^;]+); do", block)  # one loop variable at most
    parser = build_parser()
    builds, evals, trains = set(), [], []
    for line in lines:
        line = line.strip()
        if not line.startswith("paizoo regress"):
            continue
        expanded = [line]
        if loop and f"${loop.group(1)}" in line:
            expanded = [line.replace(f"${loop.group(1)}", v) for v in loop.group(2).split()]
        for cmd in expanded:
            for name, val in variables.items():
                cmd = cmd.replace(f"${name}", val)
            args = parser.parse_args(shlex.split(cmd)[1:])
            if args.regress_command == "build":
                builds.add((args.db, tuple(args.dataset or ()), args.out))
            elif args.regress_command == "eval":
                evals.append((sorted(args.table), args.out))
            elif args.regress_command == "train":
                trains.append((sorted(args.table), args.out))
    assert builds == {(s.store, (s.dataset,), s.table) for s in DEFAULT_SOURCES}
    tables = sorted(s.table for s in DEFAULT_SOURCES)
    assert evals == [(tables, DEFAULT_REPORT)]
    assert trains == [(tables, DEFAULT_PREDICTOR)]
