"""The Llama-style families' Hugging Face layout: Llama 3.x and SmolLM2 (`llama`), Mistral,
Qwen2 / Qwen2.5 and Qwen3.

All four share transformers' names (`model.layers.N.self_attn.q_proj`, ...). Our decoder
fuses q/k/v into `attn.c_attn` and gate/up into `mlp.c_fc` (one matmul each), so a fused
parameter is the concatenation of its Hugging Face tensors along the output dimension. What
differs between the families is data: biases (Qwen2 on q/k/v; Llama's `attention_bias` on
q/k/v/o), q/k norms (Qwen3), the head width, tied embeddings, rotary base and scaling.
"""

from __future__ import annotations

import re
from typing import Any

from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.models.base import Family, GGUFArch, Source

_IGNORED = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")
_CLASS_PREFIX = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}


def _rope(hf: dict[str, Any], source: str) -> dict[str, Any]:
    """Rotary settings from either spelling (transformers 5's `rope_parameters` or the
    older `rope_theta` + `rope_scaling`); refuses scalings we do not implement."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    if not isinstance(params, dict) or not isinstance(scaling, dict):
        raise GPTClassifyError(f"{source}: rope_parameters / rope_scaling must be objects")
    merged = {**scaling, **params}
    theta = merged.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = merged.get("rope_type", merged.get("type", "default"))
    if merged.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0)) != 1.0:
        raise GPTClassifyError(f"{source}: partial rotary embeddings are not implemented")
    out: dict[str, Any] = {"rope_theta": float(theta)}
    if kind == "default":
        return out
    if kind != "llama3":
        raise GPTClassifyError(
            f"{source}: rope scaling {kind!r} is not implemented (only Llama 3.1's 'llama3')"
        )
    try:
        out.update(
            rope_factor=float(merged["factor"]),
            rope_low_freq_factor=float(merged["low_freq_factor"]),
            rope_high_freq_factor=float(merged["high_freq_factor"]),
            rope_original_context=int(merged["original_max_position_embeddings"]),
        )
    except KeyError as exc:
        raise GPTClassifyError(f"{source}: llama3 rope scaling lacks {exc.args[0]!r}") from None
    return out


def _context(hf: dict[str, Any], family: str) -> int:
    """The longest input we run: the model's positions, capped at a sliding attention window
    (Mistral v0.1, Qwen with use_sliding_window) so the window never takes effect and full
    causal attention computes the same function."""
    context = int(hf.get("max_position_embeddings", 2048))
    window = hf.get("sliding_window")
    sliding = family == "mistral" or hf.get("use_sliding_window", False)
    if "sliding_attention" in (hf.get("layer_types") or []):
        sliding = True
    if sliding and window:
        context = min(context, int(window))
    return context


def config_from_hf(hf: dict[str, Any], source: str = "config.json") -> GPTConfig:
    family = hf.get("model_type")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise GPTClassifyError(f"{source}: hidden_act={act!r} is not supported (need 'silu')")
    try:
        heads = int(hf["num_attention_heads"])
        emb = int(hf["hidden_size"])
        head_dim = hf.get("head_dim") or emb // heads
        if family == "qwen2":
            qkv_bias, out_bias = True, False
        else:
            qkv_bias = out_bias = bool(hf.get("attention_bias", False))
        return GPTConfig(
            family=family,
            vocab_size=int(hf["vocab_size"]),
            context_length=_context(hf, family),
            emb_dim=emb,
            n_heads=heads,
            n_kv_heads=int(hf.get("num_key_value_heads") or heads),
            n_layers=int(hf["num_hidden_layers"]),
            head_size=int(head_dim) if int(head_dim) * heads != emb else 0,
            mlp_hidden=int(hf["intermediate_size"]),
            drop_rate=0.0,
            norm="rmsnorm",
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            positions="rope",
            mlp="swiglu",
            qkv_bias=qkv_bias,
            out_bias=out_bias,
            mlp_bias=bool(hf.get("mlp_bias", False)),
            qk_norm=family == "qwen3",
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            **_rope(hf, source),
        )
    except KeyError as exc:
        raise GPTClassifyError(f"{source}: missing field {exc.args[0]!r}") from None
    except GPTClassifyError:  # already names the source (it is a ValueError too)
        raise
    except (TypeError, ValueError) as exc:
        raise GPTClassifyError(f"{source}: {exc}") from None


def config_to_hf(g: GPTConfig) -> dict[str, Any]:
    rope: dict[str, Any] = {"rope_theta": g.rope_theta, "rope_type": "default"}
    if g.rope_factor:
        rope = {
            "rope_theta": g.rope_theta,
            "rope_type": "llama3",
            "factor": g.rope_factor,
            "low_freq_factor": g.rope_low_freq_factor,
            "high_freq_factor": g.rope_high_freq_factor,
            "original_max_position_embeddings": g.rope_original_context,
        }
    out: dict[str, Any] = {
        "model_type": g.family,
        "vocab_size": g.vocab_size,
        "hidden_size": g.emb_dim,
        "intermediate_size": g.hidden_dim,
        "num_hidden_layers": g.n_layers,
        "num_attention_heads": g.n_heads,
        "num_key_value_heads": g.kv_heads,
        "head_dim": g.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": g.context_length,
        "rms_norm_eps": g.norm_eps,
        "tie_word_embeddings": g.tie_embeddings,
        # Both spellings: transformers 5 reads rope_parameters, 4.x rope_theta/rope_scaling.
        "rope_parameters": rope,
        "rope_theta": g.rope_theta,
        "rope_scaling": rope if g.rope_factor else None,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
    }
    if g.family in ("llama", "qwen3"):
        out["attention_bias"] = g.qkv_bias
    if g.family == "llama":
        out["mlp_bias"] = g.mlp_bias
    if g.family in ("mistral", "qwen2", "qwen3"):
        out["sliding_window"] = None
        if g.family != "mistral":
            out["use_sliding_window"] = False
    return out


def hf_layout(config: GPTConfig, with_lm_head: bool = False) -> dict[str, Source]:
    q, kv, hidden = (
        config.n_heads * config.head_dim,
        config.kv_heads * config.head_dim,
        config.hidden_dim,
    )
    qkv, gate_up = (q, kv, kv), (hidden, hidden)
    layout = {"wte.weight": Source(("model.embed_tokens.weight",))}
    for i in range(config.n_layers):
        hf, ours = f"model.layers.{i}.", f"h.{i}."
        attn, mlp = hf + "self_attn.", hf + "mlp."
        layout[ours + "ln_1.weight"] = Source((hf + "input_layernorm.weight",))
        layout[ours + "attn.c_attn.weight"] = Source(
            tuple(f"{attn}{p}_proj.weight" for p in "qkv"), sizes=qkv
        )
        if config.qkv_bias:
            layout[ours + "attn.c_attn.bias"] = Source(
                tuple(f"{attn}{p}_proj.bias" for p in "qkv"), sizes=qkv
            )
        layout[ours + "attn.c_proj.weight"] = Source((attn + "o_proj.weight",))
        if config.out_bias:
            layout[ours + "attn.c_proj.bias"] = Source((attn + "o_proj.bias",))
        if config.qk_norm:
            layout[ours + "attn.q_norm.weight"] = Source((attn + "q_norm.weight",))
            layout[ours + "attn.k_norm.weight"] = Source((attn + "k_norm.weight",))
        layout[ours + "ln_2.weight"] = Source((hf + "post_attention_layernorm.weight",))
        layout[ours + "mlp.c_fc.weight"] = Source(
            (mlp + "gate_proj.weight", mlp + "up_proj.weight"), sizes=gate_up
        )
        layout[ours + "mlp.c_proj.weight"] = Source((mlp + "down_proj.weight",))
        if config.mlp_bias:
            layout[ours + "mlp.c_fc.bias"] = Source(
                (mlp + "gate_proj.bias", mlp + "up_proj.bias"), sizes=gate_up
            )
            layout[ours + "mlp.c_proj.bias"] = Source((mlp + "down_proj.bias",))
    layout["ln_f.weight"] = Source(("model.norm.weight",))
    if with_lm_head and not config.tie_embeddings:
        layout["lm_head.weight"] = Source(("lm_head.weight",))
    return layout


def hf_ignored(config: GPTConfig, name: str) -> bool:
    return bool(_IGNORED.match(name)) or (config.tie_embeddings and name == "lm_head.weight")


def _llama(**shape: Any) -> GPTConfig:
    """A Llama-style shape: RMSNorm, rotary positions, SwiGLU, no biases, untied unless said."""
    base = {
        "family": "llama",
        "norm": "rmsnorm",
        "positions": "rope",
        "mlp": "swiglu",
        "qkv_bias": False,
        "out_bias": False,
        "mlp_bias": False,
        "tie_embeddings": False,
    }
    return GPTConfig(**(base | shape))


_LLAMA3_ROPE = {"rope_theta": 500000.0, "rope_factor": 32.0, "rope_original_context": 8192}
_QWEN = {"vocab_size": 151936, "rope_theta": 1000000.0, "norm_eps": 1e-6, "tie_embeddings": True}

PRESETS: dict[str, GPTConfig] = {
    # SmolLM2 (Hugging Face, 2024): Llama architecture, tied embeddings.
    **{
        name: _llama(
            vocab_size=49152,
            context_length=8192,
            emb_dim=c,
            n_layers=n,
            n_heads=h,
            n_kv_heads=kv,
            mlp_hidden=m,
            rope_theta=theta,
            tie_embeddings=True,
        )
        for name, (c, n, h, kv, m, theta) in {
            "smollm2-135m": (576, 30, 9, 3, 1536, 100000.0),
            "smollm2-360m": (960, 32, 15, 5, 2560, 100000.0),
            "smollm2-1.7b": (2048, 24, 32, 32, 8192, 130000.0),
        }.items()
    },
    "llama-3.2-1b": _llama(
        vocab_size=128256,
        context_length=131072,
        emb_dim=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        mlp_hidden=8192,
        tie_embeddings=True,
        **_LLAMA3_ROPE,
    ),
    "llama-3.2-3b": _llama(
        vocab_size=128256,
        context_length=131072,
        emb_dim=3072,
        n_layers=28,
        n_heads=24,
        n_kv_heads=8,
        mlp_hidden=8192,
        tie_embeddings=True,
        **_LLAMA3_ROPE,
    ),
    "qwen2.5-0.5b": _llama(
        family="qwen2",
        context_length=32768,
        emb_dim=896,
        n_layers=24,
        n_heads=14,
        n_kv_heads=2,
        mlp_hidden=4864,
        qkv_bias=True,
        **_QWEN,
    ),
    "qwen2.5-1.5b": _llama(
        family="qwen2",
        context_length=32768,
        emb_dim=1536,
        n_layers=28,
        n_heads=12,
        n_kv_heads=2,
        mlp_hidden=8960,
        qkv_bias=True,
        **_QWEN,
    ),
    "qwen3-0.6b": _llama(
        family="qwen3",
        context_length=40960,
        emb_dim=1024,
        n_layers=28,
        n_heads=16,
        n_kv_heads=8,
        head_size=128,
        mlp_hidden=3072,
        qk_norm=True,
        **_QWEN,
    ),
    "qwen3-1.7b": _llama(
        family="qwen3",
        context_length=40960,
        emb_dim=2048,
        n_layers=28,
        n_heads=16,
        n_kv_heads=8,
        head_size=128,
        mlp_hidden=6144,
        qk_norm=True,
        **_QWEN,
    ),
    # Mistral 7B v0.3: no sliding window; v0.1's 4,096-token window is equivalent up to
    # 4,096 tokens, which is where _context caps its context.
    "mistral-7b": _llama(
        family="mistral",
        vocab_size=32768,
        context_length=32768,
        emb_dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        mlp_hidden=14336,
        rope_theta=1000000.0,
    ),
}

HUB_REPOS = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M",
    "smollm2-360m": "HuggingFaceTB/SmolLM2-360M",
    "smollm2-1.7b": "HuggingFaceTB/SmolLM2-1.7B",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B",
    "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B",
    "mistral-7b": "mistralai/Mistral-7B-v0.3",
}

_LAYER = (
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
)
_QKV_BIASES = ("self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias")

# llama.cpp runs llama with interleaved ("normal") rotary and permutes q/k rows on conversion
# so that the pairs line up; qwen2/qwen3 use NeoX rotary, the layout transformers has, and
# are stored unpermuted.
GGUF = {
    "llama": GGUFArch(
        "llama",
        "LlamaForCausalLM",
        "LLAMA",
        _LAYER,
        optional_layer_params=_QKV_BIASES,
        permuted=True,
        config=lambda get, c: c | {"mlp_bias": False},
    ),
    # q/k/v biases always, no switch for them
    "qwen2": GGUFArch(
        "qwen2",
        "Qwen2ForCausalLM",
        "QWEN2",
        _LAYER + _QKV_BIASES,
        config=lambda get, c: (
            {k: v for k, v in c.items() if k != "attention_bias"} | {"use_sliding_window": False}
        ),
    ),
    "qwen3": GGUFArch(
        "qwen3",
        "Qwen3ForCausalLM",
        "QWEN3",
        _LAYER + ("self_attn.q_norm.weight", "self_attn.k_norm.weight"),
    ),
}

FAMILY = Family(
    name="llama",
    model_types=tuple(_CLASS_PREFIX),
    hf_classes={
        t: (f"{p}ForCausalLM", f"{p}ForSequenceClassification") for t, p in _CLASS_PREFIX.items()
    },
    prefix="model.",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    hf_layout=hf_layout,
    hf_ignored=hf_ignored,
    presets=PRESETS,
    hub_repos=HUB_REPOS,
    gguf=GGUF,
)
