"""Hyperparameter search: `search(base, space, ...)` runs an Optuna study whose trials are
normal training runs (space.py: search spaces; search.py: the study and its outputs).

Optuna is the `track` extra, imported when a search runs."""

from gptclassify.tune.search import (
    PruneOnEpoch,
    SearchResult,
    TrialFailed,
    TrialRow,
    search,
    train_command,
    trial_config,
)
from gptclassify.tune.space import Param, SearchSpace, build_space, load_space_file, parse_flag

__all__ = [
    "Param",
    "PruneOnEpoch",
    "SearchResult",
    "SearchSpace",
    "TrialFailed",
    "TrialRow",
    "build_space",
    "load_space_file",
    "parse_flag",
    "search",
    "train_command",
    "trial_config",
]
