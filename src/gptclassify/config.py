"""The shape of a decoder model and the named presets. No torch import: the CLI reads these
before any heavy import. What a training run does is in args.py.

One config describes every family we implement (litgpt's approach: families differ by data,
not by copies of the model). The defaults are GPT-2's, so a config.json written before the
other families existed (seven GPT-2 fields) still reads as the same model. The switches:

| field        | GPT-2      | Llama 3 / SmolLM2 / Mistral | Qwen2 / Qwen2.5 | Qwen3   |
|--------------|------------|-----------------------------|-----------------|---------|
| norm         | layernorm  | rmsnorm                     | rmsnorm         | rmsnorm |
| positions    | learned    | rope                        | rope            | rope    |
| mlp          | gelu       | swiglu                      | swiglu          | swiglu  |
| qkv_bias     | yes        | no                          | yes             | no      |
| out/mlp bias | yes        | no                          | no              | no      |
| qk_norm      | no         | no                          | no              | yes     |
| n_kv_heads   | = n_heads  | fewer (grouped-query)       | fewer           | fewer   |
"""

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

FAMILIES = ("gpt2", "llama", "mistral", "qwen2", "qwen3")
"""Model families implemented here (Hugging Face `model_type` names; SmolLM2 is `llama`)."""
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
MLPS = ("gelu", "swiglu")

POOLS: tuple[str, ...] = ("last-real", "last", "first", "mean")
"""Which position is classified (see classifier.py)."""

LORA_TARGETS: tuple[str, ...] = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
"""Every linear layer of a block: the default LoRA targets (as in the book's appendix E)."""

LORA_ALIASES: dict[str, str] = {
    **{f"{p}_proj": "attn.c_attn" for p in "qkv"},
    "o_proj": "attn.c_proj",
    "gate_proj": "mlp.c_fc",
    "up_proj": "mlp.c_fc",
    "down_proj": "mlp.c_proj",
    **{name.split(".")[1]: name for name in ("attn.c_attn", "mlp.c_fc")},
}
"""transformers' projection names for the Llama and Qwen families (and GPT-2's short names).
Our decoder fuses q/k/v into attn.c_attn and gate/up into mlp.c_fc, so naming any of q, k, v
adapts all three with one low-rank update of the fused matrix (and gate/up likewise): the
same layers, with one rank shared by the fused projections instead of one per projection."""


