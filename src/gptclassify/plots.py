"""Figures for a run folder: loss and accuracy curves (as in the book), confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402

from gptclassify.files import atomic_path  # noqa: E402


def _curves(
    rows: Sequence[dict[str, Any]],
    keys: tuple[str, str],
    ylabel: str,
    examples_per_epoch: float,
    path: Path,
) -> None:
    fig, ax = plt.subplots(figsize=(5, 3))
    x = [r["examples_seen"] / examples_per_epoch for r in rows]
    for key, style, label in ((keys[0], "-", "Training"), (keys[1], "-.", "Validation")):
        ax.plot(
            x,
            [r[key] for r in rows],
            style,
            marker="o" if len(rows) < 20 else None,
            label=f"{label} {ylabel.lower()}",
        )
    ax.set_xlabel("Epochs")
    ax.set_ylabel(ylabel)
    ax.legend()
    # A second x-axis with the examples seen, aligned with the epochs below it.
    top = ax.secondary_xaxis(
        "top", functions=(lambda e: e * examples_per_epoch, lambda n: n / examples_per_epoch)
    )
    top.set_xlabel("Examples seen")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_history(
    steps: Sequence[dict[str, Any]], epochs: Sequence[dict[str, Any]], run_dir: str | Path
) -> list[Path]:
    """loss.png (train/val loss estimates) and accuracy.png (per-epoch accuracies)."""
    run_dir = Path(run_dir)
    if not epochs:
        return []
    per_epoch = epochs[-1]["examples_seen"] / len(epochs)
    written = []
    if steps:
        _curves(steps, ("train_loss", "val_loss"), "Loss", per_epoch, run_dir / "loss.png")
        written.append(run_dir / "loss.png")
    _curves(
        epochs, ("train_accuracy", "val_accuracy"), "Accuracy", per_epoch, run_dir / "accuracy.png"
    )
    written.append(run_dir / "accuracy.png")
    return written


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """confusion.png, written atomically: a link at `path` is replaced, never written through."""
    fig = confusion_figure(matrix, labels, title)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return Path(path)


def confusion_figure(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str = ""
) -> Any:
    """The confusion matrix drawn on a new matplotlib figure (the caller closes it)."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * n, 1.0 + 0.8 * n))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    peak = max((max(row) for row in matrix), default=0)
    for i in range(n):
        for j in range(n):
            v = matrix[i][j]
            ax.text(
                j, i, str(v), ha="center", va="center", color="white" if v > peak / 2 else "black"
            )
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_per_label(per_label: dict[str, dict[str, Any]], path: str | Path) -> Path:
    """Multi-label: precision, recall and F1 of every label as grouped bars (per_label.png)."""
    names = list(per_label)
    fig, ax = plt.subplots(figsize=(2.0 + 0.9 * len(names), 3.2))
    width = 0.27
    for k, key in enumerate(("precision", "recall", "f1")):
        xs = [i + (k - 1) * width for i in range(len(names))]
        ax.bar(xs, [per_label[n][key] for n in names], width, label=key)
    ax.set_xticks(range(len(names)), names, rotation=45 if len(names) > 4 else 0, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (at the label's threshold)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
