"""Multi-label data: texts with a *set* of labels each (the empty set included).

Three ways a file says which labels a text has:

- one label column holding several labels joined by a separator (`--label-sep ";"`,
  `"billing;urgent"`; an empty cell is the empty set);
- several 0/1 columns, one per label (`--label-columns toxic,obscene,insult`), the layout of
  the "toxic comment" data sets;
- a label column holding lists (JSON Lines `"labels": ["a", "b"]`, Parquet list columns).

Inside gptclassify a multi-label part is a `LabelledTexts` whose `label_sets` holds each
row's labels and whose `labels` holds the same set joined by the separator (so fingerprints,
prepared CSVs and messages keep working on strings). Splitting keeps label sets together by
iterative stratification (Sechidis, Tsoumakas and Vlahavas 2011, through the
`iterative-stratification` package).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gptclassify.data.reader import TableReader
from gptclassify.data.tables import (
    LABEL_COLUMN_NAMES,
    TEXT_COLUMN_NAMES,
    LabelledTexts,
    _is_missing,
    _label_value,
    _pick_column,
    blank,
    label_warnings,
    read_labelled,
    sort_labels,
    text_values,
)
from gptclassify.errors import GPTClassifyError

SINGLE = "single-label"
MULTI = "multi-label"
DEFAULT_SEP = ";"
"""How a label set is joined in prepared CSVs and prediction files unless --label-sep says."""
_MAX_LISTED = 5


@dataclass(frozen=True)
class LabelFormat:
    """How labels are read: the --task, --label-sep and --label-columns options."""

    task: str = "auto"
    label_sep: str | None = None
    label_columns: tuple[str, ...] | None = None

    @classmethod
    def of(cls, data: Any) -> LabelFormat:
        """From a DataConfig (or anything with task / label_sep / label_columns)."""
        columns = getattr(data, "label_columns", None)
        if isinstance(columns, str):
            columns = tuple(c.strip() for c in columns.split(",") if c.strip())
            if not columns:
                raise GPTClassifyError("--label-columns: give comma-separated column names")
            if len(set(columns)) != len(columns):
                raise GPTClassifyError("--label-columns: a column is named twice")
        return cls(getattr(data, "task", "auto"), getattr(data, "label_sep", None), columns)

    @property
    def says_multi(self) -> bool:
        """Multi-label whatever the file holds."""
        return self.task == MULTI or bool(self.label_sep) or bool(self.label_columns)

    @property
    def sep(self) -> str:
        return self.label_sep or DEFAULT_SEP


def read_examples(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    labels: LabelFormat | None = None,
) -> LabelledTexts:
    """`read_labelled` for single-label files, `read_label_sets` for multi-label ones; with
    task auto, a label column holding lists makes the file multi-label."""
    labels = labels or LabelFormat()
    multi = labels.says_multi
    if not multi and labels.task == "auto":
        multi = _holds_lists(path, label_column, fmt)
    if not multi:
        return read_labelled(path, text_column, label_column, fmt, strict)
    return read_label_sets(path, text_column, label_column, fmt, strict, labels)


def _holds_lists(path: str | Path, label_column: str | None, fmt: str | None) -> bool:
    reader = TableReader(path, fmt)
    if reader.fmt not in ("jsonl", "parquet"):
        return False
    try:
        column = _pick_column(
            reader.columns, label_column, LABEL_COLUMN_NAMES, "label", reader.path
        )
    except GPTClassifyError:
        return False  # read_labelled says what is missing
    for chunk in reader.chunks():
        values = chunk.frame[column].tolist()
        return any(isinstance(v, list | tuple | np.ndarray) for v in values)
    return False


def read_label_sets(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    labels: LabelFormat | None = None,
) -> LabelledTexts:
    """Rows of (text, label set) from a CSV / TSV / JSON Lines / Parquet file.

    A row with an empty text is skipped (an error with `strict`); a row with no label is a
    text with the empty label set, which is valid in multi-label data. A 0/1 column holding
    anything else, or a label list holding a non-label, is an error naming the row.
    """
    labels = labels or LabelFormat(task=MULTI)
    reader = TableReader(path, fmt)
    text_col = _pick_column(reader.columns, text_column, TEXT_COLUMN_NAMES, "text", reader.path)
    columns: tuple[str, ...]
    if labels.label_columns:
        columns = tuple(
            _pick_column(reader.columns, c, (), "label", reader.path) for c in labels.label_columns
        )
        names_from_columns = list(columns)
    else:
        columns = (
            _pick_column(reader.columns, label_column, LABEL_COLUMN_NAMES, "label", reader.path),
        )
        names_from_columns = []
    if text_col in columns:
        raise GPTClassifyError(
            f"{reader.path}: column {text_col!r} cannot be both the text and a label column"
        )
    texts: list[str] = []
    sets: list[tuple[str, ...]] = []
    skipped: list[str] = []
    for chunk in reader.chunks():
        chunk_texts = text_values(chunk.frame[text_col].tolist(), text_col, chunk.refs, reader.path)
        values = [chunk.frame[c].tolist() for c in columns]
        for k, text in enumerate(chunk_texts):
            if blank(text):
                if strict:
                    raise GPTClassifyError(
                        f"{reader.path}: {chunk.ref(k)} has empty text (column {text_col!r}); "
                        "fix the row, or drop --strict to skip such rows"
                    )
                skipped.append(chunk.ref(k))
                continue
            if names_from_columns:
                found = tuple(
                    name
                    for name, column, vals in zip(names_from_columns, columns, values, strict=True)
                    if _flag(vals[k], column, chunk.ref(k), reader.path)
                )
            else:
                found = _label_set(values[0][k], labels.sep, columns[0], chunk.ref(k), reader.path)
            texts.append(text)
            sets.append(found)
    warnings = list(reader.warnings)
    if skipped:
        listed = ", ".join(skipped[:_MAX_LISTED]) + (", ..." if len(skipped) > _MAX_LISTED else "")
        warnings.append(f"{reader.path}: skipped {len(skipped)} row(s) with empty text ({listed})")
    if not texts:
        raise GPTClassifyError(f"{reader.path}: no rows with a text")
    sep = labels.sep
    for i, found in enumerate(sets):
        for label in found:
            if sep in label:
                raise GPTClassifyError(
                    f"{reader.path}: label {label!r} holds the separator {sep!r}; choose "
                    "another --label-sep"
                )
        sets[i] = tuple(sort_labels(found)) if not names_from_columns else found
    if not names_from_columns:
        # As for single labels: "Billing" beside "billing" are two labels, said aloud.
        doubts = label_warnings(
            Counter(label for found in sets for label in found),
            f"{reader.path} (column {columns[0]!r})",
        )
        if doubts and strict:
            raise GPTClassifyError(doubts[0] + "; fix the labels, or drop --strict")
        warnings += doubts
    out = LabelledTexts(
        texts=texts,
        labels=[sep.join(s) for s in sets],
        source=str(reader.path),
        skipped_empty=len(skipped),
        warnings=warnings,
        text_column=text_col,
        label_column=",".join(columns),
        label_sets=sets,
        label_order=names_from_columns or None,
    )
    return out


def _label_set(value: Any, sep: str, column: str, ref: str, path: Path) -> tuple[str, ...]:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            if not isinstance(item, str | int) or isinstance(item, bool) or _is_missing(item):
                raise GPTClassifyError(
                    f"{path}: {ref}: column {column!r} holds {item!r} in its list; labels are "
                    "strings (or integers)"
                )
            items.append(str(item).strip())
    elif _is_missing(value):
        items = []
    elif isinstance(value, str) and _json_list(value):
        raise GPTClassifyError(
            f"{path}: {ref}: column {column!r} holds the text {_short(value)}, a JSON list "
            "written as a string; write the labels as a list (JSON Lines, Parquet) or joined "
            "by --label-sep, the same way in every row"
        )
    else:
        items = [
            part.strip()
            for part in _label_value(value, f"{path}: {ref}: column {column!r}").split(sep)
        ]
    return tuple(dict.fromkeys(i for i in items if i))


def _json_list(value: str) -> bool:
    text = value.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return False
    try:
        return isinstance(json.loads(text), list)
    except ValueError:
        return False


def _short(value: Any) -> str:
    return repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."


_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no", ""}


def _flag(value: Any, column: str, ref: str, path: Path) -> bool:
    if _is_missing(value):
        return False
    text = _label_value(value, f"{path}: {ref}: column {column!r}").strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise GPTClassifyError(
        f"{path}: {ref}: column {column!r} holds {value!r}; a --label-columns column holds 0 "
        "or 1 (true/false)"
    )


def label_names_of(parts: Sequence[LabelledTexts]) -> list[str]:
    """The label order of multi-label parts: the --label-columns order, else sorted."""
    for part in parts:
        order = getattr(part, "label_order", None)
        if order:
            return list(order)
    return sort_labels({label for part in parts for s in part.label_sets or () for label in s})


def label_matrix(sets: Sequence[Sequence[str]], names: Sequence[str], source: str) -> np.ndarray:
    """(N, K) float32 0/1 matrix of label sets over `names` (columns in that order)."""
    index = {name: j for j, name in enumerate(names)}
    y = np.zeros((len(sets), len(names)), dtype=np.float32)
    for i, found in enumerate(sets):
        for label in found:
            if label not in index:
                raise GPTClassifyError(
                    f"{source}: label {label!r} is not one of the labels "
                    f"{', '.join(map(repr, names))}"
                )
            y[i, index[label]] = 1.0
    return y


def set_counts(sets: Sequence[Sequence[str]], names: Sequence[str]) -> dict[str, int]:
    """Texts carrying each label (a text counts once for each of its labels)."""
    counts = Counter(label for found in sets for label in found)
    return {name: counts[name] for name in names}


def iterative_split(y: np.ndarray, fractions: tuple[float, float], seed: int) -> list[np.ndarray]:
    """Row indices of train / validation / test keeping every label's share in each part
    close to the whole's: iterative stratification (Sechidis et al. 2011) twice, train
    against the rest, then validation against test. Rows keep their order within a part."""
    # iterative-stratification imports scikit-learn's model selection: only when needed
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit  # lazy: iterstrat

    n = len(y)
    train_frac, val_frac = fractions
    n_train = int(n * train_frac)
    n_val = int(n * val_frac)
    rows = np.arange(n)
    first = MultilabelStratifiedShuffleSplit(
        n_splits=1, train_size=n_train, test_size=n - n_train, random_state=seed
    )
    train, rest = next(first.split(rows, y))
    if n_val == 0 or n_val >= len(rest):
        return [np.sort(train), np.sort(rest[:n_val]), np.sort(rest[n_val:])]
    second = MultilabelStratifiedShuffleSplit(
        n_splits=1, train_size=n_val, test_size=len(rest) - n_val, random_state=seed
    )
    val, test = next(second.split(rest, y[rest]))
    return [np.sort(train), np.sort(rest[val]), np.sort(rest[test])]
