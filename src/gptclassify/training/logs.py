"""Where a run's log lines go: RUN/train.log, and the terminal unless quiet."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def run_logging(run_dir: Path, quiet: bool = False) -> Iterator[None]:
    """Log lines go to run_dir/train.log and (unless quiet) the terminal."""
    logger = logging.getLogger("gptclassify")
    logger.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / "train.log", encoding="utf-8")]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not quiet:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        # Lines meant for the file only (the terminal shows the error its own way).
        console.addFilter(lambda record: not getattr(record, "file_only", False))
        handlers.append(console)
    for h in handlers:
        logger.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
