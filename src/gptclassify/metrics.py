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
        average_precision_score,
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
        # Precision-recall AUC (average precision) of the second class: what imbalance
        # changes and ROC AUC hides (a rare positive class makes ROC AUC look good).
        report["pr_auc"] = float(average_precision_score(labels, probs[:, 1]))
    return report


# ---- multi-label ---------------------------------------------------------------------------


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Each label's probability on its own (multi-label), in float64."""
    z = np.asarray(logits, dtype=np.float64)
    # exp of a negative number only: no overflow warnings for large |z|.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def binary_cross_entropy(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over texts and labels of each label's binary cross-entropy (what training
    minimises)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    y = np.asarray(y, dtype=np.float64)
    return float(-(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)).mean())


def tune_thresholds(probs: np.ndarray, y: np.ndarray) -> list[float]:
    """Per label, the decision threshold maximising that label's F1 on (validation) data.

    Macro F1 is the mean of the labels' F1 scores and each depends on its own threshold only,
    so tuning every label on its own maximises macro F1. Candidates are the midpoints between
    consecutive distinct probabilities (and 0.5); ties go to the threshold nearest 0.5. A
    label with no positive example keeps 0.5.
    """
    return [cut for cut, _ in _tuned(probs, y)]


def tuned_macro_f1(probs: np.ndarray, y: np.ndarray) -> float:
    """Macro F1 at per-label thresholds tuned on these same rows (tune_thresholds): what a
    multi-label run ships is judged by, so what its epochs are chosen by. A label with no
    positive example scores 0, as in multilabel_report."""
    return float(np.mean([f1 for _, f1 in _tuned(probs, y)]))


def _tuned(probs: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    """(threshold, F1 at it) per label: tune_thresholds' search."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y) > 0.5
    out = []
    for j in range(probs.shape[1]):
        p, t = probs[:, j], y[:, j]
        if not t.any():
            out.append((0.5, 0.0))  # no positive: F1 is 0 at any threshold
            continue
        distinct = np.unique(p)
        candidates = np.concatenate([[0.5], (distinct[:-1] + distinct[1:]) / 2, distinct[:1]])
        best, best_f1 = 0.5, -1.0
        for c in sorted(candidates, key=lambda c: abs(c - 0.5)):
            pred = p >= c
            tp = float((pred & t).sum())
            f1 = 2 * tp / (float(pred.sum()) + float(t.sum()))
            if f1 > best_f1 + 1e-12:
                best, best_f1 = float(c), f1
        out.append((best, best_f1))
    return out


def selection_metric(report: dict[str, Any]) -> tuple[str, float]:
    """(name, value) of what a run is judged by in a validation report: accuracy, or on
    multi-label data macro F1 at the tuned thresholds (the subset accuracy, near zero on
    many labels, does not track it)."""
    if report.get("task") == "multi-label":
        return "macro F1", float(report["macro_f1"])
    return "accuracy", float(report["accuracy"])


def multilabel_report(
    probs: np.ndarray,
    y: np.ndarray,
    label_names: list[str],
    thresholds: list[float] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Micro / macro / weighted F1, per-label precision/recall/F1/support, subset accuracy,
    Hamming loss, label-ranking average precision and the mean binary cross-entropy of
    sigmoid probabilities against 0/1 label sets, deciding each label at its threshold.

    `accuracy` is the subset accuracy (the whole label set right), the strictest reading and
    the one training's per-epoch estimates report.
    """
    from sklearn.metrics import (  # lazy: scikit-learn (start-up of `predict`)
        f1_score,
        hamming_loss,
        label_ranking_average_precision_score,
        precision_recall_fscore_support,
    )

    probs = np.asarray(probs, dtype=np.float64)
    y = (np.asarray(y) > 0.5).astype(np.int64)
    k = len(label_names)
    cut = np.full(k, 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pred = (probs >= cut[None, :]).astype(np.int64)
    n = len(y)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, average=None, zero_division=0
    )
    report: dict[str, Any] = {
        "task": "multi-label",
        "examples": int(n),
        "accuracy": float((pred == y).all(axis=1).mean()) if n else float("nan"),
        "subset_accuracy": float((pred == y).all(axis=1).mean()) if n else float("nan"),
        "hamming_loss": float(hamming_loss(y, pred)) if n else float("nan"),
        "loss": binary_cross_entropy(probs, y) if n else float("nan"),
        "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
        "macro_f1": float(np.mean(f1)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0)),
        "per_label": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "threshold": float(cut[i]),
            }
            for i, name in enumerate(label_names)
        },
        "thresholds": [float(c) for c in cut],
        "empty_sets": int((y.sum(axis=1) == 0).sum()),
    }
    # LRAP is defined over texts with at least one label (scikit-learn gives a text without
    # any a score of 1, which would flatter a model on data with many empty sets).
    has = y.sum(axis=1) > 0
    report["label_ranking_average_precision"] = (
        float(label_ranking_average_precision_score(y[has], probs[has])) if has.any() else None
    )
    return report
