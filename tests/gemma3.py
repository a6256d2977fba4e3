"""The real Gemma 3 270M GGUF (Q4_K_M) for tests: fetched once, cached, skipped when unreachable."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT

FETCH = REPO_ROOT.parent / "shared" / "models" / "fetch-gemma3"


@functools.cache
def _fetch() -> Path | str:
    """The file's path, or why it could not be fetched (cached for the session either way)."""
    if not FETCH.is_file():
        return f"{FETCH} not found (the fetch script lives beside the repository)"
    try:
        done = subprocess.run(
            [str(FETCH)], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{FETCH} failed: {exc}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{FETCH} could not fetch Gemma 3 270M (exit {done.returncode}: {why})"
    return Path(lines[-1])


def gemma3_gguf() -> Path:
    """Path of gemma-3-270m-q4_k_m.gguf; skips the calling test when it cannot be had."""
    found = _fetch()
    if isinstance(found, str):
        pytest.skip(found)
    return found
