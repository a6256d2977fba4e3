"""The classifier as an ONNX graph: `input_ids`, `attention_mask` (batch x sequence, both
dynamic) -> `logits`, written by torch.onnx and checked before it is kept.

The graph is `GPTClassifier.forward` itself, so it keeps what makes ours fast: the final
block evaluated at the pooled position only (fastpath.pooled_block) and, under the causal
mask, no padding mask at all (right padding is invisible to real tokens). The dynamo exporter
(torch.export) is tried first; the TorchScript ("legacy") exporter is the fallback. Either
result is kept only if `onnx.checker` accepts it and ONNX Runtime reproduces the PyTorch
logits on padded batches of mixed lengths (a plain trace of transformers' GPT-2 classifier
is exact at batch 1 and wrong on such batches: a check at batch 1 proves little).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from gptclassify.artifact import TOKENIZER_FILE
from gptclassify.classifier import GPTClassifier
from gptclassify.errors import GPTClassifyError
from gptclassify.export.hf import EOS, hf_config, hf_tokenizer_config
from gptclassify.export.hf import tokenizer_config as gpt2_tokenizer_config
from gptclassify.predict.onnx_runtime import INPUTS, OUTPUT, new_session
from gptclassify.tokenizer import HFTokenizer, Tokenizer, tokenizer_files

EXPORTERS = ("auto", "dynamo", "legacy")
LEGACY_OPSET = 17
"""The legacy exporter's opset: LayerNormalization (17) is the newest op it needs."""
PROTOBUF_LIMIT = 2**31 - 2**26
"""A graph whose tensors come near protobuf's 2 GiB limit keeps them in an external file."""
MAX_DLOGIT = 1e-4
"""Largest |logit difference| from PyTorch an fp32 graph may show."""


