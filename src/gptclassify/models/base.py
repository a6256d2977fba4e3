"""What every family module describes: one `Family` record (transformers keeps the same
registry keyed by `model_type`; litgpt's named configs carry their Hub ids)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gptclassify.config import GPTConfig


@dataclass(frozen=True)
class Source:
    """The Hugging Face tensors one of our parameters is made of."""

    names: tuple[str, ...]
    """Their names, concatenated in this order along dim 0 (q, k, v or gate, up)."""
    transposed: bool = False
    """Stored (in, out), as GPT-2's Conv1D does; ours is (out, in)."""
    sizes: tuple[int, ...] | None = None
    """Each tensor's share of dim 0 when there are several (None: one tensor)."""


@dataclass(frozen=True)
class GGUFArch:
    """How llama.cpp stores one `general.architecture` (models/gguf.py reads this)."""

    model_type: str
    """transformers' model_type of the config.json the file becomes."""
    hf_class: str
    """transformers' language-model class (config.json's `architectures`)."""
    gguf_arch: str
    """The member of the gguf package's MODEL_ARCH enum (its tensor-name map)."""
    layer_params: tuple[str, ...]
    """transformers' per-layer tensor names every file has (after `model.layers.N.`)."""
    optional_layer_params: tuple[str, ...] = ()
    """Per-layer tensors a file may have (llama's optional biases)."""
    permuted: bool = False
    """q/k rows permuted on conversion for llama.cpp's interleaved rotary (llama only)."""
    norm_offset: bool = False
    """Norm weights stored with the 1 of Gemma's (1 + weight) already added (llama.cpp's
    Gemma converter); transformers' GGUF loader takes it off, and so do we."""
    sentencepiece: bool = False
    """Its `tokenizer.ggml.model` "llama" vocabulary is Gemma's sentencepiece-style BPE (no
    prefix space, byte fallback, merges in vocabulary order)."""
    config: Callable[[Callable[..., Any], dict[str, Any]], dict[str, Any]] | None = None
    """The architecture's own config.json: called with `get(key, default=None,
    required=True)` over the `{arch}.*` metadata and the Llama-style fields every
    architecture has; returns the config (None: those fields as they are)."""


@dataclass(frozen=True)
class Family:
    """One family of decoders: everything that differs between families, as data."""

    name: str
    """The family module's name (gpt2, llama, gemma3)."""
    model_types: tuple[str, ...]
    """transformers' `model_type` values this family reads (GPTConfig.family is one)."""
    hf_classes: Mapping[str, tuple[str, str]]
    """model_type -> transformers' (language model, sequence classifier) class names."""
    prefix: str
    """The prefix its files may put before the backbone's tensor names."""
    config_from_hf: Callable[[dict[str, Any], str], GPTConfig]
    """Our config for its config.json, refusing what we do not implement, with the reason."""
    config_to_hf: Callable[[GPTConfig], dict[str, Any]]
    """transformers' config.json fields for a model of this shape."""
    hf_layout: Callable[[GPTConfig, bool], dict[str, Source]]
    """Our parameter name -> its Hugging Face tensors (backbone, plus an untied
    language-model head when asked); loading and export both read this one table."""
    hf_ignored: Callable[[GPTConfig, str], bool]
    """Tensors some files carry that are not parameters (masks, rotary tables) or that we
    tie ourselves."""
    presets: Mapping[str, GPTConfig] = field(default_factory=dict)
    """Named shapes of this family."""
    hub_repos: Mapping[str, str] = field(default_factory=dict)
    """Where each preset's pretrained weights live on the Hugging Face Hub."""
    tokenizer_json: bool = True
    """The tokenizer rule: its tokenizer is the tokenizer.json beside the weights (False:
    GPT-2's BPE, shipped in the package, for every model of the family)."""
    export_fixups: Callable[[GPTConfig, dict[str, Any]], dict[str, Any]] | None = None
    """Tensors transformers wants in an exported folder that our model does not hold
    (GPT-2's zero q/k/v bias when ours has none): state dict -> state dict."""
    gguf: Mapping[str, GGUFArch] = field(default_factory=dict)
    """llama.cpp's general.architecture names this family reads."""
