"""The model folder: `model.safetensors` + `config.json`, never a pickle.

config.json holds everything needed to rebuild the classifier with no other input: the GPT
shape, label names in order, pooling, padding and truncation policy, tokenizer, temperature,
base model and library versions, plus the sha256 of the weights file so a changed or
truncated file is refused rather than silently loaded.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptclassify import __version__
from gptclassify.classifier import GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_path, atomic_write, read_json, sha256_file
from gptclassify.model import GPTModel

FORMAT = "gptclassify-classifier"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def versions() -> dict[str, str]:
    import tiktoken

    return {
        "gptclassify": __version__,
        "torch": torch.__version__,
        "tiktoken": tiktoken.__version__,
        "python": platform.python_version(),
    }


def save_model(directory: str | Path, model: GPTClassifier, settings: dict[str, Any]) -> Path:
    """Write weights and config.json into `directory`; returns the config path.

    `settings` is the classifier's description (labels, pool, policy, ...); this function adds
    the model shape, format, versions and checksum.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if (settings.get("lora") or {}).get("adapters_only"):
        state = {k: v for k, v in state.items() if _is_adapter_or_head(k)}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, tmp, metadata={"format": FORMAT})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.gpt.config.to_dict(),
        **settings,
        "weights_file": WEIGHTS,
        "weights_sha256": sha256_file(directory / WEIGHTS),
        "versions": versions(),
    }
    atomic_write(directory / CONFIG, json.dumps(config, indent=2) + "\n")
    return directory / CONFIG


def read_config(directory: str | Path) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / CONFIG
    if not directory.is_dir():
        raise GPTClassifyError(
            f"{directory}: not a folder (expected a run folder from `gptclassify train`)"
        )
    config = read_json(path, missing="file not found (not a gptclassify model folder?)")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise GPTClassifyError(
            f"{path}: not a gptclassify classifier config (format field missing)"
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise GPTClassifyError(
            f"{path}: format version {config['format_version']} is newer than this gptclassify "
            f"({__version__}) reads; upgrade gptclassify"
        )
    for key in ("model", "labels", "pool", "weights_sha256"):
        if key not in config:
            raise GPTClassifyError(f"{path}: missing field {key!r}")
    return config


def load_model(
    directory: str | Path, config: dict[str, Any] | None = None
) -> tuple[GPTClassifier, dict[str, Any]]:
    """Rebuild the classifier from a model folder, verifying the weights' checksum first."""
    directory = Path(directory)
    config = config or read_config(directory)
    weights = directory / config.get("weights_file", WEIGHTS)
    if not weights.is_file():
        raise GPTClassifyError(f"{weights}: file not found")
    if sha256_file(weights) != config["weights_sha256"]:
        raise GPTClassifyError(
            f"{weights}: sha256 does not match config.json (the file changed after it was saved); "
            "refusing to load it"
        )
    gpt_config = GPTConfig.from_dict(config["model"], source=str(directory / CONFIG))
    lora = config.get("lora") or {}
    adapters_only = bool(lora.get("adapters_only"))
    if adapters_only:
        gpt = _lora_base(lora, gpt_config, directory / CONFIG)
    else:
        with torch.device("meta"):  # no wasted init: every tensor comes from the file
            gpt = GPTModel(gpt_config)
    model = GPTClassifier(
        gpt, len(config["labels"]), pool=config["pool"], causal=config.get("causal", True)
    )
    if lora and not lora.get("merged"):
        model.add_lora(int(lora["rank"]), float(lora["alpha"]), tuple(lora["targets"]))
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise GPTClassifyError(f"{weights}: unreadable safetensors file ({exc})") from None
    expected = model.state_dict()
    if adapters_only:
        expected = {k: v for k, v in expected.items() if _is_adapter_or_head(k)}
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        raise GPTClassifyError(
            f"{weights}: tensors do not match config.json"
            + (f"; missing {', '.join(missing[:3])}" if missing else "")
            + (f"; unexpected {', '.join(unknown[:3])}" if unknown else "")
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise GPTClassifyError(
                f"{weights}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[name].shape)}"
            )
    if adapters_only:
        model.load_state_dict(state, strict=False)  # the base weights came from the base model
    else:
        model.load_state_dict(state, assign=True)
    return model.eval(), config


def _is_adapter_or_head(name: str) -> bool:
    return "lora_" in name or name.startswith("head.")


def _lora_base(lora: dict[str, Any], gpt_config: GPTConfig, source: Path) -> GPTModel:
    """The pretrained base of an adapters-only folder, checked against its recorded sha256."""
    from gptclassify.weights import load_hf_directory, pretrained_dir, weights_file

    base = lora.get("base")
    if not base:
        raise GPTClassifyError(f"{source}: LoRA adapters without a 'base' model field")
    directory = pretrained_dir(base)
    if sha256_file(weights_file(directory)) != lora.get("base_sha256"):
        raise GPTClassifyError(
            f"{source}: the base model {base} ({weights_file(directory)}) is not the one these "
            "LoRA adapters were trained on (sha256 differs)"
        )
    gpt = load_hf_directory(directory)
    if gpt.config != gpt_config:
        raise GPTClassifyError(
            f"{source}: base model {base} has another shape than config.json says"
        )
    return gpt
