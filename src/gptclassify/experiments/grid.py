"""Experiment grids: entries of TrainConfig options, the built-in grid of the book's bonus
experiments, grid files, and quick mode's tiny stand-in models.

An entry is a name, an optional description and TrainConfig options by flat name
(`{name: last-two-blocks, trainable: last-2-blocks}`); unset options keep TrainConfig's
defaults. The walker (args.options) decides what a valid option and value are, as it does
for the CLI.

Quick mode is a smoke test of the whole grid on a CPU in minutes: every GPT-2 preset is
replaced by a tiny random-init model of a proportional shape (`quick_config`), trained for
1 epoch. Its numbers check the plumbing; they say nothing about the book's variations (every
row is a random init there, so "random-init-all-layers" differs from "all-layers" only in
name, and with a context of 64 "pad to longest" and "pad to context" pad SMS to the same
length).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gptclassify.args import (
    BackboneArgs,
    DataConfig,
    Option,
    TrainConfig,
    option_map,
    parse_value,
)
from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.models import PRESETS, family_of


@dataclass(frozen=True)
class GridEntry:
    """One row of the comparison: a name, what it shows, and the TrainConfig fields it sets."""

    name: str
    """Row name and folder name under the output folder."""
    description: str = ""
    """What the row varies, for the table."""
    options: dict[str, Any] = field(default_factory=dict)
    """TrainConfig fields (not data or out); unset fields keep TrainConfig's defaults."""


REFERENCE: dict[str, Any] = {
    "model": "gpt2",
    "weights": "pretrained",
    "trainable": "last-block",
    "pool": "last",
    "pad_to": "longest",
}
"""The book's setup (its bonus experiment 1): last block trainable, every text padded to the
longest training text and classified from the last position. Every built-in row is this plus
one change. (TrainConfig's own defaults differ: the last real token, padding per batch.)"""

# (the book's experiment number, name, description, change from REFERENCE); the book's test
# accuracy is quoted so a full run can be read against it.
_BOOK_ROWS: tuple[tuple[int, str, str, dict[str, Any]], ...] = (
    (1, "reference", "Book setup: gpt2, last block, last position, pad to longest", {}),
    (2, "first-token", "Classify from the first token instead of the last", {"pool": "first"}),
    (3, "head-only", "Only the new output head trains", {"trainable": "head"}),
    (4, "last-two-blocks", "Last two blocks trainable", {"trainable": "last-2-blocks"}),
    (5, "all-layers", "Every layer trainable", {"trainable": "all"}),
    (6, "gpt2-medium", "gpt2-medium (355M) instead of gpt2", {"model": "gpt2-medium"}),
    (7, "gpt2-large", "gpt2-large (774M) instead of gpt2", {"model": "gpt2-large"}),
    (8, "gpt2-xl", "gpt2-xl (1558M) instead of gpt2", {"model": "gpt2-xl"}),
    (
        9,
        "gpt2-xl-all-layers",
        "gpt2-xl with every layer trainable",
        {"model": "gpt2-xl", "trainable": "all"},
    ),
    (
        10,
        "random-init-all-layers",
        "Random initialisation, every layer trainable",
        {"weights": "random", "trainable": "all"},
    ),
    (
        11,
        "lora",
        "LoRA adapters (rank 16, alpha 16) instead of unfrozen blocks",
        {"trainable": "lora", "lora_rank": 16, "lora_alpha": 16.0},
    ),
    (
        12,
        "gpt2-xl-lora",
        "gpt2-xl with LoRA (rank 16, alpha 8)",
        {"model": "gpt2-xl", "trainable": "lora", "lora_rank": 16, "lora_alpha": 8.0},
    ),
    (13, "pad-to-context", "Pad every text to the full context", {"pad_to": "context"}),
    (
        14,
        "no-padding-batch-1",
        "No padding: one text per batch",
        {"pad_to": "none", "batch_size": 1},
    ),
    (
        15,
        "no-padding-grad-accum-8",
        "No padding, one text per batch, 8 batches per optimizer step",
        {"pad_to": "none", "batch_size": 1, "grad_accum": 8},
    ),
    (
        16,
        "last-real-token",
        "Padded as the reference, classified from the last real token",
        {"pool": "last-real"},
    ),
    (17, "no-causal-mask", "Causal attention mask off", {"causal_mask": False}),
    (
        18,
        "ignore-index",
        "The book's padding-ignoring loss (ignore_index): the reference again, as the loss "
        "reads one position per text and never a padding label",
        {},
    ),
    (19, "mean-pool", "Mean over all token outputs instead of one position", {"pool": "mean"}),
)

