"""Metrics from logits (or probabilities) and labels. No disk I/O, no model code.

scikit-learn does the counting; this module decides what a report holds and keeps the layout
of metrics.json the same for every model (GPT runs and the TF-IDF baseline alike).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(probs: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(p).mean())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017): |accuracy - confidence| averaged over confidence bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The softmax temperature minimising validation NLL (Guo et al. 2017, temperature scaling).

    One parameter, convex in log T: a bounded scalar search is exact enough and needs no torch.
    """
    logits = np.asarray(logits, dtype=np.float64)

    def nll(log_t: float) -> float:
        return cross_entropy(softmax(logits, float(np.exp(log_t))), labels)

    from scipy.optimize import minimize_scalar  # lazy: scipy (start-up of `predict`)

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def classification_report(
    probs: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    predictions: np.ndarray | None = None,
) -> dict[str, Any]:
    """Accuracy, loss, per-class precision/recall/F1, macro F1, confusion matrix, ROC AUC.

    `predictions` defaults to the argmax of `probs` (pass thresholded ones to report those).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    preds = probs.argmax(axis=1) if predictions is None else np.asarray(predictions)
    k = len(label_names)
    classes = list(range(k))
    # Imported here: scikit-learn and scipy take 0.4-0.7 s to import, and `predict`, which
    # needs only softmax from this module, should not wait for them.
    from sklearn.metrics import (  # lazy: scikit-learn (start-up of `predict`)
        confusion_matrix,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    precision, recall, f1, support = precision_recall_fscore_support(
        labels, preds, labels=classes, zero_division=0
    )
    report: dict[str, Any] = {
        "examples": int(len(labels)),
        "accuracy": float((preds == labels).mean()) if len(labels) else float("nan"),
        "loss": cross_entropy(probs, labels) if len(labels) else float("nan"),
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(labels, preds, labels=classes).tolist(),
        "ece": expected_calibration_error(probs, labels) if len(labels) else float("nan"),
    }
    if k == 2 and len(set(labels.tolist())) == 2:
        report["roc_auc"] = float(roc_auc_score(labels, probs[:, 1]))
    return report
