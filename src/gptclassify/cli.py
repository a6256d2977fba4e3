"""Command line: a table of subcommands, each a thin call into the Python API.

Heavy imports (torch, pandas) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import sys

import click

from gptclassify import __version__
from gptclassify.config import PRESETS
from gptclassify.errors import GPTClassifyError

MODEL_HELP = f"A preset ({', '.join(PRESETS)}; downloaded from the Hugging Face Hub) or a local folder in Hugging Face GPT-2 format."


class _Group(click.Group):
    """Turns GPTClassifyError into click's one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GPTClassifyError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gptclassify")
def cli() -> None:
    """Fine-tune GPT-2 into a text classifier (spam / not spam by default)."""


@cli.command()
@click.option("--model", "model_name", default="gpt2", show_default=True, help=MODEL_HELP)
@click.option("--prompt", required=True, help="Text to continue.")
@click.option("--max-new-tokens", default=50, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--temperature",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0.0),
    help="0 is greedy and deterministic; higher samples more freely.",
)
@click.option(
    "--top-k",
    default=None,
    type=click.IntRange(min=1),
    help="Sample only among the K likeliest tokens.",
)
@click.option("--seed", default=123, show_default=True, type=int, help="Seed for sampling.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps.")
def generate(
    model_name: str,
    prompt: str,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    seed: int,
    device: str,
) -> None:
    """Continue a prompt with a GPT-2 model (a check that weights loaded correctly)."""
    from gptclassify.generation import generate_text
    from gptclassify.runtime import resolve_device
    from gptclassify.weights import load_pretrained

    if not prompt:
        raise GPTClassifyError("--prompt: the prompt is empty")
    model = load_pretrained(model_name).to(resolve_device(device))
    text = generate_text(model, prompt, max_new_tokens, temperature, top_k, seed)
    click.echo(text)


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
    help="Another URL, or a local copy of the zip or of the extracted SMSSpamCollection file "
    "(works offline). Default: the UCI URL, then the book's mirror; downloaded once into the "
    "user cache folder ($GPTCLASSIFY_CACHE overrides it) and checked by sha256.",
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
    seed: int,
    book_split: bool,
    balance: bool,
    fractions: tuple[float, float],
) -> None:
    """Download and split the SMS Spam Collection (5,574 messages; ham -> 0, spam -> 1)."""
    from gptclassify.datasets import prepare_sms_spam

    splits = prepare_sms_spam(out_dir, source, seed, book_split, balance, fractions)
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
) -> None:
    """Split any labelled CSV, TSV, JSON Lines or Parquet FILE into train/validation/test."""
    from pathlib import Path

    from gptclassify.data import check_fractions, read_labelled, split_labelled, write_splits

    check_fractions(fractions)  # before reading a possibly large file
    data = read_labelled(file, text_column, label_column, fmt, strict)
    splits = split_labelled(data, fractions, seed=seed, balance=balance, stratify=stratify)
    out = out_dir or str(Path("data") / Path(file).stem)
    meta = {"source": str(file), "text_column": data.text_column, "label_column": data.label_column}
    write_splits(splits, out, meta)
    _report(splits, out)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="gptclassify")
