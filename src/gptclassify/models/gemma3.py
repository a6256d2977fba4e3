"""Gemma 3's Hugging Face layout (transformers' `gemma3_text`: Gemma3ForCausalLM,
Gemma3TextForSequenceClassification), Google's open decoders, Gemma Terms of Use.

Llama's names and fused projections (models/llama.py), plus what Gemma adds: a norm after
attention and after the MLP (`post_attention_layernorm`, `post_feedforward_layernorm`; the
MLP's own pre-norm is `pre_feedforward_layernorm`), q/k norms, RMSNorm weights applied as
(1 + weight), embeddings scaled by sqrt(width), a GELU-gated MLP, the query scaled by
`query_pre_attn_scalar`, and sliding-window layers (five to one global for Gemma 3) whose
rotary base is their own (`rope_local_base_freq`). model.py has the switches.
"""

from __future__ import annotations

import re
from typing import Any

from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.models.base import Family, GGUFArch, Source

MODEL_TYPE = "gemma3_text"
_IGNORED = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.\w+$")
_GELU_TANH = ("gelu_pytorch_tanh", "gelu_new")
SLIDING, FULL = "sliding_attention", "full_attention"


def _layer_pattern(hf: dict[str, Any], n_layers: int, source: str) -> tuple[int, int]:
    """(sliding_window, global_every) from `layer_types` (or the older
    `sliding_window_pattern`); refuses a layout that is not "every Nth layer global"."""
    window = int(hf.get("sliding_window") or 0)
    types = hf.get("layer_types")
    if types is None:
        every = int(hf.get("sliding_window_pattern", 6))
        types = [SLIDING if (i + 1) % every else FULL for i in range(n_layers)]
    if not isinstance(types, list) or len(types) != n_layers or set(types) - {SLIDING, FULL}:
        raise GPTClassifyError(
            f"{source}: layer_types must list {n_layers} of {SLIDING!r} / {FULL!r}"
        )
    if SLIDING not in types:
        return 0, 0
    if not window:
        raise GPTClassifyError(f"{source}: sliding_attention layers without a sliding_window")
    every = types.index(FULL) + 1 if FULL in types else 0
    expected = [SLIDING if not every or (i + 1) % every else FULL for i in range(n_layers)]
    if types != expected:
        raise GPTClassifyError(
            f"{source}: layer_types is not 'every Nth layer global'; not implemented"
        )
    return window, every


def _rope(hf: dict[str, Any], source: str) -> dict[str, Any]:
    """Both layer types' rotary settings, from transformers 5's per-type `rope_parameters`
    or the older `rope_theta` / `rope_local_base_freq` / `rope_scaling`."""
    params = hf.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise GPTClassifyError(f"{source}: rope_parameters must be an object")
    full = params.get(FULL) or {
        "rope_theta": hf.get("rope_theta", 1000000.0),
        **(hf.get("rope_scaling") or {}),
    }
    local = params.get(SLIDING) or {"rope_theta": hf.get("rope_local_base_freq", 10000.0)}
    out: dict[str, Any] = {
        "rope_theta": float(full.get("rope_theta", 1000000.0)),
        "rope_local_theta": float(local.get("rope_theta", 10000.0)),
    }
    kind = full.get("rope_type", full.get("type", "default"))
    if kind == "linear":
        out["rope_linear"] = float(full["factor"])
    elif kind != "default":
        raise GPTClassifyError(
            f"{source}: rope scaling {kind!r} is not implemented (only 'linear')"
        )
    local_kind = local.get("rope_type", local.get("type", "default"))
    if local_kind != "default":
        raise GPTClassifyError(f"{source}: sliding-window rope scaling {local_kind!r}")
    return out


