"""Reading a table file in chunks: CSV, TSV, JSON Lines (or one JSON array) and Parquet,
behind one `TableReader` (columns first, then rows with their names for messages).

Texts stay exactly as in the file. Problems in the user's file raise `GPTClassifyError` with
one line naming the file and the row, line or column; softer ones (a parsing fallback) are
collected in `TableReader.warnings`. data/tables.py turns the rows into labelled texts.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
            twice = [name for name, n in Counter(self.columns).items() if n > 1]
            if twice:
                raise GPTClassifyError(
                    f"{self.path}: column {twice[0]!r} appears more than once; give every "
                    "column its own name"
                )
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
        """Decoded lines without their "\n"; bad UTF-8 names its line. A file whose lines
        end in a lone CR (classic Mac OS, some exports) is read line by line too, as
        Python's csv module reads it."""
        with open(self.path, "rb") as handle:
            head = handle.read(1 << 16)
            handle.seek(0)
            raws = _cr_lines(handle) if b"\r" in head and b"\n" not in head else handle
            for number, raw in enumerate(raws, start=1):
                if number == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                nul = raw.find(b"\x00")
                if nul >= 0:
                    # Valid UTF-8, but no text file holds NUL: UTF-16 without its byte-order
                    # mark would otherwise read as a header that names no column.
                    raise GPTClassifyError(
                        f"{self.path}: line {number} is not valid UTF-8 text (a NUL byte at "
                        f"column {nul + 1}, as in UTF-16); save the file as UTF-8"
                    )
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
        twice = [name for name, n in Counter(header).items() if n > 1]
        if twice:
            # Renaming one (pandas' "text.1") would change a column silently, and an output
            # keeping the input's columns could not hold both.
            where = [i + 1 for i, name in enumerate(header) if name == twice[0]]
            shown = repr(twice[0]) if twice[0] else "(no name)"
            raise GPTClassifyError(
                f"{self.path}: the header names column {shown} more than once (columns "
                f"{', '.join(map(str, where))}); give every column its own name"
            )
        columns = list(header)
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
        excel = 0
        for k, (line, fields) in enumerate(rows, start=1):
            if len(fields) > width:
                raise GPTClassifyError(
                    f"{self.path}: cannot parse as {kind} (line {line} has {len(fields)} "
                    f"fields, the header has {width})"
                )
            if len(fields) < width:
                fields = fields + [""] * (width - len(fields))
            for i, value in enumerate(fields):
                # ="00123": Excel's way to keep a cell as text is the text 00123.
                if value.startswith('="') and (match := _EXCEL_TEXT.fullmatch(value)):
                    fields[i] = match.group(1).replace('""', '"')
                    excel += 1
            yield f"data row {k}", fields
        if excel and not self._excel_said:
            self._excel_said = True
            self.warnings.append(
                f'{self.path}: {excel} cell(s) written as Excel text formulas (="...", e.g. '
                "to keep leading zeros) read as the text inside, as Excel shows them"
            )

    _excel_said = False

    # ---- JSON Lines -------------------------------------------------------------------

    def _json_text_array(self) -> list[Any] | None:
        """The items of a .json file holding one array of objects (read whole), else None."""
        with open(self.path, "rb") as handle:
            head = handle.read(64).lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
        if not head.startswith(b"["):
            return None
        text = decode_utf8(self.path.read_bytes(), self.path)
        try:
            items = json.loads(text, object_pairs_hook=_pairs(str(self.path)))
        except json.JSONDecodeError as exc:
            raise GPTClassifyError(
                f"{self.path}: line {exc.lineno}: invalid JSON ({exc.msg})"
            ) from None
        if not isinstance(items, list):
            raise GPTClassifyError(f"{self.path}: expected a JSON array of objects")
        for i, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise GPTClassifyError(f"{self.path}: item {i} is not a JSON object")
            if "\\u" in text:
                _check_unicode(item, f"{self.path}: item {i}")
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
            where = f"{self.path}: line {number}"
            try:
                record = json.loads(line, object_pairs_hook=_pairs(where))
            except json.JSONDecodeError as exc:
                raise GPTClassifyError(f"{where}: invalid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise GPTClassifyError(f"{where}: expected one JSON object per line")
            if "\\u" in line:  # only an escape can make a lone surrogate from valid UTF-8
                _check_unicode(record, where)
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


_EXCEL_TEXT = re.compile(r'="((?:[^"]|"")*)"', re.S)


def _cr_lines(handle: Any) -> Iterator[bytes]:
    """The lines of a file whose line breaks are lone CRs (no byte of a UTF-8 character other
    than CR itself is 0x0d, so splitting the bytes is safe)."""
    rest = b""
    for block in iter(lambda: handle.read(1 << 16), b""):
        *lines, rest = (rest + block).split(b"\r")
        yield from lines
    if rest:
        yield rest


def _pairs(where: str):
    """json.loads' object_pairs_hook: a dict, refusing a key given twice in one object (the
    json module would keep the last value and drop the other silently)."""

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) < len(pairs):
            twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
            raise GPTClassifyError(f"{where}: key {twice!r} appears twice in one object")
        return out

    return hook


def _check_unicode(value: Any, where: str) -> None:
    """Refuse a lone surrogate (JSON's "\\udcff"): it is not text, and no file or tokenizer
    can take it."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        raise GPTClassifyError(
            f"{where}: holds {bad!a}, half of a surrogate pair (not valid Unicode); fix the "
            "escape in the file"
        ) from None


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GPTClassifyError(f"{path}: cannot read as Parquet ({first})") from None


def _check_file(path: Path) -> None:
    try:
        if not path.exists():
            raise GPTClassifyError(f"{path}: file not found")
        if not path.is_file():
            raise GPTClassifyError(f"{path}: not a file")
        with open(path, "rb"):  # readable (permissions), before any work starts
            pass
        if path.stat().st_size == 0:
            raise GPTClassifyError(f"{path}: file is empty")
    except OSError as exc:
        raise GPTClassifyError(f"{path}: cannot read ({exc.strerror or exc})") from None


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
