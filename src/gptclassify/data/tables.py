"""Labelled text from files: CSV / TSV / JSON Lines / Parquet readers and column finding.

Texts stay exactly as in the file (no stripping); labels are class names as strings (integer
labels become "0", "1", ...). Problems in the user's files raise `GPTClassifyError` with one
line naming the file and the row, line or column. Softer problems (rows skipped, a parsing
fallback) are collected in `warnings` on the returned objects, for the caller to show.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gptclassify.errors import GPTClassifyError

FORMATS = ("csv", "tsv", "jsonl", "parquet")
"""File formats `read_labelled` understands."""

EXTENSIONS: dict[str, str] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
"""How a file's extension picks its format (override with `fmt` / --format)."""

TEXT_COLUMN_NAMES = ("text", "message", "sms", "content", "review", "sentence")
"""Column names taken as the text, in order of preference, compared case-insensitively."""

LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target", "sentiment")
"""Column names taken as the label, in order of preference, compared case-insensitively."""

_MAX_LISTED = 5  # row numbers quoted in a warning before "..."


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


def detect_format(path: str | Path, fmt: str | None = None) -> str:
    """The format to read `path` as: `fmt` if given, else from the extension."""
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        if fmt not in FORMATS:
            raise GPTClassifyError(
                f"--format {fmt}: unknown format; use one of {', '.join(FORMATS)}"
            )
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise GPTClassifyError(
            f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
            f"pass --format ({', '.join(FORMATS)})"
        )
    return EXTENSIONS[suffix]


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
    `skipped_unlabelled`, plus a line in `warnings`); with `strict` they are an error.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    _check_file(path)
    table = _read_table(path, fmt)
    text_col = _pick_column(table.columns, text_column, TEXT_COLUMN_NAMES, "text", path)
    label_col = _pick_column(table.columns, label_column, LABEL_COLUMN_NAMES, "label", path)
    if text_col == label_col:
        raise GPTClassifyError(
            f"{path}: column {text_col!r} cannot be both the text and the label column"
        )
    texts, labels = [], []
    skipped: dict[str, list[str]] = {"empty text": [], "an empty label": []}
    for i, (raw_text, raw_label) in enumerate(
        zip(table.get(text_col), table.get(label_col), strict=True)
    ):
        text, label = _text_value(raw_text), _label_value(raw_label)
        if text.strip() and label:
            texts.append(text)
            labels.append(label)
            continue
        what = "empty text" if not text.strip() else "an empty label"
        if strict:
            column = text_col if what == "empty text" else label_col
            raise GPTClassifyError(
                f"{path}: {table.row_ref(i)} has {what} (column {column!r}); fix the row, "
                "or drop --strict to skip such rows"
            )
        skipped[what].append(table.row_ref(i))
    warnings = list(table.warnings)
    for what, rows in skipped.items():
        if rows:
            listed = ", ".join(rows[:_MAX_LISTED]) + (", ..." if len(rows) > _MAX_LISTED else "")
            warnings.append(f"{path}: skipped {len(rows)} row(s) with {what} ({listed})")
    if not texts:
        raise GPTClassifyError(f"{path}: no rows with both a text and a label")
    return LabelledTexts(
        texts=texts,
        labels=labels,
        source=str(path),
        skipped_empty=len(skipped["empty text"]),
        skipped_unlabelled=len(skipped["an empty label"]),
        warnings=warnings,
        text_column=text_col,
        label_column=label_col,
    )


def read_table(
    path: str | Path, text_column: str | None = None, fmt: str | None = None
) -> tuple[pd.DataFrame, str]:
    """Every column of a CSV / TSV / JSON Lines / Parquet file, and the name of its text column.

    For prediction: the other columns are kept so outputs line up with the input rows.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    _check_file(path)
    table = _read_table(path, fmt)
    text_col = _pick_column(table.columns, text_column, TEXT_COLUMN_NAMES, "text", path)
    return pd.DataFrame({c: table.get(c) for c in table.columns}), text_col


@dataclass
class _Table:
    """Columns of a file, read lazily, with a way to name a row in messages."""

    columns: list[str]
    get: Callable[[str], list[Any]]
    row_ref: Callable[[int], str]
    warnings: list[str] = field(default_factory=list)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise GPTClassifyError(f"{path}: file not found")
    if not path.is_file():
        raise GPTClassifyError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise GPTClassifyError(f"{path}: file is empty")


def decode_utf8(raw: bytes, path: str | Path) -> str:
    """Bytes to text; a UTF-8 byte-order mark is dropped, invalid bytes name their line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        raise GPTClassifyError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
            f"{exc.start - line_start + 1}); save the file as UTF-8"
        ) from None


