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
    vocabulary.json and baseline.safetensors (no pickle). Multi-label data: one regression
    per label, each label's threshold tuned on validation.
    """
    from gptclassify.baseline import train_baseline

    fitted = train_baseline(build(BaselineConfig, options))
    metrics = fitted.metrics or {}
    if fitted.multi_label:
        # Label sets: each label decided at its threshold tuned on validation.
        click.echo(
            "Subset accuracy / micro F1 / macro F1 (thresholds tuned on validation): "
            + ", ".join(
                f"{k} {metrics[k]['subset_accuracy'] * 100:.2f}% / "
                f"{metrics[k]['micro_f1']:.4f} / {metrics[k]['macro_f1']:.4f}"
                for k in ("train", "validation", "test")
                if k in metrics
            )
        )
    else:
        click.echo(accuracy_line(metrics))
    click.echo(f"Model folder: {fitted.path}")
