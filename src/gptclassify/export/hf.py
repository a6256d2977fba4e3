"""The classifier as a Hugging Face `XForSequenceClassification` folder (GPT2, Llama,
Mistral, Qwen2, Qwen3, Gemma 3).

What transformers' `pipeline("text-classification")`, `from_pretrained`, Optimum and vLLM
load: config.json (the family's fields, `id2label` / `label2id`, `pad_token_id`),
model.safetensors (the family's names: GPT-2's Conv1D weights stored (in, out); the fused
q/k/v and gate/up projections split back into transformers' separate ones) and the
tokenizer files (GPT-2's vocab.json/merges.txt, or the model's tokenizer.json). Written with
torch and safetensors only; transformers is not needed to export (where it is installed, the
export loads the written folder with it and compares logits on the check texts: export/run.py).

Two differences between the models have to be bridged exactly or refused:

- Pooling. `GPT2ForSequenceClassification` classifies the last token that is not
  `pad_token_id` under the causal mask, which is our `last-real` pooling when texts never
  contain token 50256 (our tokenizer never emits it for user text). Mean or first-token
  pooling, the padded last position, or attention without the causal mask cannot be
  expressed: refused, with the reason.
- The head's bias (GPT-2 only: the RMSNorm families' heads have none, like HF's). HF's
  `score` is a Linear without bias; ours has one (c). Only the pooled
  row of the final hidden states reaches the head, and that row is ln_f(x) = g * n(x) + b
  with ln_f's bias b, so moving the bias into b is exact if some b' has W b' = W b + c. When
  the head's weight W (K x C) has full row rank, b' = b + W^T (W W^T)^-1 c is one (the
  smallest change to b). Other positions' hidden states change; no output reads them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from gptclassify.artifact import ExportSource, Provenance
from gptclassify.artifact import versions as library_versions
from gptclassify.classifier import GPTClassifier
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write
from gptclassify.models import config_to_hf, family_of, hf_layout
from gptclassify.tokenizer import HFTokenizer, Tokenizer, tokenizer_files

FORMAT_HF_EXPORT = "gptclassify-hf-export"
HF_EXPORT_VERSION = 1
EOS = "<|endoftext|>"
FOLD_TOLERANCE = 1e-5
"""Largest |W b' - (W b + c)| (relative to the size of the head's logits' bias terms) accepted
after the fold, in fp32."""


def refusals(pool: str, causal: bool, lexical: bool = False) -> list[str]:
    """Why HF's GPT-2 classifier cannot compute this model's function (empty: it can)."""
    reasons = []
    if lexical:
        reasons.append(
            "this model adds a TF-IDF or bag-of-tokens logistic regression to its logits "
            "(--lexical); "
            "transformers' XForSequenceClassification has no place for it (the ONNX export "
            "keeps it: --format onnx)"
        )
    if pool != "last-real":
        what = {
            "mean": "averages the final hidden states over the real tokens",
            "first": "classifies the first token",
            "last": "classifies the last padded position (which depends on how a batch is padded)",
        }[pool]
        reasons.append(
            f"this model {what} (--pool {pool}); transformers' XForSequenceClassification "
            "classifies the last token that is not padding, so Hugging Face cannot run it"
        )
    if not causal:
        reasons.append(
            "this model attends without the causal mask (--no-causal-mask); Hugging Face's "
            "decoders always apply it"
        )
    return reasons


def fold_head_bias(weight: np.ndarray, ln_bias: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """ln_f's new bias b' with W b' = W b + c (see the module docstring); refuses when the
    head's rows are linearly dependent or the fold is not exact in fp32."""
    w = weight.astype(np.float64)
    c = bias.astype(np.float64)
    k = w.shape[0]
    # Rank at the precision the weights are stored in (fp32): rows that are dependent up to
    # fp32 rounding count as dependent.
    singular = np.linalg.svd(w, compute_uv=False)
    tolerance = singular.max(initial=0.0) * max(w.shape) * np.finfo(np.float32).eps
    rank = int((singular > tolerance).sum())
    if rank < k:
        raise GPTClassifyError(
            f"the head's {k} weight rows have rank {rank} < {k}: no change of ln_f's bias "
            "reproduces the head's bias, and Hugging Face's `score` layer has no bias"
        )
    folded = ln_bias.astype(np.float64) + w.T @ np.linalg.solve(w @ w.T, c)
    folded32 = folded.astype(np.float32).astype(np.float64)
    want = w @ ln_bias.astype(np.float64) + c
    error = float(np.abs(w @ folded32 - want).max())
    scale = 1.0 + float(np.abs(want).max())
    if error > FOLD_TOLERANCE * scale:
        raise GPTClassifyError(
            f"folding the head's bias into ln_f is not exact in fp32 (error {error:.1e}; the "
            "head's rows are nearly dependent); Hugging Face's `score` layer has no bias"
        )
    return folded.astype(np.float32)


