"""The model folder: what a trained classifier is on disk, written here and read here only.

A classifier folder holds

- `model.safetensors`: the weights (never a pickle); for LoRA adapters on a pretrained base,
  only the adapters and the head (written and read by model_io.py, the torch side);
- `config.json`: a `ClassifierConfig`: everything needed to rebuild and run the classifier
  with no other input (model shape, labels in order, pooling, the input policy, tokenizer,
  temperature), how it was made (`Provenance`: base model, what trained, the run's whole
  `TrainConfig`), and the sha256 of the weights file, so a changed or truncated file is
  refused rather than silently loaded;
- `metrics.json` (training runs): a `RunMetrics`, the same layout for GPT runs and the TF-IDF
  baseline, so reports can read both.

A folder exported to ONNX (`gptclassify export --format onnx`) has the same config.json with
an `onnx` record instead of the safetensors weights: the graph's file and sha256, its
precision (fp32 or int8), and what the export measured; `exported_from` names the folder it
came from and that folder's file checksums. Such a folder is layout version 2: gptclassify
0.1.0, which cannot run it, refuses it as newer rather than failing on a missing field.
Folders with safetensors weights are still written as version 1, so 0.1.0 reads them.

This module imports no torch: a folder's config and metrics can be read (and an exported
ONNX folder run) without it. Every config.json carries `format` (which kind of folder) and
`format_version`; folders written by gptclassify 0.1.0 still load (tests/fixtures/v1).
Reading validates every field and names the file and field of the first problem.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tiktoken

from gptclassify import __version__
from gptclassify.config import PAD_TOKEN_ID, POOLS, TOKENIZER_VOCAB, GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write, inside, read_json
from gptclassify.models import family_of
from gptclassify.surface import check_record as check_surface_record

FORMAT_CLASSIFIER = "gptclassify-classifier"
FORMAT_BASELINE = "gptclassify-tfidf-baseline"
CLASSIFIER_VERSION = 7
"""The newest layout of config.json this reads: 1 since gptclassify 0.1.0 (safetensors
weights), 2 for folders holding an ONNX graph, 3 for models of another family than GPT-2 or
with a tokenizer.json tokenizer, 4 for multi-label models (an older reader would apply a
softmax to them: it refuses them instead), 5 with a bag-of-tokens head in the weights, 6
with a surface-feature head (surface.py) beside them, 7 for weights that hold only the
trained tensors, the frozen rest coming from a base named by path and sha256 (an older
reader would find tensors missing). A reader refuses newer versions."""
TORCH_LAYOUT_VERSION = 1
ONNX_LAYOUT_VERSION = 2
FAMILY_LAYOUT_VERSION = 3
MULTI_LABEL_LAYOUT_VERSION = 4
LEXICAL_LAYOUT_VERSION = 5
SURFACE_LAYOUT_VERSION = 6
TRAINED_ONLY_LAYOUT_VERSION = 7
STORED = ("full", "trained")
"""What a folder's weights file holds: every tensor, or the trained ones (the frozen rest
are the base's: `Provenance.base`, checked by `base_sha256`)."""
TASKS = ("single-label", "multi-label")
TEMPERATURE_RANGE = (1e-3, 1e3)
"""The softmax temperatures a model folder may hold (calibration fits one in 0.05..20)."""
GPT2_TOKENIZER = {"library": "tiktoken", "encoding": "gpt2", "pad_id": PAD_TOKEN_ID}
TOKENIZER_FILE = "tokenizer.json"
METRICS_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
ONNX_WEIGHTS = "model.onnx"
METRICS = "metrics.json"
ONNX_PRECISIONS = ("fp32", "int8")


# ---- config.json --------------------------------------------------------------------------


