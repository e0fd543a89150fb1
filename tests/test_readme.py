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