def hf_state_dict(model: GPTClassifier) -> dict[str, torch.Tensor]:
    """XForSequenceClassification's tensors (fp32, contiguous) for `model`: each parameter
    under its family's name(s), fused projections split back (models/ has the table)."""
    config = model.gpt.config
    family = family_of(config)
    layout = hf_layout(config)
    state = {}
    for name, tensor in model.gpt.state_dict().items():
        tensor = tensor.detach().float().cpu()
        src = layout[name]
        parts = tensor.split(list(src.sizes)) if src.sizes else (tensor,)
        for hf_name, part in zip(src.names, parts, strict=True):
            state[hf_name] = part.t() if src.transposed else part
    if family.export_fixups is not None:
        state = family.export_fixups(config, state)
    weight = model.head.weight.detach().float().cpu()
    state["score.weight"] = weight
    if model.head.bias is not None and bool(model.head.bias.any()):
        folded = fold_head_bias(
            weight.numpy(),
            model.gpt.ln_f.bias.detach().float().cpu().numpy(),
            model.head.bias.detach().float().cpu().numpy(),
        )
        (ln_f_bias,) = layout["ln_f.bias"].names
        state[ln_f_bias] = torch.from_numpy(folded)
    return {k: v.contiguous() for k, v in state.items()}


def architecture(model: GPTClassifier) -> str:
    config = model.gpt.config
    return family_of(config).hf_classes[config.family][1]


def hf_config(
    model: GPTClassifier,
    labels: tuple[str, ...],
    ours: dict[str, Any],
    tokenizer: Tokenizer | None = None,
) -> dict[str, Any]:
    """config.json: transformers' fields for the family, plus ours under "gptclassify"."""
    out = {"architectures": [architecture(model)], **config_to_hf(model.gpt.config)}
    if tokenizer is not None and family_of(model.gpt.config).tokenizer_json:
        out["pad_token_id"] = tokenizer.pad_id
        out["eos_token_id"] = tokenizer.eos_id
        out["bos_token_id"] = tokenizer.prefix[0] if tokenizer.prefix else None
    return out | {
        "id2label": {str(i): name for i, name in enumerate(labels)},
        "label2id": {name: i for i, name in enumerate(labels)},
        # transformers' pipeline applies a sigmoid per label to multi_label_classification
        # models (and a softmax otherwise), as gptclassify does.
        "problem_type": (
            "multi_label_classification"
            if ours.get("task") == "multi-label"
            else "single_label_classification"
        ),
        "torch_dtype": "float32",
        "gptclassify": ours,
    }


def tokenizer_config(max_length: int, truncate: str) -> dict[str, Any]:
    return {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": max_length,
        "add_prefix_space": False,
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        # GPT-2 has no padding token; <|endoftext|> doubles as one (as in gptclassify).
        "pad_token": EOS,
        "padding_side": "right",
        # Our truncate="end" keeps the start of a text; "start" keeps its end.
        "truncation_side": "right" if truncate == "end" else "left",
    }


def hf_tokenizer_config(tokenizer: HFTokenizer, max_length: int, truncate: str) -> dict:
    """tokenizer_config.json for a tokenizer.json tokenizer: right padding with our pad id,
    truncation on the side we cut."""
    token = tokenizer.full.id_to_token
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "pad_token": token(tokenizer.pad_id),
        "eos_token": token(tokenizer.eos_id) if tokenizer.eos_id is not None else None,
        "bos_token": token(tokenizer.prefix[0]) if tokenizer.prefix else None,
        "padding_side": "right",
        "truncation_side": "right" if truncate == "end" else "left",
    }


def write_hf_folder(
    folder: Path,
    model: GPTClassifier,
    labels: tuple[str, ...],
    settings: dict[str, Any],
    provenance: Provenance,
    source: ExportSource,
    tokenizer: Tokenizer | None = None,
) -> None:
    """Write the whole HF folder into `folder` (an empty temporary folder).

    settings: pool, causal, max_length, pad_length, truncate, temperature.
    """
    save_file(hf_state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    ours = {
        "format": FORMAT_HF_EXPORT,
        "format_version": HF_EXPORT_VERSION,
        "labels": list(labels),
        **settings,
        "base_model": provenance.base_model,
        "trainable": provenance.trainable,
        "head_bias": "folded into transformer.ln_f.bias" if model.head.bias is not None else "none",
        "exported_from": source.to_json(),
        "versions": library_versions(torch=torch.__version__),
    }
    config = hf_config(model, labels, ours, tokenizer)
    atomic_write(folder / "config.json", json.dumps(config, indent=2) + "\n")
    if isinstance(tokenizer, HFTokenizer):
        atomic_write(folder / "tokenizer.json", tokenizer.text)
        tok = hf_tokenizer_config(tokenizer, settings["max_length"], settings["truncate"])
        atomic_write(folder / "tokenizer_config.json", json.dumps(tok, indent=2) + "\n")
        return
    files = tokenizer_files()
    shutil.copyfile(files["encoder.json"], folder / "vocab.json")
    shutil.copyfile(files["vocab.bpe"], folder / "merges.txt")
    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    atomic_write(folder / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")
    tok = tokenizer_config(settings["max_length"], settings["truncate"])
    atomic_write(folder / "tokenizer_config.json", json.dumps(tok, indent=2) + "\n")
