"""Build what a run trains: the data checked and encoded, the backbone (any family) and its
tokenizer, the classifier on it, the loss weights. Each step returns what it made (Run.build
calls them in order and logs)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gptclassify.args import EvalArgs, InputArgs, TrainArgs, TrainConfig, lora_target_list
from gptclassify.classifier import FromBlock, GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.data.encode import Encoded, InputPolicy, Tokenized, encode_ids, tokenize
from gptclassify.data.split import Splits
from gptclassify.data.tables import LabelledTexts
from gptclassify.errors import GPTClassifyError, option
from gptclassify.fastpath import fast_view
from gptclassify.files import read_json
from gptclassify.model import GPTModel
from gptclassify.models import PRESETS, config_from_hf, family_of
from gptclassify.runtime import total_memory_bytes
from gptclassify.tokenizer import HFTokenizer, Tokenizer, gpt2
from gptclassify.training.state import TrainState
from gptclassify.weights import (
    check_vocab,
    is_gguf,
    load_pretrained_model,
    preset_tokenizer_dir,
)


def check_task(splits: Splits, task: str, eval_args: EvalArgs) -> None:
    """The options that single-label data alone support, refused on label sets."""
    if not splits.multi_label:
        return
    if task == "single-label":
        raise GPTClassifyError(
            f"{option('task', 'single-label')}: the data hold label sets (multi-label); "
            f"drop {option('task')} or use {option('task', 'multi-label')}"
        )
    if eval_args.calibrate:
        raise GPTClassifyError(
            f"{option('calibrate')} fits a softmax temperature (single-label); multi-label models "
            "get per-label thresholds tuned on validation instead"
        )


def training_parts(splits: Splits) -> dict[str, LabelledTexts]:
    """The splits that hold texts, by name; a run needs a validation split to choose on."""
    parts = {name: part for name, part in splits.parts() if len(part.texts) > 0}
    if "validation" not in parts:
        raise GPTClassifyError(
            f"the validation split is empty; use more data or another {option('split')}"
        )
    return parts


def encode_splits(
    parts: dict[str, LabelledTexts],
    splits: Splits,
    tokenizer: Tokenizer,
    inputs: InputArgs,
    context_length: int,
) -> tuple[InputPolicy, dict[str, Encoded], dict[str, Tokenized]]:
    """Tokenize every split, resolve the input policy on the training lengths, encode every
    split under it; returns (policy, encoded splits, the tokenized splits for the log)."""
    tokenized = {k: tokenize(v.texts, tokenizer.encode_batch) for k, v in parts.items()}
    policy = InputPolicy.resolve(
        inputs.pad_to,
        inputs.max_length,
        inputs.truncate,
        context_length,
        [len(r) for r in tokenized["train"].ids],
        tokenizer,
    )
    encoded = {
        name: encode_ids(tokenized[name].ids, policy, splits.label_ids(part), part.source)
        for name, part in parts.items()
    }
    return policy, encoded, tokenized


def check_batch_size(batch_size: int, n_train: int, world_size: int) -> None:
    """The global batch divides over the processes and fits the training split."""
    if batch_size % world_size:
        raise GPTClassifyError(
            f"{option('batch_size', batch_size)} is the global batch: it must divide "
            f"evenly over the {world_size} processes"
        )
    if n_train < batch_size:
        raise GPTClassifyError(
            f"{option('batch_size', batch_size)} is larger than the {n_train} "
            f"training texts: an epoch would have no full batch (the last, partial batch "
            f"is dropped, as in the book); use {option('batch_size', n_train)} or less"
        )


def label_counts(encoded: Encoded, num_classes: int) -> np.ndarray:
    """Texts per class (multi-label: per label) of an encoded split."""
    if encoded.labels.ndim == 2:
        return encoded.labels.sum(axis=0).astype(int)
    return np.bincount(encoded.labels, minlength=num_classes)


@dataclass
class Backbone:
    model: GPTModel
    description: str
    """Where the weights came from, for logs and config.json."""
    pretrained_dir: Path | None = None
    """The Hugging Face folder the pretrained weights were read from (None: random init or
    a GGUF file)."""
    tokenizer: Tokenizer = field(default_factory=gpt2)
    """The model's tokenizer (GPT-2's for GPT-2 and for random inits without a folder)."""
    weights_file: Path | None = None
    """The file whose sha256 identifies the pretrained weights (None: random init)."""


def _random_tokenizer(config: GPTConfig, folder: Path | None, source: str) -> Tokenizer:
    """The tokenizer of a randomly initialised model: the folder's tokenizer.json when there
    is one, else GPT-2's (which needs a vocabulary of at least its 50,257 ids)."""
    if folder is not None and (folder / "tokenizer.json").is_file():
        tokenizer: Tokenizer = HFTokenizer.from_folder(folder)
    else:
        tokenizer = gpt2()
    if not isinstance(tokenizer, HFTokenizer) and config.vocab_size < tokenizer.vocab_size:
        raise GPTClassifyError(
            f"{source}: vocab_size {config.vocab_size} is smaller than the GPT-2 tokenizer's "
            f"{tokenizer.vocab_size} token ids (a random {config.family} model without a "
            "tokenizer.json uses GPT-2's: give a folder holding config.json and tokenizer.json)"
        )
    check_vocab(config.vocab_size, tokenizer, source)
    return tokenizer


