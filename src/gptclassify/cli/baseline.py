"""`gptclassify baseline`: TF-IDF + logistic regression on the same splits as `train`."""

from __future__ import annotations

import click

from gptclassify.args import BaselineConfig
from gptclassify.cli.app import accuracy_line, cli
from gptclassify.cli.options import build, config_options


@cli.command()
@config_options(BaselineConfig)
def baseline(**options) -> None:
    """TF-IDF + logistic regression on the same splits `train` would use.

    Writes a run folder (--out) with metrics.json in the layout of a GPT run, config.json,
    vocabulary.json and baseline.safetensors (no pickle).
    """
    from gptclassify.baseline import train_baseline

    fitted = train_baseline(build(BaselineConfig, options))
    click.echo(accuracy_line(fitted.metrics or {}))
    click.echo(f"Model folder: {fitted.path}")
