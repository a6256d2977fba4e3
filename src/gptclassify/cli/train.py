"""`gptclassify train`: fine-tune a classifier; every option is a TrainConfig field."""

from __future__ import annotations

import click

from gptclassify.args import TrainConfig
from gptclassify.cli.app import accuracy_line, cli
from gptclassify.cli.options import build, config_options


@cli.command()
@config_options(TrainConfig)
@click.option("--quiet", is_flag=True, help="No progress bar or log lines; just the summary.")
def train(quiet: bool, **options) -> None:
    """Fine-tune GPT-2 into a classifier. With no options: the book's spam classifier.

    Writes a run folder (--out) with model.safetensors, config.json, metrics.json,
    history.csv, loss.png, accuracy.png, train.log and the exact splits in data/.
    """
    from gptclassify.training import train as run_training

    classifier = run_training(build(TrainConfig, options), quiet=quiet)
    click.echo(accuracy_line(classifier.metrics or {}))
    click.echo(f"Model folder: {classifier.path}")
