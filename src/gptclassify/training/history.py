"""history.csv: the loss estimates and epoch rows of a run, in step order."""

from __future__ import annotations

import csv
from pathlib import Path

from gptclassify.training.state import History

HISTORY_COLUMNS = (
    "step",
    "epoch",
    "examples_seen",
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "full_val_accuracy",
    "full_val_loss",
)
MULTI_LABEL_COLUMNS = ("full_val_macro_f1",)
"""Added after the others where the epoch rows have them (multi-label runs)."""


def write_history(path: Path, history: History) -> None:
    """history.csv: loss-estimate rows and epoch rows, in step order."""
    columns = HISTORY_COLUMNS + tuple(
        k for k in MULTI_LABEL_COLUMNS if any(k in r for r in history.epochs)
    )
    rows = [dict(r) for r in history.steps] + [
        {k: r[k] for k in columns if k in r} for r in history.epochs
    ]
    rows.sort(key=lambda r: (r["step"], "train_accuracy" in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in columns})
