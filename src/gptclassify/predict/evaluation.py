"""Metrics of a Classifier on labelled texts: a file, the test split of a prepared or run data
folder, or data in memory. Functions over a Classifier, as scikit-learn keeps its metrics
outside its estimators; `Classifier.evaluate` calls `evaluate`. No torch here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gptclassify.data import inputs
from gptclassify.data.multilabel import MULTI, LabelFormat, label_matrix, read_label_sets
from gptclassify.data.tables import LabelledTexts, read_labelled
from gptclassify.errors import GPTClassifyError
from gptclassify.files import inside
from gptclassify.metrics import classification_report, multilabel_report

if TYPE_CHECKING:
    from gptclassify.predict.api import Classifier


def evaluate(
    classifier: Classifier,
    data: Any,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 32,
    label_columns: str | None = None,
    labels: Any = None,
) -> dict[str, Any]:
    """The classifier's metrics on `data` (see `Classifier.evaluate`)."""
    if inputs.is_in_memory(data):
        if classifier.multi_label:
            raise GPTClassifyError(
                "evaluate: a multi-label model is evaluated on a file of label sets "
                "(tables in memory are single-label only)"
            )
        labelled = inputs.labelled(data, labels, text_column, label_column)
        return evaluate_labelled(classifier, labelled, labelled.source, batch_size)
    if not isinstance(data, str | Path):
        raise TypeError(f"evaluate: expected a file, folder or table, got {data!r}")
    path = labelled_file(Path(data))
    if classifier.multi_label:
        return evaluate_sets(classifier, path, text_column, label_column, batch_size, label_columns)
    labelled = read_labelled(path, text_column=text_column, label_column=label_column)
    return evaluate_labelled(classifier, labelled, str(path), batch_size)


def labelled_file(path: Path) -> Path:
    """A labelled file as given, or a folder's test.csv (or its data/ subfolder's)."""
    if not path.is_dir():
        return path
    candidates = [inside(path, "test.csv"), inside(path, "data", "test.csv")]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise GPTClassifyError(f"{path}: no test.csv in this folder (or its data/ subfolder)")
    return found


def evaluate_labelled(
    classifier: Classifier, labelled: LabelledTexts, source: str, batch_size: int
) -> dict[str, Any]:
    """Single-label metrics (metrics.classification_report) of texts with a class each."""
    names = classifier.labels
    unknown = sorted(set(labelled.labels) - set(names))
    if unknown:
        raise GPTClassifyError(
            f"{source}: label(s) {', '.join(map(repr, unknown[:5]))} are not classes of this "
            f"model ({', '.join(names)})"
        )
    y = np.array([names.index(label) for label in labelled.labels])
    logits, cut, count = classifier.classify_texts(labelled.texts, batch_size)
    report = classification_report(classifier.probabilities(logits), y, names)
    report["source"] = source
    report.update(classifier.long_texts.report(cut, count))
    return report


def evaluate_sets(
    classifier: Classifier,
    path: Path,
    text_column: str | None,
    label_column: str | None,
    batch_size: int,
    label_columns: str | None,
) -> dict[str, Any]:
    """Multi-label metrics (metrics.multilabel_report, at the classifier's thresholds) of a
    file of label sets."""
    columns = tuple(c.strip() for c in label_columns.split(",")) if label_columns else None
    labelled = read_label_sets(
        path,
        text_column,
        label_column,
        labels=LabelFormat(MULTI, classifier.label_sep, columns),
    )
    y = label_matrix(labelled.label_sets or [], classifier.labels, str(path))
    logits, cut, count = classifier.classify_texts(labelled.texts, batch_size)
    report = multilabel_report(
        classifier.probabilities(logits), y, classifier.labels, classifier.decision_thresholds()
    )
    report["source"] = str(path)
    report.update(classifier.long_texts.report(cut, count))
    return report
