"""`export`: check the target, load the source run, write and check the export in a
temporary folder, rename it into place (see the package docstring)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptclassify import artifact, surface
from gptclassify.artifact import (
    CONFIG,
    FORMAT_CLASSIFIER,
    ONNX_KIND,
    ClassifierConfig,
    OnnxInfo,
    read_classifier_config,
)
from gptclassify.artifact import versions as library_versions
from gptclassify.errors import GPTClassifyError
from gptclassify.export.hf import FORMAT_HF_EXPORT, refusals, write_hf_folder
from gptclassify.export.source import (
    Source,
    check_texts,
    load_source,
    padded_batches,
    synthetic_texts,
)
from gptclassify.files import replace_folder, sha256_file

FORMATS = ("hf", "onnx")


@dataclass
class ExportReport:
    """What an export wrote and what its checks measured."""

    out: Path
    format: str
    precision: str = "fp32"
    checks: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What was done to the model on the way (LoRA merged, head bias folded, exporter used)."""
    warnings: list[str] = field(default_factory=list)
    """What the target format runs differently (e.g. a temperature HF ignores)."""


def export(
    run_dir: str | Path,
    format: str,
    out: str | Path,
    quantize: str | None = None,
    data: str | Path | None = None,
    exporter: str = "auto",
    opset: int | None = None,
) -> ExportReport:
    """Export the classifier folder `run_dir` to `out` (see the module docstring).

    data: labelled texts the export is checked on (a file, or a folder with test.csv);
    default: the run's own test split when it has one.
    """
    if format not in FORMATS:
        raise GPTClassifyError(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
    if quantize not in (None, "none", "int8"):
        raise GPTClassifyError(f"--quantize: {quantize!r} is not int8")
    quantize = None if quantize == "none" else quantize
    if quantize and format != "onnx":
        raise GPTClassifyError("--quantize int8 applies to --format onnx only")
    run_dir, out = Path(run_dir), Path(out)
    check_target(run_dir, out, format)
    if format == "hf":
        return _export_hf(run_dir, out, data)
    return _export_onnx(run_dir, out, quantize, data, exporter, opset)


KINDS = {
    None: None,
    FORMAT_HF_EXPORT: "hf",
    ONNX_KIND: "onnx",
    FORMAT_CLASSIFIER: "a classifier with PyTorch weights",
    "file": "a file",
}
"""artifact.folder_kind's answers, as an export names them (other answers: not an export)."""


def folder_kind(path: Path) -> str | None:
    """ "hf" or "onnx" for an export folder, None for a missing or empty one, else a
    description of what is there."""
    return KINDS.get(artifact.folder_kind(path), "a folder that is not a gptclassify export")


def check_target(run_dir: Path, out: Path, format: str) -> None:
    if out.resolve() == run_dir.resolve():
        raise GPTClassifyError(f"--out {out}: that is the folder being exported")
    kind = folder_kind(out)
    if kind is not None and kind != format:
        what = f"a {kind} export" if kind in FORMATS else kind
        raise GPTClassifyError(
            f"--out {out} holds {what}; an export replaces only a {format} export (choose "
            "another --out, or remove that folder yourself)"
        )


def _settings(config: ClassifierConfig) -> dict[str, Any]:
    return {
        "pool": config.pool,
        "causal": config.causal,
        "max_length": config.max_length,
        "pad_length": config.pad_length,
        "truncate": config.truncate,
        "temperature": config.temperature,
        **(
            {
                "task": config.task,
                "thresholds": list(config.thresholds or [0.5] * len(config.labels)),
                "label_sep": config.label_sep,
            }
            if config.task == "multi-label"
            else {}
        ),
    }


def _notes(source: Source) -> list[str]:
    lora = source.config.provenance.lora
    if lora is not None and not lora.merged:
        return [f"LoRA adapters (rank {lora.rank}) merged into the weights"]
    return []


# ---- Hugging Face -----------------------------------------------------------------------


def _export_hf(run_dir: Path, out: Path, data: str | Path | None) -> ExportReport:
    config = read_classifier_config(run_dir)
    reasons = refusals(
        config.pool, config.causal, config.lexical is not None or config.surface is not None
    )
    if reasons:  # before loading any weights
        raise GPTClassifyError("cannot export to Hugging Face format: " + "; ".join(reasons))
    source = load_source(run_dir)
    config = source.config
    report = ExportReport(out=out, format="hf", notes=_notes(source))
    if source.model.head.bias is not None and bool(source.model.head.bias.any()):
        report.notes.append("head bias folded into transformer.ln_f.bias (exact)")
    if config.temperature != 1.0:
        report.warnings.append(
            f"calibration temperature {config.temperature:.4g}: written to config.json "
            "(gptclassify.temperature) for gptclassify; transformers ignores it, so its "
            "probabilities are the uncalibrated ones (labels are the same)"
        )
    if config.max_length < config.model.context_length:
        side = "end" if config.truncate == "end" else "start"
        report.warnings.append(
            f"gptclassify cuts texts to {config.max_length} tokens (at the {side}); the tokenizer "
            f"is set up the same way, but transformers cuts only when asked: pass "
            "truncation=True to the pipeline"
        )
    checks = check_texts(source, data)
    with replace_folder(out) as tmp:
        write_hf_folder(
            tmp,
            source.model,
            config.labels,
            _settings(config),
            config.provenance,
            source.record,
            source.tokenizer,
        )
        texts = (checks.texts if checks is not None else synthetic_texts())[:HF_CHECK_TEXTS]
        where = checks.source if checks is not None else "synthetic texts"
        diff = _transformers_dlogit(tmp, source, texts)
        if diff is None:
            report.warnings.append(
                "not checked in transformers (it is not installed here): pip install "
                "transformers to have the export load the folder and compare its logits"
            )
        else:
            report.checks["checked_on"] = where
            report.checks["transformers_max_abs_dlogit"] = diff
            report.notes.append(
                f"transformers (AutoModelForSequenceClassification, fp32) vs PyTorch on "
                f"{len(texts)} texts of {where}: max |dlogit| {diff:.1e}"
            )
            if not diff <= HF_TOLERANCE:
                raise GPTClassifyError(
                    f"the written folder does not compute this model in transformers (max "
                    f"|dlogit| {diff:.3g} on {where}, tolerance {HF_TOLERANCE:g}); nothing was "
                    "written. Please report it with the run's config.json"
                )
    return report


HF_CHECK_TEXTS = 32
"""Texts the Hugging Face export is checked on, one at a time (no padding in the way)."""
HF_TOLERANCE = 1e-3
"""Largest |logit difference| accepted between transformers and PyTorch, both in fp32."""


def _transformers_dlogit(folder: Path, source: Source, texts: list[str]) -> float | None:
    """Max |logit difference| between transformers running the written folder and our
    PyTorch model (fp32, one text at a time, texts cut as the tokenizer is set up to);
    None when transformers is not installed."""
    try:
        import transformers  # lazy: optional; only this check needs it
    except ImportError:
        return None
    hf = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, dtype=torch.float32
    ).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    policy = source.policy
    worst = 0.0
    with torch.no_grad():
        for text in texts:
            ids = tok(text, truncation=True, return_tensors="pt")["input_ids"]
            theirs = hf(input_ids=ids).logits.float()
            ours = source.model(torch.tensor([policy.apply(policy.tokenizer.encode(text))]))
            worst = max(worst, float((theirs - ours.float()).abs().max()))
    return worst


