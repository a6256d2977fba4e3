"""In-memory inputs of the Python API: texts (and labels) from the containers data scientists
hold them in.

Every entry point that takes texts (`Classifier.predict`, `predict_proba`, `logits`,
`evaluate`, `train` through `DataConfig`, the scikit-learn estimator) reads them through this
module, so a list, a tuple, a pandas Series, a numpy array of strings, a DataFrame (its text
and label columns found by name as `data split` finds them in a file) and a Hugging Face
`datasets.Dataset` all mean the same rows. A plain string is refused (it is one text, not a
list of texts: iterating it would classify its characters).

No import of pandas-only or datasets-only code at module level beyond pandas itself (a core
dependency); a `datasets.Dataset` is recognised by its shape (`column_names` and column
access), so `datasets` is never imported here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gptclassify.data.tables import (
    LABEL_COLUMN_NAMES,
    TEXT_COLUMN_NAMES,
    LabelledTexts,
    _label_value,
    _pick_column,
    blank,
    label_warnings,
)
from gptclassify.errors import GPTClassifyError

ERRORS = ("raise", "nan")
"""What an invalid text (empty, missing, not a string) does: stop the call with an error that
names it, or give its row NaN probabilities (and a missing label) while the others are
classified, as the CLI gives such a row an error and goes on."""


def is_table(data: Any) -> bool:
    """A DataFrame or a Hugging Face Dataset (a table with named columns)."""
    return isinstance(data, pd.DataFrame) or _is_dataset(data)


def is_in_memory(data: Any) -> bool:
    """Data given as Python objects rather than a path or a name (what DataConfig accepts
    besides strings)."""
    return data is not None and not isinstance(data, str | Path)


def _is_dataset(data: Any) -> bool:
    # datasets.Dataset without importing datasets (an optional dependency).
    return (
        hasattr(data, "column_names")
        and hasattr(data, "features")
        and isinstance(getattr(data, "column_names", None), list)
    )


def describe(data: Any) -> str:
    """A short name of an in-memory input, for messages and the run's record."""
    if isinstance(data, pd.DataFrame):
        return f"a DataFrame ({len(data)} rows)"
    if _is_dataset(data):
        return f"a datasets.Dataset ({len(data)} rows)"
    if isinstance(data, pd.Series):
        return f"a Series ({len(data)} rows)"
    if isinstance(data, np.ndarray):
        return f"a numpy array {tuple(data.shape)}"
    if isinstance(data, tuple) and len(data) == 2 and not _is_scalar(data[0]):
        return f"(texts, labels) ({_len(data[0])} rows)"
    return f"a {type(data).__name__} ({_len(data)} rows)"


def _len(data: Any) -> str:
    try:
        return str(len(data))
    except TypeError:
        return "?"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | bytes) or not isinstance(value, Iterable)


def _columns(data: Any) -> list[str]:
    if isinstance(data, pd.DataFrame):
        return [str(c) for c in data.columns]
    return [str(c) for c in data.column_names]


def _column(data: Any, name: str) -> list[Any]:
    if isinstance(data, pd.DataFrame):
        return data[name].tolist()
    return list(data[name])


def find_columns(
    data: Any, text_column: str | None, label_column: str | None, labels: bool, where: str
) -> tuple[str, str | None]:
    """The text (and label) column of a DataFrame or Dataset, by name as `data split` finds
    them in a file; a table of one column (texts only) needs no name."""
    columns = _columns(data)
    if not labels and text_column is None and len(columns) == 1:
        return columns[0], None
    text = _pick_column(columns, text_column, TEXT_COLUMN_NAMES, "text", Path(where))
    if not labels:
        return text, None
    label = _pick_column(columns, label_column, LABEL_COLUMN_NAMES, "label", Path(where))
    if text == label:
        raise GPTClassifyError(
            f"{where}: column {text!r} cannot be both the text and the label column"
        )
    return text, label


def text_items(texts: Any, text_column: str | None = None, where: str = "texts") -> list[Any]:
    """The items of any accepted container of texts, unchecked (see `check_texts`)."""
    if texts is None:
        raise TypeError(f"{where}: expected texts (a list, Series, array, ...), got None")
    if isinstance(texts, str | bytes):
        raise TypeError(
            f"{where}: expected a sequence of texts, got one {type(texts).__name__}; "
            "wrap it in a list: [text]"
        )
    if hasattr(texts, "tocsr") or hasattr(texts, "toarray"):  # scipy.sparse, without importing it
        raise TypeError(f"{where}: a sparse matrix holds numbers, not texts; give the texts")
    if is_table(texts):
        column, _ = find_columns(texts, text_column, None, False, where)
        return _column(texts, column)
    if isinstance(texts, pd.Series | pd.Index):
        return texts.tolist()
    if isinstance(texts, np.ndarray):
        if texts.ndim == 2 and texts.shape[1] == 1:
            return texts[:, 0].tolist()
        if texts.ndim != 1:
            raise TypeError(
                f"{where}: expected a 1-D array of texts (or one column), got shape "
                f"{tuple(texts.shape)}"
            )
        return texts.tolist()
    if isinstance(texts, Mapping):
        raise TypeError(
            f"{where}: expected a sequence of texts, got a {type(texts).__name__} (for a dict "
            "of columns, pass pandas.DataFrame(it))"
        )
    if not isinstance(texts, Iterable):
        raise TypeError(f"{where}: expected a sequence of texts, got {type(texts).__name__}")
    return list(texts)


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA / NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


