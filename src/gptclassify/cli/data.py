"""`gptclassify data ...`: prepare labelled text into train/validation/test files."""

from __future__ import annotations

import click

from gptclassify.cli.app import cli
from gptclassify.errors import GPTClassifyError


@cli.group("data")
def data_group() -> None:
    """Prepare labelled text: writes train.csv, validation.csv, test.csv and dataset.json."""


SPLIT_OPTION = click.option(
    "--split",
    "fractions",
    nargs=2,
    type=float,
    default=(0.7, 0.1),
    show_default=True,
    metavar="TRAIN VALIDATION",
    help="Train and validation fractions (positive, sum below 1); the rest is the test split.",
)


def _report(splits, out_dir: str) -> None:
    """Warnings to stderr, then the rows per split and class, then where the files went."""
    from rich.console import Console

    from gptclassify.data import summary_table

    for warning in splits.warnings:
        click.echo(f"Warning: {warning}", err=True)
    Console().print(summary_table(splits))
    click.echo(f"Wrote {out_dir}")


@data_group.command("sms-spam")
@click.option(
    "--out",
    "out_dir",
    default="data/sms-spam",
    show_default=True,
    help="Output folder, relative to the current directory.",
)
@click.option(
    "--source",
    default=None,
    metavar="URL_OR_PATH",
    help="Another copy: a URL, or a local zip or extracted SMSSpamCollection file. Default: "
    "the copy shipped with gptclassify. Every copy is checked by sha256.",
)
@click.option(
    "--download",
    is_flag=True,
    help="Download from UCI (then the book's mirror) instead of using the shipped copy; "
    "downloaded once into the user cache folder ($GPTCLASSIFY_CACHE overrides it).",
)
@click.option(
    "--seed", default=123, show_default=True, type=int, help="Seed for balancing and shuffling."
)
@click.option(
    "--book-split",
    is_flag=True,
    help="Reproduce the book exactly: its pandas-default parse (5,572 rows, quotes merge two "
    "pairs of lines) and its 1,045/149/300 rows in the same order.",
)
@click.option(
    "--balance/--no-balance",
    default=True,
    show_default=True,
    help="Undersample ham to the spam count (seeded), as the book does.",
)
@SPLIT_OPTION
def data_sms_spam(
    out_dir: str,
    source: str | None,
    download: bool,
    seed: int,
    book_split: bool,
    balance: bool,
    fractions: tuple[float, float],
) -> None:
    """Split the SMS Spam Collection (5,574 messages; ham -> 0, spam -> 1)."""
    from gptclassify.data.sms_spam import prepare_sms_spam

    if source is not None and download:
        raise GPTClassifyError("--source and --download: choose one")
    splits = prepare_sms_spam(
        out_dir, source, seed, book_split, balance, fractions, download=download
    )
    _report(splits, out_dir)


@data_group.command("split")
@click.argument("file")
@click.option(
    "--text-column",
    default=None,
    help="Text column (default: found by name: text, message, sms, content, review, sentence).",
)
@click.option(
    "--label-column",
    default=None,
    help="Label column (default: found by name: label, labels, class, category, target, sentiment).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "tsv", "jsonl", "parquet"]),
    default=None,
    help="File format (default: from the extension).",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    help="Output folder [default: data/<FILE name without extension>].",
)
@click.option(
    "--balance", is_flag=True, help="Undersample every class to the rarest class's count (seeded)."
)
@click.option(
    "--stratify",
    is_flag=True,
    help="Cut each class separately: the same class shares in every split, and every class with 3+ rows in each.",
)
@SPLIT_OPTION
@click.option(
    "--seed", default=123, show_default=True, type=int, help="Seed for balancing and shuffling."
)
@click.option(
    "--strict", is_flag=True, help="Stop at a row with empty text or label instead of skipping it."
)
@click.option(
    "--task",
    type=click.Choice(["auto", "single-label", "multi-label"]),
    default="auto",
    show_default=True,
    help="multi-label: label sets (split by iterative stratification); auto: multi-label when "
    "--label-sep / --label-columns is given or the label column holds lists.",
)
@click.option(
    "--label-sep", default=None, help="Multi-label: labels in one cell joined by this (e.g. ';')."
)
@click.option(
    "--label-columns", default=None, help="Multi-label: comma-separated 0/1 columns, one per label."
)
def data_split(
    file: str,
    text_column: str | None,
    label_column: str | None,
    fmt: str | None,
    out_dir: str | None,
    balance: bool,
    stratify: bool,
    fractions: tuple[float, float],
    seed: int,
    strict: bool,
    task: str,
    label_sep: str | None,
    label_columns: str | None,
) -> None:
    """Split any labelled CSV, TSV, JSON Lines or Parquet FILE into train/validation/test.

    Multi-label files (label sets) are always cut by iterative stratification (every label
    keeps about its share of texts in each split)."""
    from pathlib import Path

    from gptclassify.args import DataConfig
    from gptclassify.data import check_fractions, split_labelled, write_splits
    from gptclassify.data.multilabel import LabelFormat, read_examples

    check_fractions(fractions)  # before reading a possibly large file
    labels = LabelFormat.of(DataConfig(task=task, label_sep=label_sep, label_columns=label_columns))
    data = read_examples(file, text_column, label_column, fmt, strict, labels)
    splits = split_labelled(
        data, fractions, seed=seed, balance=balance, stratify=stratify, label_sep=labels.sep
    )
    out = out_dir or str(Path("data") / Path(file).stem)
    meta = {"source": str(file), "text_column": data.text_column, "label_column": data.label_column}
    write_splits(splits, out, meta)
    _report(splits, out)