def _tokenizer(data: dict[str, Any] | None, model: GPTConfig, source: str) -> dict[str, Any]:
    """The validated "tokenizer" entry of a config.json (absent: GPT-2's, as 0.1.0 wrote)."""
    where = f"{source}: tokenizer"
    if not data or data.get("library") == "tiktoken":
        if data and any(data.get(k) != v for k, v in GPT2_TOKENIZER.items()):
            raise GPTClassifyError(
                f"{where} {data} is not supported (tiktoken: only gpt2, pad 50256)"
            )
        if model.vocab_size < TOKENIZER_VOCAB:
            raise GPTClassifyError(
                f"{source}: model.vocab_size {model.vocab_size} is smaller than the GPT-2 "
                f"tokenizer's {TOKENIZER_VOCAB} token ids"
            )
        return dict(GPT2_TOKENIZER)
    if data.get("library") != "tokenizers":
        raise GPTClassifyError(f"{where}: library must be tiktoken or tokenizers")
    if data.get("file") != TOKENIZER_FILE:
        raise GPTClassifyError(f"{where}: file must be {TOKENIZER_FILE!r}")
    sha = data.get("sha256")
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise GPTClassifyError(f"{where}: sha256 must be 64 hex digits")

    def token_id(value: Any, name: str) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 <= value < model.vocab_size
        ):
            raise GPTClassifyError(f"{where}: {name} must be a token id below {model.vocab_size}")
        return value

    out = {"library": "tokenizers", "file": TOKENIZER_FILE, "sha256": sha}
    out["pad_id"] = token_id(data.get("pad_id"), "pad_id")
    out["eos_id"] = None if data.get("eos_id") is None else token_id(data["eos_id"], "eos_id")
    for key in ("prefix", "suffix"):
        ids = data.get(key, [])
        if not isinstance(ids, list):
            raise GPTClassifyError(f"{where}: {key} must be a list of token ids")
        out[key] = [token_id(i, key) for i in ids]
    return out


@dataclass(frozen=True)
class LoraInfo:
    """How the LoRA adapters of a folder relate to its weights."""

    rank: int
    alpha: float
    targets: tuple[str, ...]
    merged: bool = False
    """Folded into the weights: the folder holds a plain full model."""
    adapters_only: bool = False
    """The folder holds only adapters and head; the base weights come from `base`."""
    base: str | None = None
    """A preset name (fetched through the Hugging Face Hub cache) or a folder path."""
    base_sha256: str | None = None
    """sha256 of the base's weights file, checked before the adapters are applied."""


@dataclass(frozen=True)
class Provenance:
    """How a classifier was made: carried through save and load unchanged."""

    base_model: str = "unknown"
    """Where the backbone's weights came from (a preset, a folder, or a random init)."""
    base_sha256: str | None = None
    """sha256 of the pretrained weights file the run started from (model.safetensors, its
    shard index, or the .gguf file)."""
    weights: str = "pretrained"
    """pretrained or random."""
    trainable: str | None = None
    pad_to: str | None = None
    lora: LoraInfo | None = None
    train_config: dict[str, Any] | None = None
    """The run's whole TrainConfig (nested), when made by `gptclassify train`."""
    stored: str = "full"
    """full: the weights file holds the whole model. trained: only what training changed
    (the trainable blocks, the head, ...); the frozen tensors are rebuilt from `base`."""
    base: str | None = None
    """With stored 'trained': the base to rebuild the frozen tensors from, a packaged or
    preset name (fetched by name on any machine) or an absolute path; its weights file
    must have `base_sha256`."""