def _read_table(path: Path, fmt: str) -> _Table:
    if fmt == "parquet":
        return _read_parquet(path)
    text = decode_utf8(path.read_bytes(), path)
    if not text.strip():
        raise GPTClassifyError(f"{path}: file is empty")
    if fmt == "jsonl":
        return _read_jsonl(text, path)
    return _read_delimited(text, path, "\t" if fmt == "tsv" else ",")


def _data_row(i: int) -> str:
    return f"data row {i + 1}"


def _frame_table(frame: pd.DataFrame, path: Path) -> _Table:
    if len(frame) == 0:
        raise GPTClassifyError(f"{path}: no data rows (only a header)")
    columns = [str(c) for c in frame.columns]
    by_name = dict(zip(columns, frame.columns, strict=True))
    return _Table(columns, lambda name: frame[by_name[name]].tolist(), _data_row)


def _read_delimited(text: str, path: Path, sep: str) -> _Table:
    kind = "TSV" if sep == "\t" else "CSV"

    def parse(quoting: int) -> pd.DataFrame:
        try:
            # Everything as strings, and no NA guessing: "NA" or "null" is a real text or label.
            return pd.read_csv(
                io.StringIO(text), sep=sep, dtype=str, na_filter=False, quoting=quoting
            )
        except pd.errors.EmptyDataError:
            raise GPTClassifyError(f"{path}: file is empty") from None
        except (pd.errors.ParserError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GPTClassifyError(f"{path}: cannot parse as {kind} ({first})") from None

    frame = parse(csv.QUOTE_MINIMAL)
    table = _frame_table(frame, path)
    if sep == "\t":
        # The SMS Spam Collection trap (pandas' default quoting reads it as 5,572 rows, not
        # 5,574): a TSV whose texts merely contain
        # double quotes gets lines merged silently by quote-aware parsing. When every line
        # has the header's number of tabs, no record can span lines, so fewer rows than
        # lines means quotes merged some: read again with quoting off.
        lines = [line for line in text.split("\n") if line.strip()]
        tabs = lines[0].count("\t")
        if len(frame) < len(lines) - 1 and all(line.count("\t") == tabs for line in lines):
            frame = parse(csv.QUOTE_NONE)
            table = _frame_table(frame, path)
            table.warnings.append(
                f"{path}: double quotes would have merged lines into one row; read with "
                f"quoting off instead ({len(frame)} rows, one per line)"
            )
    return table


def _read_jsonl(text: str, path: Path) -> _Table:
    records: list[dict[str, Any]] = []
    refs: list[str] = []
    if text.lstrip().startswith("["):
        # A .json file holding one array of objects is accepted too; rows are its items.
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GPTClassifyError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
        for i, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise GPTClassifyError(f"{path}: item {i} is not a JSON object")
            records.append(item)
            refs.append(f"item {i}")
    else:
        # split("\n"), not splitlines(): JSON strings may hold a raw U+2028 or form feed.
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GPTClassifyError(f"{path}: line {number}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise GPTClassifyError(f"{path}: line {number}: expected one JSON object per line")
            records.append(record)
            refs.append(f"line {number}")
    if not records:
        raise GPTClassifyError(f"{path}: no data rows")
    columns = list(dict.fromkeys(str(key) for record in records for key in record))
    return _Table(columns, lambda name: [r.get(name) for r in records], refs.__getitem__)


def _read_parquet(path: Path) -> _Table:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GPTClassifyError(f"{path}: cannot read as Parquet ({first})") from None
    return _frame_table(frame, path)


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


def _text_value(value: Any) -> str:
    if _is_missing(value):
        return ""
    return value if isinstance(value, str) else str(value)


def _label_value(value: Any) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        # Integer labels come back as floats from Parquet/JSON columns with gaps: 1.0 is "1".
        return str(int(value)) if float(value).is_integer() else str(float(value))
    return str(value).strip()