BOOK_TEST_ACCURACY: dict[str, float] = dict(
    zip(
        (row[1] for row in _BOOK_ROWS),
        (95.00, 75.00, 72.00, 98.33, 96.67, 84.67, 96.67, 98.33, 98.67, 93.67)
        + (96.67, 98.33, 78.33, 98.00, 98.33, 98.33, 95.33, 95.00, 96.33),
        strict=True,
    )
)
"""Test accuracy (%) of each built-in row in the book's repository (bonus experiments on an
A100, GPT-2 pretrained weights, the book's split)."""


def builtin_grid() -> list[GridEntry]:
    """The book's 19 bonus experiments, in order, each the reference plus one change."""
    return [
        GridEntry(
            name,
            f"Book experiment {row}: {text} (book: {BOOK_TEST_ACCURACY[name]:.2f}% test)",
            {**REFERENCE, **change},
        )
        for row, name, text, change in _BOOK_ROWS
    ]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESERVED_NAMES = ("data", "logs", "quick-models", "tfidf-baseline")
"""Folder names the runner uses itself."""
_NOT_PER_ENTRY = {
    "data": "every entry trains on the same split; give data options to the experiments command",
    "out": "each entry writes to OUT/<name>",
}


def entry_options() -> dict[str, Option]:
    """The TrainConfig options a grid entry may set, by flat name."""
    return {
        name: o for name, o in option_map(TrainConfig).items() if o.path[0] not in _NOT_PER_ENTRY
    }


def parse_grid(items: Any, source: str = "grid") -> list[GridEntry]:
    """Entries from a list of mappings (a parsed grid file); errors name the entry and field."""
    if not isinstance(items, list):
        raise GPTClassifyError(
            f"{source}: expected a list of entries, each a mapping with a name and train "
            f"options, got {type(items).__name__}"
        )
    if not items:
        raise GPTClassifyError(f"{source}: the grid has no entries")
    allowed = entry_options()
    entries: list[GridEntry] = []
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        where = f"{source}: entry {number}"
        if not isinstance(item, dict):
            raise GPTClassifyError(
                f"{where}: expected a mapping of name and train options, got {type(item).__name__}"
            )
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise GPTClassifyError(
                f"{where}: 'name' must be 1-64 letters, digits, '-' or '_' (it names the run "
                f"folder), got {name!r}"
            )
        where = f"{source}: entry {number} ({name})"
        if name in seen:
            raise GPTClassifyError(f"{where}: the name is used by an earlier entry")
        if name in RESERVED_NAMES:
            raise GPTClassifyError(
                f"{where}: the name is reserved for the runner ({', '.join(RESERVED_NAMES)})"
            )
        seen.add(name)
        description = item.get("description", "")
        if not isinstance(description, str):
            raise GPTClassifyError(f"{where}: 'description' must be text")
        options: dict[str, Any] = {}
        for key, value in item.items():
            if key in ("name", "description"):
                continue
            if key in _NOT_PER_ENTRY:
                raise GPTClassifyError(
                    f"{where}: field '{key}' cannot be set per entry ({_NOT_PER_ENTRY[key]})"
                )
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise GPTClassifyError(
                    f"{where}: unknown field '{key}'{hint}; valid fields: name, description, "
                    f"{', '.join(sorted(allowed))}"
                )
            options[key] = parse_value(allowed[key], value, where)
        try:
            TrainConfig(**options)
        except GPTClassifyError as exc:
            raise GPTClassifyError(f"{where}: {exc}") from None
        entries.append(GridEntry(name, description, options))
    return entries