# ---- ONNX ---------------------------------------------------------------------------------


def _export_onnx(
    run_dir: Path,
    out: Path,
    quantize: str | None,
    data: str | Path | None,
    exporter: str,
    opset: int | None,
) -> ExportReport:
    from gptclassify.export import onnx as graph  # lazy: onnx
    from gptclassify.export.quantize import (  # lazy: onnxruntime
        KEEP_FP32,
        MIN_AGREEMENT,
        compare_labels,
        fp32_layers,
        matmuls_of,
        quantize_int8,
    )

    source = load_source(run_dir)
    config = source.config
    checks = check_texts(source, data)
    texts = checks.texts if checks is not None else synthetic_texts()
    batches = padded_batches(texts, source.policy)
    report = ExportReport(
        out=out, format="onnx", precision=quantize or "fp32", notes=_notes(source)
    )
    report.checks["checked_on"] = checks.source if checks is not None else "synthetic texts"
    with replace_folder(out) as tmp:
        fp32 = tmp / ("model.fp32.onnx" if quantize else "model.onnx")
        used, version, diff = _export_checked(graph, source, fp32, batches, exporter, opset)
        report.notes.append(f"exported with torch.onnx ({used}), opset {version}")
        report.checks["fp32_max_abs_dlogit"] = diff
        final = fp32
        if quantize == "int8":
            final = tmp / "model.onnx"
            fp32_logits = _graph_logits(graph, fp32, batches)
            labels = checks.labels if checks is not None else None
            # Every product int8 first; below MIN_AGREEMENT, once more with KEEP_FP32's
            # layers in fp32, keeping whichever agrees more with fp32.
            rules = (
                ("none", list),
                (KEEP_FP32, lambda: matmuls_of(fp32, source.model, fp32_layers(source.model))),
            )
            tries: list[tuple[dict, Path]] = []
            for rule, kept in rules:
                keep = kept()
                candidate = tmp / f"model.int8-{len(tries)}.onnx"
                products = quantize_int8(fp32, candidate, keep)
                graph.check_graph(candidate)
                int8_logits = _graph_logits(graph, candidate, batches)
                check = compare_labels(fp32_logits, int8_logits, labels)
                check.update(int8_matmuls=products, fp32_matmuls=len(keep), fp32_rule=rule)
                tries.append((check, candidate))
                if check["label_agreement"] >= MIN_AGREEMENT:
                    break
            best, chosen = max(tries, key=lambda t: t[0]["label_agreement"])  # the first on ties
            for _, candidate in tries:
                if candidate != chosen:
                    for leftover in (candidate, graph.data_file(candidate)):
                        if leftover is not None:
                            leftover.unlink()
            chosen.rename(final)
            if len(tries) > 1:
                best["tried"] = [
                    {k: t[k] for k in ("fp32_rule", "label_agreement")} for t, _ in tries
                ]
            report.checks["int8"] = best
            agreement = best["label_agreement"]
            if agreement < MIN_AGREEMENT:
                report.warnings.append(
                    f"int8 labels agree with fp32 on {agreement:.2%} of {len(texts)} texts "
                    f"(below {MIN_AGREEMENT:.0%}); check the accuracy before using it"
                )
            for leftover in (fp32, graph.data_file(fp32)):
                if leftover is not None:
                    leftover.unlink()
        extra = graph.data_file(final)
        info = OnnxInfo(
            sha256=sha256_file(final),
            precision=quantize or "fp32",
            file=final.name,
            data_file=extra.name if extra else None,
            data_sha256=sha256_file(extra) if extra else None,
            opset=version,
            exporter=used,
            checks=report.checks,
        )
        import onnx  # lazy: onnx
        import onnxruntime  # lazy: onnxruntime

        written = dataclasses.replace(
            config,
            onnx=info,
            exported_from=source.record,
            weights_sha256="",
            provenance=_merged_provenance(config),
            versions=library_versions(
                torch=torch.__version__, onnx=onnx.__version__, onnxruntime=onnxruntime.__version__
            ),
        )
        if config.surface is not None:  # the surface head's files run beside the graph
            for name in (surface.JSON_FILE, surface.TENSOR_FILE):
                shutil.copyfile(run_dir / name, tmp / name)
        # Self-contained for transformers and Optimum too: the tokenizer files AutoTokenizer
        # reads (for a tokenizer.json model, also the file gptclassify reads), and
        # transformers' fields at config.json's top level beside ours.
        graph.write_tokenizer_files(tmp, source.tokenizer, config.max_length, config.truncate)
        hf_fields = graph.transformers_config(
            source.model, config.labels, config.task, source.tokenizer
        )
        ours = written.to_json()
        document = {**hf_fields, **ours}  # ours win a shared key (none today)
        (tmp / CONFIG).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        if config.surface is not None:
            report.warnings.append(
                "the surface-feature head (--lexical) runs beside the graph in gptclassify; "
                "transformers / Optimum pipelines run the graph alone (the network's logits)"
            )
        if config.temperature != 1.0:
            report.warnings.append(
                f"calibration temperature {config.temperature:.4g}: gptclassify divides the "
                "graph's logits by it; transformers / Optimum pipelines do not, so their "
                "probabilities are the uncalibrated ones (labels are the same)"
            )
    return report


