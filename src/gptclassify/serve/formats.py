"""Logits in, response bodies out: the TEI / Hugging Face list of {label, score} per text, and
vLLM's classification objects. Plain functions of arrays (no HTTP, no model)."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from gptclassify.metrics import softmax
from gptclassify.predict.tables import decide


def scores(logits: np.ndarray, temperature: float, function: str) -> np.ndarray:
    """(N, K) scores: softmax (probabilities), sigmoid (each class on its own) or none (the
    calibrated logits, logits / temperature, whose softmax is the probabilities)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if function == "softmax":
        return softmax(z)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if function == "none":
        return z
    raise ValueError(f"unknown function {function!r}")


def tei_predictions(
    logits: np.ndarray,
    labels: Sequence[str],
    temperature: float,
    function: str = "softmax",
    top_k: int | None = None,
    threshold: float | None = None,
) -> list[list[dict[str, Any]]]:
    """Per text, [{"label", "score"}] for every class (or the top k), highest score first.

    With `threshold` (two classes) the class it decides on comes first whatever the scores, so
    a client reading the first entry gets the thresholded label.
    """
    values = scores(logits, temperature, function)
    decided = None
    if threshold is not None:
        decided = decide(softmax(logits, temperature), labels, threshold)
    out = []
    for i, row in enumerate(values):
        order = list(np.argsort(-row, kind="stable"))
        if decided is not None:
            first = labels.index(decided[i])
            order.remove(first)
            order.insert(0, first)
        if top_k is not None:
            order = order[:top_k]
        out.append([{"label": labels[j], "score": float(row[j])} for j in order])
    return out


def csv_predictions(rows: list[list[dict[str, Any]]], labels: Sequence[str]) -> str:
    """`tei_predictions`' rows as CSV, no header (SageMaker's batch transform joins answers
    line by line): per text, its label (the first entry) and then every class's score in
    the model's class order (empty where top_k left a class out)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        by_label = {p["label"]: p["score"] for p in row}
        writer.writerow(
            [row[0]["label"], *(repr(by_label[n]) if n in by_label else "" for n in labels)]
        )
    return out.getvalue()


def vllm_classification(
    logits: np.ndarray,
    labels: Sequence[str],
    temperature: float,
    model: str,
    prompt_tokens: int,
    threshold: float | None = None,
    label_sets: Any = None,
    activation: bool = True,
    request_id: str | None = None,
) -> dict[str, Any]:
    """vLLM's /classify answer: one entry per text with the label and every class's
    probability (in the model's class order), and the tokens read. Without `activation`
    (vLLM's use_activation false) `probs` holds the raw scores (the calibrated logits, as
    /predict's function_to_apply none); the label is the same.

    label_sets: a multi-label Classifier: `probs` are each label's sigmoid and `label` the
    labels at their thresholds (or `threshold`), joined by its separator."""
    if label_sets is not None:
        probs = scores(logits, 1.0, "sigmoid")
        chosen = [label_sets.label_sep.join(s) for s in label_sets.label_sets(probs, threshold)]
        values = probs if activation else scores(logits, 1.0, "none")
    else:
        probs = softmax(logits, temperature)
        chosen = decide(probs, labels, threshold)
        values = probs if activation else scores(logits, temperature, "none")
    return {
        "id": f"classify-{request_id or uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": model,
        "data": [
            {
                "index": i,
                "label": chosen[i],
                "probs": [float(p) for p in row],
                "num_classes": len(labels),
            }
            for i, row in enumerate(values)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens,
            "completion_tokens": 0,
            "prompt_tokens_details": None,
        },
    }
