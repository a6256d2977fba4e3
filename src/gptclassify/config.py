"""The shape of a GPT-2 model and the OpenAI presets. No torch import: the CLI reads these
before any heavy import. What a training run does is in args.py."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gptclassify.errors import GPTClassifyError
from gptclassify.files import read_json

PAD_TOKEN_ID = 50256
"""GPT-2's `<|endoftext|>`; doubles as the padding token (GPT-2 has no dedicated one)."""

TOKENIZER_VOCAB = 50257
"""Token ids GPT-2's tokenizer emits (0..50256): a model needs at least this many."""


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
        """Width of one attention head."""
        return self.emb_dim // self.n_heads

    def num_parameters(self) -> int:
        """Parameters of the network (tied head counted once), from the shape alone.

        Lets a caller refuse an absurd config before allocating it.
        """
        c, v, t, n = self.emb_dim, self.vocab_size, self.context_length, self.n_layers
        qkv_bias = 3 * c if self.qkv_bias else 0
        block = (
            2 * 2 * c  # two LayerNorms
            + c * 3 * c
            + qkv_bias  # c_attn
            + c * c
            + c  # attn.c_proj
            + c * 4 * c
            + 4 * c  # mlp.c_fc
            + 4 * c * c
            + c  # mlp.c_proj
        )
        return v * c + t * c + n * block + 2 * c

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
        data = read_json(path)
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
