"""`Classifier`: load a trained model once, classify texts in batches, evaluate on a file.

Batches are formed from texts of similar length (sorted, then chunked) so padding is small,
and results are put back in input order. With the default last-real-token pooling a text
gets the same prediction alone or next to longer texts.

Inference never changes the model: in bf16, the weights are cast once, when the Classifier
is made, into a separate view of the model (fastpath.fast_view). Any number of threads can
call `logits` / `predict` on one Classifier at the same time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptclassify.artifact import (
    ClassifierConfig,
    Provenance,
    load_classifier,
    read_metrics,
    save_classifier,
)
from gptclassify.classifier import GPTClassifier
from gptclassify.data.batches import TokenSource
from gptclassify.data.encode import InputPolicy, encode
from gptclassify.data.tables import read_labelled
from gptclassify.errors import GPTClassifyError
from gptclassify.fastpath import fast_view
from gptclassify.metrics import classification_report, softmax
from gptclassify.runtime import autocast, resolve_device, resolve_precision


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
        provenance: Provenance | None = None,
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
        self.provenance = provenance or Provenance()
        self.path: Path | None = None
        """The model folder this classifier was loaded from or last saved to."""
        self.metrics: dict[str, Any] | None = None
        """metrics.json of the training run, when known."""
        # What inference runs: the model with its weights in the compute precision, made once.
        self._runner = fast_view(self.model, self.dtype, cast_trainable=True).eval()

    # ---- persistence ------------------------------------------------------------------

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "auto", precision: str = "auto") -> Classifier:
        """Load a model folder written by `train` or `save` (checksum-verified, no pickle)."""
        model, config = load_classifier(run_dir)
        classifier = cls(
            model,
            config.labels,
            InputPolicy(config.max_length, config.pad_length, config.truncate),
            temperature=config.temperature,
            device=device,
            precision=precision,
            provenance=config.provenance,
        )
        classifier.path = Path(run_dir)
        metrics = read_metrics(run_dir)
        classifier.metrics = metrics.to_json() if metrics is not None else None
        return classifier

    def config(self) -> ClassifierConfig:
        """What config.json records for this classifier (the weights' checksum is added on
        save)."""
        return ClassifierConfig(
            model=self.model.gpt.config,
            labels=tuple(self.labels),
            pool=self.model.pool,
            causal=self.model.causal,
            max_length=self.policy.max_length,
            pad_length=self.policy.pad_length,
            truncate=self.policy.truncate,
            temperature=self.temperature,
            provenance=self.provenance,
        )

    def describe(self) -> dict[str, Any]:
        """config.json's fields for this classifier, as a dict."""
        return self.config().to_json()

    def save(self, directory: str | Path) -> Path:
        """Write model.safetensors + config.json into `directory`; returns the folder."""
        save_classifier(directory, self.model, self.config())
        self.path = Path(directory)
        return self.path

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
        with autocast(self.device, self.dtype):
            for idx in order.split(batch_size):
                logits = self._runner(*source.batch(idx).args)
                out[idx.numpy()] = logits.float().cpu().numpy()
        return out

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
