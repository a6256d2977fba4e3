"""The shape of a decoder model and the named presets. No torch import: the CLI reads these
before any heavy import. What a training run does is in args.py.

One config describes every family we implement (litgpt's approach: families differ by data,
not by copies of the model). The defaults are GPT-2's, so a config.json written before the
other families existed (seven GPT-2 fields) still reads as the same model. The switches:

| field          | GPT-2     | Llama 3 / SmolLM2 / Mistral | Qwen2 / 2.5 | Qwen3   | Gemma 3       |
|----------------|-----------|-----------------------------|-------------|---------|---------------|
| norm           | layernorm | rmsnorm                     | rmsnorm     | rmsnorm | rmsnorm       |
| norm_offset    | no        | no                          | no          | no      | yes (1 + w)   |
| post_norms     | no        | no                          | no          | no      | yes           |
| embed_scale    | no        | no                          | no          | no      | sqrt(width)   |
| positions      | learned   | rope                        | rope        | rope    | rope (2 bases)|
| mlp            | gelu      | swiglu                      | swiglu      | swiglu  | geglu         |
| qkv_bias       | yes       | no                          | yes         | no      | no            |
| out/mlp bias   | yes       | no                          | no          | no      | no            |
| qk_norm        | no        | no                          | no          | yes     | yes           |
| n_kv_heads     | = n_heads | fewer (grouped-query)       | fewer       | fewer   | fewer         |
| sliding_window | no        | no                          | no          | no      | 5 of 6 layers |

Which family a config belongs to, its presets and Hub ids are in models/ (the registry).
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

NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
MLPS = ("gelu", "swiglu", "geglu")

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
    """Which family's checkpoints and exports this model follows: a transformers
    `model_type` of models/' registry (gpt2, llama, mistral, qwen2, qwen3, gemma3_text)."""
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
    """gelu: c_proj(gelu(c_fc x)); swiglu: c_proj(silu(gate x) * up x) with c_fc = [gate; up];
    geglu: the same gate with GELU's tanh approximation (Gemma)."""
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
    norm_offset: bool = False
    """RMSNorm scales by (1 + weight), computed in fp32, instead of by weight (Gemma)."""
    post_norms: bool = False
    """A norm on the attention's and the MLP's outputs too, before each residual add (Gemma
    2/3's "sandwich": ln_1 -> attn -> post_attn_norm, ln_2 -> mlp -> post_mlp_norm)."""
    embed_scale: bool = False
    """Token embeddings multiplied by sqrt(emb_dim), rounded to their dtype (Gemma)."""
    attn_scalar: float = 0.0
    """Queries are scaled by attn_scalar ** -0.5 (0: head_dim, the usual 1 / sqrt(head_dim));
    Gemma's `query_pre_attn_scalar`."""
    sliding_window: int = 0
    """Keys a sliding-window layer's query sees, itself included (0: no sliding window)."""
    global_every: int = 0
    """With a sliding window: layers N-1, 2N-1, ... attend to everything and the others slide
    (Gemma 3: 6, five sliding layers to one global); 0: every layer slides."""
    rope_local_theta: float = 0.0
    """Rotary base of the sliding-window layers (0: rope_theta; Gemma 3: 10,000)."""
    rope_linear: float = 0.0
    """Linear rotary scaling of the global layers: positions divided by this (0: none;
    Gemma 3 4B and larger: 8)."""

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        for name in ("mlp_hidden", "n_kv_heads", "head_size", "sliding_window", "global_every"):
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
        if not isinstance(self.family, str) or not self.family:
            raise ValueError(f"GPTConfig.family must be a model type, got {self.family!r}")
        for name, allowed in (
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
        for name in ("attn_scalar", "rope_local_theta", "rope_linear"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"GPTConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.rope_linear and self.rope_factor:
            raise ValueError("GPTConfig.rope_linear and rope_factor cannot both be set")

    def sliding(self, layer: int) -> bool:
        """Whether block `layer` attends within the sliding window."""
        if not self.sliding_window:
            return False
        return not self.global_every or (layer + 1) % self.global_every != 0

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
        up = h if self.mlp == "gelu" else 2 * h
        block = (
            (4 if self.post_norms else 2) * norm
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
        if self.gpt2_fields_only:
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

    @property
    def gpt2_fields_only(self) -> bool:
        """Whether `to_dict` writes GPT-2's seven fields alone (what layouts 1 and 2 hold)."""
        return self.family == "gpt2"


_GPT2_FIELDS = (
    "vocab_size",
    "context_length",
    "emb_dim",
    "n_heads",
    "n_layers",
    "drop_rate",
    "qkv_bias",
)
