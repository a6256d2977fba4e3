"""Configuration dataclasses. No torch import here: the CLI builds these before heavy imports."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gptclassify.errors import GPTClassifyError

PAD_TOKEN_ID = 50256
"""GPT-2's `<|endoftext|>`; doubles as the padding token (GPT-2 has no dedicated one)."""


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2 model. The four OpenAI sizes are in `PRESETS`."""

    vocab_size: int = 50257
    """Number of token ids (GPT-2 BPE: 50,257)."""
    context_length: int = 1024
    """Maximum sequence length; the size of the position embedding."""
    emb_dim: int = 768
    """Width of the residual stream."""
    n_heads: int = 12
    """Attention heads per block; must divide emb_dim."""
    n_layers: int = 12
    """Number of transformer blocks."""
    drop_rate: float = 0.0
    """Dropout probability (0.0 for fine-tuning, as in the reference recipe)."""
    qkv_bias: bool = True
    """Whether the query/key/value projection has a bias (True for OpenAI's GPT-2)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.emb_dim % self.n_heads:
            raise ValueError(
                f"GPTConfig.emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"GPTConfig.drop_rate must be in [0, 1), got {self.drop_rate!r}")

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> GPTConfig:
        """Build from a dict with exactly our field names; errors name the source and field."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GPTClassifyError(
                f"{source}: unknown GPTConfig field(s) {', '.join(unknown)}; "
                f"expected some of {', '.join(sorted(known))}"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise GPTClassifyError(f"{source}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> GPTConfig:
        """Read a custom model size from a JSON file holding GPTConfig fields."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GPTClassifyError(f"{path}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GPTClassifyError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise GPTClassifyError(f"{path}: expected a JSON object of GPTConfig fields")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_name(cls, name: str) -> GPTConfig:
        try:
            return PRESETS[name]
        except KeyError:
            raise GPTClassifyError(
                f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}"
            ) from None


PRESETS: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(emb_dim=768, n_layers=12, n_heads=12),
    "gpt2-medium": GPTConfig(emb_dim=1024, n_layers=24, n_heads=16),
    "gpt2-large": GPTConfig(emb_dim=1280, n_layers=36, n_heads=20),
    "gpt2-xl": GPTConfig(emb_dim=1600, n_layers=48, n_heads=25),
}
"""OpenAI's GPT-2 sizes (124M, 355M, 774M, 1558M parameters)."""

HUB_REPOS: dict[str, str] = {name: f"openai-community/{name}" for name in PRESETS}
"""Where each preset's pretrained weights live on the Hugging Face Hub."""
