"""The model families: how each one's Hugging Face (and GGUF) files map onto our decoder.

model.py is the one decoder; config.py describes every family with switches. What differs
per family is data, kept here, one module per family layout:

- `gpt2`: OpenAI's GPT-2 (transformers' `gpt2`).
- `llama`: Llama 3.x, SmolLM2 (`llama`), Mistral (`mistral`), Qwen2 / Qwen2.5 (`qwen2`) and
  Qwen3 (`qwen3`): RMSNorm, rotary positions, SwiGLU, grouped-query attention.

Each family module gives `config_from_hf(hf, source) -> GPTConfig` (refusing what we do not
implement, with the reason), `config_to_hf(config) -> dict` and `hf_layout(config)`: for each
of our parameters, the Hugging Face tensors it is made of (concatenated along the output
dimension; fused projections) and whether they are stored transposed. Loading
(weights.py) and export (export/hf.py) both read this one table.
"""

from __future__ import annotations

from typing import Any

from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.models import gpt2, llama
from gptclassify.models.base import HF_PREFIX, Source

__all__ = ["HF_PREFIX", "Source", "config_from_hf", "config_to_hf", "hf_ignored", "hf_layout"]


def _module(family: str):
    return gpt2 if family == "gpt2" else llama


def config_from_hf(hf: dict[str, Any], source: str = "config.json") -> GPTConfig:
    """Our config for a transformers config.json; its `model_type` picks the family."""
    if not isinstance(hf, dict):
        raise GPTClassifyError(f"{source}: expected a JSON object")
    model_type = hf.get("model_type", "gpt2")
    if model_type == "gpt2":
        return _module("gpt2").config_from_hf(hf, source)
    if model_type in ("llama", "mistral", "qwen2", "qwen3"):
        return _module("llama").config_from_hf(hf, source)
    raise GPTClassifyError(
        f"{source}: model_type {model_type!r} is not implemented; supported: gpt2, llama "
        "(Llama 3.x, SmolLM2), mistral, qwen2 (Qwen2, Qwen2.5), qwen3"
    )


def config_to_hf(config: GPTConfig) -> dict[str, Any]:
    """transformers' config.json fields for the language model of this shape."""
    return _module(config.family).config_to_hf(config)


def hf_layout(config: GPTConfig, with_lm_head: bool = False) -> dict[str, Source]:
    """Our parameter name -> its Hugging Face source tensors (backbone, plus the untied
    language-model head when asked)."""
    return _module(config.family).hf_layout(config, with_lm_head)


def hf_ignored(config: GPTConfig, name: str) -> bool:
    """Tensors some files carry that are not parameters (masks, rotary tables) or that we
    tie ourselves."""
    return _module(config.family).hf_ignored(config, name)
