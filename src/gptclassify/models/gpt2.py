"""GPT-2's Hugging Face layout: OpenAI's names, which our model keeps.

Loading is a name-for-name copy. The twist is OpenAI's `Conv1D`: it stores (in, out)
matrices applied as x @ W, where nn.Linear stores (out, in); `TRANSPOSED` lists those.
Files name tensors with or without a `transformer.` prefix.
"""

from __future__ import annotations

import re
from typing import Any

from gptclassify.config import PAD_TOKEN_ID, GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.models.base import Family, Source

TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
"""Conv1D weights stored (in, out) in GPT-2 files; nn.Linear wants (out, in)."""

LAYER_NORM_EPS = 1e-5
# Causal-mask buffers some exports carry (older transformers versions); not parameters.
_IGNORED = re.compile(r"^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$")


def config_from_hf(hf: dict[str, Any], source: str = "config.json") -> GPTConfig:
    """Translate a transformers GPT-2 config.json, refusing what we can't run."""
    checks = {
        # Field: (value we implement, default when absent)
        "activation_function": ("gelu_new", "gelu_new"),
        "scale_attn_weights": (True, True),
        "scale_attn_by_inverse_layer_idx": (False, False),
        "reorder_and_upcast_attn": (False, False),
    }
    for key, (wanted, default) in checks.items():
        value = hf.get(key, default)
        ok = (
            value in ("gelu_new", "gelu_pytorch_tanh")
            if key == "activation_function"
            else value == wanted
        )
        if not ok:
            raise GPTClassifyError(f"{source}: {key}={value!r} is not supported (need {wanted!r})")
    eps = hf.get("layer_norm_epsilon", LAYER_NORM_EPS)
    if abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise GPTClassifyError(f"{source}: layer_norm_epsilon={eps} is not supported (need 1e-5)")
    try:
        return GPTConfig(
            vocab_size=int(hf["vocab_size"]),
            context_length=int(hf.get("n_positions", hf.get("n_ctx", 1024))),
            emb_dim=int(hf["n_embd"]),
            n_heads=int(hf["n_head"]),
            n_layers=int(hf["n_layer"]),
            drop_rate=0.0,
            qkv_bias=True,
        )
    except KeyError as exc:
        raise GPTClassifyError(f"{source}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise GPTClassifyError(f"{source}: {exc}") from None


def config_to_hf(g: GPTConfig) -> dict[str, Any]:
    return {
        "model_type": "gpt2",
        "vocab_size": g.vocab_size,
        "n_positions": g.context_length,
        "n_embd": g.emb_dim,
        "n_layer": g.n_layers,
        "n_head": g.n_heads,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": g.drop_rate,
        "embd_pdrop": g.drop_rate,
        "attn_pdrop": g.drop_rate,
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "use_cache": True,
        "bos_token_id": PAD_TOKEN_ID,
        "eos_token_id": PAD_TOKEN_ID,
        "pad_token_id": PAD_TOKEN_ID,
    }


def hf_layout(config: GPTConfig, with_lm_head: bool = False) -> dict[str, Source]:
    names = ["wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"]
    for i in range(config.n_layers):
        for part in ("ln_1", "ln_2"):
            names += [f"h.{i}.{part}.weight", f"h.{i}.{part}.bias"]
        for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            names.append(f"h.{i}.{layer}.weight")
            if layer != "attn.c_attn" or config.qkv_bias:
                names.append(f"h.{i}.{layer}.bias")
    # transformers' own prefix, as GPT2ForSequenceClassification writes (the loader also
    # takes names without it).
    return {n: Source((f"transformer.{n}",), transposed=n.endswith(TRANSPOSED)) for n in names}


def hf_ignored(config: GPTConfig, name: str) -> bool:
    # lm_head.weight is tied to wte in GPT-2 (its shape is still checked by the loader).
    return bool(_IGNORED.match(name)) or name == "lm_head.weight"


def export_fixups(config: GPTConfig, state: dict[str, Any]) -> dict[str, Any]:
    """transformers' GPT-2 always has a q/k/v bias: a zero one where ours has none."""
    some = state["transformer.wte.weight"]
    for i in range(config.n_layers):
        name = f"transformer.h.{i}.attn.c_attn.bias"
        if name not in state:
            state[name] = some.new_zeros(3 * config.emb_dim)
    return state


SIZES = {
    "gpt2": (768, 12, 12),
    "gpt2-medium": (1024, 24, 16),
    "gpt2-large": (1280, 36, 20),
    "gpt2-xl": (1600, 48, 25),
}

FAMILY = Family(
    name="gpt2",
    model_types=("gpt2",),
    hf_classes={"gpt2": ("GPT2LMHeadModel", "GPT2ForSequenceClassification")},
    prefix="transformer.",
    config_from_hf=config_from_hf,
    config_to_hf=config_to_hf,
    hf_layout=hf_layout,
    hf_ignored=hf_ignored,
    presets={
        name: GPTConfig(emb_dim=c, n_layers=n, n_heads=h) for name, (c, n, h) in SIZES.items()
    },
    hub_repos={name: f"openai-community/{name}" for name in SIZES},
    tokenizer_json=False,
    export_fixups=export_fixups,
)
