"""`gptclassify evaluate` and `gptclassify predict`: use a trained model folder."""

from __future__ import annotations

import sys

import click

from gptclassify.cli.app import cli
from gptclassify.errors import GPTClassifyError


def _classifier_options(func):
    for option in reversed(
        [
            click.option(
                "--batch-size",
                default=32,
                show_default=True,
                type=click.IntRange(min=1),
                help="Texts per batch.",
            ),
            click.option(
                "--device",
                default="auto",
                show_default=True,
                help="auto, cpu, cuda, cuda:N or mps.",
            ),
            click.option(
                "--precision",
                default="auto",
                show_default=True,
                type=click.Choice(["auto", "fp32", "bf16", "int8"]),
                help="Matmul precision. PyTorch: auto is bf16 where the hardware has fast bf16 "
                "(AMX, AVX512-BF16, recent GPUs), else fp32. ONNX: the graph's own (fp32 or int8).",
            ),
            click.option(
                "--runtime",
                default="auto",
                show_default=True,
                type=click.Choice(["auto", "torch", "onnx"]),
                help="auto: what RUN holds (PyTorch weights, or an ONNX graph from "
                "`gptclassify export`).",
            ),
        ]
    ):
        func = option(func)
    return func


@cli.command()
@click.argument("run_dir", metavar="RUN")
@click.option(
    "--data",
    default=None,
    metavar="FILE_OR_DIR",
    help="A labelled file, or a folder with test.csv. Default: the test split saved in RUN.",
)
@click.option("--text-column", default=None, help="Text column (found by name if omitted).")
@click.option("--label-column", default=None, help="Label column (found by name if omitted).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_classifier_options
def evaluate(
    run_dir, data, text_column, label_column, as_json, batch_size, device, precision, runtime
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix (and confusion.png), ROC AUC."""
    import json
    from pathlib import Path

    from gptclassify.plots import plot_confusion
    from gptclassify.predict import Classifier

    classifier = Classifier.load(run_dir, device=device, precision=precision, runtime=runtime)
    report = classifier.evaluate(data or run_dir, text_column, label_column, batch_size)
    plot_confusion(report["confusion_matrix"], classifier.labels, Path(run_dir) / "confusion.png")
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _print_report(report, classifier.labels)


def _print_report(report: dict, labels: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{report['source']}: {report['examples']} texts")
    summary = f"Accuracy {report['accuracy'] * 100:.2f}% | macro F1 {report['macro_f1']:.4f}"
    if "roc_auc" in report:
        summary += f" | ROC AUC {report['roc_auc']:.4f}"
    console.print(summary)
    per_class = Table("class", "precision", "recall", "F1", "support")
    for name, m in report["per_class"].items():
        per_class.add_row(
            name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"])
        )
    console.print(per_class)
    confusion = Table("true \\ predicted", *labels, title="Confusion matrix")
    for name, row in zip(labels, report["confusion_matrix"], strict=True):
        confusion.add_row(name, *map(str, row))
    console.print(confusion)


@cli.command()
@click.argument("run_dir", metavar="RUN")
@click.argument("texts", nargs=-1)
@click.option(
    "--input", "input_file", default=None, help="CSV, TSV, JSONL or Parquet file of texts."
)
@click.option(
    "--output",
    default=None,
    help="Write predictions here (.csv, .tsv, .jsonl or .parquet), keeping the input's columns.",
)
@click.option(
    "--text-column", default=None, help="Text column of --input (found by name if omitted)."
)
@click.option(
    "--top-k",
    "k",
    default=None,
    type=click.IntRange(min=1),
    help="Also give the K likeliest classes.",
)
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(0.0, 1.0),
    help="Two classes only: predict the second class (e.g. spam) when its probability is at least P.",
)
@_classifier_options
def predict(
    run_dir,
    texts,
    input_file,
    output,
    text_column,
    k,
    threshold,
    batch_size,
    device,
    precision,
    runtime,
) -> None:
    """Classify texts given as arguments, on stdin (one per line), or in a file."""
    from gptclassify.predict import Classifier, predict_table, write_predictions

    if texts and input_file:
        raise GPTClassifyError("give texts as arguments or --input FILE, not both")
    if input_file:
        from gptclassify.data import read_table

        frame, text_col = read_table(input_file, text_column)
    else:
        import pandas as pd

        if not texts:
            if sys.stdin.isatty():
                raise GPTClassifyError(
                    "no texts: pass them as arguments, on stdin, or with --input FILE"
                )
            texts = tuple(line.rstrip("\n") for line in sys.stdin if line.strip())
        frame, text_col = pd.DataFrame({"text": list(texts)}), "text"
    classifier = Classifier.load(run_dir, device=device, precision=precision, runtime=runtime)
    result = predict_table(classifier, frame, text_col, batch_size, threshold, k)
    if output:
        write_predictions(result, output)
    _print_predictions(result, text_col, classifier.labels, k, shown=20, output=output)


def _print_predictions(
    frame, text_col: str, labels: list[str], k: int | None, shown: int, output: str | None
) -> None:
    from rich.console import Console
    from rich.table import Table

    from gptclassify.predict import prob_column

    table = Table("text", "label", *(f"p({name})" for name in labels), *(["top-k"] if k else []))
    for _, row in frame.head(shown).iterrows():
        text = str(row[text_col])
        text = text if len(text) <= 60 else text[:57] + "..."
        if isinstance(row["error"], str):  # pandas turns "no error" into NaN
            table.add_row(
                text,
                f"[red]error: {row['error']}[/red]",
                *([""] * len(labels)),
                *([""] if k else []),
            )
            continue
        probs = [f"{row[prob_column(name)]:.4f}" for name in labels]
        table.add_row(text, row["label"], *probs, *([", ".join(row["top_k"])] if k else []))
    console = Console()
    console.print(table)
    rest = len(frame) - shown
    if rest > 0:
        console.print(
            f"... and {rest} more"
            + (f" (all in {output})" if output else "; use --output FILE for all")
        )
    elif output:
        console.print(f"Wrote {output}")
    errors = int(frame["error"].notna().sum())
    if errors:
        click.echo(
            f"Warning: {errors} row(s) could not be classified (see the error column)", err=True
        )
