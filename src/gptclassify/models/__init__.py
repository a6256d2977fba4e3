"""The model families: a registry of `Family` records, one per module, found by `model_type`.

model.py is the one decoder; config.py describes every family with switches. What differs
per family is data, kept here, one module per family layout, each exporting `FAMILY`
(models/base.py says what a record holds: transformers' model types and classes, the
tensor-name prefix, presets and Hub ids, the tokenizer rule, config from/to transformers, the
tensor layout, ignored names, export fix-ups, GGUF architecture names):

- `gpt2`: OpenAI's GPT-2 (transformers' `gpt2`).
- `llama`: Llama 3.x, SmolLM2 (`llama`), Mistral (`mistral`), Qwen2 / Qwen2.5 (`qwen2`) and
  Qwen3 (`qwen3`): RMSNorm, rotary positions, SwiGLU, grouped-query attention.
- `gemma3`: Google's Gemma 3 text models (`gemma3_text`): (1 + weight) RMSNorm before and
  after attention and MLP, scaled embeddings, GELU-gated MLP, sliding-window layers.

Adding a family is one module here plus its switches in model.py/config.py. Code outside
models/, model.py and config.py asks the record (`family_of(config)`), never compares
family names (tests/test_architecture.py checks).
"""

from __future__ import annotations

from typing import Any

from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.models import gemma3, gpt2, llama
from gptclassify.models.base import Family, GGUFArch, Source

__all__ = [
    "FAMILIES",
    "HUB_REPOS",
    "PRESETS",
    "Family",
    "GGUFArch",
    "Source",
    "config_from_hf",
    "config_to_hf",
    "family_of",
    "gguf_arch",
    "hf_ignored",
    "hf_layout",
    "preset",
]

FAMILIES: tuple[Family, ...] = (gpt2.FAMILY, llama.FAMILY, gemma3.FAMILY)
"""Every family we implement."""

_BY_MODEL_TYPE: dict[str, Family] = {t: f for f in FAMILIES for t in f.model_types}

PRESETS: dict[str, GPTConfig] = {name: c for f in FAMILIES for name, c in f.presets.items()}
"""Named shapes of every family."""

HUB_REPOS: dict[str, str] = {name: r for f in FAMILIES for name, r in f.hub_repos.items()}
"""Where each preset's pretrained weights live on the Hugging Face Hub."""


def _model_types() -> str:
    return ", ".join(_BY_MODEL_TYPE)


def family_of(config: GPTConfig | str) -> Family:
    """The record of a config's family (or of a `model_type`); one line naming the known
    ones for anything else."""
    model_type = config if isinstance(config, str) else config.family
    try:
        return _BY_MODEL_TYPE[model_type]
    except (KeyError, TypeError):
        raise GPTClassifyError(
            f"model family {model_type!r} is not implemented; supported: {_model_types()}"
        ) from None


def preset(name: str) -> GPTConfig:
    """A named shape (`PRESETS`), or one line listing them."""
    try:
        return PRESETS[name]
    except KeyError:
        raise GPTClassifyError(
            f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None


def gguf_arch(name: Any) -> GGUFArch | None:
    """The family description of a GGUF `general.architecture` (None: not implemented)."""
    for family in FAMILIES:
        if name in family.gguf:
            return family.gguf[name]
    return None


def gguf_architectures() -> tuple[str, ...]:
    """Every GGUF architecture we read."""
    return tuple(sorted(a for f in FAMILIES for a in f.gguf))


def config_from_hf(hf: dict[str, Any], source: str = "config.json") -> GPTConfig:
    """Our config for a transformers config.json; its `model_type` picks the family."""
    if not isinstance(hf, dict):
        raise GPTClassifyError(f"{source}: expected a JSON object")
    model_type = hf.get("model_type", "gpt2")
    family = _BY_MODEL_TYPE.get(model_type) if isinstance(model_type, str) else None
    if family is None:
        raise GPTClassifyError(
            f"{source}: model_type {model_type!r} is not implemented; supported: {_model_types()}"
        )
    return family.config_from_hf(hf, source)


def config_to_hf(config: GPTConfig) -> dict[str, Any]:
    """transformers' config.json fields for the language model of this shape."""
    return family_of(config).config_to_hf(config)


def hf_layout(config: GPTConfig, with_lm_head: bool = False) -> dict[str, Source]:
    """Our parameter name -> its Hugging Face source tensors (backbone, plus the untied
    language-model head when asked)."""
    return family_of(config).hf_layout(config, with_lm_head)


def hf_ignored(config: GPTConfig, name: str) -> bool:
    """Tensors some files carry that are not parameters (masks, rotary tables) or that we
    tie ourselves."""
    return family_of(config).hf_ignored(config, name)
