"""The end of a run, in steps that each do one thing and return what they made: describe the
LoRA adapters as config.json records them, fit the surface head (a result the caller attaches,
with each split's shipped logits), evaluate every split (with the calibration temperature or
the label thresholds fitted beside the metrics), compare with the TF-IDF baseline, assemble
the provenance and the metrics, and write the run folder (the only step that touches disk).
Run.finish calls them in that order, with the one change to the model (merging adapters,
--merge-lora) made explicitly in between."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptclassify import surface
from gptclassify.args import BackboneArgs, TrainConfig, lora_target_list
from gptclassify.artifact import LoraInfo, Provenance, RunMetrics, write_metrics
from gptclassify.baseline.tfidf import Baseline
from gptclassify.files import sha256_file
from gptclassify.metrics import (
    classification_report,
    expected_calibration_error,
    fit_temperature,
    multilabel_report,
    sigmoid,
    softmax,
    tune_thresholds,
)
from gptclassify.model_io import lora_base_name, stored_as
from gptclassify.plots import plot_history
from gptclassify.predict.api import Classifier
from gptclassify.runtime import peak_memory_mb
from gptclassify.training import faults
from gptclassify.training.build import Backbone
from gptclassify.training.history import write_history
from gptclassify.training.state import History, TrainState
from gptclassify.weights import weights_file


def describe_lora(
    backbone: BackboneArgs, location: Path | None, weights: Path | None = None
) -> LoraInfo | None:
    """How config.json describes LoRA (None without it); reads the base's weights to record
    their sha256, changes nothing.

    Merged adapters (--merge-lora) are saved inside the weights. Unmerged adapters on a
    pretrained base are saved alone (with the head) and the base is named and checksummed;
    on a random base the whole model must be saved. location: the pretrained folder or GGUF
    file (None: a random init); weights: the file identifying its weights.
    """
    b = backbone
    if b.trainable != "lora":
        return None
    info = LoraInfo(b.lora_rank, b.lora_alpha, lora_target_list(b.lora_targets), b.merge_lora)
    if b.merge_lora or location is None:
        return info
    return LoraInfo(
        info.rank,
        info.alpha,
        info.targets,
        merged=False,
        adapters_only=True,
        base=lora_base_name(b.model, location),
        base_sha256=sha256_file(weights or weights_file(location)),
    )


@dataclass
class SurfaceFit:
    """What the surface-head step chose: `choice.shipped` ("network", "network + head" or
    "head alone") with the validation scores behind it, and every split's shipped logits."""

    choice: surface.Choice
    logits: dict[str, np.ndarray]
    """Each split's logits as the shipped model gives them (the network's when it ships alone)."""

    @property
    def head(self) -> surface.SurfaceHead | None:
        """The head the classifier carries (None: the network ships alone)."""
        return self.choice.head


def fit_surface(
    texts: Mapping[str, Sequence[str]],
    labels_of: Mapping[str, np.ndarray],
    logits: Mapping[str, np.ndarray],
    num_classes: int,
    mode: str,
    C: float | None = None,
    class_weight: dict[int, float] | None = None,
    multi_label: bool = False,
) -> SurfaceFit:
    """Fit the TF-IDF word/character n-gram head on the training split and choose on
    validation what ships: the network, the network plus the head, or the head alone
    (surface.py); mode "on" always adds it. `logits`: the network's, per split (left as they
    are: the result holds the shipped ones). multi_label: `labels_of` are 0/1 label sets, the
    head one regression per label, chosen on validation macro F1 at tuned thresholds (the
    evaluation step then tunes the shipped logits' thresholds on validation)."""
    choice = surface.choose(
        dict(texts),
        dict(labels_of),
        dict(logits),
        num_classes,
        mode=mode,
        C=C,
        class_weight=class_weight,
        multi_label=multi_label,
    )
    head = choice.head
    if head is None:
        return SurfaceFit(choice, dict(logits))
    return SurfaceFit(choice, {k: head.combine(v, texts[k]) for k, v in logits.items()})


@dataclass
class Evaluation:
    """Every split's metrics at the calibrated temperature, and the calibration itself."""

    reports: dict[str, dict[str, Any]]
    temperature: float = 1.0
    calibration: dict[str, float] | None = None
    """temperature and validation ECE before/after, when calibrated."""
    thresholds: list[float] | None = None
    """Multi-label: each label's decision threshold, tuned on validation."""


def evaluate_splits(
    logits: Mapping[str, np.ndarray],
    labels_of: Mapping[str, np.ndarray],
    names: list[str],
    calibrate: bool,
) -> Evaluation:
    """Metrics of each split's logits against its labels; with `calibrate`, a temperature is
    first fitted on the validation split (and every split's probabilities use it)."""
    temperature = 1.0
    calibration = None
    if calibrate:
        val, y_val = logits["validation"], labels_of["validation"]
        temperature = fit_temperature(val, y_val)
        calibration = {
            "temperature": temperature,
            "val_ece_before": expected_calibration_error(softmax(val), y_val),
            "val_ece_after": expected_calibration_error(softmax(val, temperature), y_val),
        }
    reports = {
        k: classification_report(softmax(v, temperature), labels_of[k], names)
        for k, v in logits.items()
    }
    return Evaluation(reports, temperature, calibration)


