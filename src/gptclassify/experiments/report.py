"""The comparison table of a grid run: CSV, Markdown, the terminal, and a bar chart."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, fields
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
from rich import box  # noqa: E402
from rich.table import Table  # noqa: E402

from gptclassify.experiments.grid import GridEntry, model_label  # noqa: E402
from gptclassify.experiments.results import Experiments, RunResult  # noqa: E402

CSV_COLUMNS = tuple(f.name for f in fields(RunResult))


def write_csv(rows: list[RunResult], path: Path) -> Path:
    """One line per row; accuracies and F1 as fractions (as in metrics.json)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return path


TABLE_HEADERS = (
    "name",
    "description",
    "model",
    "trainable params",
    "train acc (%)",
    "val acc (%)",
    "test acc (%)",
    "test macro F1",
    "time (s)",
    "peak memory (MB)",
    "status",
)


def table_cells(row: RunResult) -> list[str]:
    """The cells of a row as text, in TABLE_HEADERS order."""

    def pct(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else f"{value * 100:.2f}"

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    return [
        row.name,
        row.description,
        row.model,
        num(row.trainable_params, ","),
        pct(row.train_accuracy),
        pct(row.val_accuracy),
        pct(row.test_accuracy),
        num(row.test_macro_f1, ".4f"),
        num(row.time_s, ".1f"),
        num(row.peak_memory_mb, ",.0f"),
        "ok" if row.ok else f"failed: {row.error}",
    ]


def write_markdown(results: Experiments, path: Path) -> Path:
    """A heading saying what was run, then the table."""
    mode = (
        "quick (tiny random-init models, 1 epoch: checks the pipeline, not the variations)"
        if results.quick
        else "full"
    )
    devices = sorted({r.device for r in results.rows if r.device})
    lines = [
        "# Experiments",
        "",
        f"- Data: {results.data_summary}; every row uses the same split ({results.out / 'data'}).",
        f"- Mode: {mode}. Device: {', '.join(devices) or 'n/a'}.",
        "- Time: training time in seconds. Peak memory: CUDA allocator peak on a GPU, process "
        "peak resident memory on CPU (each row runs in its own process).",
        "",
        "| " + " | ".join(TABLE_HEADERS) + " |",
        "|" + "|".join("---" if i < 3 or i == 10 else "---:" for i in range(11)) + "|",
    ]
    for row in results.rows:
        cells = [c.replace("|", "\\|").replace("\n", " ") for c in table_cells(row)]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rich_table(results: Experiments) -> Table:
    """The comparison for the terminal: the numbers only, in 80 columns (descriptions are in
    results.md; a failed row's name is red and its error is in `RunResult.error`)."""
    table = Table(
        title=f"Experiments ({'quick' if results.quick else 'full'}): {results.out}",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    table.add_column("name", no_wrap=True)  # the handle for --only: never broken
    for header in ("params", "train %", "val %", "test %", "F1", "time s", "MB"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in results.rows:
        cells = table_cells(row)[:-1]  # without status
        del cells[1:3]  # description, model
        cells[1] = _compact(row.trainable_params)
        if not row.ok:
            cells[0] = f"[red]{cells[0]}[/red]"
        table.add_row(*cells, style="bold" if row.name == "tfidf-baseline" else None)
    return table


def _compact(n: int | None) -> str:
    """14938 -> 14.9k, 1557611200 -> 1.56B: parameter counts that fit a narrow column."""
    if n is None:
        return ""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size * 0.9995:  # what rounds to 1000 of a unit is 1 of the next
            return f"{n / size:.3g}{suffix}"
    return str(n)


def plot_results(results: Experiments, path: Path) -> Path:
    """Horizontal bars of test accuracy (validation when there is no test split), the
    baseline as a dashed line; failed rows are labelled instead of drawn."""

    split = "test" if any(r.test_accuracy is not None for r in results.rows) else "validation"

    def value(row: RunResult) -> float | None:
        v = row.test_accuracy if split == "test" else row.val_accuracy
        return None if v is None else v * 100

    baseline = results.baseline
    rows = [r for r in results.rows if r is not baseline]
    values = [value(r) for r in rows]
    reference = value(baseline) if baseline is not None and baseline.ok else None
    known = [v for v in values if v is not None] + ([reference] if reference is not None else [])
    left = max(0.0, math.floor((min(known) if known else 50.0) / 5) * 5 - 5)

    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.32 * max(len(rows), 1)))
    y = list(range(len(rows)))[::-1]  # first entry on top
    ax.barh(y, [v if v is not None else 0 for v in values], color="tab:blue", left=0)
    for yi, v, row in zip(y, values, rows, strict=True):
        if v is None:
            ax.text(left + 0.5, yi, "failed" if not row.ok else "n/a", va="center", color="red")
        else:
            ax.text(v + 0.2, yi, f"{v:.2f}", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(
            reference, color="tab:red", linestyle="--", label=f"TF-IDF + LR {reference:.2f}%"
        )
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, [r.name for r in rows])
    ax.set_xlim(left, 101)
    ax.set_xlabel(f"{split.capitalize()} accuracy (%)")
    ax.set_title("Experiments" + (" (quick: tiny random models)" if results.quick else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def describe_grid(entries: list[GridEntry], quick: bool = False) -> Table:
    """The grid as a rich table (what `--list` prints)."""
    hidden = {"model", "weights"} if quick else {"model"}  # quick: the model label says it
    table = Table()
    table.add_column("name", no_wrap=True)  # the handle for --only: never broken
    table.add_column("model")
    table.add_column("options", overflow="fold")
    table.add_column("description")
    for entry in entries:
        options = ", ".join(f"{k}={v}" for k, v in entry.options.items() if k not in hidden)
        table.add_row(entry.name, model_label(entry.options, quick), options, entry.description)
    return table
