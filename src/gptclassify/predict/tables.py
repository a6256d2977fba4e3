"""Prediction tables and files: labels from probabilities, and the input table plus
prediction columns, written as CSV, TSV, JSON Lines or Parquet."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gptclassify.data.delimited import format_record
from gptclassify.data.tables import text_values
from gptclassify.errors import GPTClassifyError
from gptclassify.files import default_file_mode

if TYPE_CHECKING:
    from gptclassify.predict.api import Classifier


def decide(probs: np.ndarray, labels: Sequence[str], threshold: float | None = None) -> list[str]:
    """Class names from probabilities: argmax, or for two classes `p(second class) >= threshold`.

    A threshold trades precision for recall on the positive (second) class, e.g. spam.
    """
    if threshold is None:
        return [labels[i] for i in probs.argmax(axis=1)]
    if len(labels) != 2:
        raise GPTClassifyError(
            f"--threshold needs a two-class model; this one has {len(labels)} classes"
        )
    if not 0.0 <= threshold <= 1.0:
        raise GPTClassifyError(f"--threshold must be between 0 and 1, got {threshold}")
    return [labels[1] if p >= threshold else labels[0] for p in probs[:, 1]]


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
    """The k likeliest classes per row with their probabilities, likeliest first."""
    if k < 1:
        raise GPTClassifyError(f"--top-k must be >= 1, got {k}")
    k = min(k, len(labels))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(labels[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]


def prob_column(label: str) -> str:
    return f"prob_{label}"


def prediction_columns(
    labels: Sequence[str], k: int | None = None, windows: bool = False
) -> list[str]:
    """The columns `predict_table` adds, in order (`windows`: long texts read in windows)."""
    return [
        "label",
        *(prob_column(name) for name in labels),
        *(["top_k"] if k else []),
        "truncated",
        *(["windows"] if windows else []),
        "error",
    ]


def kept_input_columns(
    columns: Sequence[str], added: Sequence[str], source: str = "input"
) -> dict[str, str]:
    """How input columns named like a prediction column are kept: {"label": "input_label"}.

    Nothing is ever dropped or overwritten: an input column whose name the predictions use
    is kept under `input_<name>` (the caller says so), and when that name is taken as well
    (by another input column, or a prediction column) the file is refused with one line
    naming both columns.
    """
    clash = [c for c in columns if c in set(added)]
    renamed = {c: f"input_{c}" for c in clash}
    taken = (set(columns) - set(clash)) | set(added)
    for old, new in renamed.items():
        if new in taken:
            raise GPTClassifyError(
                f"{source}: column {old!r} is named like a prediction column and would be "
                f"kept as {new!r}, but that name is taken too; rename one of them"
            )
    return renamed


def predict_table(
    classifier: Classifier,
    frame: pd.DataFrame,
    text_column: str,
    batch_size: int = 32,
    threshold: float | None = None,
    k: int | None = None,
    refs: Sequence[str] | None = None,
    source: str = "input",
) -> pd.DataFrame:
    """The input table plus label, prob_<class> per class, top_k (with k), truncated and
    error columns (and `windows`, the windows read per text, when the classifier chunks
    long texts). A multi-label classifier's `label` is the label set joined by its
    separator (empty: no label), its prob_<label> each label's own probability, and
    `threshold` overrides every label's threshold.

    A row with empty or missing text gets an error and no label instead of stopping the
    file; a value that is not text (a number, bytes) stops it with one line naming the row
    (`refs`, default "row N", in `source`), as training does. `truncated` says whether the
    text was longer than the model reads (and cut, per the model's policy). Input columns
    named like a prediction column are kept as input_<name> (`kept_input_columns`: never
    dropped or overwritten).
    """
    n = len(frame)
    refs = refs if refs is not None else [f"row {i + 1}" for i in range(n)]
    texts = text_values(frame[text_column].tolist(), text_column, refs, source)
    ok = [i for i, t in enumerate(texts) if t.strip()]
    probs = np.full((n, len(classifier.labels)), np.nan)
    cut: list[Any] = [None] * n
    windows: list[Any] = [None] * n
    if ok:
        logits, was_cut, counts = classifier.classify_texts([texts[i] for i in ok], batch_size)
        probs[ok] = classifier.probabilities(logits)
        for i, c, w in zip(ok, was_cut.tolist(), counts.tolist(), strict=True):
            cut[i], windows[i] = c, w
    labels: list[Any] = [None] * n
    errors: list[Any] = ["empty text"] * n
    if classifier.multi_label:
        sets = classifier.label_sets(probs[ok], threshold) if ok else []
        decided = [classifier.label_sep.join(found) for found in sets]
    else:
        decided = decide(probs[ok], classifier.labels, threshold)
    for i, label in zip(ok, decided, strict=True):
        labels[i], errors[i] = label, None
    added: dict[str, list[Any]] = {"label": labels}
    for j, name in enumerate(classifier.labels):
        added[prob_column(name)] = [None if np.isnan(p) else float(p) for p in probs[:, j]]
    if k:
        ranked = top_k(probs[ok], classifier.labels, k) if ok else []
        top: list[Any] = [None] * n
        for i, row in zip(ok, ranked, strict=True):
            top[i] = [name for name, _ in row]
        added["top_k"] = top
    added["truncated"] = cut
    if classifier.long_texts.chunk:
        added["windows"] = windows
    added["error"] = errors
    out = frame.rename(columns=kept_input_columns(list(frame.columns), list(added), source))
    for name, values in added.items():
        out[name] = values
    return out


OUTPUT_KINDS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}


class PredictionWriter:
    """Prediction tables written chunk by chunk into a temporary file that becomes `path`
    when closed: a file of any size with the memory of one chunk, and never half a file
    under the real name.

    The path is checked when the writer is made (before any inference): a known extension,
    not a folder, in a folder that can be written. `cell`: a function every CSV/TSV cell
    goes through once formatted (`predict.files.safe_csv_cell` for --safe-csv); only for
    .csv and .tsv files.
    """

    def __init__(self, path: str | Path, cell: Callable[[str], str] | None = None) -> None:
        self.path = Path(path)
        self.kind = OUTPUT_KINDS.get(self.path.suffix.lower())
        if self.kind is None:
            raise GPTClassifyError(
                f"--output {self.path}: use a .csv, .tsv, .jsonl or .parquet file name"
            )
        if cell is not None and self.kind not in ("csv", "tsv"):
            raise GPTClassifyError(
                f"--safe-csv: protects .csv and .tsv files opened in a spreadsheet; --output "
                f"{self.path} is {self.kind}, whose cells are never formulas (drop --safe-csv)"
            )
        self._cell = cell
        if self.path.is_dir():
            raise GPTClassifyError(f"--output {self.path}: is a folder; give a file name")
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GPTClassifyError(
                f"--output {self.path}: cannot create {folder} ({exc.strerror or exc})"
            ) from None
        if not os.access(folder, os.W_OK | os.X_OK) or (
            self.path.exists() and not os.access(self.path, os.W_OK)
        ):
            raise GPTClassifyError(f"--output {self.path}: not writable")
        for stale in folder.glob(f".{self.path.name}.*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._handle: Any = None
        self._parquet: pq.ParquetWriter | None = None
        self._columns: list[str] | None = None

    def write(self, frame: pd.DataFrame) -> None:
        if frame.columns.has_duplicates:  # rows of records would lose a value
            twice = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
            raise GPTClassifyError(
                f"--output {self.path}: column(s) {', '.join(map(repr, twice))} more than "
                "once; give every column its own name"
            )
        if self._columns is None:
            self._columns = list(frame.columns)
        if self.kind == "parquet":
            self._write_parquet(frame)
            return
        if self._handle is None:
            self._handle = open(self._tmp, "w", encoding="utf-8", newline="")
            if self.kind != "jsonl":
                header = [str(c) for c in frame.columns]
                if self._cell is not None:
                    header = [self._cell(c) for c in header]
                self._handle.write(format_record(header, self._sep))
        for record in frame.to_dict(orient="records"):
            if self.kind == "jsonl":
                row = {str(key): _json_value(value) for key, value in record.items()}
                self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            else:
                cells = [_cell(v) for v in record.values()]
                if self._cell is not None:
                    cells = [self._cell(c) for c in cells]
                self._handle.write(format_record(cells, self._sep))

    @property
    def _sep(self) -> str:
        return "\t" if self.kind == "tsv" else ","

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            # Columns with no value yet in the first chunk get their types from later
            # chunks' casts; give them a type that accepts anything the pipeline writes.
            fields = [
                pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                for f in table.schema
            ]
            self._schema = pa.schema(fields)
            self._parquet = pq.ParquetWriter(self._tmp, self._schema)
        try:
            table = table.cast(self._schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise GPTClassifyError(
                f"--output {self.path}: a column changes type between rows ({exc}); write "
                ".csv or .jsonl instead"
            ) from None
        self._parquet.write_table(table)

    def close(self) -> Path:
        """Finish the file and give it its name."""
        if self._handle is not None:
            self._handle.close()
        elif self._parquet is not None:
            self._parquet.close()
        else:
            open(self._tmp, "w").close()  # no rows: an empty file
        os.chmod(self._tmp, default_file_mode())
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        for closer in (self._handle, self._parquet):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # best effort: the file goes anyway
                    pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, list | tuple | np.ndarray):
        return ";".join(map(str, value))
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def write_predictions(frame: pd.DataFrame, path: str | Path) -> Path:
    """CSV, TSV, JSON Lines or Parquet by extension; written atomically."""
    with PredictionWriter(path) as writer:
        writer.write(frame)
    return writer.path
