"""Ctrl-C and SIGTERM during a run: finish the current step, write a checkpoint, stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from gptclassify.errors import GPTClassifyError

log = logging.getLogger("gptclassify.training")


class TrainingInterrupted(GPTClassifyError):
    """Ctrl-C or SIGTERM stopped the run after a step; a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
        """What a shell reports for a process stopped by that signal (130, 143)."""


@contextmanager
def stop_on_signals(stop: Callable[[int], None]) -> Iterator[None]:
    """While inside, Ctrl-C / SIGTERM call `stop(signum)` (the loop then stops after the
    current step); a second one aborts at once. Signals reach the main thread only, so
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if seen:
            raise KeyboardInterrupt  # asked twice: stop now
        seen.append(signum)
        stop(signum)
        log.info("%s received: stopping after this step", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