def evaluate_label_sets(
    logits: Mapping[str, np.ndarray], labels_of: Mapping[str, np.ndarray], names: list[str]
) -> Evaluation:
    """Multi-label: per-label thresholds tuned on the validation split (each label's F1, so
    macro F1), then every split's metrics at those thresholds."""
    thresholds = tune_thresholds(sigmoid(logits["validation"]), labels_of["validation"])
    reports = {
        k: multilabel_report(sigmoid(v), labels_of[k], names, thresholds) for k, v in logits.items()
    }
    return Evaluation(reports, thresholds=thresholds)


def evaluate_run(
    logits: Mapping[str, np.ndarray],
    labels_of: Mapping[str, np.ndarray],
    names: list[str],
    multi_label: bool,
    calibrate: bool,
) -> Evaluation:
    """Every split's metrics: at per-label thresholds (multi-label) or at the calibrated
    temperature (single-label)."""
    if multi_label:
        return evaluate_label_sets(logits, labels_of, names)
    return evaluate_splits(logits, labels_of, names, calibrate)


def run_provenance(cfg: TrainConfig, backbone: Backbone, lora: LoraInfo | None) -> Provenance:
    """Where the model came from and how its folder stores it, as config.json records it."""
    if lora is not None and lora.adapters_only and cfg.runtime.save == "full":
        # A folder that needs nothing else: the base's weights and the adapters beside.
        lora = dataclasses.replace(lora, adapters_only=False, base=None, base_sha256=None)
    stored = stored_as(cfg.runtime.save, cfg.backbone.model, cfg.backbone.weights, lora)
    location = backbone.pretrained_dir or backbone.weights_file
    return Provenance(
        base_model=backbone.description,
        base_sha256=(lora.base_sha256 if lora is not None else None)
        or (sha256_file(backbone.weights_file) if backbone.weights_file else None),
        weights=cfg.backbone.weights,
        trainable=cfg.backbone.trainable,
        pad_to=cfg.inputs.pad_to,
        lora=lora,
        train_config=cfg.to_dict(),
        stored=stored,
        base=lora_base_name(cfg.backbone.model, location) if stored == "trained" else None,
    )


def run_metrics(
    state: TrainState,
    result: Evaluation,
    model: torch.nn.Module,
    truncated: dict[str, int],
    baseline: dict[str, Any] | None,
    *,
    training_time_s: float,
    total_time_s: float,
    cached: bool,
    device: torch.device,
    precision: str,
    world_size: int = 1,
    backend: str | None = None,
) -> RunMetrics:
    """metrics.json of a finished run: the evaluation's reports and the run's facts."""
    return RunMetrics(
        splits=result.reports,
        best_epoch=state.best_epoch,
        stopped_early=state.stopped_early,
        epochs_run=len(state.history.epochs),
        examples_seen=state.examples_seen,
        training_time_s=training_time_s,
        total_time_s=total_time_s,
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_params=sum(p.numel() for p in model.parameters()),
        frozen_prefix_cache=cached,
        device=str(device),
        precision=precision,
        peak_memory_mb=peak_memory_mb(device),
        truncated=truncated,
        calibration=result.calibration,
        world_size=world_size,
        backend=backend,
        baseline=baseline,
    )


def baseline_beats(baseline: Mapping[str, Any], reports: Mapping[str, Any]) -> bool:
    """Whether the TF-IDF baseline's validation macro F1 is above the model's (a tie is
    not: the model is kept). Multi-label too: macro F1 at each one's thresholds tuned on
    validation, what the thresholds maximise and the surface head is chosen on."""
    return baseline["validation"]["macro_f1"] > reports["validation"]["macro_f1"]


def write_run(
    directory: Path, classifier: Classifier, metrics: RunMetrics, history: History
) -> None:
    """The run folder's files: model and config.json, metrics.json, history.csv, plots."""
    classifier.write_files(directory)
    faults.reached("publish")
    write_metrics(directory, metrics)
    write_history(directory / "history.csv", history)
    plot_history(history.steps, history.epochs, directory)
    faults.reached("publish")


def compare_with_baseline(
    splits: Mapping[str, Any],
    label_ids: Mapping[str, np.ndarray],
    labels: list[str],
    multi_label: bool = False,
) -> dict[str, Any]:
    """The TF-IDF + logistic regression baseline on the same training split, scored on
    every other split: what a fine-tuned model has to beat to be worth shipping.
    multi_label: one regression per label, thresholds tuned on validation as the model's
    are; `accuracy` is the subset accuracy (as in the model's report), micro F1 beside."""
    t0 = time.perf_counter()
    baseline = Baseline.fit_parts(splits, label_ids, labels, multi_label=multi_label)
    out: dict[str, Any] = {
        "model": "tfidf-logistic-regression",
        "fit_time_s": time.perf_counter() - t0,
    }
    if multi_label:
        out["task"] = "multi-label"
    for name, part in splits.items():
        if name == "train":
            continue
        report = baseline.report(part.texts, label_ids[name])
        kept = ("accuracy", "macro_f1", "micro_f1") if multi_label else ("accuracy", "macro_f1")
        out[name] = {k: report[k] for k in kept}
    return out
