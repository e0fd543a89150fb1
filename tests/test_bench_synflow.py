"""benchmarks/bench_synflow.py's --baseline-rev: an unknown revision is one error line, before
any benchmark work (the benchmark itself is not run here: it takes minutes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    try:
        inside = _git("rev-parse", "--is-inside-work-tree").stdout.strip() == "true"
    except FileNotFoundError:
        inside = False
    if not inside:
        pytest.skip("needs a git checkout of paizoo")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_synflow

    def no_work(*_a: object, **_k: object) -> None:
        raise AssertionError("the benchmark started before the revision was checked")

    monkeypatch.setattr(bench_synflow, "build", no_work)
    return bench_synflow


def test_unknown_baseline_revision_is_one_error_line_before_any_work(
        bench, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    rc = bench.main(["--quick", "--models", "vgg16_bn", "--precisions", "float64",
                     "--baseline-rev", "no-such-revision-42"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("bench_synflow.py: error: --baseline-rev 'no-such-revision-42' is not "
                          "a commit of")
    assert out == ""


def test_baseline_revision_resolves_to_the_commit_git_names(bench) -> None:  # type: ignore[no-untyped-def]
    head = _git("rev-parse", "HEAD").stdout.strip()
    assert bench.resolve_revision("HEAD") == head
    assert bench.resolve_revision(head[:12]) == head
    with pytest.raises(bench.BaselineError, match="is not a commit"):
        bench.resolve_revision(f"{head}:paizoo")  # a tree, not a commit

