"""The real SmolLM2-135M-Instruct GGUF for tests: fetched once, cached, skipped when unreachable."""

from __future__ import annotations

import fcntl
import functools
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT

MODELS = REPO_ROOT.parent / "shared" / "models"


@functools.cache
def fetched(script: str, what: str) -> Path | str:
    """The path the fetch script `script` (beside the repository) prints, or why `what` could
    not be fetched (cached for the session either way)."""
    FETCH = MODELS / script
    if not FETCH.is_file():
        return f"{FETCH} not found (the fetch script lives beside the repository)"
    # The suite's two workers (pytest-xdist) may ask at once: one fetches, the other waits
    # for it and then finds the file cached (the scripts write one `.tmp` name).
    lock = Path(tempfile.gettempdir()) / f"gptclassify-tests-{script}.lock"
    try:
        with open(lock, "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            done = subprocess.run(
                [str(FETCH)], capture_output=True, text=True, timeout=600, check=False
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{FETCH} failed: {exc}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{FETCH} could not fetch {what} (exit {done.returncode}: {why})"
    return Path(lines[-1])


def smollm2_gguf() -> Path:
    """Path of SmolLM2-135M-Instruct.Q4_1.gguf; skips the calling test when it cannot be had."""
    found = fetched("fetch-smollm2", "SmolLM2-135M-Instruct")
    if isinstance(found, str):
        pytest.skip(found)
    return found