@dataclass(frozen=True)
class OnnxInfo:
    """The ONNX graph of an exported folder: inputs `input_ids` and `attention_mask` (int64,
    batch x sequence, right padding), output `logits` (float32, batch x classes)."""

    sha256: str
    precision: str = "fp32"
    """fp32, or int8 (ONNX Runtime dynamic quantization of the linear layers)."""
    file: str = ONNX_WEIGHTS
    data_file: str | None = None
    """External tensor data (graphs over protobuf's 2 GB limit), beside the graph."""
    data_sha256: str | None = None
    opset: int | None = None
    exporter: str | None = None
    """Which torch.onnx exporter wrote the graph: dynamo or legacy (TorchScript)."""
    checks: dict[str, Any] = field(default_factory=dict)
    """What the export measured: largest logit difference from the PyTorch model on padded
    batches of mixed lengths; for int8, label agreement and accuracy against fp32."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> OnnxInfo:
        r = _Fields(data, source)
        data_file = r.string("data_file", optional=True)
        return cls(
            sha256=r.sha256("sha256"),
            precision=r.choice("precision", ONNX_PRECISIONS, default="fp32"),
            file=r.file_name("file", default=ONNX_WEIGHTS),
            data_file=r.file_name("data_file", default=data_file) if data_file else None,
            data_sha256=r.sha256("data_sha256") if data_file else None,
            opset=r.integer("opset", 1, None, optional=True),
            exporter=r.string("exporter", optional=True),
            checks=r.object("checks", optional=True) or {},
        )


@dataclass(frozen=True)
class ExportSource:
    """The folder an export was made from, and the checksums of its files then."""

    path: str
    sha256: dict[str, str]
    """File name -> sha256 (config.json, the weights; for LoRA adapters, the base's weights
    under `lora_base`)."""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": dict(self.sha256)}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> ExportSource:
        r = _Fields(data, source)
        sums = r.object("sha256")
        if not all(isinstance(v, str) for v in sums.values()):
            raise r.fail("sha256", "must map file names to sha256 strings")
        return cls(path=r.string("path"), sha256=dict(sums))


@dataclass(frozen=True)
class ClassifierConfig:
    """config.json of a classifier folder."""

    model: GPTConfig
    labels: tuple[str, ...]
    pool: str
    causal: bool
    max_length: int
    pad_length: int | None
    truncate: str
    temperature: float = 1.0
    provenance: Provenance = field(default_factory=Provenance)
    weights_file: str = WEIGHTS
    weights_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = TORCH_LAYOUT_VERSION
    """The version read from the file; writing uses the layout's own (`layout_version`)."""
    onnx: OnnxInfo | None = None
    """Set for an exported ONNX folder, which holds no safetensors weights."""
    exported_from: ExportSource | None = None
    tokenizer: dict[str, Any] = field(default_factory=lambda: dict(GPT2_TOKENIZER))
    """How texts become ids: GPT-2's embedded tiktoken BPE, or the folder's tokenizer.json
    through `tokenizers` (its sha256, padding id, the tokens put around every text)."""
    task: str = "single-label"
    """single-label (softmax over classes) or multi-label (a sigmoid per label)."""
    thresholds: tuple[float, ...] | None = None
    """Multi-label: each label's decision threshold (tuned on validation for macro F1)."""
    label_sep: str = ";"
    """Multi-label: how a predicted label set is joined in prediction files."""
    lexical: dict[str, Any] | None = None
    """Set when a bag-of-tokens logistic regression adds to the logits (lexical.py): how it
    was fitted. Its tables are in the weights (or the ONNX graph)."""
    surface: dict[str, Any] | None = None
    """Set when a TF-IDF word/character n-gram head weighs in on the logits (surface.py):
    its settings, validation scores and its two files' sha256."""

    @property
    def layout_version(self) -> int:
        """The oldest layout that describes this folder (so older readers still read it)."""
        if self.trained_only:
            return TRAINED_ONLY_LAYOUT_VERSION  # an older reader would miss the base's tensors
        if self.surface is not None:
            return SURFACE_LAYOUT_VERSION  # an older reader would drop its logits silently
        if self.lexical is not None:
            return LEXICAL_LAYOUT_VERSION  # an older reader would drop its logits silently
        if self.task == "multi-label":
            return MULTI_LABEL_LAYOUT_VERSION
        if not self.model.gpt2_fields_only or self.tokenizer.get("library") != "tiktoken":
            return FAMILY_LAYOUT_VERSION
        return ONNX_LAYOUT_VERSION if self.onnx is not None else TORCH_LAYOUT_VERSION

    @property
    def has_torch_weights(self) -> bool:
        return self.onnx is None

    @property
    def trained_only(self) -> bool:
        """The weights file holds the trained tensors alone (the rest: the named base)."""
        return self.onnx is None and self.provenance.stored == "trained"

    def to_json(self) -> dict[str, Any]:
        p = self.provenance
        out = {
            "format": FORMAT_CLASSIFIER,
            "format_version": self.layout_version,
            "model": self.model.to_dict(),
            "base_model": p.base_model,
            **({"base_sha256": p.base_sha256} if p.base_sha256 else {}),
            "weights": p.weights,
            "trainable": p.trainable,
            "pad_to": p.pad_to,
            "lora": _lora_json(p.lora),
            "train_config": p.train_config,
            **({"weights_stored": "trained", "base": p.base} if self.trained_only else {}),
            "labels": list(self.labels),
            "pool": self.pool,
            "causal": self.causal,
            "max_length": self.max_length,
            "pad_length": self.pad_length,
            "truncate": self.truncate,
            "temperature": self.temperature,
            "tokenizer": dict(self.tokenizer),
            "weights_file": self.weights_file,
            "weights_sha256": self.weights_sha256,
            "versions": dict(self.versions),
        }
        if self.task == "multi-label":
            out["task"] = self.task
            out["thresholds"] = list(self.thresholds or [0.5] * len(self.labels))
            out["label_sep"] = self.label_sep
        if self.lexical is not None:
            out["lexical"] = dict(self.lexical)
        if self.surface is not None:
            out["surface"] = dict(self.surface)
        if self.onnx is not None:
            # No safetensors weights here: the graph holds them.
            del out["weights_file"], out["weights_sha256"]
            out["onnx"] = self.onnx.to_json()
        if self.exported_from is not None:
            out["exported_from"] = self.exported_from.to_json()
        return out

    @classmethod
    def from_json(cls, data: Any, source: str) -> ClassifierConfig:
        """Validate every field of a parsed config.json."""
        r = _Fields(data, source)
        r.check_format(FORMAT_CLASSIFIER, CLASSIFIER_VERSION)
        model = GPTConfig.from_dict(r.object("model"), source=f"{source}: model")
        try:
            family_of(model)
        except GPTClassifyError as exc:
            raise GPTClassifyError(f"{source}: model: {exc}") from None
        labels = r.labels("labels")
        max_length = r.integer("max_length", 1, model.context_length)
        pad_length = r.integer("pad_length", max_length, model.context_length, optional=True)
        tokenizer = _tokenizer(r.object("tokenizer", optional=True), model, source)
        lora = r.object("lora", optional=True)
        version = r.data.get("format_version", 1)
        onnx_data = r.object("onnx", optional=True) if version >= ONNX_LAYOUT_VERSION else None
        onnx = OnnxInfo.from_json(onnx_data, f"{source}: onnx") if onnx_data else None
        exported = r.object("exported_from", optional=True)
        task = r.choice("task", TASKS, default="single-label")
        thresholds = None
        if task == "multi-label":
            thresholds = r.data.get("thresholds")
            if not (
                isinstance(thresholds, list)
                and len(thresholds) == len(labels)
                and all(
                    isinstance(t, int | float) and not isinstance(t, bool) and 0 <= t <= 1
                    for t in thresholds
                )
            ):
                raise r.fail("thresholds", f"must be {len(labels)} numbers between 0 and 1")
            thresholds = tuple(float(t) for t in thresholds)
        label_sep = r.string("label_sep", optional=True) or ";"
        lexical = r.object("lexical", optional=True) if version >= LEXICAL_LAYOUT_VERSION else None
        if lexical is not None:
            _Fields(lexical, f"{source}: lexical").number("C", positive=True)
        surface = r.object("surface", optional=True) if version >= SURFACE_LAYOUT_VERSION else None
        if surface is not None:
            check_surface_record(surface, source)
        provenance = Provenance(
            base_model=r.string("base_model", optional=True) or "unknown",
            base_sha256=r.string("base_sha256", optional=True),
            weights=r.string("weights", optional=True) or "pretrained",
            trainable=r.string("trainable", optional=True),
            pad_to=r.string("pad_to", optional=True),
            lora=_lora_info(lora, f"{source}: lora") if lora else None,
            train_config=r.object("train_config", optional=True),
            **_stored(r, version),
        )
        return cls(
            model=model,
            tokenizer=tokenizer,
            labels=labels,
            pool=r.choice("pool", POOLS),
            causal=r.boolean("causal", default=True),
            max_length=max_length,
            pad_length=pad_length,
            truncate=r.choice("truncate", ("end", "start"), default="end"),
            temperature=r.temperature("temperature"),
            provenance=provenance,
            weights_file=r.file_name("weights_file", default=WEIGHTS),
            weights_sha256=r.sha256("weights_sha256") if onnx is None else "",
            versions=r.object("versions", optional=True) or {},
            format_version=version,
            onnx=onnx,
            exported_from=(
                ExportSource.from_json(exported, f"{source}: exported_from") if exported else None
            ),
            task=task,
            thresholds=thresholds,
            label_sep=label_sep,
            lexical=lexical,
            surface=surface,
        )


