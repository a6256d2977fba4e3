"""Command line: a table of subcommands, each a thin call into the Python API.

Heavy imports (torch, pandas) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import sys
import types

import click

from gptclassify import __version__
from gptclassify.config import PRESETS, DataConfig, TrainConfig
from gptclassify.errors import GPTClassifyError

MODEL_HELP = f"A preset ({', '.join(PRESETS)}; downloaded from the Hugging Face Hub) or a local folder in Hugging Face GPT-2 format."


class _Group(click.Group):
    """Turns GPTClassifyError into click's one-line `Error: ...` and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except GPTClassifyError as exc:
            raise click.ClickException(str(exc)) from None


# ---- options generated from the config dataclasses ---------------------------------------


def dataclass_options(cls: type, exclude: tuple[str, ...] = ()):
    """click options for every field of a config dataclass: --field-name, typed, with help.

    The help text lives once, in the field's metadata, for both the Python API and the CLI.
    """
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)

    def decorate(func):
        for f in reversed(dataclasses.fields(cls)):
            if f.name in exclude or "help" not in f.metadata:
                continue
            flag = "--" + f.name.replace("_", "-")
            hint = hints[f.name]
            args = [t for t in typing.get_args(hint) if t is not type(None)]
            base = (
                args[0]
                if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1
                else hint
            )
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            kwargs: dict = {
                "help": f.metadata["help"],
                "default": default,
                "show_default": default is not None,
            }
            if base is bool:
                # Off by default: a plain switch. On by default: --x / --no-x.
                if default:
                    func = click.option(f"{flag}/--no-{flag[2:]}", f.name, **kwargs)(func)
                else:
                    func = click.option(flag, f.name, is_flag=True, help=kwargs["help"])(func)
                continue
            if typing.get_origin(base) is typing.Literal:
                kwargs["type"] = click.Choice(typing.get_args(base))
            elif base in (int, float):
                kwargs["type"] = base
            func = click.option(flag, f.name, **kwargs)(func)
        return func

    return decorate


def split_kwargs(cls: type, kwargs: dict) -> dict:
    """The entries of `kwargs` that are fields of `cls` (removed from kwargs)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return {k: kwargs.pop(k) for k in list(kwargs) if k in names}


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


# ---- train / evaluate / predict ----------------------------------------------------------


@cli.command()
@dataclass_options(DataConfig)
@dataclass_options(TrainConfig, exclude=("data",))
@click.option("--quiet", is_flag=True, help="No progress bar or log lines; just the summary.")
def train(quiet: bool, **options) -> None:
    """Fine-tune GPT-2 into a classifier. With no options: the book's spam classifier.

    Writes a run folder (--out) with model.safetensors, config.json, metrics.json,
    history.csv, loss.png, accuracy.png and train.log.
    """
    from gptclassify.training import train as run_training

    data = DataConfig(**split_kwargs(DataConfig, options))
    classifier = run_training(TrainConfig(data=data, **options), quiet=quiet)
    run_dir = classifier.path
    metrics = classifier.metrics or {}
    parts = [
        f"{k} {metrics[k]['accuracy'] * 100:.2f}%"
        for k in ("train", "validation", "test")
        if k in metrics
    ]
    click.echo(f"Accuracy: {', '.join(parts)}")
    click.echo(f"Model folder: {run_dir}")


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
                type=click.Choice(["auto", "fp32", "bf16"]),
                help="Matmul precision; auto: bf16 where the hardware has fast bf16.",
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
    run_dir, data, text_column, label_column, as_json, batch_size, device, precision
) -> None:
    """Accuracy, per-class precision/recall/F1, confusion matrix (and confusion.png), ROC AUC."""
    import json
    from pathlib import Path

    from gptclassify.plots import plot_confusion
    from gptclassify.predict import Classifier

    classifier = Classifier.load(run_dir, device=device, precision=precision)
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
    run_dir, texts, input_file, output, text_column, k, threshold, batch_size, device, precision
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
    classifier = Classifier.load(run_dir, device=device, precision=precision)
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


# ---- baseline / experiments --------------------------------------------------------------
# Both modules import only the standard library and config.py at the top, like this one.

from gptclassify.baseline import BaselineConfig  # noqa: E402
from gptclassify.experiments import ExperimentsConfig  # noqa: E402


@cli.command()
@dataclass_options(DataConfig)
@dataclass_options(BaselineConfig, exclude=("data",))
def baseline(**options) -> None:
    """TF-IDF + logistic regression on the same splits `train` would use.

    Writes a run folder (--out) with metrics.json in the layout of a GPT run, config.json,
    vocabulary.json and baseline.safetensors (no pickle).
    """
    from gptclassify.baseline import train_baseline

    data = DataConfig(**split_kwargs(DataConfig, options))
    fitted = train_baseline(BaselineConfig(data=data, **options))
    metrics = fitted.metrics or {}
    parts = [
        f"{k} {metrics[k]['accuracy'] * 100:.2f}%"
        for k in ("train", "validation", "test")
        if k in metrics
    ]
    click.echo(f"Accuracy: {', '.join(parts)}")
    click.echo(f"Model folder: {fitted.path}")


@cli.command()
@dataclass_options(DataConfig)
@dataclass_options(ExperimentsConfig, exclude=("data",))
@click.option("--list", "list_only", is_flag=True, help="Print the grid and exit (runs nothing).")
def experiments(list_only: bool, **options) -> None:
    """Run a grid of training variations on one split and compare them with the baseline.

    Default grid: SPEC section 5 rows 1-19 (the book's bonus experiments). Writes OUT/<name>/
    per entry and OUT/results.md, results.csv and results.png.
    """
    from rich.console import Console

    from gptclassify.experiments import (
        builtin_grid,
        describe_grid,
        load_grid,
        rich_table,
        run_experiments,
        select,
    )

    data = DataConfig(**split_kwargs(DataConfig, options))
    cfg = ExperimentsConfig(data=data, **options)
    grid = select(load_grid(cfg.grid) if cfg.grid else builtin_grid(), cfg.only_names())
    if list_only:
        Console().print(describe_grid(grid, cfg.quick))
        return
    results = run_experiments(cfg, grid, echo=lambda line: click.echo(line, err=True))
    Console().print(rich_table(results))
    for path in results.files.values():
        click.echo(f"Wrote {path}")
    for row in results.rows:
        if not row.ok:
            click.echo(f"Failed: {row.name}: {row.error}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="gptclassify")
