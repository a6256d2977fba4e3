"""Crash points for the kill-and-resume tests.

With GPTCLASSIFY_KILL_AT=<point>:<n>[:<signal>] in the environment, the process sends itself
SIGKILL (or the named signal, e.g. SIGTERM) the n-th time it reaches <point> (`step`,
`estimate`, `epoch`, `checkpoint`, `publish`), exactly as an out-of-memory kill, a power cut
or a Ctrl-C would; with GPTCLASSIFY_KILL_RANK=<r>, only rank r of a torchrun job does. Unset
(always, outside those tests), `reached` does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_counts: Counter[str] = Counter()


def reached(point: str) -> None:
    target = os.environ.get("GPTCLASSIFY_KILL_AT")
    if not target:
        return
    rank = os.environ.get("GPTCLASSIFY_KILL_RANK")  # under torchrun: only that rank
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return
    name, n, *how = target.split(":")
    if name != point:
        return
    _counts[point] += 1
    if _counts[point] == int(n):
        os.kill(os.getpid(), getattr(signal, how[0]) if how else signal.SIGKILL)
