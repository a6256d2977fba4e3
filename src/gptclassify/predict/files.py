"""Classify a file (or a list of texts) of any size: read in chunks, predict, write the
prediction table chunk by chunk, and count what could not be classified or was cut.

`predict_file` is the whole job; `open_texts` / `text_list` and `predict_chunks` are its two
halves, for a caller that must check its input and output before loading the model (the CLI
refuses a bad file name before spending seconds on a load).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gptclassify.data.tables import CHUNK_ROWS, Chunk, iter_table
from gptclassify.errors import GPTClassifyError
from gptclassify.predict.api import Classifier
from gptclassify.predict.tables import (
    PredictionWriter,
    kept_input_columns,
    predict_table,
    prediction_columns,
)

PREVIEW_ROWS = 20
"""Rows of the result kept in memory to show (the rest only goes to the output file)."""

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet (Excel, LibreOffice, Google Sheets) read a CSV
cell as a formula (OWASP, "CSV Injection")."""

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def safe_csv_cell(value: str) -> str:
    """A CSV cell no spreadsheet runs as a formula: a cell that begins with `=`, `+`, `-`,
    `@`, a tab or a carriage return gets an apostrophe in front (spreadsheets show it as
    text and hide the apostrophe), unless the cell is just a number (`-1.5`, `+3`). Every
    other cell is unchanged.

    The rule of `predict --safe-csv` and of the web page's CSV download (its `safeCell`;
    tests/test_browser.py checks that they agree cell for cell); only CSV/TSV output goes
    through it (the texts that are classified, and other output formats, never do).
    """
    if value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


@dataclass
class TextChunks:
    """Texts to classify, as chunks of a table."""

    chunks: Iterator[Chunk]
    text_column: str
    source: str
    """The name messages give the input (a file's path, or "input")."""


def open_texts(path: str | Path, text_column: str | None = None) -> TextChunks:
    """A CSV / TSV / JSON Lines / Parquet file, read `CHUNK_ROWS` rows at a time (its text
    column found by name when not given); the file is checked here."""
    reader, column = iter_table(path, text_column)
    return TextChunks(reader.chunks(CHUNK_ROWS), column, str(reader.path))


def text_list(texts: Sequence[str]) -> TextChunks:
    """Texts given one by one (arguments, lines of stdin), as one chunk named "text N"."""
    refs = [f"text {i + 1}" for i in range(len(texts))]
    frame = pd.DataFrame({"text": list(texts)})
    return TextChunks(iter([Chunk(frame, refs)]), "text", "input")


@dataclass
class PredictionSummary:
    """What a prediction run did."""

    rows: int
    """Rows classified (or refused, see `errors`), as many as the input had."""
    errors: int
    """Rows with an error and no label (e.g. an empty text)."""
    truncated: int
    """Texts longer than the model reads, cut to its `max_length`."""
    preview: pd.DataFrame
    """The first `PREVIEW_ROWS` rows of the prediction table."""
    text_column: str
    """The text column's name in the prediction table."""
    chunked: int = 0
    """With `--long-texts chunk`: texts longer than the model reads, classified in windows."""
    renamed: dict[str, str] = field(default_factory=dict)
    """Input columns kept under another name because the predictions use theirs:
    {"label": "input_label"} (see `predict.tables.kept_input_columns`)."""


def predict_chunks(
    classifier: Classifier,
    texts: TextChunks,
    writer: PredictionWriter | None = None,
    batch_size: int = 32,
    threshold: float | None = None,
    k: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PredictionSummary:
    """Classify every chunk of `texts`, writing each prediction table to `writer` (which is
    closed at the end, or discarded on any error: the output is the whole table or absent).
    `progress(rows)` is told after every chunk."""
    shown: list[pd.DataFrame] = []
    rows = errors = cut = chunked = 0
    renamed: dict[str, str] = {}
    try:
        for chunk in texts.chunks:
            if not rows:  # every chunk has the same columns
                added = prediction_columns(classifier.labels, k, classifier.long_texts.chunk)
                renamed = kept_input_columns(list(chunk.frame.columns), added, texts.source)
            result = predict_table(
                classifier,
                chunk.frame,
                texts.text_column,
                batch_size,
                threshold,
                k,
                chunk.refs,
                texts.source,
            )
            if writer is not None:
                writer.write(result)
            if rows < PREVIEW_ROWS:
                shown.append(result.head(PREVIEW_ROWS - rows))
            rows += len(result)
            errors += int(result["error"].notna().sum())
            cut += int((result["truncated"] == True).sum())  # noqa: E712 (None means no text)
            if "windows" in result:
                chunked += int((result["windows"].fillna(0) > 1).sum())
            if progress is not None:
                progress(len(result))
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    preview = pd.concat(shown, ignore_index=True) if shown else pd.DataFrame()
    column = renamed.get(texts.text_column, texts.text_column)
    return PredictionSummary(rows, errors, cut, preview, column, chunked, renamed)


def predict_file(
    classifier: Classifier,
    path: str | Path,
    output: str | Path | None = None,
    text_column: str | None = None,
    batch_size: int = 32,
    threshold: float | None = None,
    k: int | None = None,
    progress: Callable[[int], None] | None = None,
    safe_csv: bool = False,
) -> PredictionSummary:
    """Classify the texts of the file `path`, writing the input's columns plus predictions
    to `output` (.csv, .tsv, .jsonl or .parquet) when given; any size, in chunks.

    safe_csv: write every CSV/TSV cell through `safe_csv_cell` (no formula injection when
    the file is opened in a spreadsheet)."""
    writer = None
    if output is not None:
        writer = PredictionWriter(output, cell=safe_csv_cell if safe_csv else None)
    elif safe_csv:
        raise GPTClassifyError("safe_csv applies to a .csv or .tsv output; give one")
    return predict_chunks(
        classifier, open_texts(path, text_column), writer, batch_size, threshold, k, progress
    )
