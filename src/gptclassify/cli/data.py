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


LABEL_NAMES_OPTION = click.option(
    "--label-names",
    default=None,
    metavar="LABEL=NAME,...",
    help="Name the classes, e.g. 0=ham,1=spam (every class of the data; order kept). The "
    "names are what training, predictions, the server and exports show.",
)
DEDUPE_OPTION = click.option(
    "--dedupe",
    is_flag=True,
    help="Keep one row per distinct text (after whitespace normalisation) before splitting. "
    "Default: texts that land in more than one split are counted in a warning.",
)


def _report(splits, out_dir: str) -> None:
    """Warnings to stderr, then the rows per split and class, duplicates, then where the
    files went."""
    from rich.console import Console

    from gptclassify.data import summary_table

    for warning in splits.warnings:
        click.echo(f"Warning: {warning}", err=True)
    Console().print(summary_table(splits))
    shared = splits.duplicates()
    removed = splits.meta.get("duplicates_removed", 0)
    if removed:
        click.echo(f"Duplicates: removed {removed} repeated text(s) before splitting (--dedupe)")
    click.echo(
        "Duplicates across splits: "
        + (", ".join(f"{n} {name}" for name, n in shared.items()) if shared else "none")
    )
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
    "--sms-source",
    "source",
    default=None,
    metavar="URL_OR_PATH",
    help="Another copy: a URL, or a local zip or extracted SMSSpamCollection file. Default: "
    "the copy shipped with gptclassify. Every copy is checked by sha256.",
)
@click.option("--source", "old_source", default=None, hidden=True)  # the 0.1 spelling
@click.option(
    "--sms-download",
    "download",
    is_flag=True,
    help="Download from UCI (then the book's mirror) instead of using the shipped copy; "
    "downloaded once into the user cache folder ($GPTCLASSIFY_CACHE overrides it).",
)
@click.option("--download", "old_download", is_flag=True, hidden=True)  # the 0.1 spelling
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
@DEDUPE_OPTION
@LABEL_NAMES_OPTION
def data_sms_spam(
    out_dir: str,
    source: str | None,
    old_source: str | None,
    download: bool,
    old_download: bool,
    seed: int,
    book_split: bool,
    balance: bool,
    fractions: tuple[float, float],
    dedupe: bool,
    label_names: str | None,
) -> None:
    """Split the SMS Spam Collection (5,574 messages; ham -> 0, spam -> 1)."""
    from gptclassify.data.sms_spam import prepare_sms_spam
    from gptclassify.data.split import parse_label_names

    if source is not None and old_source is not None:
        raise GPTClassifyError("--sms-source and --source are one option: give it once")
    source = source if source is not None else old_source
    download = download or old_download
    if source is not None and download:
        raise GPTClassifyError("--sms-source and --sms-download: choose one")
    splits = prepare_sms_spam(
        out_dir,
        source,
        seed,
        book_split,
        balance,
        fractions,
        download=download,
        dedupe=dedupe,
        label_names=parse_label_names(label_names),
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
@DEDUPE_OPTION
@LABEL_NAMES_OPTION
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
    dedupe: bool,
    label_names: str | None,
) -> None:
    """Split any labelled CSV, TSV, JSON Lines or Parquet FILE into train/validation/test.

    Multi-label files (label sets) are always cut by iterative stratification (every label
    keeps about its share of texts in each split)."""
    from pathlib import Path

    from gptclassify.args import DataConfig
    from gptclassify.data import check_fractions, split_labelled, write_splits
    from gptclassify.data.multilabel import LabelFormat, read_examples
    from gptclassify.data.split import parse_label_names

    check_fractions(fractions)  # before reading a possibly large file
    names = parse_label_names(label_names)
    labels = LabelFormat.of(DataConfig(task=task, label_sep=label_sep, label_columns=label_columns))
    data = read_examples(file, text_column, label_column, fmt, strict, labels)
    splits = split_labelled(
        data,
        fractions,
        seed=seed,
        balance=balance,
        stratify=stratify,
        label_sep=labels.sep,
        dedupe=dedupe,
    )
    if names is not None:
        splits.rename_labels(names)
    out = out_dir or str(Path("data") / Path(file).stem)
    meta = {
        "source": str(file),
        "text_column": data.text_column,
        "label_column": data.label_column,
        **({"renamed_labels": names} if names else {}),
        "duplicates_removed": splits.meta.get("duplicates_removed", 0),
        "duplicates_across_splits": splits.duplicates(),
    }
    write_splits(splits, out, meta)
    click.echo(f"Columns: text {data.text_column!r}, label {data.label_column!r}")
    _report(splits, out)
