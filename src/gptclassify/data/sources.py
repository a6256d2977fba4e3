"""The train / validation / test splits a run uses, from its data options.

One function for every command that trains or compares (`train`, `baseline`, `experiments`),
so the same options always give the same rows.
"""

from __future__ import annotations

from gptclassify.args import SMS_SPAM, DataConfig
from gptclassify.data.multilabel import LabelFormat
from gptclassify.data.prepared import load_prepared
from gptclassify.data.sms_spam import prepare_sms_spam
from gptclassify.data.split import Splits, load_split_files


def load_data(data: DataConfig, seed: int) -> Splits:
    """Raw files (--train ...), the SMS Spam Collection, or a prepared folder (--data)."""
    if data.train:
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
    if data.data == SMS_SPAM:
        return prepare_sms_spam(
            source=data.sms_source,
            download=data.sms_download,
            seed=seed,
            book_split=data.book_split,
            balance=data.balance,
        )
    return load_prepared(data.data)
