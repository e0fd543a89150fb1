"""Progress lines over pruning rounds when stderr is not a terminal (fake clock, no sleeps)."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from torch import nn

import paizoo
from paizoo.progress import ProgressLines, default_interval, format_seconds, round_progress


def fake_clock(times: list[float]) -> Callable[[], float]:
    it = iter(times)
    return lambda: next(it)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_line_every_interval_with_eta() -> None:
    out = io.StringIO()
    # start, then the clock after each of 5 rounds, then the closing line's reading
    clock = fake_clock([0.0, 4.0, 11.0, 15.0, 23.0, 30.0, 30.0])
    items = list(round_progress([0.5, 0.4, 0.3, 0.2, 0.1], "synflow rounds", 10.0, stream=out,
                                clock=clock))
    assert items == [0.5, 0.4, 0.3, 0.2, 0.1]
    assert out.getvalue().splitlines() == [
        "synflow rounds: 2/5 done, 11s elapsed, ETA 16s",   # 11 s / 2 rounds * 3 left = 16.5
        "synflow rounds: 4/5 done, 23s elapsed, ETA 6s",    # 12 s after the previous line
        "synflow rounds: 5/5 done in 30s",
    ]


def test_interval_zero_writes_every_round_and_quiet_runs_write_nothing() -> None:
    out = io.StringIO()
    list(ProgressLines(range(3), "r", 0.0, stream=out, clock=fake_clock([0, 1, 2, 3, 3])))
    assert [line.split(":")[1].split(",")[0].strip() for line in out.getvalue().splitlines()] \
        == ["1/3 done", "2/3 done", "3/3 done in 3s"]
    out = io.StringIO()  # fast: no line at all
    list(ProgressLines(range(3), "r", 10.0, stream=out, clock=fake_clock([0, 1, 2, 3])))
    assert out.getvalue() == ""


def test_choice_of_bar_lines_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [1.0, 0.5]
    assert round_progress(items, "d", False) is items
    assert round_progress([1.0], "d", None, stream=io.StringIO()) == [1.0]  # one round: nothing
    assert isinstance(round_progress(items, "d", None, stream=io.StringIO()), ProgressLines)
    assert not isinstance(round_progress(items, "d", None, stream=Tty()), ProgressLines)  # tqdm
    assert not isinstance(round_progress(items, "d", True, stream=io.StringIO()), ProgressLines)
    lines = round_progress(items, "d", 2.5, stream=Tty())
    assert isinstance(lines, ProgressLines) and lines.interval == 2.5
    monkeypatch.setenv("PAIZOO_PROGRESS_INTERVAL", "3")
    assert default_interval() == 3.0
    assert round_progress(items, "d", None, stream=io.StringIO()).interval == 3.0  # type: ignore[union-attr]
    monkeypatch.setenv("PAIZOO_PROGRESS_INTERVAL", "soon")
    with pytest.raises(ValueError, match="PAIZOO_PROGRESS_INTERVAL"):
        default_interval()
    with pytest.raises(ValueError, match="seconds >= 0"):
        round_progress(items, "d", -1.0)


def test_format_seconds() -> None:
    assert [format_seconds(s) for s in (0.4, 59.4, 61, 3599, 3660, 7322)] == [
        "0s", "59s", "1m01s", "59m59s", "1h01m", "2h02m"]


def test_prune_writes_progress_lines_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Through paizoo.prune: captured stderr is not a terminal; interval 0 = every round."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    paizoo.prune(model, "synflow", sparsity=0.5, input_shape=(4,), rounds=3, progress=0)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"synflow rounds: 1/3 done, \d+s elapsed, ETA \d+s", lines[0])
    assert lines[2].startswith("synflow rounds: 3/3 done in ")
    paizoo.prune(model, "synflow", sparsity=0.5, input_shape=(4,), rounds=3)  # < 10 s: quiet
    assert capsys.readouterr().err == ""
