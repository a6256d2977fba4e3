"""The end of a run, in three steps that each do one thing: describe the LoRA adapters as
config.json records them, evaluate every split (with the calibration temperature fitted
beside the metrics), and write the run folder. Run.finish calls them in that order, with
the one change to the model (merging adapters, --merge-lora) made explicitly in between."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptclassify.args import BackboneArgs, lora_target_list
from gptclassify.artifact import LoraInfo, RunMetrics, write_metrics
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
from gptclassify.model_io import lora_base_name
from gptclassify.plots import plot_history
from gptclassify.predict.api import Classifier
from gptclassify.training import faults
from gptclassify.training.history import write_history
from gptclassify.training.state import History
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
    splits: Mapping[str, Any], label_ids: Mapping[str, np.ndarray], labels: list[str]
) -> dict[str, Any]:
    """The TF-IDF + logistic regression baseline on the same training split, scored on
    every other split: what a fine-tuned model has to beat to be worth shipping."""
    t0 = time.perf_counter()
    train = splits["train"]
    baseline = Baseline.fit(train.texts, train.labels, labels)
    out: dict[str, Any] = {
        "model": "tfidf-logistic-regression",
        "fit_time_s": time.perf_counter() - t0,
    }
    for name, part in splits.items():
        if name == "train":
            continue
        report = classification_report(baseline.predict_proba(part.texts), label_ids[name], labels)
        out[name] = {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
    return out
