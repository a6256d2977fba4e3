"""`gptclassify experiments`: a grid of training variations on one split."""

from __future__ import annotations

import click

from gptclassify.args import ExperimentsConfig
from gptclassify.cli.app import cli
from gptclassify.cli.options import build, config_options


@cli.command()
@config_options(ExperimentsConfig)
@click.option("--list", "list_only", is_flag=True, help="Print the grid and exit (runs nothing).")
def experiments(list_only: bool, **options) -> None:
    """Run a grid of training variations on one split and compare them with the baseline.

    Default grid: the book's 19 bonus experiments. Writes OUT/<name>/ per entry and
    OUT/results.md, results.csv and results.png.
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

    cfg = build(ExperimentsConfig, options)
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
