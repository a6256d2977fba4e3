"""Progress of the long stages, in one place: a tqdm bar on a terminal, plain lines in a log.

A stage that can take more than a few seconds (a download, reading a GGUF file, tokenizing,
the frozen-prefix pass, an epoch, an evaluation) wraps its loop in `stage(...)`:

    with stage("frozen-prefix cache", total=len(texts), unit="text") as bar:
        for batch in batches:
            ...
            bar.update(len(batch))

On a terminal (stderr is a TTY) that is a tqdm bar with its rate and time left, shown once the
stage has run for a moment (so quick stages do not flicker) and removed when it ends. When
stderr is a file or a pipe (a log, CI, `nohup`), tqdm's carriage-return frames would pile up
on one line; there it writes a plain line every PLAIN_EVERY_S seconds instead, and one when a
stage that printed any ends:

    frozen-prefix cache: 412/1,494 texts (28%), 2.9 texts/s, about 6m13s left

Whether anything is shown is the caller's choice, made once for everything under it:
`with reporting(True):` (or `report_from_now(True)` at a command's start: the CLI does so
unless --quiet). Outside such a block, or under
`reporting(False)`, `stage` shows nothing; library calls and tests stay silent by default.
Set GPTCLASSIFY_PROGRESS_EVERY (seconds) to change the plain lines' interval.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from tqdm import tqdm

PLAIN_EVERY_S = 20.0
"""Seconds between two plain progress lines when stderr is not a terminal."""
TTY_DELAY_S = 1.0
"""A terminal bar appears only once its stage has run this long."""

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "gptclassify_progress", default=False
)


@contextlib.contextmanager
def reporting(enabled: bool = True) -> Iterator[None]:
    """Show (or hide) the progress of every `stage` run inside this block."""
    token = _enabled.set(enabled)
    try:
        yield
    finally:
        _enabled.reset(token)


def report_from_now(enabled: bool) -> None:
    """`reporting` for the rest of this context, without a block: for a command's entry
    point (`gptclassify train` calls `report_from_now(not quiet)`)."""
    _enabled.set(enabled)


def is_reporting() -> bool:
    """Whether stages run now show their progress (see `reporting`)."""
    return _enabled.get()


class Stage:
    """What `stage` yields: `update(n)` after each piece of work, `note(**fields)` for short
    values shown beside the count (a loss)."""

    def update(self, n: float = 1) -> None:  # noqa: B027 - the silent stage does nothing
        pass

    def note(self, **fields: Any) -> None:  # noqa: B027
        pass

    def set_postfix(self, refresh: bool = True, **fields: Any) -> None:
        """tqdm's name for `note`, so a stage can stand in for a tqdm bar."""
        self.note(**fields)

    def close(self) -> None:  # noqa: B027
        pass


class _Bar(Stage):
    def __init__(
        self, desc: str, total: float | None, unit: str, file: TextIO, scale: bool, initial: float
    ):
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=f" {unit}" if not scale else unit,
            unit_scale=scale,
            file=file,
            leave=False,
            dynamic_ncols=True,
            delay=TTY_DELAY_S,
        )

    def update(self, n: float = 1) -> None:
        self._bar.update(n)

    def note(self, **fields: Any) -> None:
        self._bar.set_postfix(fields, refresh=False)

    def close(self) -> None:
        self._bar.close()


class _Lines(Stage):
    """Plain lines: no carriage returns, one line per PLAIN_EVERY_S at most."""

    def __init__(
        self,
        desc: str,
        total: float | None,
        unit: str,
        file: TextIO,
        every: float,
        scale: bool,
        initial: float,
    ):
        self.desc, self.total, self.file = desc, total, file
        self.unit = unit if unit == "B" or unit.endswith("s") else f"{unit}s"  # plural
        self.sep = "" if scale else " "  # 1.5MB, 12 texts
        self.every, self.scale = every, scale
        self.n = self.initial = float(initial)
        self.start = self.last = time.monotonic()
        self.printed = False
        self.fields: dict[str, Any] = {}

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def note(self, **fields: Any) -> None:
        self.fields = fields

    def close(self) -> None:
        if self.printed:
            elapsed = time.monotonic() - self.start
            rate = (self.n - self.initial) / elapsed if elapsed > 0 else math.inf
            self._write(
                f"{self.desc}: {self._count(self.n)}{self.sep}{self.unit} in {duration(elapsed)}"
                f" ({self._rate(rate)}){self._fields()}"
            )

    def _line(self, now: float) -> None:
        elapsed = now - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else math.inf
        done = self._count(self.n)
        if self.total:
            done += f"/{self._count(self.total)}{self.sep}{self.unit} ({100 * self.n / self.total:.0f}%)"
        else:
            done += f"{self.sep}{self.unit}"
        left = ""
        if self.total and 0 < rate < math.inf and self.n < self.total:
            left = f", about {duration((self.total - self.n) / rate)} left"
        self._write(f"{self.desc}: {done}, {self._rate(rate)}{left}{self._fields()}")

    def _count(self, n: float) -> str:
        return _si(n) if self.scale else f"{int(n):,}"

    def _rate(self, rate: float) -> str:
        if rate == math.inf:
            return "-"
        shown = _si(rate) if self.scale else (f"{rate:.1f}" if rate < 100 else f"{rate:,.0f}")
        return f"{shown}{self.sep}{self.unit}/s"

    def _fields(self) -> str:
        return "".join(f", {k} {v}" for k, v in self.fields.items())

    def _write(self, line: str) -> None:
        self.printed = True
        print(line, file=self.file, flush=True)


@contextlib.contextmanager
def stage(
    desc: str,
    total: float | None = None,
    unit: str = "item",
    *,
    scale: bool = False,
    file: TextIO | None = None,
) -> Iterator[Stage]:
    """Progress of one stage (see the module's docstring). `unit`: singular ("text", "step",
    "tensor"; "B" with `scale` for bytes, shown as kB/MB/GB). Shows nothing unless inside
    `reporting(True)`."""
    bar = make(desc, total, unit, scale=scale, file=file)
    try:
        yield bar
    finally:
        bar.close()


def make(
    desc: str,
    total: float | None = None,
    unit: str = "item",
    *,
    scale: bool = False,
    file: TextIO | None = None,
    enabled: bool | None = None,
    initial: float = 0,
) -> Stage:
    """`stage` without the `with` (close it yourself): for progress spread over callbacks,
    such as a training loop's steps (it has tqdm's `update`, `set_postfix` and `close`, so
    it can replace a tqdm bar). `enabled`: show it (True) or not (False) whatever `reporting`
    says. `initial`: work already done (a resumed run's steps)."""
    if not (is_reporting() if enabled is None else enabled):
        return Stage()
    out = file if file is not None else sys.stderr
    if _isatty(out):
        return _Bar(desc, total, unit, out, scale, initial)
    every = _env_seconds("GPTCLASSIFY_PROGRESS_EVERY", PLAIN_EVERY_S)
    return _Lines(desc, total, unit, out, every, scale, initial)


def duration(seconds: float) -> str:
    """3s, 4m05s, 1h02m: a duration as people read it in a log."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _si(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


def _isatty(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value >= 0 else default
