"""Build what a run trains: the GPT-2 backbone, the classifier on it, the loss weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from gptclassify.args import TrainArgs, TrainConfig, lora_target_list
from gptclassify.classifier import FromBlock, GPTClassifier
from gptclassify.config import PRESETS, TOKENIZER_VOCAB, GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.fastpath import fast_view
from gptclassify.files import read_json
from gptclassify.model import GPTModel
from gptclassify.runtime import total_memory_bytes
from gptclassify.training.state import TrainState
from gptclassify.weights import gpt_config_from_hf, load_hf_directory, pretrained_dir


@dataclass
class Backbone:
    model: GPTModel
    description: str
    """Where the weights came from, for logs and config.json."""
    pretrained_dir: Path | None = None
    """The Hugging Face folder the pretrained weights were read from (None: random init)."""


def check_config(config: GPTConfig, source: str) -> None:
    """Refuse a model the tokenizer cannot feed, or one that cannot fit in this machine's
    memory, before allocating anything."""
    if config.vocab_size < TOKENIZER_VOCAB:
        raise GPTClassifyError(
            f"{source}: vocab_size {config.vocab_size} is smaller than the GPT-2 tokenizer's "
            f"{TOKENIZER_VOCAB} token ids"
        )
    need = config.num_parameters() * 4  # fp32 weights alone, before gradients and activations
    have = total_memory_bytes()
    if have and need > have:
        raise GPTClassifyError(
            f"{source}: {config.num_parameters():,} parameters need {need / 2**30:.1f} GiB for "
            f"the fp32 weights alone; this machine has {have / 2**30:.1f} GiB of memory"
        )


def build_backbone(cfg: TrainConfig) -> Backbone:
    """The GPT-2 to fine-tune: pretrained (preset or folder) or a seeded random init."""
    name = cfg.backbone.model
    path = Path(name).expanduser()
    if name.endswith(".json"):  # TrainConfig ensures --weights random
        config = GPTConfig.from_json(path)
        check_config(config, name)
        return Backbone(GPTModel(config), f"random init of {name}")
    if cfg.backbone.weights == "pretrained":
        directory = pretrained_dir(name)
        return Backbone(load_hf_directory(directory), name, directory)
    if name in PRESETS:
        return Backbone(GPTModel(PRESETS[name]), f"random init of the {name} shape")
    if not path.is_dir():
        raise GPTClassifyError(f"--model {name}: not a preset, a folder or a .json config")
    config = gpt_config_from_hf(read_json(path / "config.json"), str(path / "config.json"))
    check_config(config, str(path / "config.json"))
    return Backbone(GPTModel(config), f"random init of {name}")


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
    """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced' heuristic)."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    if (counts == 0).any():
        missing = int((counts == 0).nonzero()[0])
        raise GPTClassifyError(f"--class-weights auto: class {missing} has no training examples")
    return counts.sum() / (num_classes * counts)


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