def load_grid(path: str | Path) -> list[GridEntry]:
    """Entries from a YAML or JSON file (JSON by the .json extension, YAML otherwise)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GPTClassifyError(f"{path}: grid file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GPTClassifyError(f"{path}: cannot read the grid file ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GPTClassifyError(
                f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})"
            ) from None
    else:
        try:
            items = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f"line {mark.line + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise GPTClassifyError(f"{path}: not valid YAML ({line}{problem})") from None
    return parse_grid(items, str(path))


def select(entries: list[GridEntry], names: Sequence[str]) -> list[GridEntry]:
    """The entries named in `names` (all when empty), in grid order."""
    if not names:
        return entries
    known = [e.name for e in entries]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise GPTClassifyError(
            f"--only: no entry named {unknown[0]!r}; the grid has {', '.join(known)}"
        )
    return [e for e in entries if e.name in names]


# ---- quick mode ------------------------------------------------------------------------

QUICK_CONTEXT = 64
QUICK_HEAD_DIM = 16
QUICK_DEFAULTS: dict[str, Any] = {"epochs": 1}
"""Applied to quick entries that do not set these fields themselves."""


QUICK_PRESETS = tuple(name for name, c in PRESETS.items() if not family_of(c).tokenizer_json)
"""The presets quick mode stands in for (the book's design space is GPT-2's; another
family's random init would need that family's tokenizer from the Hub)."""


def quick_config(preset: str) -> GPTConfig:
    """A tiny stand-in for a GPT-2 preset, context 64.

    Widths are 1/16 of GPT-2's with heads of 16 (GPT-2: 64): 48, 64, 80, 96 for small to xl,
    GPT-2's width ratios. Depths are 2, 3, 4, 5 blocks (GPT-2: 12, 24, 36, 48): still growing
    with the preset, but flattened, because whole-network rows on 8 blocks took ~50 s each on
    a 2-core CPU, as long as a dozen other rows together. Context 64 keeps rows padded to the
    longest text cheap (most SMS are shorter; longer ones are truncated).
    """
    full = PRESETS[preset]
    heads = max(1, round(full.emb_dim / 16 / QUICK_HEAD_DIM))
    return GPTConfig(
        context_length=QUICK_CONTEXT,
        emb_dim=heads * QUICK_HEAD_DIM,
        n_heads=heads,
        n_layers=1 + full.n_layers // 12,
    )


def write_quick_models(directory: Path) -> dict[str, Path]:
    """One GPTConfig JSON per GPT-2 preset in `directory`; returns preset -> file."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for preset in QUICK_PRESETS:
        path = directory / f"{preset}.json"
        path.write_text(json.dumps(quick_config(preset).to_dict(), indent=2) + "\n")
        paths[preset] = path
    return paths


QUICK_DEFAULT_MODEL = "gpt2"
"""Quick mode's model for entries that name none: its stand-ins are GPT-2 shapes."""


def model_label(options: dict[str, Any], quick: bool) -> str:
    model = options.get("model", QUICK_DEFAULT_MODEL if quick else BackboneArgs.model)
    if quick and model in PRESETS:
        return f"tiny {model} (random init)"
    if quick or options.get("weights", BackboneArgs.weights) == "random":
        return f"{model} (random init)"
    return str(model)


def train_config(
    entry: GridEntry,
    data: DataConfig,
    run_dir: Path,
    seed: int,
    quick_models: dict[str, Path] | None = None,
) -> TrainConfig:
    """The TrainConfig an entry runs with; `quick_models` (preset -> JSON) turns on quick mode."""
    options = {"seed": seed, **entry.options}
    if quick_models is not None:
        options = {**QUICK_DEFAULTS, **options, "weights": "random"}
        model = options.get("model", QUICK_DEFAULT_MODEL)
        if model in quick_models:
            options["model"] = str(quick_models[model])
    return TrainConfig(data=data, out=str(run_dir), **options)