def lora_target_list(spec: str) -> tuple[str, ...]:
    """Parse --lora-targets ("all" or a comma-separated subset of LORA_TARGETS or aliases)."""
    if spec.strip() == "all":
        return LORA_TARGETS
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in LORA_TARGETS and n not in LORA_ALIASES]
    if unknown or not names:
        raise GPTClassifyError(
            f"--lora-targets: {', '.join(unknown) or repr(spec)} not one of all, "
            + ", ".join(LORA_TARGETS)
            + " (or q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)"
        )
    return tuple(dict.fromkeys(LORA_ALIASES.get(n, n) for n in names))


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a decoder model (every family). The named sizes are in `PRESETS`."""

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
    family: str = "gpt2"
    """Which family's checkpoints and exports this model follows (one of FAMILIES)."""
    norm: str = "layernorm"
    """layernorm (with bias) or rmsnorm (weight only)."""
    norm_eps: float = 1e-5
    """Epsilon of every norm layer."""
    positions: str = "learned"
    """learned: a position embedding (`wpe`); rope: rotary positions in every attention."""
    rope_theta: float = 10000.0
    """Rotary base frequency."""
    rope_factor: float = 0.0
    """Llama 3.1 "llama3" rotary scaling factor (0: no scaling)."""
    rope_low_freq_factor: float = 1.0
    """llama3 scaling: wavelengths above original_context / this are divided by the factor."""
    rope_high_freq_factor: float = 4.0
    """llama3 scaling: wavelengths below original_context / this are kept."""
    rope_original_context: int = 8192
    """llama3 scaling: the context the model was pretrained with before scaling."""
    mlp: str = "gelu"
    """gelu: c_proj(gelu(c_fc x)); swiglu: c_proj(silu(gate x) * up x) with c_fc = [gate; up]."""
    mlp_hidden: int = 0
    """Width of the MLP's hidden layer (0: 4 x emb_dim, GPT-2's)."""
    n_kv_heads: int = 0
    """Key/value heads (grouped-query attention; 0: as many as n_heads)."""
    head_size: int = 0
    """Width of one attention head (0: emb_dim / n_heads; Qwen3 sets it explicitly)."""
    out_bias: bool = True
    """Whether the attention output projection has a bias."""
    mlp_bias: bool = True
    """Whether the MLP's projections have biases."""
    qk_norm: bool = False
    """RMSNorm of every query and key head before the rotary positions (Qwen3)."""
    tie_embeddings: bool = True
    """Whether the language-model head shares the token embedding's weights."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        for name in ("mlp_hidden", "n_kv_heads", "head_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"GPTConfig.{name} must be an integer >= 0, got {value!r}")
        if not self.head_size and self.emb_dim % self.n_heads:
            raise ValueError(
                f"GPTConfig.emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"GPTConfig.n_heads ({self.n_heads}) must be a multiple of n_kv_heads "
                f"({self.kv_heads})"
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"GPTConfig.drop_rate must be in [0, 1), got {self.drop_rate!r}")
        for f in fields(self):  # a JSON "no" is a truthy string: never read as a switch
            if f.type in ("bool", bool) and not isinstance(getattr(self, f.name), bool):
                raise ValueError(
                    f"GPTConfig.{f.name} must be true or false, got {getattr(self, f.name)!r}"
                )
        for name, allowed in (
            ("family", FAMILIES),
            ("norm", NORMS),
            ("positions", POSITIONS),
            ("mlp", MLPS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"GPTConfig.{name} must be one of {', '.join(allowed)}, "
                    f"got {getattr(self, name)!r}"
                )
        if not self.norm_eps > 0 or not self.rope_theta > 0 or self.rope_factor < 0:
            raise ValueError("GPTConfig.norm_eps and rope_theta must be > 0, rope_factor >= 0")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.head_size or self.emb_dim // self.n_heads

    @property
    def kv_heads(self) -> int:
        """Key/value heads (n_heads without grouped-query attention)."""
        return self.n_kv_heads or self.n_heads

    @property
    def hidden_dim(self) -> int:
        """Width of the MLP's hidden layer."""
        return self.mlp_hidden or 4 * self.emb_dim

    @property
    def qkv_dim(self) -> int:
        """Output width of the fused query/key/value projection (c_attn)."""
        return (self.n_heads + 2 * self.kv_heads) * self.head_dim

    def num_parameters(self) -> int:
        """Parameters of the network (tied head counted once), from the shape alone.

        Lets a caller refuse an absurd config before allocating it.
        """
        c, v, t, n = self.emb_dim, self.vocab_size, self.context_length, self.n_layers
        norm = 2 * c if self.norm == "layernorm" else c
        q, qkv, h = self.n_heads * self.head_dim, self.qkv_dim, self.hidden_dim
        up = 2 * h if self.mlp == "swiglu" else h
        block = (
            2 * norm
            + c * qkv
            + (qkv if self.qkv_bias else 0)  # c_attn
            + q * c
            + (c if self.out_bias else 0)  # attn.c_proj
            + (2 * self.head_dim if self.qk_norm else 0)
            + c * up
            + (up if self.mlp_bias else 0)  # mlp.c_fc
            + h * c
            + (c if self.mlp_bias else 0)  # mlp.c_proj
        )
        positions = t * c if self.positions == "learned" else 0
        head = 0 if self.tie_embeddings else v * c
        return v * c + positions + n * block + norm + head

    def to_dict(self) -> dict[str, Any]:
        """Every field for a non-GPT-2 family; GPT-2's seven fields alone for GPT-2 (the
        config.json that older versions wrote and read)."""
        data = asdict(self)
        if self.family == "gpt2":
            defaults = GPTConfig()
            for f in fields(self):
                if f.name not in _GPT2_FIELDS and data[f.name] == getattr(defaults, f.name):
                    del data[f.name]
        return data

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


_GPT2_FIELDS = (
    "vocab_size",
    "context_length",
    "emb_dim",
    "n_heads",
    "n_layers",
    "drop_rate",
    "qkv_bias",
)


