"""Labelled text from files: CSV / TSV / JSON Lines / Parquet readers and column finding.

Texts stay exactly as in the file (no stripping); labels are class names as strings (integer
labels become "0", "1", ...). Problems in the user's files raise `GPTClassifyError` with one
line naming the file and the row, line or column. Softer problems (rows skipped, a parsing
fallback) are collected in `warnings` on the returned objects, for the caller to show.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from gptclassify.data.delimited import records
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
            label = _label_value(raw_label)
            if text.strip() and label.strip():
                texts.append(text)
                labels.append(label.strip())
                written[label] += 1
                continue
            what = "empty text" if not text.strip() else "an empty label"
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
    spaces differ, and separate classes when the case differs)."""
    out = []
    for label, count in sorted(written.items()):
        if label.strip().casefold() in MISSING_LABELS:
            out.append(
                f"{source}: label {label!r} ({count} row(s)) looks like a missing value, but "
                "is treated as a class"
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


CHUNK_ROWS = 10_000
"""Rows per chunk when a table is read in pieces (prediction files of any size)."""


@dataclass
class Chunk:
    """Consecutive rows of a table, with their names for messages."""

    frame: pd.DataFrame
    refs: list[str]

    def ref(self, k: int) -> str:
        return self.refs[k]


class TableReader:
    """A CSV / TSV / JSON Lines / Parquet file: its columns, then its rows in chunks.

    Memory is that of one chunk (a JSON file holding one array is the exception: it is
    read whole). CSV and TSV cells are strings (see data/delimited.py for the quoting rule),
    with no guessing of missing values: "NA" or "null" is a real text.
    """

    def __init__(self, path: str | Path, fmt: str | None = None) -> None:
        self.path = Path(path)
        self.fmt = detect_format(self.path, fmt)
        _check_file(self.path)
        self.warnings: list[str] = []
        self.sep = "\t" if self.fmt == "tsv" else ","
        self._line_by_line = False
        if self.fmt == "parquet":
            self._parquet = _open_parquet(self.path)
            self.columns = [str(c) for c in self._parquet.schema_arrow.names]
            if self._parquet.metadata.num_rows == 0:
                raise GPTClassifyError(f"{self.path}: no data rows (only a header)")
        elif self.fmt == "jsonl":
            self.columns = self._json_columns()
        else:
            self.columns = self._delimited_header()

    # ---- chunks -----------------------------------------------------------------------

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
        if self.fmt == "parquet":
            yield from self._parquet_chunks(rows)
            return
        records = self._json_records() if self.fmt == "jsonl" else self._delimited_records()
        batch: list[Any] = []
        refs: list[str] = []
        for ref, record in records:
            batch.append(record)
            refs.append(ref)
            if len(batch) == rows:
                yield self._chunk(batch, refs)
                batch, refs = [], []
        if batch:
            yield self._chunk(batch, refs)

    def _chunk(self, batch: list[Any], refs: list[str]) -> Chunk:
        if self.fmt == "jsonl":
            frame = pd.DataFrame({c: [r.get(c) for r in batch] for c in self.columns})
        else:
            frame = pd.DataFrame(batch, columns=self._frame_columns, dtype=object)
            frame.columns = self.columns
        return Chunk(frame, refs)

    # ---- CSV / TSV --------------------------------------------------------------------

    def _lines(self) -> Iterator[str]:
        """Decoded lines without their "\n"; bad UTF-8 names its line."""
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise GPTClassifyError(
                        f"{self.path}: line {number} is not valid UTF-8 (byte "
                        f"0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file "
                        "as UTF-8"
                    ) from None
                yield line.removesuffix("\n")

    def _delimited_header(self) -> list[str]:
        first = next(records(self._lines(), self.sep), None)
        if first is None:
            raise GPTClassifyError(f"{self.path}: file is empty")
        header = first[1]
        self._frame_columns = list(range(len(header)))
        columns, seen = [], Counter()
        for name in header:  # duplicate names get .1, .2 (as pandas names them)
            columns.append(name if not seen[name] else f"{name}.{seen[name]}")
            seen[name] += 1
        if self.sep == "\t":
            self._line_by_line = self._quotes_merge_lines(len(header))
        if next(self._delimited_records(), None) is None:
            raise GPTClassifyError(f"{self.path}: no data rows (only a header)")
        return columns

    def _quotes_merge_lines(self, width: int) -> bool:
        """The SMS Spam Collection trap (pandas' default quoting reads it as 5,572 rows, not
        5,574): a TSV whose texts merely start with a double quote. When every line has the
        header's number of tabs, no record can span lines, so a quoted field that does is a
        misreading: read such a file one record per line, quotes as written."""
        tabs = width - 1
        lines = 0
        for line in self._lines():
            if not line.strip():
                continue
            if line.removesuffix("\r").count("\t") != tabs:
                return False
            lines += 1
        n = sum(1 for _ in records(self._lines(), "\t"))
        if n < lines:
            self.warnings.append(
                f"{self.path}: double quotes would have merged lines into one row; read with "
                f"quoting off instead ({lines - 1} rows, one per line)"
            )
            return True
        return False

    def _delimited_records(self) -> Iterator[tuple[str, list[str]]]:
        kind = "TSV" if self.sep == "\t" else "CSV"
        width = len(self._frame_columns)
        if self._line_by_line:
            rows = (
                (n, line.removesuffix("\r").split("\t"))
                for n, line in enumerate(self._lines(), start=1)
                if line.strip()
            )
        else:
            rows = records(self._lines(), self.sep)
        next(rows, None)  # the header
        for k, (line, fields) in enumerate(rows, start=1):
            if len(fields) > width:
                raise GPTClassifyError(
                    f"{self.path}: cannot parse as {kind} (line {line} has {len(fields)} "
                    f"fields, the header has {width})"
                )
            if len(fields) < width:
                fields = fields + [""] * (width - len(fields))
            yield f"data row {k}", fields

    # ---- JSON Lines -------------------------------------------------------------------

    def _json_text_array(self) -> list[Any] | None:
        """The items of a .json file holding one array of objects (read whole), else None."""
        with open(self.path, "rb") as handle:
            head = handle.read(64).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
        if not head.startswith(b"["):
            return None
        text = decode_utf8(self.path.read_bytes(), self.path)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GPTClassifyError(
                f"{self.path}: line {exc.lineno}: invalid JSON ({exc.msg})"
            ) from None
        for i, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise GPTClassifyError(f"{self.path}: item {i} is not a JSON object")
        return items

    def _json_records(self) -> Iterator[tuple[str, dict[str, Any]]]:
        items = self._json_text_array()
        if items is not None:
            for i, item in enumerate(items, start=1):
                yield f"item {i}", item
            return
        # Lines split at "\n" only: JSON strings may hold a raw U+2028 or form feed.
        for number, line in enumerate(self._lines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GPTClassifyError(
                    f"{self.path}: line {number}: invalid JSON ({exc.msg})"
                ) from None
            if not isinstance(record, dict):
                raise GPTClassifyError(
                    f"{self.path}: line {number}: expected one JSON object per line"
                )
            yield f"line {number}", {str(k): v for k, v in record.items()}

    def _json_columns(self) -> list[str]:
        """Every key of every record, in order of appearance (a first pass over the file)."""
        columns: dict[str, None] = {}
        empty = True
        for _, record in self._json_records():
            empty = False
            columns.update(dict.fromkeys(record))
        if empty:
            blank = all(not line.strip() for line in self._lines())
            raise GPTClassifyError(f"{self.path}: {'file is empty' if blank else 'no data rows'}")
        return list(columns)

    # ---- Parquet ----------------------------------------------------------------------

    def _parquet_chunks(self, rows: int) -> Iterator[Chunk]:
        done = 0
        for batch in self._parquet.iter_batches(batch_size=rows):
            frame = batch.to_pandas()
            frame.columns = [str(c) for c in frame.columns]
            refs = [f"data row {done + k + 1}" for k in range(len(frame))]
            done += len(frame)
            yield Chunk(frame, refs)


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GPTClassifyError(f"{path}: cannot read as Parquet ({first})") from None


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
    return str(value)
