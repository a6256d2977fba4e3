"""`gptclassify evaluate` and `gptclassify predict`: use a trained model folder."""

from __future__ import annotations

import sys

import click

from gptclassify.args import LoadOptions
from gptclassify.cli.app import cli
from gptclassify.cli.options import build, load_options
from gptclassify.errors import GPTClassifyError


def _classifier_options(func):
    func = load_options(func)
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
    **load,
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix (and confusion.png), ROC AUC
    and PR AUC; multi-label: micro/macro/weighted F1, subset accuracy, Hamming loss, LRAP and
    per-label scores (and per_label.png)."""
    import json
    from pathlib import Path

    from gptclassify.files import inside
    from gptclassify.plots import plot_confusion, plot_per_label
    from gptclassify.predict import Classifier

    classifier = Classifier.load(run_dir, build(LoadOptions, load))
    report = classifier.evaluate(
        data or run_dir, text_column, label_column, batch_size, label_columns=label_columns
    )
    if as_json:
        click.echo(json.dumps(report, indent=2))
    elif classifier.multi_label:
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
    # The figure is extra: a run folder that cannot take it (read-only, or the file a link
    # out of it) still gets its metrics, and one line on stderr says why it has none.
    name = "per_label.png" if classifier.multi_label else "confusion.png"
    try:
        path = inside(run_dir, name)
        if classifier.multi_label:
            plot_per_label(report["per_label"], path)
        else:
            plot_confusion(report["confusion_matrix"], classifier.labels, path)
    except GPTClassifyError as exc:
        click.echo(f"Note: {name} not written: {exc}", err=True)
    except OSError as exc:
        click.echo(
            f"Note: {name} not written: {Path(run_dir) / name}: {exc.strerror or exc}", err=True
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
@click.option(
    "--safe-csv",
    is_flag=True,
    help="CSV/TSV --output: put an apostrophe before cells that begin with =, +, -, @, a tab "
    "or a carriage return (and are not a number), so spreadsheets show them as text instead "
    "of running them as formulas.",
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
    safe_csv,
    quiet,
    batch_size,
    **load,
) -> None:
    """Classify texts given as arguments, on stdin (one per line), or in a file.

    Files of any size are read and written in chunks of 10,000 rows. A blank line on stdin,
    or an empty text (or one of only whitespace) in a file, gets a row with an error and no
    label, so outputs line up with inputs. Input columns named like an output column
    (`label`, `prob_<class>`, `error`, ...) are kept as `input_<name>`.
    """
    from tqdm import tqdm

    from gptclassify.predict import Classifier
    from gptclassify.predict.files import open_texts, predict_chunks, safe_csv_cell, text_list
    from gptclassify.predict.tables import PredictionWriter

    if texts and input_file:
        raise GPTClassifyError("give texts as arguments or --input FILE, not both")
    if safe_csv and not output:
        raise GPTClassifyError("--safe-csv: applies to the file --output writes; give one")
    # Checked before any work.
    writer = PredictionWriter(output, cell=safe_csv_cell if safe_csv else None) if output else None
    if input_file:
        source = open_texts(input_file, text_column)
    else:
        if texts:
            _check_arguments(texts)
        else:
            if sys.stdin.isatty():
                raise GPTClassifyError(
                    "no texts: pass them as arguments, on stdin, or with --input FILE"
                )
            texts = _stdin_lines()
        source = text_list(texts)
    options = build(LoadOptions, load)
    classifier = Classifier.load(run_dir, options)
    with tqdm(unit=" texts", disable=quiet or None, leave=False, file=sys.stderr) as bar:
        done = predict_chunks(classifier, source, writer, batch_size, threshold, k, bar.update)
    _print_predictions(done.preview, done.rows, done.text_column, classifier.labels, k, output)
    if done.renamed:
        kept = ", ".join(f"{old!r} as {new!r}" for old, new in done.renamed.items())
        click.echo(
            f"Note: input column(s) named like an output column were kept under another "
            f"name: {kept}",
            err=True,
        )
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
            f"{options.aggregate}; see the windows column)",
            err=True,
        )


def _stdin_lines() -> tuple[str, ...]:
    """One text per line of stdin (blank lines included: they get an error row), line ends
    removed; read as bytes and decoded as UTF-8 whatever the locale, a bad byte naming its
    line."""
    texts = []
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GPTClassifyError(
                f"stdin: line {number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                f"column {exc.start + 1}); send UTF-8 text"
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        texts.append(line.removesuffix("\n").removesuffix("\r"))
    return tuple(texts)


def _check_arguments(texts: tuple[str, ...]) -> None:
    """Texts given as arguments must be UTF-8: Python hands other bytes over as lone
    surrogates, which no tokenizer or file can take."""
    for i, text in enumerate(texts, start=1):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            byte = ord(text[exc.start]) - 0xDC00  # surrogateescape: U+DC80..U+DCFF
            shown = f"byte 0x{byte:02x}" if 0x80 <= byte <= 0xFF else repr(text[exc.start])
            raise GPTClassifyError(
                f"text argument {i} is not valid UTF-8 ({shown} at character "
                f"{exc.start + 1}); pass UTF-8 text"
            ) from None


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