def _llama(**shape: Any) -> GPTConfig:
    """A Llama-style shape: RMSNorm, rotary positions, SwiGLU, no biases, untied unless said."""
    base = {
        "family": "llama",
        "norm": "rmsnorm",
        "positions": "rope",
        "mlp": "swiglu",
        "qkv_bias": False,
        "out_bias": False,
        "mlp_bias": False,
        "tie_embeddings": False,
    }
    return GPTConfig(**(base | shape))


_LLAMA3_ROPE = {"rope_theta": 500000.0, "rope_factor": 32.0, "rope_original_context": 8192}
_QWEN = {"vocab_size": 151936, "rope_theta": 1000000.0, "norm_eps": 1e-6, "tie_embeddings": True}

PRESETS: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(emb_dim=768, n_layers=12, n_heads=12),
    "gpt2-medium": GPTConfig(emb_dim=1024, n_layers=24, n_heads=16),
    "gpt2-large": GPTConfig(emb_dim=1280, n_layers=36, n_heads=20),
    "gpt2-xl": GPTConfig(emb_dim=1600, n_layers=48, n_heads=25),
    # SmolLM2 (Hugging Face, 2024): Llama architecture, tied embeddings.
    **{
        name: _llama(
            vocab_size=49152,
            context_length=8192,
            emb_dim=c,
            n_layers=n,
            n_heads=h,
            n_kv_heads=kv,
            mlp_hidden=m,
            rope_theta=theta,
            tie_embeddings=True,
        )
        for name, (c, n, h, kv, m, theta) in {
            "smollm2-135m": (576, 30, 9, 3, 1536, 100000.0),
            "smollm2-360m": (960, 32, 15, 5, 2560, 100000.0),
            "smollm2-1.7b": (2048, 24, 32, 32, 8192, 130000.0),
        }.items()
    },
    "llama-3.2-1b": _llama(
        vocab_size=128256,
        context_length=131072,
        emb_dim=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        mlp_hidden=8192,
        tie_embeddings=True,
        **_LLAMA3_ROPE,
    ),
    "llama-3.2-3b": _llama(
        vocab_size=128256,
        context_length=131072,
        emb_dim=3072,
        n_layers=28,
        n_heads=24,
        n_kv_heads=8,
        mlp_hidden=8192,
        tie_embeddings=True,
        **_LLAMA3_ROPE,
    ),
    "qwen2.5-0.5b": _llama(
        family="qwen2",
        context_length=32768,
        emb_dim=896,
        n_layers=24,
        n_heads=14,
        n_kv_heads=2,
        mlp_hidden=4864,
        qkv_bias=True,
        **_QWEN,
    ),
    "qwen2.5-1.5b": _llama(
        family="qwen2",
        context_length=32768,
        emb_dim=1536,
        n_layers=28,
        n_heads=12,
        n_kv_heads=2,
        mlp_hidden=8960,
        qkv_bias=True,
        **_QWEN,
    ),
    "qwen3-0.6b": _llama(
        family="qwen3",
        context_length=40960,
        emb_dim=1024,
        n_layers=28,
        n_heads=16,
        n_kv_heads=8,
        head_size=128,
        mlp_hidden=3072,
        qk_norm=True,
        **_QWEN,
    ),
    "qwen3-1.7b": _llama(
        family="qwen3",
        context_length=40960,
        emb_dim=2048,
        n_layers=28,
        n_heads=16,
        n_kv_heads=8,
        head_size=128,
        mlp_hidden=6144,
        qk_norm=True,
        **_QWEN,
    ),
    # Mistral 7B v0.3: no sliding window; v0.1's 4,096-token window is equivalent up to
    # 4,096 tokens, which is where weights.py caps its context.
    "mistral-7b": _llama(
        family="mistral",
        vocab_size=32768,
        context_length=32768,
        emb_dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        mlp_hidden=14336,
        rope_theta=1000000.0,
    ),
}
"""Named shapes: OpenAI's GPT-2 sizes and the other families' common small models."""

HUB_REPOS: dict[str, str] = {
    **{
        name: f"openai-community/{name}"
        for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
    },
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M",
    "smollm2-1.7b": "HuggingFaceTB/SmolLM2-1.7B",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
}
"""Where each preset's pretrained weights live on the Hugging Face Hub."""
