"""Labelled text: read any CSV / TSV / JSON Lines / Parquet file, split it, write and reload it.

The one loader behind `gptclassify data split`, `gptclassify data sms-spam` and the training
command. Texts stay exactly as in the file (no stripping); labels are class names as strings
(integer labels become "0", "1", ...), and a class id is its index in `Splits.label_names`.

Randomness is numpy's legacy `RandomState(seed)` used the way pandas' `DataFrame.sample`
uses it, so the SMS recipe here picks the same rows, in the same order, as the book's pandas
code does with the same seed.

Problems in the user's files raise `GPTClassifyError` with one line naming the file and the
row, line or column. Softer problems (rows skipped, a class missing from a split) are
collected in `warnings` on the returned objects, for the caller to show.
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gptclassify import __version__
from gptclassify.errors import GPTClassifyError

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

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

SPLIT_NAMES = ("train", "validation", "test")
"""The three parts of a prepared folder, each written as `<name>.csv`."""

DEFAULT_FRACTIONS = (0.7, 0.1)
"""Train and validation fractions; the rest (20%) is test."""

VALIDATION_HOLDOUT = 0.1
"""Share of a raw training file held out for validation when no validation file is given."""

META_FILE = "dataset.json"
"""Metadata written next to the CSVs of a prepared folder."""

_PREPARED_FILES = {f"{name}.csv" for name in SPLIT_NAMES} | {META_FILE}
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


@dataclass
class Splits:
    """Train / validation / (optional) test parts and the class order shared by all three."""

    train: LabelledTexts
    """Rows to train on."""
    validation: LabelledTexts
    """Rows for model selection and progress reports."""
    test: LabelledTexts | None
    """Held-out rows for the final score; None when there is no test set."""
    label_names: list[str]
    """Class order: class id = index. Integer labels sort numerically, others as strings."""
    warnings: list[str] = field(default_factory=list)
    """One-line notes for the user, from reading and from splitting."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Where the data came from and how it was split (what dataset.json records)."""

    def parts(self) -> list[tuple[str, LabelledTexts]]:
        """(name, part) for each part present, in train, validation, test order."""
        named = zip(SPLIT_NAMES, (self.train, self.validation, self.test), strict=True)
        return [(name, part) for name, part in named if part is not None]

    def label_ids(self, part: LabelledTexts) -> list[int]:
        """Class ids of a part's labels; a label outside `label_names` is an error."""
        index = {name: i for i, name in enumerate(self.label_names)}
        try:
            return [index[label] for label in part.labels]
        except KeyError as exc:
            raise GPTClassifyError(
                f"{part.source}: label {exc.args[0]!r} is not one of the classes "
                f"{', '.join(map(repr, self.label_names))}"
            ) from None

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per class for each part: {part: {class: rows}}, every class listed."""
        out = {}
        for name, part in self.parts():
            counts = Counter(part.labels)
            out[name] = {label: counts[label] for label in self.label_names}
        return out


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
    import pandas as pd

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
    import csv

    import pandas as pd

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
        # The SMS Spam Collection trap (SPEC section 6): a TSV whose texts merely contain
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
    import pandas as pd

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


# ---- splitting -------------------------------------------------------------------------


def check_fractions(fractions: Sequence[float]) -> tuple[float, float]:
    """Validate (train, validation) fractions: both positive, sum below 1 (the rest is test)."""
    shown = " ".join(f"{f:g}" for f in fractions)
    if len(fractions) != 2:
        raise GPTClassifyError(f"--split {shown}: give two fractions, train and validation")
    train, validation = (float(f) for f in fractions)
    if not (train > 0 and validation > 0 and train + validation < 1):
        raise GPTClassifyError(
            f"--split {shown}: fractions must be positive and sum below 1 (the rest is test)"
        )
    return train, validation


def split_labelled(
    data: LabelledTexts,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 123,
    balance: bool = False,
    stratify: bool = False,
) -> Splits:
    """Balance (optional), shuffle and cut one labelled set into train / validation / test.

    The recipe of SPEC section 1, generalised to any number of classes:

    - `balance`: every class is undersampled to the size of the rarest one; classes are
      concatenated in class order, an undersampled class in the order sampled, the others
      in file order (for SMS: sampled ham, then all spam, as the book does).
    - shuffle everything with a fresh `RandomState(seed)`;
    - train = the first int(n * train_fraction) rows, validation the next
      int(n * validation_fraction), test the rest.
    - `stratify`: the cut is made per class (same int() rule, at least one row per part for
      classes with three rows or more), each part keeping the shuffled order.

    A class missing from some part is reported in `warnings`.
    """
    train_frac, val_frac = check_fractions(fractions)
    label_names = sort_labels(data.labels)
    if len(label_names) < 2:
        raise GPTClassifyError(
            f"{data.source}: only one class ({label_names[0]!r}); a classifier needs at least two"
        )
    indices = np.arange(len(data))
    if balance:
        indices = _undersample(data.labels, label_names, seed)
    # choice(n, n, replace=False) is what pandas' sample(frac=1, random_state=seed) draws.
    shuffle = np.random.RandomState(seed).choice(len(indices), size=len(indices), replace=False)
    order = indices[shuffle]
    n = len(order)
    if stratify:
        parts = _stratified_cut(order, data.labels, label_names, train_frac, val_frac)
    else:
        train_end = int(n * train_frac)
        val_end = train_end + int(n * val_frac)
        parts = [order[:train_end], order[train_end:val_end], order[val_end:]]
    for name, part in zip(SPLIT_NAMES, parts, strict=True):
        if len(part) == 0:
            raise GPTClassifyError(
                f"{data.source}: {n} rows are too few for --split {train_frac:g} {val_frac:g} "
                f"(the {name} part would be empty)"
            )
    train, validation, test = (
        data.subset(part.tolist(), source=f"{data.source} ({name} part)")
        for name, part in zip(SPLIT_NAMES, parts, strict=True)
    )
    splits = Splits(
        train,
        validation,
        test,
        label_names,
        warnings=list(data.warnings),
        meta={
            "seed": seed,
            "fractions": [train_frac, val_frac],
            "balance": balance,
            "stratify": stratify,
            "rows_read": len(data),
            "rows_used": n,
        },
    )
    splits.warnings += rare_class_warnings(splits, data.source, stratified=stratify)
    return splits


def _undersample(labels: Sequence[str], label_names: list[str], seed: int) -> np.ndarray:
    positions: dict[str, list[int]] = {name: [] for name in label_names}
    for i, label in enumerate(labels):
        positions[label].append(i)
    smallest = min(len(p) for p in positions.values())
    rng = np.random.RandomState(seed)
    kept: list[np.ndarray] = []
    for name in label_names:
        rows = np.asarray(positions[name], dtype=np.intp)
        if len(rows) > smallest:
            # Same draw as pandas' DataFrame.sample(smallest, random_state=seed).
            rows = rows[rng.choice(len(rows), size=smallest, replace=False)]
        kept.append(rows)
    return np.concatenate(kept)


def _stratified_cut(
    order: np.ndarray,
    labels: Sequence[str],
    label_names: list[str],
    train_frac: float,
    val_frac: float,
) -> list[np.ndarray]:
    assignment = np.empty(len(order), dtype=np.intp)
    for name in label_names:
        where = np.flatnonzero([labels[i] == name for i in order])
        m = len(where)
        sizes = [int(m * train_frac), int(m * val_frac)]
        sizes.append(m - sum(sizes))
        if m >= len(sizes):
            # Rounding down can leave a small class out of a part; lend it one row from
            # the largest part so every class is seen in training, validation and test.
            for k in range(len(sizes)):
                if sizes[k] == 0:
                    sizes[int(np.argmax(sizes))] -= 1
                    sizes[k] += 1
        assignment[where] = np.repeat(np.arange(len(sizes)), sizes)
    return [order[assignment == k] for k in range(len(SPLIT_NAMES))]


def rare_class_warnings(splits: Splits, source: str, stratified: bool = False) -> list[str]:
    """A line for each class that is missing from some part, with its counts per part."""
    counts = splits.counts()
    out = []
    for label in splits.label_names:
        per_part = {name: counts[name][label] for name in counts}
        missing = [name for name, count in per_part.items() if count == 0]
        if not missing:
            continue
        total = sum(per_part.values())
        shown = ", ".join(f"{name} {count}" for name, count in per_part.items())
        advice = (
            "use --stratify to put it in every part"
            if not stratified and total >= len(per_part)
            else "add more examples of it"
        )
        out.append(
            f"{source}: class {label!r} is too rare to appear in "
            f"every part: missing from {', '.join(missing)} ({shown}); {advice}"
        )
    return out


# ---- raw files and prepared folders ----------------------------------------------------


def load_split_files(
    train: str | Path,
    validation: str | Path | None = None,
    test: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    seed: int = 123,
) -> Splits:
    """Splits from raw files (the training command's --train/--validation/--test).

    Without a validation file, `VALIDATION_HOLDOUT` (10%) of the training rows, drawn with
    `RandomState(seed)`, become the validation part; the rest stay in file order. Class
    order covers the labels of all files.
    """

    def read(path: str | Path) -> LabelledTexts:
        return read_labelled(path, text_column, label_column, fmt, strict)

    train_data = read(train)
    warnings = list(train_data.warnings)
    meta: dict[str, Any] = {"train": str(train), "seed": seed}
    if validation is not None:
        val_data = read(validation)
        warnings += val_data.warnings
        meta["validation"] = str(validation)
    else:
        n = len(train_data)
        k = int(n * VALIDATION_HOLDOUT)
        if k == 0:
            raise GPTClassifyError(
                f"{train}: {n} rows are too few to hold out {VALIDATION_HOLDOUT:.0%} for "
                "validation; pass a validation file"
            )
        held = np.random.RandomState(seed).choice(n, size=k, replace=False)
        keep = np.setdiff1d(np.arange(n), held)
        val_data = train_data.subset(held.tolist(), source=f"{train} (held-out validation)")
        train_data = train_data.subset(keep.tolist())
        meta["validation"] = f"{VALIDATION_HOLDOUT:.0%} of train held out (seed {seed})"
    test_data = None
    if test is not None:
        test_data = read(test)
        warnings += test_data.warnings
        meta["test"] = str(test)
    everything = train_data.labels + val_data.labels + (test_data.labels if test_data else [])
    label_names = sort_labels(everything)
    if len(label_names) < 2:
        raise GPTClassifyError(
            f"{train}: only one class ({label_names[0]!r}); a classifier needs at least two"
        )
    splits = Splits(train_data, val_data, test_data, label_names, warnings, meta)
    splits.warnings += rare_class_warnings(splits, str(train))
    return splits


def load_prepared(directory: str | Path) -> Splits:
    """Splits from a folder written by `write_splits` (or `gptclassify data ...`).

    Needs train.csv and validation.csv (columns text, label); test.csv is optional. The
    class order comes from dataset.json when present, else from the labels.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise GPTClassifyError(
            f"{directory}: data folder not found"
            if not directory.exists()
            else f"{directory}: not a folder (expected a prepared data folder)"
        )
    for name in ("train", "validation"):
        if not (directory / f"{name}.csv").is_file():
            raise GPTClassifyError(
                f"{directory}: no {name}.csv; prepare the folder with `gptclassify data "
                "sms-spam` or `gptclassify data split`"
            )
    meta: dict[str, Any] = {}
    meta_path = directory / META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(decode_utf8(meta_path.read_bytes(), meta_path))
        except json.JSONDecodeError as exc:
            raise GPTClassifyError(
                f"{meta_path}: line {exc.lineno}: invalid JSON ({exc.msg})"
            ) from None
        if not isinstance(meta, dict):
            raise GPTClassifyError(f"{meta_path}: expected a JSON object")
    parts = {}
    for name in SPLIT_NAMES:
        path = directory / f"{name}.csv"
        if path.is_file():
            parts[name] = read_labelled(path, "text", "label", fmt="csv")
    all_labels = [label for part in parts.values() for label in part.labels]
    if "label_names" in meta:
        label_names = meta["label_names"]
        if not (isinstance(label_names, list) and all(isinstance(n, str) for n in label_names)):
            raise GPTClassifyError(f"{meta_path}: 'label_names' must be a list of strings")
        for name, part in parts.items():
            unknown = sorted(set(part.labels) - set(label_names))
            if unknown:
                raise GPTClassifyError(
                    f"{directory / f'{name}.csv'}: label {unknown[0]!r} is not in "
                    f"{META_FILE}'s label_names ({', '.join(map(repr, label_names))})"
                )
    else:
        label_names = sort_labels(all_labels)
    if len(label_names) < 2:
        raise GPTClassifyError(f"{directory}: only one class; a classifier needs at least two")
    warnings = [w for part in parts.values() for w in part.warnings]
    splits = Splits(
        parts["train"], parts["validation"], parts.get("test"), list(label_names), warnings, meta
    )
    splits.warnings += rare_class_warnings(splits, str(directory))
    return splits


def write_splits(splits: Splits, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """Write train/validation/test.csv (columns text, label) and dataset.json into `out_dir`.

    dataset.json holds `splits.meta` updated with `meta`, then the class order, rows per
    part and rows per part and class.

    All files are written into a temporary folder beside `out_dir`, which then takes its
    place: a failure leaves the previous contents (or nothing) rather than a mix. An existing
    `out_dir` is replaced only if it holds nothing but these files.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise GPTClassifyError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _PREPARED_FILES)
        if foreign:
            raise GPTClassifyError(
                f"{out}: folder holds other files ({', '.join(foreign[:_MAX_LISTED])}); "
                "choose another --out or empty it"
            )
    info = {
        "written_by": f"gptclassify {__version__}",
        **splits.meta,
        **meta,
        # Derived from the data itself, so never taken from a (possibly stale) meta.
        "label_names": list(splits.label_names),
        "rows": {name: len(part) for name, part in splits.parts()},
        "class_counts": splits.counts(),
        "files": {name: f"{name}.csv" for name, _ in splits.parts()},
    }
    # Resolved, so "." or "data/" still has a name and a parent to build the swap in.
    target = out.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # mkdir (not mkdtemp, which makes it private): the folder gets the usual permissions.
        tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.mkdir()
    except OSError as exc:
        raise GPTClassifyError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    try:
        for name, part in splits.parts():
            _write_csv(part, tmp / f"{name}.csv")
        (tmp / META_FILE).write_text(
            json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _swap_in(tmp, target)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise GPTClassifyError(f"{out}: cannot write there ({exc.strerror or exc})") from None
        raise
    return out


def _write_csv(part: LabelledTexts, path: Path) -> None:
    # Written by hand rather than with csv/pandas writers: those leave a lone "\r" unquoted,
    # and a reader then splits the text there. Here any field holding a comma, quote, CR or
    # LF is quoted (RFC 4180), so every text reads back exactly.
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("text,label\n")
        for text, label in zip(part.texts, part.labels, strict=True):
            handle.write(f"{_csv_field(text)},{_csv_field(label)}\n")


def _csv_field(value: str) -> str:
    if any(c in value for c in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---- reporting -------------------------------------------------------------------------


def summary_table(splits: Splits, title: str | None = None) -> Table:
    """A rich table of rows per part and class, with totals."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("split")
    for label in splits.label_names:
        table.add_column(label, justify="right")
    table.add_column("total", justify="right")
    counts = splits.counts()
    for name, per_class in counts.items():
        table.add_row(name, *map(str, per_class.values()), str(sum(per_class.values())))
    totals = [sum(counts[name][label] for name in counts) for label in splits.label_names]
    table.add_row("all", *map(str, totals), str(sum(totals)), style="bold")
    return table
