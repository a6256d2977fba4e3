"""Configuration dataclasses. No torch import here: the CLI builds these before heavy imports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from gptclassify.errors import GPTClassifyError
from gptclassify.files import read_json

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


# ---- training --------------------------------------------------------------------------
# Each field carries its CLI help in metadata["help"]; cli.py turns these dataclasses into
# flags (--field-name), so the Python API and the command line are documented in one place.


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


PAD_CHOICES = ("batch", "longest", "context", "none")
TRAINABLE_CHOICES = ("head", "last-block", "last-2-blocks", "last-N-blocks", "all", "lora")


@dataclass
class DataConfig:
    """Where the labelled text comes from."""

    data: str = field(
        default="sms-spam",
        metadata=_help(
            "'sms-spam' (downloaded and prepared as `gptclassify data sms-spam` does) or a "
            "folder written by `gptclassify data`. Ignored when --train is given."
        ),
    )
    train: str | None = field(
        default=None, metadata=_help("Raw training file (CSV, TSV, JSONL, Parquet).")
    )
    validation: str | None = field(
        default=None,
        metadata=_help("Raw validation file; without it 10% of --train is held out (seeded)."),
    )
    test: str | None = field(default=None, metadata=_help("Raw test file (optional)."))
    text_column: str | None = field(
        default=None, metadata=_help("Text column of raw files (found by name if omitted).")
    )
    label_column: str | None = field(
        default=None, metadata=_help("Label column of raw files (found by name if omitted).")
    )
    sms_source: str | None = field(
        default=None,
        metadata=_help(
            "sms-spam only: a local copy (zip or SMSSpamCollection file) or another URL, "
            "instead of downloading from UCI."
        ),
    )
    book_split: bool = field(
        default=False,
        metadata=_help("sms-spam only: reproduce the book's exact 1,045/149/300 split."),
    )
    balance: bool = field(
        default=True, metadata=_help("sms-spam only: undersample ham to the spam count.")
    )

    def __post_init__(self) -> None:
        if self.train is None and (self.validation or self.test):
            raise GPTClassifyError(
                "--validation/--test need --train (or use a prepared --data folder)"
            )


@dataclass
class TrainConfig:
    """Everything `gptclassify train` does; the defaults are the book's recipe."""

    data: DataConfig = field(default_factory=DataConfig)
    model: str = field(
        default="gpt2",
        metadata=_help(
            "gpt2, gpt2-medium, gpt2-large, gpt2-xl, a Hugging Face GPT-2 folder, or a JSON file "
            "of GPTConfig fields (needs --weights random)."
        ),
    )
    weights: Literal["pretrained", "random"] = field(
        default="pretrained", metadata=_help("Start from pretrained weights or a random init.")
    )
    trainable: str = field(
        default="last-block",
        metadata=_help(
            "What trains: head, last-block, last-N-blocks (e.g. last-2-blocks), all, or lora. "
            "Blocks come with the final LayerNorm; the head always trains."
        ),
    )
    pool: Literal["last-real", "last", "first", "mean"] = field(
        default="last-real",
        metadata=_help(
            "Which position is classified: the last real token, the last (padded) position as "
            "in the book, the first token, or the mean over real tokens."
        ),
    )
    pad_to: str = field(
        default="batch",
        metadata=_help(
            "batch: pad each batch to its longest text; longest: pad every text to the longest "
            "training text (the book); context: to the model context; N: to N tokens; none: no "
            "padding (needs --batch-size 1)."
        ),
    )
    max_length: int | None = field(
        default=None, metadata=_help("Cap on tokens per text (default: the model context).")
    )
    truncate: Literal["end", "start"] = field(
        default="end",
        metadata=_help(
            "Which part of an over-long text is cut: the end (keep the start) or the start."
        ),
    )
    causal_mask: bool = field(
        default=True,
        metadata=_help("Causal attention mask (off: every real token sees every other)."),
    )
    lora_rank: int = field(default=16, metadata=_help("LoRA rank (with --trainable lora)."))
    lora_alpha: float = field(
        default=16.0, metadata=_help("LoRA alpha; updates are scaled by alpha / rank.")
    )
    lora_targets: str = field(
        default="all",
        metadata=_help(
            "Comma-separated linear layers of every block that get adapters: attn.c_attn, "
            "attn.c_proj, mlp.c_fc, mlp.c_proj, or all."
        ),
    )
    merge_lora: bool = field(
        default=False, metadata=_help("Save LoRA folded into the weights (a full model).")
    )
    lr: float = field(default=5e-5, metadata=_help("AdamW learning rate."))
    weight_decay: float = field(default=0.1, metadata=_help("AdamW weight decay."))
    batch_size: int = field(default=8, metadata=_help("Examples per batch."))
    grad_accum: int = field(
        default=1, metadata=_help("Micro-batches per optimizer step (gradient accumulation).")
    )
    epochs: int = field(default=5, metadata=_help("Passes over the training data."))
    seed: int = field(
        default=123, metadata=_help("Seed for initialisation, data order and data preparation.")
    )
    eval_freq: int = field(
        default=50, metadata=_help("Estimate train/val loss every N optimizer steps (0: never).")
    )
    eval_iter: int = field(
        default=5, metadata=_help("Batches used by those estimates and by the epoch accuracies.")
    )
    best_by: Literal["val_accuracy", "val_loss"] = field(
        default="val_accuracy",
        metadata=_help(
            "Which full-validation metric picks the kept epoch (accuracy ties go to the lower "
            "loss). Loss often rises while accuracy still improves, as confident mistakes grow."
        ),
    )
    patience: int | None = field(
        default=None, metadata=_help("Stop after N epochs without validation improvement.")
    )
    class_weights: Literal["none", "auto"] = field(
        default="none",
        metadata=_help("auto: weight the loss by inverse class frequency (for imbalanced data)."),
    )
    ignore_index: bool = field(
        default=False,
        metadata=_help(
            "The book's padding-ignore loss variant (SPEC row 18). Has no effect for classification: "
            "the loss reads one position per text, never a padding label."
        ),
    )
    calibrate: bool = field(
        default=False,
        metadata=_help("Fit a softmax temperature on the validation split after training."),
    )
    device: str = field(
        default="auto", metadata=_help("auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.")
    )
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto",
        metadata=_help("Matmul precision; auto: bf16 where the hardware has fast bf16."),
    )
    compile: bool = field(default=False, metadata=_help("torch.compile the model (opt-in)."))
    cache: Literal["auto", "off"] = field(
        default="auto",
        metadata=_help(
            "auto: compute the frozen prefix of the network once per text and train on it "
            "(exact; used when it fits --cache-gb); off: always run the whole network."
        ),
    )
    cache_gb: float = field(
        default=4.0, metadata=_help("Memory budget for the frozen-prefix cache, in GB.")
    )
    out: str | None = field(default=None, metadata=_help("Run folder (default: runs/<timestamp>)."))

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        check_positive_ints(self, "batch_size", "grad_accum", "epochs", "eval_iter", "lora_rank")
        if self.eval_freq < 0:
            raise GPTClassifyError(f"--eval-freq must be >= 0, got {self.eval_freq}")
        if self.lr <= 0:
            raise GPTClassifyError(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise GPTClassifyError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.max_length is not None and self.max_length < 1:
            raise GPTClassifyError(f"--max-length must be >= 1, got {self.max_length}")
        if self.patience is not None and self.patience < 1:
            raise GPTClassifyError(f"--patience must be >= 1, got {self.patience}")
        if self.cache_gb < 0:
            raise GPTClassifyError(f"--cache-gb must be >= 0, got {self.cache_gb}")
        if self.pad_to not in PAD_CHOICES and not (self.pad_to.isdigit() and int(self.pad_to) > 0):
            raise GPTClassifyError(
                f"--pad-to: {self.pad_to!r} is not one of {', '.join(PAD_CHOICES)} or a positive integer"
            )
        if self.model.endswith(".json") and self.weights == "pretrained":
            raise GPTClassifyError(
                f"--model {self.model}: a config JSON has no weights; add --weights random"
            )
        lora_target_list(self.lora_targets)  # validates the names
        if self.pad_to == "none" and self.batch_size != 1:
            raise GPTClassifyError(
                "--pad-to none needs --batch-size 1 (use --grad-accum for larger steps)"
            )
        check_choices(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flag(name: str) -> str:
    return name.replace("_", "-")


LORA_TARGETS: tuple[str, ...] = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
"""Every linear layer of a GPT-2 block: the default LoRA targets (as in the book's appendix E)."""


def lora_target_list(spec: str) -> tuple[str, ...]:
    """Parse --lora-targets ("all" or a comma-separated subset of LORA_TARGETS)."""
    if spec.strip() == "all":
        return LORA_TARGETS
    names = tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    unknown = [n for n in names if n not in LORA_TARGETS]
    if unknown or not names:
        raise GPTClassifyError(
            f"--lora-targets: {', '.join(unknown) or repr(spec)} not one of all, "
            + ", ".join(LORA_TARGETS)
        )
    return names


def check_positive_ints(config: Any, *names: str) -> None:
    """The named fields are integers >= 1 (bools excluded), or a one-line error naming the flag."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GPTClassifyError(f"--{_flag(name)} must be a positive integer, got {value!r}")


def check_choices(config: Any) -> None:
    """Every Literal-typed field of a config dataclass holds one of its allowed values.

    The Python API gets the same one-line errors as the CLI, whose choices come from the same
    annotations.
    """
    import typing

    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        allowed = (
            typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is Literal else ()
        )
        value = getattr(config, f.name)
        if allowed and value not in allowed:
            raise GPTClassifyError(
                f"--{_flag(f.name)}: {value!r} is not one of {', '.join(map(str, allowed))}"
            )
