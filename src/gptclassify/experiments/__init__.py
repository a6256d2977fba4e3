"""Compare training variations: a grid of TrainConfig options (by default the book's 19 bonus
experiments) run on one shared split, with the TF-IDF baseline as the first row."""

from gptclassify.args import ExperimentsConfig
from gptclassify.experiments.grid import (
    BOOK_TEST_ACCURACY,
    QUICK_DEFAULTS,
    REFERENCE,
    RESERVED_NAMES,
    GridEntry,
    builtin_grid,
    load_grid,
    parse_grid,
    quick_config,
    select,
    train_config,
    write_quick_models,
)
from gptclassify.experiments.report import (
    CSV_COLUMNS,
    describe_grid,
    plot_results,
    rich_table,
    write_csv,
    write_markdown,
)
from gptclassify.experiments.results import Experiments, RunResult
from gptclassify.experiments.runner import Job, run_experiments, run_job

__all__ = [
    "BOOK_TEST_ACCURACY",
    "CSV_COLUMNS",
    "QUICK_DEFAULTS",
    "REFERENCE",
    "RESERVED_NAMES",
    "Experiments",
    "ExperimentsConfig",
    "GridEntry",
    "Job",
    "RunResult",
    "builtin_grid",
    "describe_grid",
    "load_grid",
    "parse_grid",
    "plot_results",
    "quick_config",
    "rich_table",
    "run_experiments",
    "run_job",
    "select",
    "train_config",
    "write_csv",
    "write_markdown",
    "write_quick_models",
]