def _export_checked(graph, source: Source, path: Path, batches, exporter: str, opset: int | None):
    """Export and check; with exporter "auto", a dynamo graph that fails the check is
    replaced by a legacy one."""
    tries = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    problems = []
    for attempt in tries:
        try:
            used, version = graph.export_graph(source.model, path, attempt, opset)
            graph.check_graph(path)
            diff = graph.max_logit_difference(path, source.model, batches)
        except GPTClassifyError as exc:
            problems.append(str(exc))
            continue
        if diff <= graph.MAX_DLOGIT:
            return used, version, diff
        problems.append(
            f"the {used} graph's logits differ from PyTorch's by up to {diff:.1e} on padded "
            f"batches (limit {graph.MAX_DLOGIT:.0e})"
        )
    raise GPTClassifyError("ONNX export failed: " + "; ".join(problems))


def _graph_logits(graph, path: Path, batches) -> np.ndarray:
    session = graph.new_session(path)
    return np.concatenate(
        [session.run(["logits"], {"input_ids": i, "attention_mask": m})[0] for i, m in batches]
    )


def _merged_provenance(config: ClassifierConfig):
    lora = config.provenance.lora
    if lora is None:
        return config.provenance
    # The graph holds the merged weights: nothing to load from a base model.
    merged = dataclasses.replace(lora, merged=True, adapters_only=False)
    return dataclasses.replace(config.provenance, lora=merged)
