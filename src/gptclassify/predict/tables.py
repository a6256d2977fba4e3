"""Prediction tables and files: labels from probabilities, and the input table plus
prediction columns, written as CSV, TSV, JSON Lines or Parquet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_path

if TYPE_CHECKING:
    from gptclassify.predict.api import Classifier


def decide(probs: np.ndarray, labels: Sequence[str], threshold: float | None = None) -> list[str]:
    """Class names from probabilities: argmax, or for two classes `p(second class) >= threshold`.

    A threshold trades precision for recall on the positive (second) class, e.g. spam.
    """
    if threshold is None:
        return [labels[i] for i in probs.argmax(axis=1)]
    if len(labels) != 2:
        raise GPTClassifyError(
            f"--threshold needs a two-class model; this one has {len(labels)} classes"
        )
    if not 0.0 <= threshold <= 1.0:
        raise GPTClassifyError(f"--threshold must be between 0 and 1, got {threshold}")
    return [labels[1] if p >= threshold else labels[0] for p in probs[:, 1]]


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """The k likeliest classes per row with their probabilities, likeliest first."""
    if k < 1:
        raise GPTClassifyError(f"--top-k must be >= 1, got {k}")
    k = min(k, len(labels))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(labels[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]


def prob_column(label: str) -> str:
    return f"prob_{label}"


def predict_table(
    classifier: Classifier,
    frame: pd.DataFrame,
    text_column: str,
    batch_size: int = 32,
    threshold: float | None = None,
    k: int | None = None,
) -> pd.DataFrame:
    """The input table plus label, prob_<class> per class, top_k (with k) and error columns.

    A row with empty or missing text gets an error and no label instead of stopping the file.
    Input columns that clash with those names are kept as input_<name>.
    """
    texts = frame[text_column].tolist()
    n = len(texts)
    ok = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    probs = np.full((n, len(classifier.labels)), np.nan)
    if ok:
        probs[ok] = classifier.predict_proba([texts[i] for i in ok], batch_size)
    labels: list[Any] = [None] * n
    errors: list[Any] = ["empty text"] * n
    for i, label in zip(ok, decide(probs[ok], classifier.labels, threshold), strict=True):
        labels[i], errors[i] = label, None
    added: dict[str, list[Any]] = {"label": labels}
    for j, name in enumerate(classifier.labels):
        added[prob_column(name)] = [None if np.isnan(p) else float(p) for p in probs[:, j]]
    if k:
        ranked = top_k(probs[ok], classifier.labels, k) if ok else []
        top: list[Any] = [None] * n
        for i, row in zip(ok, ranked, strict=True):
            top[i] = [name for name, _ in row]
        added["top_k"] = top
    added["error"] = errors
    out = frame.rename(columns={c: f"input_{c}" for c in frame.columns if c in added})
    for name, values in added.items():
        out[name] = values
    return out


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """CSV, TSV, JSON Lines or Parquet by extension; written atomically."""
    path = Path(path)
    kind = {
        ".csv": "csv",
        ".tsv": "tsv",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".parquet": "parquet",
    }.get(path.suffix.lower())
    if kind is None:
        raise GPTClassifyError(f"--output {path}: use a .csv, .tsv, .jsonl or .parquet file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if kind == "jsonl":
            frame.to_json(tmp, orient="records", lines=True, force_ascii=False)
        elif kind == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            out = frame.copy()
            if "top_k" in out:
                out["top_k"] = [";".join(v) if isinstance(v, list) else v for v in out["top_k"]]
            out.to_csv(tmp, sep="\t" if kind == "tsv" else ",", index=False)
    return path
