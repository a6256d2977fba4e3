"""The real Gemma 3 270M GGUF (Q4_K_M) for tests: fetched once, cached, skipped when unreachable."""

from __future__ import annotations

from pathlib import Path

import pytest

from smollm2 import fetched


def gemma3_gguf() -> Path:
    """Path of gemma-3-270m-q4_k_m.gguf; skips the calling test when it cannot be had."""
    found = fetched("fetch-gemma3", "Gemma 3 270M")
    if isinstance(found, str):
        pytest.skip(found)
    return found
