"""Prepared data folders: train.csv, validation.csv, test.csv and dataset.json.

What `gptclassify data ...` writes and `gptclassify train --data FOLDER` reads; a training run
keeps the exact texts it saw in the same layout (RUN/data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from gptclassify import __version__
from gptclassify.data.delimited import format_record
from gptclassify.data.multilabel import MULTI, SINGLE, LabelFormat, read_label_sets
from gptclassify.data.split import SPLIT_NAMES, Splits, rare_class_warnings
from gptclassify.data.tables import LabelledTexts, decode_utf8, read_labelled, sort_labels
from gptclassify.errors import GPTClassifyError, option
from gptclassify.files import replace_folder

META_FILE = "dataset.json"
"""Metadata written next to the CSVs of a prepared folder."""

PREPARED_FILES = {f"{name}.csv" for name in SPLIT_NAMES} | {META_FILE}
"""Everything a prepared folder holds."""
_MAX_LISTED = 5  # file names quoted in an error before "..."


def load_prepared(directory: str | Path, labels: LabelFormat | None = None) -> Splits:
    """Splits from a folder written by `write_splits` (or `gptclassify data ...`).

    Needs train.csv and validation.csv (columns text, label); test.csv is optional. The
    class order comes from dataset.json when present, else from the labels. The task and the
    label separator come from dataset.json; a folder without them (CSVs made by hand) is read
    as `labels` says (--task multi-label, --label-sep), else as single-label. An option that
    contradicts dataset.json is refused.
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
    task, sep = _task_and_sep(meta, meta_path, labels or LabelFormat())
    parts = {}
    for name in SPLIT_NAMES:
        path = directory / f"{name}.csv"
        if path.is_file():
            if task == MULTI:
                parts[name] = read_label_sets(
                    path, "text", "label", fmt="csv", labels=LabelFormat(MULTI, sep)
                )
            else:
                parts[name] = read_labelled(path, "text", "label", fmt="csv")
    all_labels = [label for part in parts.values() for label in part.labels]
    if task == MULTI:
        all_labels = [label for part in parts.values() for s in part.label_sets for label in s]
    if "label_names" in meta:
        label_names = meta["label_names"]
        if not (isinstance(label_names, list) and all(isinstance(n, str) for n in label_names)):
            raise GPTClassifyError(f"{meta_path}: 'label_names' must be a list of strings")
        for name, part in parts.items():
            used = {x for s in part.label_sets for x in s} if task == MULTI else set(part.labels)
            unknown = sorted(used - set(label_names))
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
        parts["train"],
        parts["validation"],
        parts.get("test"),
        list(label_names),
        warnings,
        meta,
        task,
        sep,
    )
    splits.warnings += rare_class_warnings(splits, str(directory), given=True)
    return splits


def _task_and_sep(meta: dict[str, Any], meta_path: Path, labels: LabelFormat) -> tuple[str, str]:
    """The folder's task and label separator: dataset.json's, else the options'."""
    if labels.label_columns:
        raise GPTClassifyError(
            f"{option('label_columns')} reads label columns of a raw file; a prepared folder "
            f"({meta_path.parent}) has one label column"
        )
    task = meta.get("task", MULTI if labels.says_multi else SINGLE)
    sep = meta.get("label_sep", labels.sep)
    if task not in (SINGLE, MULTI) or not isinstance(sep, str) or not sep:
        raise GPTClassifyError(f"{meta_path}: 'task' / 'label_sep' are not valid")
    if labels.task not in ("auto", task) or (labels.label_sep and labels.label_sep != sep):
        said = f"task {task!r}" + (f", label_sep {sep!r}" if task == MULTI else "")
        raise GPTClassifyError(
            f"{meta_path}: the folder says {said}; drop {option('task')} / "
            f"{option('label_sep')} or edit {META_FILE}"
        )
    return task, sep


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
        foreign = sorted(p.name for p in out.iterdir() if p.name not in PREPARED_FILES)
        if foreign:
            raise GPTClassifyError(
                f"{out}: folder holds other files ({', '.join(foreign[:_MAX_LISTED])}); "
                "choose another --out or empty it"
            )
    try:
        with replace_folder(out) as tmp:
            write_split_files(splits, tmp, meta)
    except OSError as exc:
        raise GPTClassifyError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    return out


def write_split_files(splits: Splits, folder: Path, meta: dict[str, Any]) -> None:
    """The files of a prepared folder, written into an existing (new) `folder`."""
    info = {
        "written_by": f"gptclassify {__version__}",
        **splits.meta,
        **meta,
        # Derived from the data itself, so never taken from a (possibly stale) meta.
        "label_names": list(splits.label_names),
        **({"task": MULTI, "label_sep": splits.label_sep} if splits.multi_label else {}),
        "rows": {name: len(part) for name, part in splits.parts()},
        "class_counts": splits.counts(),
        "files": {name: f"{name}.csv" for name, _ in splits.parts()},
    }
    for name, part in splits.parts():
        _write_csv(part, folder / f"{name}.csv")
    (folder / META_FILE).write_text(
        json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def _write_csv(part: LabelledTexts, path: Path) -> None:
    # Every field holding a comma, quote, CR or LF is quoted, so every text reads back
    # exactly (data/delimited.py).
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("text,label\n")
        for text, label in zip(part.texts, part.labels, strict=True):
            handle.write(format_record([text, label], ","))


# ---- reporting -------------------------------------------------------------------------


def summary_table(splits: Splits, title: str | None = None) -> Table:
    """A rich table of rows per part and class, with totals."""
    if len(splits.label_names) > MANY_CLASSES:
        return _summary_by_class(splits, title)
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


MANY_CLASSES = 6
"""Above this many classes the summary has a row per class (a column each would not fit)."""


def _summary_by_class(splits: Splits, title: str | None) -> Table:
    counts = splits.counts()
    table = Table(title=title)
    table.add_column("class", overflow="fold")
    for name in counts:
        table.add_column(name, justify="right")
    table.add_column("all", justify="right", style="bold")
    for label in splits.label_names:
        per_part = [counts[name][label] for name in counts]
        table.add_row(label, *map(str, per_part), str(sum(per_part)))
    totals = [sum(per_class.values()) for per_class in counts.values()]
    table.add_row("total", *map(str, totals), str(sum(totals)), style="bold")
    return table