def _stored(r: _Fields, version: int) -> dict[str, Any]:
    """Provenance's `stored` and `base` (a trained-only folder's base must be named and
    checksummed)."""
    if version < TRAINED_ONLY_LAYOUT_VERSION:
        return {}
    stored = r.choice("weights_stored", STORED, default="full")
    if stored == "full":
        return {}
    base = r.string("base")
    r.sha256("base_sha256")
    return {"stored": stored, "base": base}


def _lora_json(lora: LoraInfo | None) -> dict[str, Any] | None:
    if lora is None:
        return None
    out = dataclasses.asdict(lora)
    out["targets"] = list(lora.targets)
    return out


def _lora_info(data: dict[str, Any], source: str) -> LoraInfo:
    r = _Fields(data, source)
    targets = r.data.get("targets")
    if not (isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets)):
        raise GPTClassifyError(f"{source}: 'targets' must be a list of layer names")
    adapters_only = r.boolean("adapters_only", default=False)
    return LoraInfo(
        rank=r.integer("rank", 1, None),
        alpha=r.number("alpha", positive=True),
        targets=tuple(targets),
        merged=r.boolean("merged", default=False),
        adapters_only=adapters_only,
        base=r.string("base", optional=not adapters_only),
        base_sha256=r.sha256("base_sha256") if adapters_only else None,
    )


