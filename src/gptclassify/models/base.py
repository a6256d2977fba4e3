"""What every family module describes: the Hugging Face tensors behind our parameters."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """The Hugging Face tensors one of our parameters is made of."""

    names: tuple[str, ...]
    """Their names, concatenated in this order along dim 0 (q, k, v or gate, up)."""
    transposed: bool = False
    """Stored (in, out), as GPT-2's Conv1D does; ours is (out, in)."""
    sizes: tuple[int, ...] | None = None
    """Each tensor's share of dim 0 when there are several (None: one tensor)."""


HF_PREFIX = {"gpt2": "transformer.", "llama": "model."}
"""The prefix a family's files may put before the backbone's tensor names."""