def check_config(config: GPTConfig, source: str) -> None:
    """Refuse a model of an unknown family, or one that cannot fit in this machine's memory,
    before allocating anything."""
    family_of(config)
    need = config.num_parameters() * 4  # fp32 weights alone, before gradients and activations
    have = total_memory_bytes()
    if have and need > have:
        raise GPTClassifyError(
            f"{source}: {config.num_parameters():,} parameters need {need / 2**30:.1f} GiB for "
            f"the fp32 weights alone; this machine has {have / 2**30:.1f} GiB of memory"
        )


def build_backbone(cfg: TrainConfig) -> Backbone:
    """The model to fine-tune: pretrained (preset, Hub id, folder or GGUF file) or a seeded
    random init of a shape (preset, folder's config.json or a .json of GPTConfig fields)."""
    name = cfg.backbone.model
    path = Path(name).expanduser()
    if name.endswith(".json"):  # TrainConfig ensures --weights random
        config = GPTConfig.from_json(path)
        check_config(config, name)
        tokenizer = _random_tokenizer(config, None, name)
        return Backbone(GPTModel(config), f"random init of {name}", tokenizer=tokenizer)
    if cfg.backbone.weights == "pretrained" or is_gguf(name):
        if cfg.backbone.weights != "pretrained":
            raise GPTClassifyError(f"{option('model', name)}: a GGUF file is pretrained weights")
        got = load_pretrained_model(name)
        return Backbone(got.model, name, got.directory, got.tokenizer, got.file)
    if name in PRESETS:
        config = PRESETS[name]
        # A random init of another family's preset still needs that family's tokenizer.
        folder = preset_tokenizer_dir(name) if family_of(config).tokenizer_json else None
        tokenizer = _random_tokenizer(config, folder, f"--model {name}")
        return Backbone(GPTModel(config), f"random init of the {name} shape", tokenizer=tokenizer)
    if not path.is_dir():
        raise GPTClassifyError(f"{option('model', name)}: not a preset, a folder or a .json config")
    config = config_from_hf(read_json(path / "config.json"), str(path / "config.json"))
    check_config(config, str(path / "config.json"))
    tokenizer = _random_tokenizer(config, path, str(path))
    return Backbone(GPTModel(config), f"random init of {name}", tokenizer=tokenizer)