def example_inputs(context_length: int, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch with rows of different lengths: the shapes the exporter traces."""
    seq = min(11, context_length)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, min(50000, vocab_size), (3, seq), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, seq // 2 + 1 :] = 0
    mask[2, 2:] = 0
    return ids, mask


def export_graph(
    model: GPTClassifier, path: Path, exporter: str = "auto", opset: int | None = None
) -> tuple[str, int]:
    """Write `model` as an ONNX graph at `path`; returns (exporter used, opset).

    With exporter="auto", dynamo first, then legacy if dynamo fails. The caller checks the
    result (check_graph, max_logit_difference).
    """
    if exporter not in EXPORTERS:
        raise GPTClassifyError(f"--exporter: {exporter!r} is not one of {', '.join(EXPORTERS)}")
    model = model.float().eval()
    if exporter in ("auto", "dynamo"):
        try:
            _export_dynamo(model, path, opset)
            return "dynamo", opset_of(path) or 0
        except Exception as exc:  # the exporter raises many types; fall back or report
            if exporter == "dynamo":
                raise GPTClassifyError(
                    f"torch.onnx (dynamo) could not export: {_first(exc)}"
                ) from None
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
    try:
        _export_legacy(model, path, opset or LEGACY_OPSET)
        return "legacy", opset_of(path) or 0
    except Exception as exc:
        raise GPTClassifyError(f"torch.onnx (legacy) could not export: {_first(exc)}") from None


def _export_dynamo(model: GPTClassifier, path: Path, opset: int | None) -> None:
    ids, mask = example_inputs(model.gpt.config.context_length, model.gpt.config.vocab_size)
    batch = torch.export.Dim("batch", min=1, max=2**20)
    seq = torch.export.Dim("sequence", min=1, max=model.gpt.config.context_length)
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    with _quiet():
        program = torch.onnx.export(
            model,
            (ids, mask),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_shapes=shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
        size = sum(p.numel() * p.element_size() for p in model.parameters())
        program.save(str(path), external_data=size > PROTOBUF_LIMIT)


def _export_legacy(model: GPTClassifier, path: Path, opset: int) -> None:
    ids, mask = example_inputs(model.gpt.config.context_length, model.gpt.config.vocab_size)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    with _quiet():
        torch.onnx.export(
            model,
            (ids, mask),
            str(path),
            input_names=list(INPUTS),
            output_names=[OUTPUT],
            dynamic_axes={**axes, OUTPUT: {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )


NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and log notes about their own internals (optional
    torchvision ops, constant folding); the user sees the checks instead."""
    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def data_file(path: Path) -> Path | None:
    """The external tensor file written beside a graph, if any."""
    graph = onnx.load(str(path), load_external_data=False)
    names = {
        entry.value
        for tensor in graph.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    if len(names) > 1:
        raise GPTClassifyError(f"{path}: tensors spread over {len(names)} files; expected one")
    return path.parent / names.pop() if names else None


def check_graph(path: Path) -> None:
    """onnx.checker on the file (by path, so graphs with external data work too)."""
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise GPTClassifyError(f"{path}: onnx.checker rejects the graph: {_first(exc)}") from None


def max_logit_difference(
    path: Path, model: GPTClassifier, batches: list[tuple[np.ndarray, np.ndarray]]
) -> float:
    """Largest |logit| difference between ONNX Runtime on `path` and the PyTorch model, over
    right-padded batches."""
    session = new_session(path)
    worst = 0.0
    with torch.inference_mode():
        for ids, mask in batches:
            got = session.run([OUTPUT], {"input_ids": ids, "attention_mask": mask})[0]
            want = model(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
            worst = max(worst, float(np.abs(got - want).max()))
    return worst


def opset_of(path: Path) -> int | None:
    graph = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)


# ---- what transformers and Optimum need beside the graph ----------------------------------


def transformers_config(
    model: GPTClassifier, labels: tuple[str, ...], task: str, tokenizer: Tokenizer
) -> dict[str, Any]:
    """transformers' fields for config.json's top level, beside ours: the family's
    `model_type` and shape, `id2label` / `label2id`, `problem_type` and `pad_token_id`, so
    `AutoConfig` and Optimum's `ORTModelForSequenceClassification.from_pretrained(folder)`
    read the folder (the graph computes the model; no transformers weights are needed)."""
    out = hf_config(model, labels, {"task": task}, tokenizer)
    del out["gptclassify"], out["torch_dtype"]
    out["pad_token_id"] = tokenizer.pad_id
    return out


def write_tokenizer_files(
    folder: Path, tokenizer: Tokenizer, max_length: int, truncate: str
) -> list[str]:
    """The tokenizer as transformers' AutoTokenizer reads it: tokenizer.json (a GPT-2 folder
    gets GPT-2's byte-level BPE, built from the table shipped with gptclassify, so nothing is
    downloaded) and tokenizer_config.json (padding on the right with our pad token,
    truncation on the side we cut). Returns the names written."""
    if isinstance(tokenizer, HFTokenizer):
        (folder / TOKENIZER_FILE).write_text(tokenizer.text, encoding="utf-8")
        settings = hf_tokenizer_config(tokenizer, max_length, truncate)
    else:
        gpt2_tokenizer_json(folder / TOKENIZER_FILE)
        settings = {**gpt2_tokenizer_config(max_length, truncate)}
        settings["tokenizer_class"] = "GPT2TokenizerFast"
    (folder / "tokenizer_config.json").write_text(
        json.dumps(settings, indent=2) + "\n", encoding="utf-8"
    )
    return [TOKENIZER_FILE, "tokenizer_config.json"]


def gpt2_tokenizer_json(path: Path) -> None:
    """GPT-2's tokenizer as a `tokenizers` file (what transformers' GPT2TokenizerFast
    holds), from the shipped encoder.json / vocab.bpe. `<|endoftext|>` is its special token
    (also the pad token); byte-level pre-tokenization without a prefix space."""
    from tokenizers import Tokenizer as Fast  # lazy: tokenizers (a core dependency)
    from tokenizers import decoders, models, pre_tokenizers, processors  # lazy: as above

    files = tokenizer_files()
    fast = Fast(models.BPE.from_file(str(files["encoder.json"]), str(files["vocab.bpe"])))
    fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast.decoder = decoders.ByteLevel()
    fast.post_processor = processors.ByteLevel(trim_offsets=False)
    fast.add_special_tokens([EOS])
    fast.save(str(path))
