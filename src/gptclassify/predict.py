"""`Classifier`: load a trained model once, classify texts in batches, write prediction files.

Batches are formed from texts of similar length (sorted, then chunked) so padding is small,
and results are put back in input order. With the default last-real-token pooling a text
gets the same prediction alone or next to longer texts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gptclassify import checkpoint
from gptclassify.classifier import GPTClassifier
from gptclassify.errors import GPTClassifyError
from gptclassify.evaluate import classification_report, softmax
from gptclassify.files import atomic_path
from gptclassify.inputs import Batch, InputPolicy, TokenSource, encode, low_precision_linears
from gptclassify.runtime import autocast, resolve_device, resolve_precision

if TYPE_CHECKING:
    import pandas as pd


class Classifier:
    """A trained GPT-2 text classifier with its labels and input policy."""

    def __init__(
        self,
        model: GPTClassifier,
        labels: Sequence[str],
        policy: InputPolicy,
        temperature: float = 1.0,
        device: str | torch.device = "auto",
        precision: str = "auto",
        settings: dict[str, Any] | None = None,
    ) -> None:
        if len(labels) != model.num_classes:
            raise GPTClassifyError(
                f"{len(labels)} label names for a {model.num_classes}-class head"
            )
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)  # type: ignore[arg-type]
        self.model = model.to(self.device).eval()
        self.labels = list(labels)
        self.policy = policy
        self.temperature = float(temperature)
        self.settings = dict(settings or {})
        self.path: Path | None = None
        """The model folder this classifier was loaded from or last saved to."""
        self.metrics: dict[str, Any] | None = None
        """metrics.json of the training run, when known."""
        # One pass at a time: a pass may hold weights in bf16 temporarily (see logits_encoded),
        # and torch already spreads one pass over every core.
        self._lock = threading.Lock()

    # ---- persistence ------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", precision: str = "auto") -> Classifier:
        """Load a model folder written by `train` or `save` (checksum-verified, no pickle)."""
        model, config = checkpoint.load_model(run_dir)
        policy = InputPolicy(
            max_length=int(config["max_length"]),
            pad_length=config.get("pad_length"),
            truncate=config.get("truncate", "end"),
        )
        classifier = cls(
            model,
            config["labels"],
            policy,
            temperature=config.get("temperature", 1.0),
            device=device,
            precision=precision,
            settings={k: v for k, v in config.items() if k not in _DERIVED},
        )
        classifier.path = Path(run_dir)
        metrics = Path(run_dir) / "metrics.json"
        if metrics.is_file():
            import json

            try:
                classifier.metrics = json.loads(metrics.read_text(encoding="utf-8"))
            except ValueError:
                classifier.metrics = None  # metrics are informative; the model loads without them
        return classifier

    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors + config.json into `directory`; returns the folder."""
        checkpoint.save_model(directory, self.model, self.describe())
        self.path = Path(directory)
        return self.path

    def describe(self) -> dict[str, Any]:
        """The settings config.json records for this classifier."""
        return {
            **self.settings,
            "labels": self.labels,
            "pool": self.model.pool,
            "causal": self.model.causal,
            "max_length": self.policy.max_length,
            "pad_length": self.policy.pad_length,
            "truncate": self.policy.truncate,
            "temperature": self.temperature,
            "tokenizer": {"library": "tiktoken", "encoding": "gpt2", "pad_id": 50256},
        }

    # ---- inference --------------------------------------------------------------------

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Raw class logits (N, num_classes), in input order."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        encoded = encode(texts, self.policy)
        return self.logits_encoded(TokenSource(encoded, self.device), batch_size)

    @torch.inference_mode()
    def logits_encoded(self, source: TokenSource, batch_size: int = 32) -> np.ndarray:
        out = np.zeros((len(source), len(self.labels)), dtype=np.float32)
        order = torch.argsort(source.encoded.lengths, descending=True, stable=True)
        with self._lock, self._cast_once(), autocast(self.device, self.dtype):
            for idx in order.split(batch_size):
                batch: Batch = source.batch(idx)
                logits = self.model(batch.inputs, batch.lengths)
                out[idx.numpy()] = logits.float().cpu().numpy()
        return out

    def _cast_once(self):
        """In bf16, cast the blocks' weights once per call instead of once per batch.

        The same numbers as autocast's per-call casts. The final block is left in fp32 for
        single-position pools, which run it at the pooled position in fp32 (pooled_block).
        """
        if self.dtype == torch.float32:
            return nullcontext()
        blocks = self.model.gpt.h[:-1] if self.model.single_position else self.model.gpt.h
        return low_precision_linears(blocks, self.dtype, frozen_only=False)

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, num_classes), columns in `self.labels` order."""
        return softmax(self.logits(texts, batch_size), self.temperature)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[str]:
        """Class names, one per text."""
        return [self.labels[i] for i in self.predict_proba(texts, batch_size).argmax(axis=1)]

    def evaluate(
        self,
        data: str | Path,
        text_column: str | None = None,
        label_column: str | None = None,
        batch_size: int = 32,
    ) -> dict[str, Any]:
        """Metrics on a labelled file, or on the test split of a prepared/run data folder."""
        from gptclassify.data import read_labelled

        path = Path(data)
        if path.is_dir():
            candidates = [path / "test.csv", path / "data" / "test.csv"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise GPTClassifyError(
                    f"{path}: no test.csv in this folder (or its data/ subfolder)"
                )
            path = found
        labelled = read_labelled(path, text_column=text_column, label_column=label_column)
        unknown = sorted(set(labelled.labels) - set(self.labels))
        if unknown:
            raise GPTClassifyError(
                f"{path}: label(s) {', '.join(map(repr, unknown[:5]))} are not classes of this model "
                f"({', '.join(self.labels)})"
            )
        y = np.array([self.labels.index(label) for label in labelled.labels])
        probs = self.predict_proba(labelled.texts, batch_size)
        report = classification_report(probs, y, self.labels)
        report["source"] = str(path)
        return report


# Fields config.json gets from the model itself or from save_model; not settings to carry over.
_DERIVED = {
    "format",
    "format_version",
    "model",
    "labels",
    "pool",
    "causal",
    "max_length",
    "pad_length",
    "truncate",
    "temperature",
    "tokenizer",
    "weights_file",
    "weights_sha256",
    "versions",
}


# ---- deciding labels and writing prediction files ------------------------------------------


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