@dataclass
class CheckedTexts:
    """Texts of one call: the valid ones, and why each other row is not."""

    texts: list[str]
    """Every row; "" for an invalid one."""
    invalid: dict[int, str] = field(default_factory=dict)
    """Row index -> why it cannot be classified (errors="nan" only; "raise" raised)."""

    @property
    def valid(self) -> list[int]:
        return [i for i in range(len(self.texts)) if i not in self.invalid]


def check_errors(errors: str) -> str:
    if errors not in ERRORS:
        raise GPTClassifyError(f"errors={errors!r}: must be one of {', '.join(ERRORS)}")
    return errors


def check_texts(items: Sequence[Any], errors: str = "raise") -> CheckedTexts:
    """Every item must be a string; with errors="raise" the first that is not stops the call
    (a TypeError for another type, a GPTClassifyError for a missing value), naming it;
    with "nan" it is recorded and the call goes on. Empty strings are found later, by the
    tokenizer (a text that yields no token), with the same policy."""
    check_errors(errors)
    out = CheckedTexts([])
    for i, value in enumerate(items):
        if isinstance(value, str):
            out.texts.append(value)
            continue
        if isinstance(value, np.str_):
            out.texts.append(str(value))
            continue
        reason = (
            "missing (None/NaN)"
            if is_missing(value)
            else f"a {type(value).__name__}, not a str"
            + ("; decode it first (bytes.decode('utf-8'))" if isinstance(value, bytes) else "")
        )
        if errors == "raise":
            message = f"text {i + 1} is {reason}: texts must be strings"
            if is_missing(value):
                raise GPTClassifyError(message + ' (errors="nan" gives its row NaN)')
            raise TypeError(message)
        out.texts.append("")
        out.invalid[i] = reason
    return out


def labelled(
    data: Any,
    labels: Any = None,
    text_column: str | None = None,
    label_column: str | None = None,
    source: str | None = None,
    strict: bool = False,
) -> LabelledTexts:
    """Labelled texts from memory: a DataFrame or Dataset with text and label columns, a
    (texts, labels) pair, or `data` texts with `labels` beside them.

    As in a file: texts must be strings; a row whose text or label is empty or missing is
    skipped with a warning (an error with `strict`); labels become class names as a file's
    do (`1` and `1.0` are "1").
    """
    where = source or describe(data)
    if is_table(data) and labels is None:
        text_col, label_col = find_columns(data, text_column, label_column, True, where)
        assert label_col is not None
        texts, raw_labels = _column(data, text_col), _column(data, label_col)
    else:
        text_col, label_col = None, None
        if labels is None:
            if isinstance(data, tuple) and len(data) == 2:
                data, labels = data
            else:
                raise TypeError(
                    f"{where}: labelled data is a DataFrame or Dataset with text and label "
                    "columns, or (texts, labels)"
                )
        texts = text_items(data, text_column, where)
        raw_labels = _label_items(labels, label_column, where)
        if len(texts) != len(raw_labels):
            raise GPTClassifyError(f"{where}: {len(texts)} texts but {len(raw_labels)} labels")
    out_texts, out_labels, written = [], [], {}
    skipped: dict[str, list[int]] = {"empty text": [], "an empty label": []}
    for i, (text, raw) in enumerate(zip(texts, raw_labels, strict=True)):
        if not (isinstance(text, str) or is_missing(text)):
            raise TypeError(
                f"{where}: row {i + 1}: text is a {type(text).__name__}, not a str; texts "
                "must be strings"
            )
        text = "" if is_missing(text) else str(text)
        label = _label_value(raw, f"{where}: row {i + 1}: the label").strip()
        if not blank(text) and label:
            out_texts.append(text)
            out_labels.append(label)
            written[label] = written.get(label, 0) + 1
            continue
        what = "empty text" if blank(text) else "an empty label"
        if strict:
            raise GPTClassifyError(f"{where}: row {i + 1} has {what}; fix the row, or drop strict")
        skipped[what].append(i + 1)
    warnings = []
    for what, rows in skipped.items():
        if rows:
            listed = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            warnings.append(f"{where}: skipped {len(rows)} row(s) with {what} (rows {listed})")
    doubts = label_warnings(Counter(written), where)
    if doubts and strict:
        raise GPTClassifyError(doubts[0] + "; fix the labels, or drop strict")
    warnings += doubts
    if not out_texts:
        raise GPTClassifyError(f"{where}: no rows with both a text and a label")
    return LabelledTexts(
        texts=out_texts,
        labels=out_labels,
        source=where,
        skipped_empty=len(skipped["empty text"]),
        skipped_unlabelled=len(skipped["an empty label"]),
        warnings=warnings,
        text_column=text_col,
        label_column=label_col,
    )


def _label_items(labels: Any, label_column: str | None, where: str) -> list[Any]:
    if isinstance(labels, str | bytes):
        raise TypeError(f"{where}: labels must be a sequence, got one {type(labels).__name__}")
    if is_table(labels):
        columns = _columns(labels)
        if label_column is None and len(columns) == 1:
            return _column(labels, columns[0])
        name = _pick_column(columns, label_column, LABEL_COLUMN_NAMES, "label", Path(where))
        return _column(labels, name)
    if isinstance(labels, pd.Series | pd.Index):
        return labels.tolist()
    if isinstance(labels, np.ndarray):
        if labels.ndim != 1:
            raise TypeError(f"{where}: labels must be 1-D, got shape {tuple(labels.shape)}")
        return labels.tolist()
    return list(labels)
