"""`gptclassify evaluate` and `gptclassify predict`: use a trained model folder."""

from __future__ import annotations

import sys

import click

from gptclassify.cli.app import cli
from gptclassify.cli.options import long_text_options, model_options
from gptclassify.errors import GPTClassifyError


def _classifier_options(func):
    func = long_text_options(func)
    func = model_options(func)
    return click.option(
        "--batch-size",
        default=32,
        show_default=True,
        type=click.IntRange(min=1),
        help="Texts per batch.",
    )(func)


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
@click.option(
    "--label-columns",
    default=None,
    help="Multi-label models: comma-separated 0/1 label columns instead of one label column.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@_classifier_options
def evaluate(
    run_dir,
    data,
    text_column,
    label_column,
    label_columns,
    as_json,
    batch_size,
    device,
    precision,
    runtime,
    base_model,
    long_texts,
    stride,
    aggregate,
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix (and confusion.png), ROC AUC
    and PR AUC; multi-label: micro/macro/weighted F1, subset accuracy, Hamming loss, LRAP and
    per-label scores (and per_label.png)."""
    import json
    from pathlib import Path

    from gptclassify.plots import plot_confusion, plot_per_label
    from gptclassify.predict import Classifier

    classifier = Classifier.load(
        run_dir,
        device=device,
        precision=precision,
        runtime=runtime,
        base_model=base_model,
        long_texts=long_texts,
        stride=stride,
        aggregate=aggregate,
    )
    report = classifier.evaluate(
        data or run_dir, text_column, label_column, batch_size, label_columns=label_columns
    )
    if classifier.multi_label:
        plot_per_label(report["per_label"], Path(run_dir) / "per_label.png")
    else:
        plot_confusion(
            report["confusion_matrix"], classifier.labels, Path(run_dir) / "confusion.png"
        )
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    if classifier.multi_label:
        _print_label_sets_report(report)
    else:
        _print_report(report, classifier.labels)
    if report.get("chunked"):
        click.echo(
            f"Note: {report['chunked']} text(s) were longer than the model reads and were "
            f"classified in windows ({report['windows']} windows, --aggregate "
            f"{report['aggregate']})",
            err=True,
        )


def _print_label_sets_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{report['source']}: {report['examples']} texts (multi-label)")
    lrap = report["label_ranking_average_precision"]
    console.print(
        f"Micro F1 {report['micro_f1']:.4f} | macro F1 {report['macro_f1']:.4f} | weighted F1 "
        f"{report['weighted_f1']:.4f} | subset accuracy {report['subset_accuracy'] * 100:.2f}% "
        f"| Hamming loss {report['hamming_loss']:.4f}"
        + (f" | LRAP {lrap:.4f}" if lrap is not None else "")
    )
    table = Table("label", "threshold", "precision", "recall", "F1", "support")
    for name, m in report["per_label"].items():
        table.add_row(
            name,
            f"{m['threshold']:.3f}",
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{m['f1']:.4f}",
            str(m["support"]),
        )
    console.print(table)


def _print_report(report: dict, labels: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{report['source']}: {report['examples']} texts")
    summary = f"Accuracy {report['accuracy'] * 100:.2f}% | macro F1 {report['macro_f1']:.4f}"
    if "roc_auc" in report:
        summary += f" | ROC AUC {report['roc_auc']:.4f}"
    if "pr_auc" in report:
        summary += f" | PR AUC {report['pr_auc']:.4f}"
    console.print(summary)
    per_class = Table("class", "precision", "recall", "F1", "support")
    for name, m in report["per_class"].items():
        per_class.add_row(
            name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"])
        )
    console.print(per_class)
    # Many classes: numbered columns with a legend, so the matrix fits a terminal.
    numbered = len(labels) > MANY_CLASSES or max(map(len, labels)) > 12
    heads = [str(i) for i in range(len(labels))] if numbered else labels
    confusion = Table("true \\ predicted", *heads, title="Confusion matrix")
    for i, (name, row) in enumerate(zip(labels, report["confusion_matrix"], strict=True)):
        confusion.add_row(f"{i} {name}" if numbered else name, *map(str, row))
    console.print(confusion)
    if numbered:
        console.print("Columns: the class numbers of the rows")
    if report.get("truncated"):
        console.print(
            f"Note: {report['truncated']} text(s) were longer than the model reads and were cut"
        )


MANY_CLASSES = 6
"""Above this many classes, terminal tables name classes by number, or show the top class's
probability instead of one column per class."""


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
    help="Two classes: predict the second class (e.g. spam) when its probability is at least "
    "P. Multi-label: every label at P (instead of the thresholds tuned on validation).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_classifier_options
def predict(
    run_dir,
    texts,
    input_file,
    output,
    text_column,
    k,
    threshold,
    quiet,
    batch_size,
    device,
    precision,
    runtime,
    base_model,
    long_texts,
    stride,
    aggregate,
) -> None:
    """Classify texts given as arguments, on stdin (one per line), or in a file.

    Files of any size are read and written in chunks of 10,000 rows. A blank line on stdin,
    or an empty text in a file, gets a row with an error and no label, so outputs line up
    with inputs.
    """
    from tqdm import tqdm

    from gptclassify.predict import Classifier
    from gptclassify.predict.files import open_texts, predict_chunks, text_list
    from gptclassify.predict.tables import PredictionWriter

    if texts and input_file:
        raise GPTClassifyError("give texts as arguments or --input FILE, not both")
    writer = PredictionWriter(output) if output else None  # checked before any work
    if input_file:
        source = open_texts(input_file, text_column)
    else:
        if not texts:
            if sys.stdin.isatty():
                raise GPTClassifyError(
                    "no texts: pass them as arguments, on stdin, or with --input FILE"
                )
            # One row per line, blank lines included (they get an error), line ends removed.
            texts = tuple(line.removesuffix("\n").removesuffix("\r") for line in sys.stdin)
        source = text_list(texts)
    classifier = Classifier.load(
        run_dir,
        device=device,
        precision=precision,
        runtime=runtime,
        base_model=base_model,
        long_texts=long_texts,
        stride=stride,
        aggregate=aggregate,
    )
    with tqdm(unit=" texts", disable=quiet or None, leave=False, file=sys.stderr) as bar:
        done = predict_chunks(classifier, source, writer, batch_size, threshold, k, bar.update)
    _print_predictions(done.preview, done.rows, done.text_column, classifier.labels, k, output)
    if done.errors:
        click.echo(
            f"Warning: {done.errors} row(s) could not be classified (see the error column)",
            err=True,
        )
    if done.truncated:
        click.echo(
            f"Note: {done.truncated} text(s) were longer than the model reads and were cut to "
            f"{classifier.policy.max_length} tokens (see the truncated column; "
            "--long-texts chunk reads them whole)",
            err=True,
        )
    if done.chunked:
        click.echo(
            f"Note: {done.chunked} text(s) were longer than the model reads and were "
            f"classified in windows of {classifier.policy.max_length} tokens (--aggregate "
            f"{aggregate}; see the windows column)",
            err=True,
        )


def _print_predictions(
    frame, total: int, text_col: str, labels: list[str], k: int | None, output: str | None
) -> None:
    """The first rows as a table, then how many more there are and where they went."""
    from rich.console import Console
    from rich.table import Table

    from gptclassify.predict import prob_column

    # Many classes: the predicted label's probability only (every column is in --output).
    few = len(labels) <= MANY_CLASSES
    heads = [f"p({name})" for name in labels] if few else ["p(label)"]
    table = Table("text", "label", *heads, *(["top-k"] if k else []))
    for _, row in frame.iterrows():
        text = str(row[text_col])
        text = text if len(text) <= 60 else text[:57] + "..."
        if isinstance(row["error"], str):  # pandas turns "no error" into NaN
            table.add_row(
                text,
                f"[red]error: {row['error']}[/red]",
                *([""] * len(heads)),
                *([""] if k else []),
            )
            continue
        label = str(row["label"])
        if few:
            probs = [f"{row[prob_column(name)]:.4f}" for name in labels]
        elif label in labels:
            probs = [f"{row[prob_column(label)]:.4f}"]
        else:  # a multi-label set: its likeliest label's probability
            probs = [f"{max(row[prob_column(name)] for name in labels):.4f}"]
        table.add_row(text, label or "(none)", *probs, *([", ".join(row["top_k"])] if k else []))
    console = Console()
    console.print(table)
    if not few:
        console.print(f"{len(labels)} classes: every class's probability is in --output FILE")
    rest = total - len(frame)
    if rest > 0:
        console.print(
            f"... and {rest} more"
            + (f" (all in {output})" if output else "; use --output FILE for all")
        )
    elif output:
        console.print(f"Wrote {output}")
