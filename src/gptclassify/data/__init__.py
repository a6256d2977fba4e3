"""Labelled text: file readers, splitting, prepared folders, the SMS Spam Collection, and the
step from texts to model inputs (encode, batches).

Importing this package loads only the file-level modules (no torch); `encode` and `batches`
are imported by what runs a model.
"""

from gptclassify.data.prepared import load_prepared, summary_table, write_splits
from gptclassify.data.split import Splits, check_fractions, load_split_files, split_labelled
from gptclassify.data.tables import LabelledTexts, detect_format, read_labelled, read_table

__all__ = [
    "LabelledTexts",
    "Splits",
    "check_fractions",
    "detect_format",
    "load_prepared",
    "load_split_files",
    "read_labelled",
    "read_table",
    "split_labelled",
    "summary_table",
    "write_splits",
]
