"""Labelled text from files: column finding, labels, and the rows of data/reader.py's
CSV / TSV / JSON Lines / Parquet reader.

Texts stay exactly as in the file (no stripping); labels are class names as strings (integer
labels become "0", "1", ...; a whole number written as a decimal, "1.0", is that integer, "1",
with a warning when one file writes both; JSON / Parquet booleans become "true" and "false";
an object or a list in a single-label column is refused). Problems in the user's files raise `GPTClassifyError` with one
line naming the file and the row, line or column. Softer problems (rows skipped, a parsing
fallback) are collected in `warnings` on the returned objects, for the caller to show.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gptclassify.data.reader import (  # the file formats; re-exported for their users
    CHUNK_ROWS,
    EXTENSIONS,
    FORMATS,
    Chunk,
    TableReader,
    decode_utf8,
    detect_format,
)
from gptclassify.errors import GPTClassifyError

__all__ = [
    "CHUNK_ROWS",
    "EXTENSIONS",
    "FORMATS",
    "Chunk",
    "LabelledTexts",
    "TableReader",
    "canonical_label",
    "decode_utf8",
    "detect_format",
    "iter_table",
    "label_warnings",
    "number_clashes",
    "read_labelled",
    "read_table",
    "sort_labels",
    "text_values",
]

TEXT_COLUMN_NAMES = ("text", "message", "sms", "content", "review", "sentence")
"""Column names taken as the text, in order of preference, compared case-insensitively."""

LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "sentiment")
"""Column names taken as the label, in order of preference, compared case-insensitively."""

_MAX_LISTED = 5  # row numbers quoted in a warning before "..."

_INVISIBLE = dict.fromkeys(
    map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff")
)
"""Characters that print nothing and are not whitespace to `str.isspace`: zero-width spaces
and joiners, direction marks, the word joiner, the byte-order mark, the soft hyphen."""


def blank(text: str) -> bool:
    """Empty, or only whitespace and zero-width characters: not a text (the same rule in
    training, the CLI, the Python API and the server)."""
    return not text.translate(_INVISIBLE).strip()


@dataclass
class LabelledTexts:
    """Texts with one class name each, as read from one file (or one part of a split)."""

    texts: list[str]
    """The texts, unmodified (surrounding whitespace kept)."""
    labels: list[str]
    """Class name of each text; integer labels are written as strings ("0", "1", ...)."""
    source: str
    """File path or description, for messages."""
    skipped_empty: int = 0
    """Rows dropped because their text was empty or only whitespace."""
    skipped_unlabelled: int = 0
    """Rows dropped because their label was empty."""
    warnings: list[str] = field(default_factory=list)
    """One-line notes for the user (skipped rows, parsing fallbacks)."""
    text_column: str | None = None
    """Column the texts came from, when read from a table."""
    label_column: str | None = None
    """Column the labels came from, when read from a table."""
    label_sets: list[tuple[str, ...]] | None = None
    """Multi-label data only (data/multilabel.py): each text's labels, possibly none; then
    `labels` holds each set joined by the separator."""
    label_order: list[str] | None = None
    """Multi-label data read from --label-columns: the labels in column order."""

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(
                f"LabelledTexts: {len(self.texts)} texts but {len(self.labels)} labels"
            )

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self) -> dict[str, int]:
        """Rows per class, classes in `sort_labels` order."""
        counts = Counter(self.labels)
        return {name: counts[name] for name in sort_labels(counts)}

    def subset(self, indices: Sequence[int], source: str | None = None) -> LabelledTexts:
        """The rows at `indices`, in that order (no warnings carried over)."""
        return LabelledTexts(
            texts=[self.texts[i] for i in indices],
            labels=[self.labels[i] for i in indices],
            source=source if source is not None else self.source,
            text_column=self.text_column,
            label_column=self.label_column,
            label_sets=None if self.label_sets is None else [self.label_sets[i] for i in indices],
            label_order=self.label_order,
        )


# ---- reading ---------------------------------------------------------------------------


def sort_labels(labels: Sequence[str] | Counter | set[str]) -> list[str]:
    """Distinct labels in class order: numerically if all are numbers, else as strings."""
    distinct = set(labels)
    if distinct and all(_INT.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda s: (int(s), s))
    if distinct and all(_FLOAT.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda s: (float(s), s))
    return sorted(distinct)


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_WHOLE_DECIMAL = re.compile(r"([+-]?\d+)\.0*")


def canonical_label(label: str) -> str:
    """A whole number written as a decimal is that integer ("1.0" -> "1", as a float 1.0 in
    a JSON or Parquet column is): the same class however the file wrote it. Anything else
    is kept as written (other ways of writing one number twice are refused instead, see
    `number_clashes`)."""
    match = _WHOLE_DECIMAL.fullmatch(label)
    return str(int(match.group(1))) if match else label


def number_clashes(labels: Iterable[str]) -> list[list[str]]:
    """Groups of distinct labels that are one number written differently ("1" and "01",
    "0.5" and "0.50", "1e3" and "1000"): ambiguous as classes, never merged silently."""
    groups: dict[Decimal, set[str]] = {}
    for label in set(labels):
        if _FLOAT.fullmatch(label):
            groups.setdefault(Decimal(label), set()).add(label)
    found = [
        sorted(group, key=lambda s: (len(s), s)) for group in groups.values() if len(group) > 1
    ]
    return sorted(found)


def read_labelled(
    path: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
) -> LabelledTexts:
    """Read (text, label) rows from a CSV, TSV, JSON Lines or Parquet file.

    Columns are found by name (see `TEXT_COLUMN_NAMES`, `LABEL_COLUMN_NAMES`) unless given.
    Rows whose text or label is empty are skipped and counted (`skipped_empty`,
    `skipped_unlabelled`, plus a line in `warnings`); with `strict` they are an error, as
    are labels that look like a missing value or differ from another only in case or
    surrounding spaces (otherwise warnings, see `label_warnings`).
    """
    reader = TableReader(path, fmt)
    text_col = _pick_column(reader.columns, text_column, TEXT_COLUMN_NAMES, "text", reader.path)
    label_col = _pick_column(reader.columns, label_column, LABEL_COLUMN_NAMES, "label", reader.path)
    if text_col == label_col:
        raise GPTClassifyError(
            f"{reader.path}: column {text_col!r} cannot be both the text and the label column"
        )
    texts, labels, written = [], [], Counter()
    skipped: dict[str, list[str]] = {"empty text": [], "an empty label": []}
    for chunk in reader.chunks():
        chunk_texts = text_values(chunk.frame[text_col].tolist(), text_col, chunk.refs, reader.path)
        for k, (text, raw_label) in enumerate(
            zip(chunk_texts, chunk.frame[label_col].tolist(), strict=True)
        ):
            label = _label_value(raw_label, f"{reader.path}: {chunk.ref(k)}: column {label_col!r}")
            if not blank(text) and label.strip():
                texts.append(text)
                labels.append(canonical_label(label.strip()))
                written[label] += 1
                continue
            what = "empty text" if blank(text) else "an empty label"
            if strict:
                column = text_col if what == "empty text" else label_col
                raise GPTClassifyError(
                    f"{reader.path}: {chunk.ref(k)} has {what} (column {column!r}); fix the "
                    "row, or drop --strict to skip such rows"
                )
            skipped[what].append(chunk.ref(k))
    warnings = list(reader.warnings)
    for what, rows in skipped.items():
        if rows:
            listed = ", ".join(rows[:_MAX_LISTED]) + (", ..." if len(rows) > _MAX_LISTED else "")
            warnings.append(f"{reader.path}: skipped {len(rows)} row(s) with {what} ({listed})")
    for group in number_clashes(labels):
        raise GPTClassifyError(
            f"{reader.path} (column {label_col!r}): labels {' and '.join(map(repr, group))} "
            "are one number written differently; write each class the same way"
        )
    doubts = label_warnings(written, f"{reader.path} (column {label_col!r})")
    if doubts and strict:
        raise GPTClassifyError(doubts[0] + "; fix the labels, or drop --strict")
    warnings += doubts
    if not texts:
        raise GPTClassifyError(f"{reader.path}: no rows with both a text and a label")
    return LabelledTexts(
        texts=texts,
        labels=labels,
        source=str(reader.path),
        skipped_empty=len(skipped["empty text"]),
        skipped_unlabelled=len(skipped["an empty label"]),
        warnings=warnings,
        text_column=text_col,
        label_column=label_col,
    )


MISSING_LABELS = frozenset({"nan", "none", "null", "na", "n/a", "nat", "<na>", "-"})
"""Labels (compared case-insensitively) that usually mean a missing value, not a class."""


def label_warnings(written: Counter[str], source: str) -> list[str]:
    """One line per doubtful label, with counts: a missing-value marker used as a class, or
    labels that differ only in case or surrounding spaces (which become one class when only
    spaces differ, and separate classes when the case differs), or one whole number written
    two ways ("1" and "1.0": one class)."""
    out = []
    for label, count in sorted(written.items()):
        if label.strip().casefold() in MISSING_LABELS:
            out.append(
                f"{source}: label {label!r} ({count} row(s)) looks like a missing value, but "
                "is treated as a class"
            )
    numbers: dict[str, list[str]] = {}
    for label in sorted(written):
        numbers.setdefault(canonical_label(label.strip()), []).append(label)
    for number, variants in numbers.items():
        if len({v.strip() for v in variants}) < 2 or not _INT.fullmatch(number):
            continue
        shown = ", ".join(f"{v!r} ({written[v]})" for v in variants)
        out.append(
            f"{source}: labels {shown} are one number written two ways: read as one class "
            f"{number!r}"
        )
    groups: dict[str, list[str]] = {}
    for label in sorted(written):
        groups.setdefault(label.strip().casefold(), []).append(label)
    for variants in groups.values():
        if len(variants) < 2:
            continue
        shown = ", ".join(f"{v!r} ({written[v]})" for v in variants)
        classes = sorted({v.strip() for v in variants})
        what = (
            f"read as one class {classes[0]!r}"
            if len(classes) == 1
            else f"read as {len(classes)} different classes"
        )
        out.append(f"{source}: labels {shown} differ only in case or spaces: {what}")
    return out


def read_table(
    path: str | Path, text_column: str | None = None, fmt: str | None = None
) -> tuple[pd.DataFrame, str]:
    """Every column of a CSV / TSV / JSON Lines / Parquet file, and the name of its text column.

    For prediction: the other columns are kept so outputs line up with the input rows. Big
    files: `iter_table` reads them in chunks.
    """
    reader, text_col = iter_table(path, text_column, fmt)
    frames = [chunk.frame for chunk in reader.chunks()]
    return pd.concat(frames, ignore_index=True), text_col


def iter_table(
    path: str | Path, text_column: str | None = None, fmt: str | None = None
) -> tuple[TableReader, str]:
    """A reader of the file in chunks, and the name of its text column (checked in every
    chunk with `text_values`)."""
    reader = TableReader(path, fmt)
    text_col = _pick_column(reader.columns, text_column, TEXT_COLUMN_NAMES, "text", reader.path)
    return reader, text_col


def text_values(
    values: list[Any], column: str, refs: Sequence[str], source: str | Path
) -> list[str]:
    """The texts of a column: strings as they are, missing values as "" (empty texts).

    Anything else (a number, true/false, bytes, a list) is refused, naming the row: a text
    column holds text, and reading 42 as "42" in one place and as missing in another would
    train and predict on different inputs.
    """
    out = []
    for k, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
        elif _is_missing(value):
            out.append("")
        else:
            shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
            raise GPTClassifyError(
                f"{source}: {refs[k]}: column {column!r} holds {type(value).__name__} "
                f"{shown}, not text; texts must be strings (quote them in JSON, store them as "
                "strings in Parquet)"
            )
    return out


def _pick_column(
    columns: list[str], wanted: str | None, candidates: Sequence[str], kind: str, path: Path
) -> str:
    seen = ", ".join(repr(c) for c in columns) or "none"
    folded: dict[str, list[str]] = {}
    for column in columns:
        folded.setdefault(column.strip().casefold(), []).append(column)
    if wanted is not None:
        if wanted in columns:
            return wanted
        matches = folded.get(wanted.strip().casefold(), [])
        if len(matches) == 1:
            return matches[0]
        raise GPTClassifyError(f"{path}: no {kind} column {wanted!r} (columns: {seen})")
    for name in candidates:
        if folded.get(name):
            return folded[name][0]
    raise GPTClassifyError(
        f"{path}: no {kind} column found (looked for {', '.join(candidates)}; columns: {seen}); "
        f"name it with --{kind}-column"
    )


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    # pandas' NA / NaT scalars, without importing pandas for every cell.
    return type(value).__name__ in ("NAType", "NaTType")


def _label_value(value: Any, where: str = "a label column") -> str:
    """A label cell as a class name: numbers as they read ("1", "0.5"), booleans as JSON and
    Parquet write them ("true", "false"), missing values as ""; an object, a list or bytes is
    refused (`where` names the cell)."""
    if _is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple | set | np.ndarray | bytes):
        shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
        raise GPTClassifyError(
            f"{where} holds {type(value).__name__} {shown}, not a label; a label is a string "
            "or a number (a list of labels is multi-label data: --task multi-label)"
        )
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        # Integer labels come back as floats from Parquet/JSON columns with gaps: 1.0 is "1".
        return str(int(value)) if float(value).is_integer() else str(float(value))
    return str(value)  # a string "1.0" is made "1" by canonical_label, as this float is
