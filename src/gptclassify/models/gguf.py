"""GGUF files (llama.cpp's format) turned into the Hugging Face form our model loaders read.

A GGUF file holds a whole model in one file: metadata (architecture, shapes, the tokenizer's
vocabulary and merges, the chat template) and tensors, most of them quantized in blocks.
`read_gguf` returns exactly what a Hugging Face folder would give: a transformers-style
config.json dict, a state dict under transformers' parameter names, a `tokenizers.Tokenizer`
and a tokenizer_config dict. So the family loaders need no GGUF knowledge, and
`GGUFCheckpoint.save_pretrained` writes a folder that transformers itself loads.

What it leans on, rather than re-implementing: the `gguf` package (llama.cpp's own Python
reader) parses the file and dequantizes the blocks, and its tensor-name map translates
transformers' names to llama.cpp's. What it adds: the one layout change llama.cpp makes on
conversion (q/k rows permuted for its rotary kernel, llama only) is undone, the tokenizer is
rebuilt from metadata, and anything it cannot reproduce exactly (another architecture, a
sentencepiece vocabulary, an unknown pre-tokenizer or quantization, a truncated file) is
refused in one line that names the file.

Special tokens. The tokenizer matches transformers' GGUF tokenizer, which (like llama.cpp)
turns the text "<|im_start|>" into the control token: chat templates rely on that. A
classifier must never let a user's text become a control token, so callers that encode user
text take `GGUFCheckpoint.text_tokenizer()`, which reads such strings as ordinary text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from safetensors.torch import save_file
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

from gptclassify import progress
from gptclassify.errors import GPTClassifyError
from gptclassify.files import replace_folder, sha256_file
from gptclassify.models import GGUFArch, gguf_arch, gguf_architectures

QUANT_TYPES = tuple(
    GGMLQuantizationType[name]
    for name in (
        "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"
    )
)  # fmt: skip
"""The tensor types we read (each one tested against the gguf package's own dequantizer)."""

# What each general.architecture is (transformers' model_type and class, the gguf package's
# tensor-name map, per-layer tensors, llama's permuted q/k rows, Gemma's +1 norms) is part of
# its family's record: models/<family>.py's GGUF table.

# tokenizer.ggml.pre -> how text is split before BPE, as llama.cpp splits it for that name
# (llama-vocab.cpp) and as the model's own tokenizer.json does. SmolLM's is StarCoder's:
# digits one by one, then GPT-2's pattern.
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Mistral's tekken (Nemo and later): cased words kept apart, single digits.
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_TOKENIZERS = {
    "default": ("regex", _GPT2_SPLIT),
    "gpt-2": ("regex", _GPT2_SPLIT),
    "smollm": ("digits", _GPT2_SPLIT),
    "starcoder": ("digits", _GPT2_SPLIT),
    "llama-bpe": ("regex", _LLAMA3_SPLIT),
    "llama3": ("regex", _LLAMA3_SPLIT),
    "smaug-bpe": ("regex", _LLAMA3_SPLIT),
    "qwen2": ("regex", _QWEN2_SPLIT),
    "tekken": ("regex", _TEKKEN_SPLIT),
    "deepseek-r1-qwen": ("regex", _QWEN2_SPLIT),
}

# Our name -> llama.cpp's metadata key under tokenizer.ggml.
_SPECIAL_IDS = {
    "bos": "bos_token_id",
    "eos": "eos_token_id",
    "pad": "padding_token_id",
    "unk": "unknown_token_id",
}
_CONTROL, _USER_DEFINED = 3, 4  # tokenizer.ggml.token_type values (llama.cpp's enum)


@dataclass
class GGUFCheckpoint:
    """A GGUF file in Hugging Face form: what a model folder's files would hold."""

    config: dict[str, Any]
    """transformers' config.json for this model (model_type, sizes, rope, token ids, ...)."""
    state_dict: dict[str, torch.Tensor]
    """Tensors under transformers' names; `lm_head.weight` only when the file has its own."""
    tokenizer: Tokenizer
    """Byte-level BPE from the file's metadata; control-token strings in text become those tokens."""
    tokenizer_config: dict[str, Any]
    """Special tokens (strings and ids), add_bos/add_eos, chat template when the file has one."""
    architecture: str
    """The file's general.architecture (llama, qwen2 or qwen3)."""
    sha256: str
    """Hex sha256 of the file."""
    quant_types: tuple[str, ...]
    """The tensor types found in the file, sorted (e.g. ("F32", "Q4_1", "Q8_0"))."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The file's metadata (general.name, file_type, ...) less long arrays (vocabulary, merges)."""

    def text_tokenizer(self) -> Tokenizer:
        """A copy of `tokenizer` that encodes control-token strings ("<|im_start|>") as plain text.

        What a classifier must encode user text with: a message that contains such a string is
        text, and turning it into a control token would let the sender steer the model.
        """
        tokenizer = Tokenizer.from_str(self.tokenizer.to_str())
        tokenizer.encode_special_tokens = True
        return tokenizer

    def save_pretrained(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write a Hugging Face folder (config.json, model.safetensors, tokenizer.json,
        tokenizer_config.json, generation_config.json) that transformers loads offline.

        The folder appears complete or not at all (written beside it, then renamed); an
        existing one is replaced only with `overwrite` (it goes as a whole, not file by file).
        """
        target = Path(directory)
        if target.exists() and not overwrite:
            raise GPTClassifyError(f"{target}: already exists (overwrite=True replaces it)")
        dtype = next(iter(self.state_dict.values())).dtype
        config = {**self.config, "torch_dtype": str(dtype).removeprefix("torch.")}
        generation = {
            key: self.config[key]
            for key in ("bos_token_id", "eos_token_id", "pad_token_id")
            if self.config.get(key) is not None
        }
        with replace_folder(target) as tmp:
            tensors = {name: t.contiguous() for name, t in self.state_dict.items()}
            save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
            _write_json(tmp / "config.json", config)
            _write_json(tmp / "generation_config.json", generation)
            _write_json(tmp / "tokenizer_config.json", self.tokenizer_config)
            self.tokenizer.save(str(tmp / "tokenizer.json"))
        return target


def read_gguf(path: str | Path, dtype: torch.dtype = torch.float32) -> GGUFCheckpoint:
    """Read a llama / qwen2 / qwen3 GGUF file into Hugging Face form, tensors as `dtype`.

    Tensors are read from a memory map and dequantized one at a time, so the peak is about
    one copy of the weights in `dtype`, plus the largest tensor in fp32 (a few times over
    inside gguf's dequantizer) and the reader's parsed metadata; benchmarks/gguf_read.py.
    """
    path = Path(path)
    reader = _open(path)
    meta = _metadata(reader, path)
    arch = meta.get("general.architecture")
    spec = gguf_arch(arch)
    if spec is None:
        raise GPTClassifyError(
            f"{path}: general.architecture is {arch!r}; gptclassify reads "
            f"{', '.join(gguf_architectures())} GGUF files"
        )
    tensors = {t.name: t for t in reader.tensors}
    config = _config(meta, arch, spec, tensors, path)
    tokenizer, tokenizer_config = _tokenizer(meta, path, spec)
    tokenizer_config["model_max_length"] = config["max_position_embeddings"]
    state_dict = _state_dict(reader, config, arch, spec, path, dtype)
    return GGUFCheckpoint(
        config=config,
        state_dict=state_dict,
        tokenizer=tokenizer,
        tokenizer_config=tokenizer_config,
        architecture=arch,
        sha256=sha256_file(path),
        quant_types=tuple(sorted({t.tensor_type.name for t in reader.tensors})),
        metadata={k: v for k, v in meta.items() if not isinstance(v, list) or len(v) < 64},
    )


class _PlainViewReader(GGUFReader):
    """gguf's reader, slicing the file through a plain ndarray view of its memory map
    instead of the `np.memmap` itself. The reader reads every metadata value (each of a
    vocabulary's strings, scores and types) with its own slice, and a memmap slice pays for
    numpy's subclass hooks: Gemma 3's 262,144-token vocabulary took 8.9 s to parse, 2.5 s
    this way, with the same fields and tensors (tests/test_gguf.py checks both readers
    agree). The values are the same bytes, still not copied."""

    def _get(self, offset, dtype, count=1, override_order=None):  # type: ignore[override]
        plain = self.__dict__.get("_plain")
        if plain is None:
            plain = self.__dict__["_plain"] = self.data.view(np.ndarray)
        count = int(count)
        arr = plain[offset : offset + np.dtype(dtype).itemsize * count].view(dtype=dtype)[:count]
        order = self.byte_order if override_order is None else override_order
        return arr.view(arr.dtype.newbyteorder(order))


def _open(path: Path) -> GGUFReader:
    """The gguf reader over a memory map, or one line saying why the file is not readable."""
    if not path.is_file():
        raise GPTClassifyError(f"{path}: file not found")
    try:
        try:
            reader: GGUFReader = _PlainViewReader(path)
        except TypeError:  # a gguf release whose _get takes other arguments: the stock reader
            reader = GGUFReader(path)
    except Exception as exc:  # gguf raises ValueError, IndexError, struct/numpy errors alike
        raise GPTClassifyError(
            f"{path}: not a readable GGUF file, truncated or corrupt ({_one_line(exc)})"
        ) from None
    # The reader itself trips over most cut-off files; this catches any tensor it maps short.
    size = path.stat().st_size
    for t in reader.tensors:
        if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
            raise GPTClassifyError(
                f"{path}: not a readable GGUF file, truncated or corrupt (tensor {t.name} "
                f"ends at byte {t.data_offset + t.n_bytes}, the file has {size})"
            )
    return reader


def _metadata(reader: GGUFReader, path: Path) -> dict[str, Any]:
    meta = {}
    for key, f in reader.fields.items():
        try:
            meta[key] = f.contents()
        except (ValueError, UnicodeDecodeError, IndexError) as exc:
            raise GPTClassifyError(
                f"{path}: metadata {key} unreadable ({_one_line(exc)})"
            ) from None
    return meta


def _config(
    meta: dict[str, Any], arch: str, spec: GGUFArch, tensors: dict, path: Path
) -> dict[str, Any]:
    """transformers' config.json for the file, from its `{arch}.*` metadata."""

    def get(key: str, default: Any = None, required: bool = True) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None and required:
            raise GPTClassifyError(f"{path}: metadata {arch}.{key} missing")
        return value

    hidden = int(get("embedding_length"))
    heads = int(get("attention.head_count"))
    # Head size: written explicitly by newer converters (qwen3 always); otherwise the width
    # split over the heads, which is what rope.dimension_count equals for these families.
    head_dim = int(get("attention.key_length", hidden // heads))
    vocab = meta.get("tokenizer.ggml.tokens")
    config = {
        "architectures": [spec.hf_class],
        "model_type": spec.model_type,
        "hidden_size": hidden,
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "head_dim": head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "rope_scaling": _rope_scaling(meta, arch, tensors, head_dim, path),
        "max_position_embeddings": int(get("context_length")),
        "vocab_size": int(get("vocab_size", len(vocab) if vocab else None)),
        "tie_word_embeddings": "output.weight" not in tensors,
        "attention_bias": "blk.0.attn_q.bias" in tensors,
    }
    if spec.config is not None:
        config = spec.config(get, config)
    for name, key in _SPECIAL_IDS.items():
        token_id = meta.get(f"tokenizer.ggml.{key}")
        config[f"{name}_token_id"] = None if token_id is None else int(token_id)
    return config


def _rope_scaling(
    meta: dict[str, Any], arch: str, tensors: dict, head_dim: int, path: Path
) -> dict[str, Any] | None:
    """Rope scaling as transformers spells it, from metadata or from llama 3's rope_freqs tensor."""
    kind = meta.get(f"{arch}.rope.scaling.type", "none")
    factor = meta.get(f"{arch}.rope.scaling.factor")
    if "rope_freqs.weight" in tensors:
        if kind not in ("none", "llama3"):
            raise GPTClassifyError(f"{path}: rope_freqs tensor together with {kind} rope scaling")
        freqs = gguf.quants.dequantize(
            tensors["rope_freqs.weight"].data, tensors["rope_freqs.weight"].tensor_type
        )
        theta = float(meta.get(f"{arch}.rope.freq_base", 10000.0))
        return _llama3_scaling(np.asarray(freqs, dtype=np.float64), theta, head_dim, path)
    if kind == "none" or factor is None:
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": float(factor)}
    if kind == "yarn":
        original = meta.get(f"{arch}.rope.scaling.original_context_length")
        if original is None:
            raise GPTClassifyError(f"{path}: yarn rope scaling without original_context_length")
        return {
            "rope_type": "yarn",
            "factor": float(factor),
            "original_max_position_embeddings": int(original),
        }
    raise GPTClassifyError(f"{path}: rope scaling type {kind!r} is not supported")


def _llama3_scaling(freqs: np.ndarray, theta: float, head_dim: int, path: Path) -> dict:
    """Recover Llama 3.1+'s rope_scaling from the per-frequency divisors llama.cpp stores.

    The converter writes only the divisors (rope_freqs: 1 for short wavelengths, `factor` for
    long ones, a smooth blend between), not the four parameters that made them. In the blend
    the divisor is linear in 1/wavelength with two free coefficients, so with Meta's
    low_freq_factor of 1 the other two parameters follow; the result is checked by rebuilding
    every divisor, and a file it does not reproduce is refused.
    """
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if freqs.shape != inv_freq.shape:
        raise GPTClassifyError(
            f"{path}: rope_freqs has {freqs.size} entries, expected {inv_freq.size}"
        )
    factor = float(freqs.max())
    wavelen = 2 * math.pi / inv_freq
    blend = (freqs > 1 + 1e-6) & (freqs < factor - 1e-6)
    if blend.sum() < 2:
        raise GPTClassifyError(f"{path}: rope_freqs does not follow llama 3 rope scaling")
    smooth = (1 / freqs[blend] - 1 / factor) / (1 - 1 / factor)
    slope, intercept = np.polyfit(1 / wavelen[blend], smooth, 1)
    low = 1.0
    high = round(low - 1 / intercept, 3)
    original = int(round(slope * (high - low)))
    scaling = {
        "rope_type": "llama3",
        "factor": round(factor, 4),
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original,
    }
    if not np.allclose(_llama3_divisors(inv_freq, scaling), freqs, rtol=1e-4):
        raise GPTClassifyError(f"{path}: rope_freqs does not follow llama 3 rope scaling")
    return scaling


def _llama3_divisors(inv_freq: np.ndarray, s: dict) -> np.ndarray:
    """What llama.cpp's converter stores in rope_freqs for llama 3 rope scaling `s`."""
    wavelen = 2 * math.pi / inv_freq
    old, low, high = (
        s["original_max_position_embeddings"],
        s["low_freq_factor"],
        s["high_freq_factor"],
    )
    smooth = (old / wavelen - low) / (high - low)
    blended = 1 / ((1 - smooth) / s["factor"] + smooth)
    return np.where(wavelen < old / high, 1.0, np.where(wavelen > old / low, s["factor"], blended))


def _state_dict(
    reader: GGUFReader, config: dict, arch: str, spec: GGUFArch, path: Path, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Every tensor dequantized, renamed to transformers' names, q/k rows un-permuted (llama),
    the 1 taken off Gemma's norm weights."""
    layers = config["num_hidden_layers"]
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH[spec.gguf_arch], layers)
    wanted = ["model.embed_tokens.weight", "model.norm.weight"]
    optional = ["lm_head.weight"]
    for i in range(layers):
        wanted += [f"model.layers.{i}.{p}" for p in spec.layer_params]
        optional += [f"model.layers.{i}.{p}" for p in spec.optional_layer_params]
    to_hf = {name_map.get_name(n, try_suffixes=(".weight", ".bias")): n for n in wanted + optional}
    # llama 3's rope_freqs is read into config.rope_scaling; it is not a parameter.
    unexpected = [
        t.name for t in reader.tensors if t.name not in to_hf and t.name != "rope_freqs.weight"
    ]
    if unexpected:
        raise GPTClassifyError(
            f"{path}: unexpected tensors for {arch}: {', '.join(unexpected[:5])}"
        )
    present = {to_hf[t.name] for t in reader.tensors if t.name in to_hf}
    missing = [n for n in wanted if n not in present]
    if missing:
        raise GPTClassifyError(f"{path}: tensors missing for {arch}: {', '.join(missing[:5])}")

    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    state_dict = {}
    bar = progress.make(
        f"reading {path.name}", sum(int(t.n_bytes) for t in reader.tensors), "B", scale=True
    )
    for t in reader.tensors:
        bar.update(int(t.n_bytes))
        if t.name not in to_hf:
            continue
        if t.tensor_type not in QUANT_TYPES:
            raise GPTClassifyError(
                f"{path}: tensor {t.name} is {t.tensor_type.name}; gptclassify reads "
                f"{', '.join(q.name for q in QUANT_TYPES)}"
            )
        name = to_hf[t.name]
        # gguf lists shapes innermost first; transformers' are outermost first.
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        values = np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), dtype=np.float32)
        if not values.flags.writeable:  # F32 comes back as a view of the read-only map
            values = values.copy()
        tensor = torch.from_numpy(values.reshape(shape))
        if spec.permuted and (".q_proj." in name or ".k_proj." in name):
            tensor = _unpermute(tensor, heads if ".q_proj." in name else kv_heads)
        if spec.norm_offset and name.endswith("norm.weight"):
            tensor = tensor - 1  # llama.cpp stores Gemma's (1 + w); transformers holds w
        state_dict[name] = tensor.to(dtype)
        del values, tensor  # only one fp32 tensor alive at a time
    bar.close()
    _check_shapes(state_dict, config, path)
    return state_dict


def _unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row order: per head it stores the even rotary rows, then the odd
    ones (interleaved rotary), where transformers keeps each head's two halves (NeoX)."""
    rows = w.shape[0]
    # (n_heads, 2, head_dim/2, ...) in the file -> (n_heads, head_dim/2, 2, ...) back
    return (
        w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
    )


def _check_shapes(state_dict: dict[str, torch.Tensor], config: dict, path: Path) -> None:
    """The tensors agree with the metadata (a file whose header lies would load garbage)."""
    h, ff, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    q, kv = (
        config["num_attention_heads"] * config["head_dim"],
        config["num_key_value_heads"] * config["head_dim"],
    )
    expected = {
        "embed_tokens.weight": (v, h),
        "lm_head.weight": (v, h),
        "norm.weight": (h,),
        "q_proj.weight": (q, h),
        "k_proj.weight": (kv, h),
        "v_proj.weight": (kv, h),
        "o_proj.weight": (h, q),
        "q_proj.bias": (q,),
        "k_proj.bias": (kv,),
        "v_proj.bias": (kv,),
        "gate_proj.weight": (ff, h),
        "up_proj.weight": (ff, h),
        "down_proj.weight": (h, ff),
        "input_layernorm.weight": (h,),
        "post_attention_layernorm.weight": (h,),
        "pre_feedforward_layernorm.weight": (h,),
        "post_feedforward_layernorm.weight": (h,),
        "q_norm.weight": (config["head_dim"],),
        "k_norm.weight": (config["head_dim"],),
    }
    for name, tensor in state_dict.items():
        want = expected[".".join(name.split(".")[-2:])]  # e.g. "q_norm.weight"
        if tuple(tensor.shape) != want:
            raise GPTClassifyError(
                f"{path}: tensor {name} has shape {tuple(tensor.shape)}, the metadata implies {want}"
            )


def _tokenizer(meta: dict, path: Path, spec: GGUFArch) -> tuple[Tokenizer, dict[str, Any]]:
    """The tokenizer rebuilt from tokenizer.ggml.*, as llama.cpp and transformers build it:
    byte-level BPE ("gpt2"), or Gemma's sentencepiece-style BPE ("llama")."""
    model = meta.get("tokenizer.ggml.model")
    if model == "llama" and spec.sentencepiece:
        tokenizer = _gemma_sentencepiece(meta, path)
    elif model != "gpt2":
        why = {
            "llama": "a sentencepiece vocabulary",
            "t5": "a unigram vocabulary",
            "bert": "a WordPiece vocabulary",
        }.get(model, "not byte-level BPE")
        raise GPTClassifyError(
            f"{path}: tokenizer.ggml.model is {model!r} ({why}); gptclassify builds "
            "GPT-2-style byte-level BPE tokenizers ('gpt2') and Gemma's sentencepiece ones"
        )
    else:
        tokenizer = _byte_level_bpe(meta, path)
    return _with_special_tokens(tokenizer, meta, path)


def _gemma_sentencepiece(meta: dict, path: Path) -> Tokenizer:
    """Gemma's vocabulary as BPE with byte fallback (as transformers' GemmaTokenizer): spaces
    spelled "\u2581" by the normalizer, no prefix space, unknown bytes as <0xNN> tokens.

    The file lists no merges; they are rebuilt from the vocabulary, best first in the order
    the tokens appear in the file (Gemma's scores do not follow its merge order), as
    transformers' GGUF loader does. Tokens of spaces alone are stored as spaces ("  ") and
    looked up as "\u2581\u2581": respelled first.
    """
    tokens = [
        "\u2581" * len(t) if " " in t and not t.strip() else t
        for t in meta["tokenizer.ggml.tokens"]
    ]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise GPTClassifyError(f"{path}: tokenizer.ggml.tokens has duplicate tokens")
    merges = _merges_in_vocabulary_order(tokens, vocab)
    unk_id = meta.get("tokenizer.ggml.unknown_token_id")
    unk = tokens[int(unk_id)] if unk_id is not None and 0 <= int(unk_id) < len(tokens) else None
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True)
    )
    tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    return tokenizer


def _merges_in_vocabulary_order(tokens: list[str], vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every split of a token into two tokens, ranked by the token's place in the file
    (earlier first), then longer left and right parts first, then by the parts' ids
    (transformers' `generate_merges` with each token scored -index)."""
    ranked = []
    for index, token in enumerate(tokens):
        local = [
            (token[:k], token[k:])
            for k in range(1, len(token))
            if token[:k] in vocab and token[k:] in vocab
        ]
        local.sort(key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
        ranked.extend((-index, len(left), len(right), left, right) for left, right in local)
    ranked.sort(key=lambda m: (m[0], m[1], m[2]), reverse=True)
    return [(left, right) for _, _, _, left, right in ranked]


def _byte_level_bpe(meta: dict, path: Path) -> Tokenizer:
    """GPT-2-style byte-level BPE with the file's pre-tokenizer."""
    pre = meta.get("tokenizer.ggml.pre", "default")
    if pre not in _PRE_TOKENIZERS:
        raise GPTClassifyError(
            f"{path}: tokenizer.ggml.pre is {pre!r}; supported: {', '.join(sorted(_PRE_TOKENIZERS))}"
        )
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise GPTClassifyError(f"{path}: tokenizer.ggml.tokens has duplicate tokens")
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))

    kind, split = _PRE_TOKENIZERS[pre]
    if kind == "digits":
        # As SmolLM's tokenizer.json: digits one by one, then GPT-2's own pattern.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _with_special_tokens(
    tokenizer: Tokenizer, meta: dict, path: Path
) -> tuple[Tokenizer, dict[str, Any]]:
    """Control and user-defined tokens matched whole, the BOS/EOS template, and the
    tokenizer_config that names the special tokens."""
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    token_types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    vocab = tokenizer.get_vocab(with_added_tokens=False)

    # Control tokens (<|im_start|>, <|endoftext|>) are matched whole in text, as llama.cpp
    # and transformers do; user-defined ones (<think>) too, but as normal tokens.
    tokenizer.add_special_tokens(
        [
            AddedToken(tok, special=True, normalized=False)
            for tok, kind_ in zip(tokens, token_types, strict=False)
            if kind_ == _CONTROL
        ]
    )
    tokenizer.add_tokens(
        [
            AddedToken(tok, special=False, normalized=False)
            for tok, kind_ in zip(tokens, token_types, strict=False)
            # Gemma's runs of spaces are user-defined, but respelled in its vocabulary.
            if kind_ == _USER_DEFINED and tok in vocab
        ]
    )

    def token(name: str) -> tuple[str | None, int | None]:
        key = f"tokenizer.ggml.{_SPECIAL_IDS[name]}"
        token_id = meta.get(key)
        if token_id is None:
            return None, None
        if not 0 <= int(token_id) < len(tokens):
            raise GPTClassifyError(f"{path}: {key} {token_id} out of range")
        return tokens[int(token_id)], int(token_id)

    bos, bos_id = token("bos")
    eos, eos_id = token("eos")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    # transformers' Llama convention: [bos] A [eos], pairs [bos] A [eos] [bos] B [eos].
    single, specials = ["$A"], []
    if add_bos and bos is not None:
        single, specials = [bos, *single], [(bos, bos_id)]
    if add_eos and eos is not None:
        single, specials = [*single, eos], [*specials, (eos, eos_id)]
    pair = single + ["$B:1" if piece == "$A" else piece for piece in single]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=list(dict.fromkeys(specials))
    )

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
    }
    for name in ("bos", "eos", "unk", "pad"):
        text, token_id = token(name)
        config[f"{name}_token"] = text
        config[f"{name}_token_id"] = token_id
    if "tokenizer.chat_template" in meta:
        config["chat_template"] = meta["tokenizer.chat_template"]
    return tokenizer, config


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
