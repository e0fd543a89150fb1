"""Command-line errors (issue 13, items 6-8): every error is one ``paizoo: error: ...`` line on
stderr naming the problem and the fix, with exit code 2 (the command line) or 1 (run time), no
traceback unless ``--debug``, and no file or folder left behind.

Each case runs in-process (fast); ``test_cli_errors_as_subprocesses`` (marked slow; run it with
``pytest -m slow tests/test_cli_errors.py``) runs every case as its own ``python -m paizoo``
process, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from paizoo.cli import main

PRUNE = ["prune", "--model", "lenet5", "--pruner", "magnitude", "--sparsity", "0.5"]
TRAIN = ["train", "--model", "lenet_300_100", "--dataset", "digits", "--epochs", "1"]
METRICS = ["metrics", "--model", "lenet5", "--pruner", "magnitude", "--sparsity", "0.5"]

#: (id, arguments, exit code, words the message must contain)
CASES: list[tuple[str, list[str], int, list[str]]] = [
    ("option-not-a-number", [*PRUNE[:3], "--pruner", "synflow", "--sparsity", "0.5", "-o",
                             "rounds=abc"], 2, ["synflow", "rounds='abc'", "invalid literal"]),
    ("option-unknown", [*PRUNE, "-o", "nosuch=1"], 2,
     ["no option 'nosuch'", "its options are rounds, schedule, scope"]),
    ("option-bad-value", [*PRUNE[:3], "--pruner", "random", "--sparsity", "0.5", "-o",
                          "distribution=zzz"], 2, ["unknown distribution 'zzz'", "'erk'"]),
    ("option-without-value", [*PRUNE, "-o", "rounds"], 2, ["bad -o 'rounds'", "KEY=VALUE"]),
    ("model-option-unknown", [*TRAIN, "-m", "hidden=5"], 2,
     ["lenet_300_100 takes no model option 'hidden'", "input_size"]),
    ("metric-option-malformed", [*METRICS, "-m", "hidden=5"], 2,
     ["bad metric option -m hidden=5", "GROUP.KEY=VALUE"]),
    ("metric-option-unknown", [*METRICS, "--groups", "scatter", "-m", "scatter.bogus=5"], 2,
     ["scatter.bogus is not an option", "scatter.window"]),
    ("metric-option-group-not-computed", [*METRICS, "--groups", "density", "-m",
                                          "scatter.window=8"], 2, ["'scatter' is not a computed"]),
    ("out-is-a-folder", [*PRUNE, "--out", "."], 2, ["--out . is a folder", "name the file"]),
    ("out-folder-missing", [*PRUNE, "--out", "nonexistent/x.safetensors"], 2,
     ["the folder nonexistent does not exist", "create it first"]),
    ("input-shape-too-short", [*PRUNE, "--input-shape", "1,28"], 2,
     ["lenet5 takes inputs of shape (channels, height, width)", "1,28,28"]),
    ("input-shape-with-batch", [*PRUNE, "--input-shape", "1,1,28,28"], 2,
     ["(channels, height, width)", "got --input-shape 1,1,28,28"]),
    ("input-shape-zero", [*PRUNE, "--input-shape", "1,0,28"], 2, ["bad shape '1,0,28'"]),
    ("device-unknown", [*TRAIN, "--device", "tpu"], 2, ["unknown device 'tpu'", "cuda:N"]),
    ("mask-file-corrupt", ["graph", "--model", "lenet5", "--mask", "bad.safetensors"], 1,
     ["cannot read the mask file bad.safetensors", "corrupt"]),
    ("mask-file-missing", ["graph", "--model", "lenet5", "--mask", "none.safetensors"], 2,
     ["no mask file at none.safetensors"]),
    ("store-not-sqlite", ["leaderboard", "status", "lb.yaml"], 1,
     ["bad.db is not a readable paizoo results store", "--store"]),
    ("compression-underflow", [*PRUNE[:5], "--compression", "400"], 2,
     ["compression=400", "underflows to 0"]),
    ("snip-wrong-input-shape", [*PRUNE[:3], "--pruner", "snip", "--sparsity", "0.5",
                                "--dataset", "synthetic:3x8x8:10", "--input-shape", "1,28,28"],
     2, ["cannot take the data's inputs of shape (3, 8, 8)", "without the batch dimension"]),
    ("argparse-missing-argument", ["prune", "--model", "lenet5"], 2,
     ["required: --pruner", "paizoo prune --help"]),
    ("bad-grid-entry", ["leaderboard", "status", "badgrid.yaml"], 2,
     ["pruners[random]", "unknown distribution 'zzz'"]),
    ("render-store-url-unsupported", ["leaderboard", "render", "lb", "--config", "lb.yaml",
                                      "--store", "mysql://host/db"], 1,
     ["unsupported store URL 'mysql://host/db'", "postgresql://"]),
    ("status-store-url-unsupported", ["leaderboard", "status", "lb.yaml", "--store",
                                      "mysql://host/db"], 1,
     ["unsupported store URL 'mysql://host/db'", "postgresql://"]),
    ("lease-ttl-zero", ["leaderboard", "run", "lb.yaml", "--lease-ttl", "0"], 2,
     ["--lease-ttl", "must be > 0 seconds", "got '0'"]),
    ("limit-negative", ["leaderboard", "run", "lb.yaml", "--limit", "-1"], 2,
     ["--limit", "must be >= 0", "got '-1'"]),
    ("max-retries-negative", ["leaderboard", "run", "lb.yaml", "--max-retries", "-1"], 2,
     ["--max-retries", "must be >= 0"]),
]
IDS = [c[0] for c in CASES]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a corrupt mask, a non-SQLite store and grids pointing at it."""
    (tmp_path / "bad.safetensors").write_bytes(b"garbage, not a safetensors header")
    (tmp_path / "bad.db").write_text("not an SQLite database " * 8)
    grid = ("dataset: digits\nstore: bad.db\nmodels: [lenet_300_100]\npruners: [magnitude]\n"
            "sparsities: [0.5]\n")
    (tmp_path / "lb.yaml").write_text("name: lb\n" + grid)
    (tmp_path / "badgrid.yaml").write_text(
        "name: badgrid\n" + grid.replace("bad.db", "new.db").replace(
            "[magnitude]", "[{name: random, config: {distribution: zzz}}]"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check(case: tuple[str, list[str], int, list[str]], code: int, err: str, out: str,
           before: set[Path], folder: Path) -> None:
    name, _, expected, words = case
    assert "Traceback" not in err + out, name
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("paizoo: error: "), (name, err)
    for word in words:
        assert word in lines[0], (name, word, lines[0])
    assert code == expected, (name, code, lines[0])
    after = set(folder.rglob("*"))
    created = after - before
    assert not created, (name, created)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cli_error_in_process(case, workdir, capsys):
    before = set(workdir.rglob("*"))
    try:
        code = main(case[1])
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    _check(case, code, captured.err, captured.out, before, workdir)


def test_debug_shows_the_traceback(workdir, capsys):
    assert main(["--debug", "graph", "--model", "lenet5", "--mask", "bad.safetensors"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("paizoo: error:")


def test_unexpected_errors_are_one_line_too(workdir, capsys, monkeypatch):
    import paizoo.cli.prune as prune_cli

    def boom(_args: object) -> int:
        raise KeyError("something internal")

    monkeypatch.setattr(prune_cli, "cmd_pruners", boom)
    parser_main = main(["pruners"])
    err = capsys.readouterr().err
    assert parser_main == 1 and err.count("\n") == 1
    assert err.startswith("paizoo: error: unexpected KeyError") and "--debug" in err


def test_zoo_models_take_their_native_input_shape(workdir, capsys):
    """No --input-shape and no --dataset: LeNet-300-100 is built for 1x28x28 (not 3 channels)
    and prune does not demand an input shape for a pruner that feeds no input."""
    assert main(["metrics", "--model", "lenet_300_100", "--pruner", "magnitude", "--sparsity",
                 "0.5", "--groups", "density", "--out", "m.json"]) == 0
    import json

    row = json.loads((workdir / "m.json").read_text())
    assert row["density.total"] == 784 * 300 + 300 * 100 + 100 * 10
    assert main([*PRUNE, "--out", "m.safetensors"]) == 0
    out = capsys.readouterr().out
    assert "conv1.weight" in out and "6x1x5x5" in out
    assert main(["nnstd", "m.safetensors", "m.safetensors", "--model", "lenet5"]) == 0
    assert not (workdir / "m.safetensors.tmp").exists()


@pytest.mark.parametrize("command", ["prune", "metrics"])
def test_synthetic_data_has_the_classes_asked_for(workdir, command):
    """``--dataset synthetic --num-classes 3`` (help: random data for a data-driven pruner)
    failed with "labels span [0, 9] but num_classes is 3": the plain synthetic data has 10
    classes, and --num-classes only reached it with --input-shape. The data has 3 classes, so
    the model's last layer has 3 outputs (LeNet-5's fc3: 3 x 84)."""
    args = [command, "--model", "lenet5", "--pruner", "snip", "--sparsity", "0.5", "--dataset",
            "synthetic", "--num-classes", "3"]
    if command == "prune":
        assert main([*args, "--out", "m.safetensors"]) == 0
        from paizoo import Mask

        assert Mask.load(workdir / "m.safetensors")["fc3.weight"].shape == (3, 84)
    else:
        assert main([*args, "--groups", "density", "--out", "m.json"]) == 0
        import json

        row = json.loads((workdir / "m.json").read_text())
        conv = 6 * 3 * 5 * 5 + 16 * 6 * 5 * 5  # 3 input channels: synthetic is 3x32x32
        # conv1 pads 2: 32 -> 32, pool 16, conv2 12, pool 6: fc1 reads 16 x 6 x 6
        assert row["density.total"] == conv + 16 * 6 * 6 * 120 + 120 * 84 + 84 * 3


def _run(args: list[str], cwd: Path) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "paizoo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stderr, proc.stdout


@pytest.mark.slow
def test_cli_errors_as_subprocesses(workdir):
    before = set(workdir.rglob("*"))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda case: _run(case[1], workdir), CASES))
    for case, (code, err, out) in zip(CASES, results, strict=True):
        _check(case, code, err, out, before, workdir)