def build_classifier(
    cfg: TrainConfig, num_classes: int, backbone: Backbone | None = None
) -> tuple[GPTClassifier, int]:
    """Backbone + head + LoRA + freezing; returns (model, index of the first trainable block)."""
    backbone = backbone or build_backbone(cfg)
    torch.manual_seed(cfg.train.seed)  # LoRA's random A matrices depend on the seed only
    model = GPTClassifier(
        backbone.model, num_classes, pool=cfg.inputs.pool, causal=cfg.inputs.causal_mask
    )
    if cfg.backbone.trainable == "lora":
        model.add_lora(
            cfg.backbone.lora_rank,
            cfg.backbone.lora_alpha,
            lora_target_list(cfg.backbone.lora_targets),
        )
    start = model.set_trainable(cfg.backbone.trainable)
    return model, start


def class_weight_tensor(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (k * n_c), mean 1 over the examples (scikit-learn's
    'balanced' heuristic)."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    if (counts == 0).any():
        missing = int((counts == 0).nonzero()[0])
        raise GPTClassifyError(
            f"{option('class_weights', 'balanced')}: class {missing} has no training examples"
        )
    return counts.sum() / (num_classes * counts)


def pos_weight_tensor(labels: torch.Tensor, names: list[str]) -> torch.Tensor:
    """Multi-label 'balanced': each label's positives weigh negatives / positives (the
    pos_weight of binary cross-entropy), so both sides of every label weigh the same."""
    positives = labels.float().sum(dim=0)
    if (positives == 0).any():
        missing = names[int((positives == 0).nonzero()[0])]
        raise GPTClassifyError(
            f"{option('class_weights', 'balanced')}: label {missing!r} has no positive training example"
        )
    return (len(labels) - positives) / positives


BALANCED = ("balanced", "auto")
"""--class-weights values meaning inverse frequency (auto: the name before balanced)."""


def loss_weights(spec: str, labels: torch.Tensor, names: list[str], multi_label: bool):
    """The loss weights --class-weights asks for: None, balanced, or read from a JSON file
    {label: weight} naming every class (multi-label: every label's pos_weight)."""
    if spec == "none":
        return None
    if spec in BALANCED:
        if multi_label:
            return pos_weight_tensor(labels, names)
        return class_weight_tensor(labels, len(names))
    path = Path(spec)
    if not path.is_file():
        raise GPTClassifyError(
            f"{option('class_weights', spec)}: not none, balanced, or a JSON file of {{label: weight}}"
        )
    data = read_json(path, unique_keys=True)  # a class weighed twice: which one counts?
    if not isinstance(data, dict):
        raise GPTClassifyError(f"{path}: expected a JSON object {{label: weight}}")
    unknown = sorted(set(data) - set(names))
    missing = [n for n in names if n not in data]
    if unknown or missing:
        what = (
            f"{unknown[0]!r} is not a class of the data"
            if unknown
            else f"class {missing[0]!r} has no weight"
        )
        raise GPTClassifyError(f"{path}: {what} (classes: {', '.join(map(repr, names))})")
    weights = []
    for name in names:
        w = data[name]
        if not isinstance(w, int | float) or isinstance(w, bool) or not math.isfinite(w) or w <= 0:
            raise GPTClassifyError(f"{path}: weight of {name!r} must be a number > 0, got {w!r}")
        weights.append(float(w))
    return torch.tensor(weights)


def training_net(model: GPTClassifier, dtype: torch.dtype, start: int = 0) -> torch.nn.Module:
    """The module every step calls: the classifier with its frozen weights held in the
    compute precision (its trainable parameters are shared, so gradients reach them), run
    from block `start` on when the frozen prefix is cached (start > 0)."""
    view = fast_view(model, dtype, blocks=range(start, model.n_layers))
    return FromBlock(view, start) if start > 0 else view


def new_state(model: GPTClassifier, train: TrainArgs, device: torch.device) -> TrainState:
    """A fresh TrainState: AdamW over the trainable parameters, data order from the seed."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=train.lr,
        weight_decay=train.weight_decay,
        # Fused AdamW: one kernel for all parameters instead of a loop over them.
        fused=device.type in ("cuda", "cpu"),
    )
    return TrainState.create(model, optimizer, train.seed)
