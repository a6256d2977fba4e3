"""`gptclassify tune`: a hyperparameter search (Optuna) whose trials are training runs."""

from __future__ import annotations

import click

from gptclassify.args import TrainConfig, TuneConfig
from gptclassify.cli.app import cli
from gptclassify.cli.options import build, config_options


@cli.command()
@config_options(TrainConfig, exclude=("out",))
@config_options(TuneConfig)
@click.option(
    "--search",
    "search_specs",
    multiple=True,
    metavar="NAME=KIND(ARGS)",
    help="An option to search, repeatable: lr=loguniform(1e-5,1e-3), epochs=int(2,6), "
    "weight_decay=uniform(0,0.2), lora_rank=logint(4,64), "
    "trainable=choice(last-block,last-2-blocks,lora).",
)
def tune(search_specs: tuple[str, ...], **values) -> None:
    """Search training options with Optuna (TPE, median pruning after each epoch).

    Every other option is the base every trial starts from (as `train` takes it). Writes
    OUT/trial-NNNN per trial, OUT/trials.csv, trials.md, best.json (with the command that
    reproduces the best trial), history.png and importance.png; the study is kept in
    OUT/tune.db (or --storage), so running the same command again continues the search, and
    the same --storage and --study on several machines share it.
    """
    from rich.console import Console
    from rich.table import Table

    from gptclassify.tune import build_space, search

    out = values.pop("out")  # tune's own --out (the trials' folders are under it)
    base = build(TrainConfig, values)
    cfg = build(TuneConfig, {**values, "out": out})
    space = build_space(search_specs, cfg.space)
    result = search(
        base,
        space,
        out=cfg.out,
        trials=cfg.trials,
        timeout=cfg.timeout,
        storage=cfg.storage,
        study=cfg.study,
        metric=cfg.metric,
        sampler=cfg.sampler,
        pruner=cfg.pruner,
        keep_all=cfg.keep_all,
        seed=cfg.search_seed,
        echo=lambda line: click.echo(line, err=True),
    )
    table = Table(title=f"Study {result.study}")
    names = space.names()
    for column in ("trial", "state", result.metric, *names, "time (s)"):
        table.add_column(column)
    for r in result.rows:
        table.add_row(
            str(r.number),
            r.state,
            "" if r.value is None else f"{r.value:.4f}",
            *[str(r.params.get(n, "")) for n in names],
            "" if r.duration_s is None else f"{r.duration_s:.1f}",
        )
    Console().print(table)
    cache = result.prefix_cache
    if cache.get("hits"):
        click.echo(
            f"Frozen-prefix cache: built {cache['misses']:.0f} time(s), reused "
            f"{cache['hits']:.0f} time(s), saving {cache['saved_s'] - cache['lookup_s']:.1f} s"
        )
    for path in result.files.values():
        click.echo(f"Wrote {path}")
    if result.best is None:
        raise click.ClickException("no trial completed; see the errors in trials.md")
    click.echo(f"Best: trial {result.best.number}, {result.metric} {result.best.value:.4f}")
    click.echo(f"Reproduce: {result.command}")
