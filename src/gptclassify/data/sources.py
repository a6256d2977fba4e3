"""The train / validation / test splits a run uses, from its data options.

One function for every command that trains or compares (`train`, `baseline`, `experiments`),
so the same options always give the same rows.
"""

from __future__ import annotations

from typing import Any

from gptclassify.args import SMS_SPAM, DataConfig
from gptclassify.data import inputs
from gptclassify.data.multilabel import LabelFormat
from gptclassify.data.prepared import load_prepared
from gptclassify.data.sms_spam import prepare_sms_spam
from gptclassify.data.split import (
    Splits,
    check_classes,
    load_split_files,
    parse_label_names,
    split_labelled,
    splits_from_parts,
)
from gptclassify.data.tables import LabelledTexts, read_labelled


def load_data(data: DataConfig, seed: int) -> Splits:
    """Raw files (--train ...), the SMS Spam Collection, a prepared folder (--data), or data
    in memory (Python only: a DataFrame, datasets.Dataset or (texts, labels) as `data`, split
    as `gptclassify data split` splits a file, or as `train` / `validation` / `test`, read as
    those files are); classes renamed by `label_names`. Refused when a class is missing from
    training, or one number names two classes (see `check_classes`)."""
    names = parse_label_names(data.label_names)
    splits = _load(data, seed)
    check_classes(splits)
    if names is not None and splits.meta.get("renamed_labels") != names:
        splits.rename_labels(names)
    return splits


def _load(data: DataConfig, seed: int) -> Splits:
    if data.train is not None:
        if any(inputs.is_in_memory(getattr(data, k)) for k in ("train", "validation", "test")):
            return _split_parts_in_memory(data, seed)
        return load_split_files(
            data.train,
            data.validation,
            data.test,
            text_column=data.text_column,
            label_column=data.label_column,
            strict=data.strict,
            seed=seed,
            labels=LabelFormat.of(data),
        )
    if inputs.is_in_memory(data.data):
        table = inputs.labelled(
            data.data, None, data.text_column, data.label_column, strict=data.strict
        )
        splits = split_labelled(table, seed=seed, dedupe=data.dedupe)
        splits.meta["source"] = table.source
        return splits
    if data.data == SMS_SPAM:
        return prepare_sms_spam(
            source=data.sms_source,
            download=data.sms_download,
            seed=seed,
            book_split=data.book_split,
            balance=data.balance,
            dedupe=data.dedupe,
        )
    return load_prepared(data.data, LabelFormat.of(data))


def _split_parts_in_memory(data: DataConfig, seed: int) -> Splits:
    """`train` (and `validation`, `test`) given as tables or files, at least one in memory."""

    def read(part: Any, name: str) -> LabelledTexts:
        if inputs.is_in_memory(part):
            return inputs.labelled(
                part, None, data.text_column, data.label_column, f"{name} data", data.strict
            )
        return read_labelled(part, data.text_column, data.label_column, strict=data.strict)

    return splits_from_parts(
        read(data.train, "train"),
        read(data.validation, "validation") if data.validation is not None else None,
        read(data.test, "test") if data.test is not None else None,
        seed,
    )