class _Fields:
    """Typed reads of a JSON object; the first problem raises one line naming source and key."""

    _SHA256 = re.compile(r"[0-9a-f]{64}")

    def __init__(self, data: Any, source: str) -> None:
        if not isinstance(data, dict):
            raise GPTClassifyError(f"{source}: expected a JSON object")
        self.data = data
        self.source = source

    def fail(self, key: str, what: str) -> GPTClassifyError:
        return GPTClassifyError(f"{self.source}: field {key!r} {what}, got {self.data.get(key)!r}")

    def check_format(self, expected: str, newest: int) -> None:
        found = self.data.get("format")
        if found != expected:
            raise GPTClassifyError(
                f"{self.source}: format {found!r} is not {expected!r} (not a gptclassify "
                "classifier folder?)"
            )
        version = self.data.get("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self.fail("format_version", "must be a positive integer")
        if version > newest:
            raise GPTClassifyError(
                f"{self.source}: format version {version} is newer than this gptclassify "
                f"({__version__}) reads; upgrade gptclassify"
            )

    def _get(self, key: str, optional: bool, default: Any = None) -> Any:
        if key not in self.data or self.data[key] is None:
            if optional or default is not None:
                return default
            raise GPTClassifyError(f"{self.source}: missing field {key!r}")
        return self.data[key]

    def object(self, key: str, optional: bool = False) -> dict[str, Any] | None:
        value = self._get(key, optional)
        if value is not None and not isinstance(value, dict):
            raise self.fail(key, "must be an object")
        return value

    def string(self, key: str, optional: bool = False) -> str | None:
        value = self._get(key, optional)
        if value is not None and not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def boolean(self, key: str, default: bool | None = None) -> bool:
        value = self._get(key, False, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def integer(
        self, key: str, minimum: int, maximum: int | None, optional: bool = False
    ) -> int | None:
        value = self._get(key, optional)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(key, "must be an integer")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise self.fail(key, f"must be >= {minimum}{upper}")
        return value

    def number(self, key: str, default: float | None = None, positive: bool = False) -> float:
        value = self._get(key, False, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self.fail(key, "must be a number")
        if not math.isfinite(value) or (positive and value <= 0):
            raise self.fail(key, "must be a finite number > 0" if positive else "must be finite")
        return float(value)

    def temperature(self, key: str) -> float:
        """A softmax temperature: finite and within TEMPERATURE_RANGE (1e-320 would make
        every probability NaN; calibration stays within 0.05 and 20)."""
        value = self.number(key, default=1.0, positive=True)
        low, high = TEMPERATURE_RANGE
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self._get(key, False, default)
        if value not in allowed:
            raise self.fail(key, f"must be one of {', '.join(allowed)}")
        return value

    def labels(self, key: str) -> tuple[str, ...]:
        value = self._get(key, False)
        if not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            raise self.fail(key, "must be a list of non-empty strings")
        if len(value) < 2:
            raise self.fail(key, "must name at least 2 classes")
        if len(set(value)) != len(value):
            raise self.fail(key, "must not repeat a class")
        if any(v != v.strip() for v in value):
            # Training strips labels: " ham" beside "ham" is a hand edit that would show two
            # classes as one name.
            raise self.fail(key, "must not hold labels that begin or end with spaces")
        return tuple(value)

    def sha256(self, key: str) -> str:
        value = self._get(key, False)
        if not (isinstance(value, str) and self._SHA256.fullmatch(value)):
            raise self.fail(key, "must be a sha256 in hex")
        return value

    def file_name(self, key: str, default: str) -> str:
        """A file name inside the folder: no directory part, no absolute path, no '..'."""
        value = self._get(key, False, default)
        if (
            not isinstance(value, str)
            or not value
            or Path(value).name != value
            or value
            in (
                ".",
                "..",
            )
        ):
            raise self.fail(key, "must be a plain file name inside the model folder")
        return value


def read_classifier_config(directory: str | Path) -> ClassifierConfig:
    """config.json of a classifier folder, validated."""
    directory = Path(directory)
    if not directory.is_dir():
        raise GPTClassifyError(
            f"{directory}: not a folder (expected a run folder from `gptclassify train`)"
        )
    path = inside(directory, CONFIG)
    data = read_json(path, missing="file not found (not a gptclassify model folder?)")
    return ClassifierConfig.from_json(data, str(path))


def versions(**extra: str) -> dict[str, str]:
    """Library versions recorded in config.json (`extra`: e.g. torch or onnxruntime)."""
    return {
        "gptclassify": __version__,
        **extra,
        "tiktoken": tiktoken.__version__,
        "python": platform.python_version(),
    }


# ---- metrics.json ---------------------------------------------------------------------------

SPLITS = ("train", "validation", "test")


@dataclass
class RunMetrics:
    """metrics.json: per-split reports (metrics.classification_report) and run facts.

    GPT runs and the TF-IDF baseline write the same keys (the baseline gives epoch fields
    the values of a one-shot fit). On disk the split reports sit at the top level
    (`metrics["test"]["accuracy"]`) beside the other fields.
    """

    splits: dict[str, dict[str, Any]]
    best_epoch: int | None
    stopped_early: bool
    epochs_run: int | None
    examples_seen: int
    training_time_s: float
    total_time_s: float
    trainable_params: int
    total_params: int
    frozen_prefix_cache: bool
    device: str
    precision: str
    peak_memory_mb: float
    truncated: dict[str, int]
    calibration: dict[str, float] | None = None
    world_size: int = 1
    """Processes that trained the model (torchrun); 1 for a single process."""
    backend: str | None = None
    """torch.distributed backend (nccl, gloo), None for a single process."""
    baseline: dict[str, Any] | None = None
    """The TF-IDF + logistic regression baseline fitted on the same training split:
    {"model", "fit_time_s", "validation": {accuracy, macro_f1}, "test": {...}} (None when
    not fitted)."""

    def to_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        splits = fields.pop("splits")
        return {**splits, **fields, "format_version": METRICS_VERSION}

    @classmethod
    def from_json(cls, data: Any, source: str = METRICS) -> RunMetrics:
        if not isinstance(data, dict):
            raise GPTClassifyError(f"{source}: expected a JSON object")
        names = {f.name for f in dataclasses.fields(cls)} - {"splits"}
        splits = {k: v for k, v in data.items() if k in SPLITS and isinstance(v, dict)}
        known = {k: v for k, v in data.items() if k in names}
        try:
            return cls(splits=splits, **known)
        except TypeError as exc:
            raise GPTClassifyError(f"{source}: {exc}") from None

    def accuracy(self, split: str) -> float | None:
        return self.splits[split]["accuracy"] if split in self.splits else None


def write_metrics(directory: str | Path, metrics: RunMetrics) -> Path:
    path = Path(directory) / METRICS
    atomic_write(path, json.dumps(metrics.to_json(), indent=2, default=float) + "\n")
    return path


def read_metrics(directory: str | Path) -> RunMetrics | None:
    """metrics.json of a folder, or None when absent or unreadable (they are informative)."""
    path = inside(directory, METRICS)
    if not path.is_file():
        return None
    try:
        return RunMetrics.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (ValueError, GPTClassifyError):
        return None


ONNX_KIND = "onnx"
"""`folder_kind` of a classifier folder holding an ONNX graph instead of PyTorch weights."""


def folder_kind(path: str | Path) -> str | None:
    """What `path` holds, from its config.json (the one reader every --out check uses).

    None: it is missing or an empty folder. "file": it is not a folder. Otherwise the format
    its config.json names: `format` at the top (`ONNX_KIND` for a classifier folder holding an
    ONNX graph), or `format` of its `gptclassify` section (a Hugging Face export, whose top
    level is transformers'); "" when it names none (not a gptclassify folder).
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_dir():
        return "file"
    if not any(path.iterdir()):
        return None
    try:
        data = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return ""
    if not isinstance(data, dict):
        return ""
    if data.get("format") == FORMAT_CLASSIFIER and isinstance(data.get("onnx"), dict):
        return ONNX_KIND
    ours = data.get("gptclassify")
    found = data.get("format") or (ours.get("format") if isinstance(ours, dict) else None)
    return found if isinstance(found, str) else ""


KIND_NAMES = {
    FORMAT_BASELINE: "a TF-IDF baseline folder",
    FORMAT_CLASSIFIER: "a classifier run folder",
}


def check_target(folder: str | Path, kind: str, flag: str = "--out") -> None:
    """`folder` may become a `kind` folder: it is absent, empty, or already of that kind.

    Never replace another kind of folder (a trained classifier by a baseline, say), nor a
    folder of the user's own files.
    """
    found = folder_kind(folder)
    if found == "file":
        raise GPTClassifyError(f"{flag} {folder}: exists and is not a folder")
    if found is None or found == kind or (found, kind) == (ONNX_KIND, FORMAT_CLASSIFIER):
        return
    what = KIND_NAMES.get(found, f"a {found} folder") if found else "not a gptclassify folder"
    raise GPTClassifyError(
        f"{flag} {folder}: is {what} and not empty; it will not be replaced. Choose another {flag}"
    )