def config_from_hf(hf: dict[str, Any], source: str = "config.json") -> GPTConfig:
    act = hf.get("hidden_activation", hf.get("hidden_act", "gelu_pytorch_tanh"))
    if act not in _GELU_TANH:
        raise GPTClassifyError(
            f"{source}: hidden_activation={act!r} is not supported (need 'gelu_pytorch_tanh')"
        )
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if hf.get(key) is not None:
            raise GPTClassifyError(f"{source}: {key}={hf[key]!r} is not implemented (Gemma 2's)")
    if hf.get("use_bidirectional_attention"):
        raise GPTClassifyError(f"{source}: use_bidirectional_attention is not implemented")
    try:
        heads = int(hf["num_attention_heads"])
        emb = int(hf["hidden_size"])
        head_dim = int(hf.get("head_dim") or emb // heads)
        n_layers = int(hf["num_hidden_layers"])
        window, every = _layer_pattern(hf, n_layers, source)
        bias = bool(hf.get("attention_bias", False))
        return GPTConfig(
            family=MODEL_TYPE,
            vocab_size=int(hf["vocab_size"]),
            context_length=int(hf.get("max_position_embeddings", 32768)),
            emb_dim=emb,
            n_heads=heads,
            n_kv_heads=int(hf.get("num_key_value_heads") or heads),
            n_layers=n_layers,
            head_size=head_dim if head_dim * heads != emb else 0,
            mlp_hidden=int(hf["intermediate_size"]),
            drop_rate=0.0,
            norm="rmsnorm",
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            positions="rope",
            mlp="geglu",
            qkv_bias=bias,
            out_bias=bias,
            mlp_bias=False,
            qk_norm=True,
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
            norm_offset=True,
            post_norms=True,
            embed_scale=True,
            attn_scalar=float(hf.get("query_pre_attn_scalar", head_dim)),
            sliding_window=window,
            global_every=every,
            **_rope(hf, source),
        )
    except KeyError as exc:
        raise GPTClassifyError(f"{source}: missing field {exc.args[0]!r}") from None
    except GPTClassifyError:  # already names the source (it is a ValueError too)
        raise
    except (TypeError, ValueError) as exc:
        raise GPTClassifyError(f"{source}: {exc}") from None


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def config_to_hf(g: GPTConfig) -> dict[str, Any]:
    full: dict[str, Any] = {"rope_type": "default", "rope_theta": g.rope_theta}
    if g.rope_linear:
        full = {"rope_type": "linear", "rope_theta": g.rope_theta, "factor": g.rope_linear}
    local = {"rope_type": "default", "rope_theta": g.rope_local_theta or g.rope_theta}
    return {
        "model_type": MODEL_TYPE,
        "vocab_size": g.vocab_size,
        "hidden_size": g.emb_dim,
        "intermediate_size": g.hidden_dim,
        "num_hidden_layers": g.n_layers,
        "num_attention_heads": g.n_heads,
        "num_key_value_heads": g.kv_heads,
        "head_dim": g.head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "max_position_embeddings": g.context_length,
        "rms_norm_eps": g.norm_eps,
        "tie_word_embeddings": g.tie_embeddings,
        "attention_bias": g.qkv_bias,
        # transformers wants an integer here (its configs are typed).
        "query_pre_attn_scalar": _number(g.attn_scalar or g.head_dim),
        "sliding_window": g.sliding_window or None,
        "layer_types": [SLIDING if g.sliding(i) else FULL for i in range(g.n_layers)],
        # Both spellings: transformers 5 reads rope_parameters, 4.x the three older fields.
        "rope_parameters": {SLIDING: local, FULL: full},
        "rope_theta": g.rope_theta,
        "rope_local_base_freq": local["rope_theta"],
        "rope_scaling": full if g.rope_linear else None,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "use_bidirectional_attention": False,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
    }


def hf_layout(config: GPTConfig, with_lm_head: bool = False) -> dict[str, Source]:
    q, kv = config.n_heads * config.head_dim, config.kv_heads * config.head_dim
    qkv, hidden = (q, kv, kv), config.hidden_dim
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
        layout[ours + "attn.q_norm.weight"] = Source((attn + "q_norm.weight",))
        layout[ours + "attn.k_norm.weight"] = Source((attn + "k_norm.weight",))
        layout[ours + "post_attn_norm.weight"] = Source((hf + "post_attention_layernorm.weight",))
        layout[ours + "ln_2.weight"] = Source((hf + "pre_feedforward_layernorm.weight",))
        layout[ours + "mlp.c_fc.weight"] = Source(
            (mlp + "gate_proj.weight", mlp + "up_proj.weight"), sizes=(hidden, hidden)
        )
        layout[ours + "mlp.c_proj.weight"] = Source((mlp + "down_proj.weight",))
        layout[ours + "post_mlp_norm.weight"] = Source((hf + "post_feedforward_layernorm.weight",))
    layout["ln_f.weight"] = Source(("model.norm.weight",))
    if with_lm_head and not config.tie_embeddings:
        layout["lm_head.weight"] = Source(("lm_head.weight",))
    return layout


def hf_ignored(config: GPTConfig, name: str) -> bool:
    return bool(_IGNORED.match(name)) or (config.tie_embeddings and name == "lm_head.weight")


def _preset(**shape: Any) -> GPTConfig:
    base = {
        "family": MODEL_TYPE,
        "vocab_size": 262144,
        "context_length": 32768,
        "n_heads": 4,
        "n_kv_heads": 1,
        "head_size": 256,
        "norm": "rmsnorm",
        "norm_eps": 1e-6,
        "positions": "rope",
        "mlp": "geglu",
        "qkv_bias": False,
        "out_bias": False,
        "mlp_bias": False,
        "qk_norm": True,
        "tie_embeddings": True,
        "norm_offset": True,
        "post_norms": True,
        "embed_scale": True,
        "attn_scalar": 256.0,
        "sliding_window": 512,
        "global_every": 6,
        "rope_theta": 1000000.0,
        "rope_local_theta": 10000.0,
    }
    return GPTConfig(**(base | shape))


PRESETS = {
    "gemma3-270m": _preset(emb_dim=640, n_layers=18, mlp_hidden=2048),
    "gemma3-1b": _preset(emb_dim=1152, n_layers=26, mlp_hidden=6912),
}

HUB_REPOS = {"gemma3-270m": "google/gemma-3-270m", "gemma3-1b": "google/gemma-3-1b-pt"}


def _gguf_config(get: Any, config: dict[str, Any]) -> dict[str, Any]:
    """gemma3's own fields from llama.cpp's metadata (transformers' GGUF loader reads the
    same keys)."""
    n_layers = config["num_hidden_layers"]
    window = int(get("attention.sliding_window"))
    # llama.cpp's converter has no key for the pattern: Gemma 3 is 5 sliding to 1 global.
    every = 6
    out = {k: v for k, v in config.items() if k not in ("hidden_act", "rope_scaling")}
    return out | {
        "hidden_activation": "gelu_pytorch_tanh",
        # Not in the metadata: llama.cpp scales by the head width, except for the 27B model
        # (62 layers), whose query_pre_attn_scalar is the width over the heads.
        "query_pre_attn_scalar": (
            config["hidden_size"] // config["num_attention_heads"]
            if n_layers == 62
            else config["head_dim"]
        ),
        "sliding_window": window,
        "layer_types": [SLIDING if (i + 1) % every else FULL for i in range(n_layers)],
        "rope_local_base_freq": 10000.0,
        "rope_scaling": config["rope_scaling"],
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
    }


GGUF = {
    "gemma3": GGUFArch(
        MODEL_TYPE,
        "Gemma3ForCausalLM",
        "GEMMA3",
        (
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "self_attn.q_norm.weight",
            "self_attn.k_norm.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
            "input_layernorm.weight",
            "post_attention_layernorm.weight",
            "pre_feedforward_layernorm.weight",
            "post_feedforward_layernorm.weight",
        ),
        norm_offset=True,
        sentencepiece=True,
        config=_gguf_config,
    ),
}

FAMILY = Family(
    name="gemma3",
    model_types=(MODEL_TYPE,),
    hf_classes={MODEL_TYPE: ("Gemma3ForCausalLM", "Gemma3TextForSequenceClassification")},
    prefix="model.",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    hf_layout=hf_layout,
    hf_ignored=hf_ignored,
    presets=PRESETS,
    hub_repos=HUB_REPOS,
    gguf=GGUF,
)
