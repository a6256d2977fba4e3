"""The baseline run: fit on the training split, evaluate every split, write the folder.

Defaults (measured on the SMS data, 10 reseeded splits each; see the `BaselineConfig`
fields): word unigrams + bigrams with sublinear tf and C = 10. scikit-learn's defaults
(unigrams, raw tf, C = 1) underfit here: L2-normalised TF-IDF rows of short messages give
small feature values, so C = 1 regularises too hard. Test accuracy is flat for C from 10 to
100, so C is fixed rather than tuned on a 149-row validation split, where ties are common.
(The measured figures are in benchmarks/RESULTS.md.)

Multi-label data (label sets) get the same features and one regression per label; each
label's threshold is tuned on the validation split as a GPT run tunes its own, and every
split is reported by `multilabel_report` (micro / macro F1, subset accuracy), the layout of
a multi-label GPT run's metrics.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from gptclassify.args import BaselineConfig
from gptclassify.artifact import FORMAT_BASELINE, RunMetrics, check_target, write_metrics
from gptclassify.baseline.tfidf import Baseline
from gptclassify.data.sources import load_data
from gptclassify.data.split import Splits
from gptclassify.errors import GPTClassifyError
from gptclassify.files import replace_folder
from gptclassify.runtime import peak_memory_mb

log = logging.getLogger("gptclassify.baseline")


def load_splits(cfg: BaselineConfig) -> Splits:
    """The splits `gptclassify train` would use with the same data options and seed."""
    return load_data(cfg.data, cfg.seed)


def train_baseline(cfg: BaselineConfig | None = None) -> Baseline:
    """Fit on the training split, evaluate every split, and write the run folder.

    The folder holds the model (see `Baseline.save`) and metrics.json with the same keys
    as a GPT run's; keys about epochs and GPUs get the values that fit a one-shot CPU fit.
    """
    cfg = cfg or BaselineConfig()
    t0 = time.perf_counter()
    run_dir = (
        Path(cfg.out)
        if cfg.out
        else Path("runs") / f"baseline-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    check_target(run_dir, FORMAT_BASELINE)
    splits = load_splits(cfg)
    for warning in splits.warnings:
        log.warning("Warning: %s", warning)
    parts = {name: part for name, part in splits.parts() if len(part) > 0}
    if "validation" not in parts:
        raise GPTClassifyError("the validation split is empty; use more data or another --split")
    labels = list(splits.label_names)

    y = {name: np.asarray(splits.label_ids(part)) for name, part in parts.items()}
    t_fit = time.perf_counter()
    baseline = Baseline.fit_parts(parts, y, labels, cfg, splits.multi_label)
    fit_time = time.perf_counter() - t_fit

    reports = {name: baseline.report(part.texts, y[name]) for name, part in parts.items()}
    metrics = RunMetrics(
        splits=reports,
        # The GPT keys, so reports can read both; epochs do not apply to a one-shot fit.
        best_epoch=None,
        stopped_early=False,
        epochs_run=None,
        examples_seen=len(parts["train"]),
        training_time_s=fit_time,
        total_time_s=time.perf_counter() - t0,
        trainable_params=baseline.num_params,
        total_params=baseline.num_params,
        frozen_prefix_cache=False,
        device="cpu",
        precision="float64",
        peak_memory_mb=peak_memory_mb(torch.device("cpu")),
        truncated={name: 0 for name in parts},
    )
    # All files into a new folder that then takes the name: complete or absent.
    try:
        with replace_folder(run_dir) as tmp:
            extra = {"data": asdict(cfg.data), "seed": cfg.seed}
            if splits.multi_label:
                extra["label_sep"] = splits.label_sep
            baseline.save(tmp, extra=extra)
            write_metrics(tmp, metrics)
    except OSError as exc:
        raise GPTClassifyError(
            f"--out {run_dir}: cannot write there ({exc.strerror or exc})"
        ) from None
    baseline.path = run_dir
    baseline.metrics = metrics.to_json()
    return baseline
