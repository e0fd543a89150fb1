"""Progress over a pruner's rounds: a tqdm bar on a terminal, a line every N seconds elsewhere.

Batch jobs (stderr redirected to a file) get no use from a progress bar, so when stderr is not a
terminal, :func:`round_progress` writes one line to stderr every ``interval`` seconds (default 10,
or the ``PAIZOO_PROGRESS_INTERVAL`` environment variable) with the round, the elapsed time and
an ETA (elapsed / rounds done * rounds left)::

    synflow rounds: 12/100 done, 1m04s elapsed, ETA 7m49s

The ``progress`` argument of :func:`paizoo.prune` / ``Pruner.compute_mask`` chooses:

* ``None`` (default): nothing for a single round; otherwise a bar on a terminal, lines elsewhere;
* ``True``: always a tqdm bar; ``False``: nothing;
* a number of seconds (``progress=30``): lines every 30 seconds, terminal or not (``0``: one line
  per round).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TextIO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

#: seconds between two progress lines when none is given
DEFAULT_INTERVAL = 10.0
ENV_INTERVAL = "PAIZOO_PROGRESS_INTERVAL"

Progress = bool | float | None


def default_interval() -> float:
    """``PAIZOO_PROGRESS_INTERVAL`` (seconds) if set, else :data:`DEFAULT_INTERVAL`."""
    raw = os.environ.get(ENV_INTERVAL)
    if raw is None or raw.strip() == "":
        return DEFAULT_INTERVAL
    try:
        return _check_interval(float(raw))
    except ValueError as exc:
        raise ValueError(f"{ENV_INTERVAL}={raw!r} is not a number of seconds >= 0") from exc


def _check_interval(seconds: float) -> float:
    if not seconds >= 0.0:  # also NaN
        raise ValueError(f"a progress interval must be a number of seconds >= 0, got {seconds}")
    return seconds


def round_progress(items: Sequence[T], desc: str, progress: Progress = None, *,
                   stream: TextIO | None = None,
                   clock: Callable[[], float] = time.monotonic) -> Iterable[T]:
    """Iterate over ``items`` (one per round) while reporting progress as ``progress`` says.

    ``stream`` (default: ``sys.stderr`` at iteration time) and ``clock`` are for tests.
    """
    if isinstance(progress, bool):
        if not progress:
            return items
        return tqdm(items, desc=desc, leave=False, file=stream)
    if progress is None:
        if len(items) < 2:
            return items
        target = stream if stream is not None else sys.stderr
        if _is_terminal(target):
            return tqdm(items, desc=desc, leave=False, file=stream)
        return ProgressLines(items, desc, default_interval(), stream=stream, clock=clock)
    return ProgressLines(items, desc, float(progress), stream=stream, clock=clock)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m07s``, ``2h05m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressLines:
    """Iterates over ``items``; after a round, writes a line if ``interval`` seconds passed
    since the start or the last line, and a closing line if any line was written."""

    def __init__(self, items: Sequence[T], desc: str, interval: float, *,
                 stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.items, self.desc = items, desc
        self.interval = _check_interval(interval)
        self.stream, self.clock = stream, clock

    def __len__(self) -> int:
        return len(self.items)

    def _write(self, line: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(line, file=stream, flush=True)

    def __iter__(self) -> Iterator[T]:
        total = len(self.items)
        start = last = self.clock()
        written = False
        for done, item in enumerate(self.items, start=1):
            yield item
            now = self.clock()
            if done < total and now - last >= self.interval:
                elapsed = now - start
                eta = elapsed / done * (total - done)
                self._write(f"{self.desc}: {done}/{total} done, {format_seconds(elapsed)} "
                            f"elapsed, ETA {format_seconds(eta)}")
                last, written = now, True
        if written or (total and self.interval == 0):
            self._write(f"{self.desc}: {total}/{total} done in "
                        f"{format_seconds(self.clock() - start)}")
