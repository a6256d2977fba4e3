"""Run a grid of training variations on one data split and compare them in one table.

The grid is a list of entries, each a name, an optional description and `TrainConfig` fields
(`{name: last-two-blocks, trainable: last-2-blocks}`); unset fields keep TrainConfig's
defaults. The built-in grid is SPEC section 5, rows 1-19: the book's bonus experiments, each
one change from the book's reference setup.

How a grid runs:

- The data options are resolved once, with `gptclassify.training.load_data`, and the split is
  written to OUT/data; every entry (and the TF-IDF baseline, the first row) trains on that
  folder, so all rows see exactly the same texts even when an entry changes the seed.
- Each entry runs `train()` into OUT/<name>/ in a process of its own. Peak memory is then
  the run's own: metrics.json's `peak_memory_mb` is the CUDA allocator's peak on a GPU and
  the process's peak resident memory on CPU (which includes the few hundred MB the
  imported libraries take, as a standalone `gptclassify train` would: ~400 MB here for
  the TF-IDF row, ~560 MB for the smallest GPT row). A separate process also means a
  crash or an out-of-memory kill fails one row, not the grid. Processes are forked from a
  server that has imported torch and gptclassify once (multiprocessing's forkserver), so a
  row does not pay seconds of imports; where forkserver does not exist (Windows) they are
  spawned.
- An entry that fails is a row with status `failed` and its one-line error (the traceback,
  if any, is in OUT/<name>/output.log); the runner goes on with the next entry.
- OUT/results.csv and OUT/results.md are rewritten after every row (an interrupted grid
  keeps its table so far); OUT/results.png (test accuracy per row, the baseline as a
  reference line) is drawn at the end.

`quick` is a smoke test of the whole grid on a CPU in minutes: every GPT-2 preset is replaced
by a tiny random-init model of a proportional shape (`quick_config`), trained for 1 epoch
with one CPU thread per run (tiny matmuls gain nothing from more threads, and on a busy
machine 2-thread runs were measured 10-50x slower: OpenMP threads spin-waiting for each
other). Its numbers check the plumbing; they say nothing about the book's variations (every
row is a random init there, so row 10 differs from row 5 only in name, and with a context
of 64 "pad to longest" and "pad to context" pad SMS to the same length).
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
import re
import signal
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gptclassify.config import PRESETS, DataConfig, GPTConfig, TrainConfig
from gptclassify.errors import GPTClassifyError

if TYPE_CHECKING:
    from rich.table import Table

    from gptclassify.baseline import BaselineConfig


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


@dataclass
class ExperimentsConfig:
    """Everything `gptclassify experiments` does."""

    data: DataConfig = field(default_factory=DataConfig)
    grid: str | None = field(
        default=None,
        metadata=_help(
            "YAML or JSON list of entries {name, description, <train option>: value} "
            "(default: the built-in grid, SPEC section 5 rows 1-19)."
        ),
    )
    quick: bool = field(
        default=False,
        metadata=_help(
            "Smoke test: tiny random-init models of proportional shapes, 1 epoch, one CPU "
            "thread per run (the whole built-in grid in minutes on a laptop CPU)."
        ),
    )
    only: str | None = field(
        default=None, metadata=_help("Run only these entries (comma-separated names).")
    )
    baseline: bool = field(
        default=True, metadata=_help("Add the TF-IDF + logistic regression baseline as a row.")
    )
    threads: int | None = field(
        default=None,
        metadata=_help("PyTorch CPU threads per run (default: PyTorch's choice; 1 with --quick)."),
    )
    seed: int = field(
        default=123,
        metadata=_help("Seed for the data split, and the training seed of entries that set none."),
    )
    out: str | None = field(
        default=None, metadata=_help("Output folder (default: runs/experiments-<timestamp>).")
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise GPTClassifyError(f"--threads must be a positive integer, got {self.threads!r}")

    def only_names(self) -> list[str]:
        return [n.strip() for n in (self.only or "").split(",") if n.strip()]


# ---- the grid --------------------------------------------------------------------------


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
"""The book's setup (SPEC row 1): last block trainable, every text padded to the longest
training text and classified from the last position. Every built-in row is this plus one
change. (TrainConfig's own defaults differ: the last real token, padding per batch.)"""

# (SPEC row, name, description, change from REFERENCE); the book's test accuracy is quoted so
# a full run can be read against it.
_SPEC_ROWS: tuple[tuple[int, str, str, dict[str, Any]], ...] = (
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
        "The book's padding-ignoring loss variant (no effect on a one-position loss)",
        {"ignore_index": True},
    ),
    (19, "mean-pool", "Mean over all token outputs instead of one position", {"pool": "mean"}),
)

BOOK_TEST_ACCURACY: dict[str, float] = dict(
    zip(
        (row[1] for row in _SPEC_ROWS),
        (95.00, 75.00, 72.00, 98.33, 96.67, 84.67, 96.67, 98.33, 98.67, 93.67)
        + (96.67, 98.33, 78.33, 98.00, 98.33, 98.33, 95.33, 95.00, 96.33),
        strict=True,
    )
)
"""Test accuracy (%) of each built-in row in the book's repository (SPEC section 5, A100)."""


def builtin_grid() -> list[GridEntry]:
    """SPEC section 5 rows 1-19, in order, each the reference plus one change."""
    return [
        GridEntry(
            name,
            f"SPEC row {row}: {text} (book: {BOOK_TEST_ACCURACY[name]:.2f}% test)",
            {**REFERENCE, **change},
        )
        for row, name, text, change in _SPEC_ROWS
    ]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
RESERVED_NAMES = ("data", "quick-models", "tfidf-baseline")
"""Folder names the runner uses itself."""
_NOT_PER_ENTRY = {
    "data": "every entry trains on the same split; give data options to the experiments command",
    "out": "each entry writes to OUT/<name>",
}


def entry_fields() -> dict[str, Any]:
    """The TrainConfig fields a grid entry may set, with their type hints."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig) if f.name not in _NOT_PER_ENTRY}


def parse_grid(items: Any, source: str = "grid") -> list[GridEntry]:
    """Entries from a list of mappings (a parsed grid file); errors name the entry and field."""
    if not isinstance(items, list):
        raise GPTClassifyError(
            f"{source}: expected a list of entries, each a mapping with a name and train "
            f"options, got {type(items).__name__}"
        )
    if not items:
        raise GPTClassifyError(f"{source}: the grid has no entries")
    allowed = entry_fields()
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
            options[key] = _check_value(key, value, allowed[key], where)
        try:
            TrainConfig(**options)
        except GPTClassifyError as exc:
            raise GPTClassifyError(f"{where}: {exc}") from None
        entries.append(GridEntry(name, description, options))
    return entries


def _check_value(key: str, value: Any, hint: Any, where: str) -> Any:
    """`value` checked against a TrainConfig type hint (and converted where YAML differs)."""
    args = typing.get_args(hint)
    if type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is typing.Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise GPTClassifyError(
                f"{where}: {key}: {value!r} is not one of {', '.join(map(str, choices))}"
            )
        return value
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and is_int:
        return value
    if hint is float and (is_int or isinstance(value, float)):
        return float(value)
    if hint is str and (isinstance(value, str) or is_int):
        return str(value)  # YAML reads `pad_to: 120` as a number
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "text"}
    raise GPTClassifyError(
        f"{where}: {key} must be {kind.get(hint, hint)}, got {value!r}"
        + (" or null" if args else "")
    )


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
        import yaml

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
    """One GPTConfig JSON per preset in `directory`; returns preset -> file."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for preset in PRESETS:
        path = directory / f"{preset}.json"
        path.write_text(json.dumps(quick_config(preset).to_dict(), indent=2) + "\n")
        paths[preset] = path
    return paths


def _model_label(options: dict[str, Any], quick: bool) -> str:
    model = options.get("model", TrainConfig.model)
    if quick and model in PRESETS:
        return f"tiny {model} (random init)"
    if quick or options.get("weights", TrainConfig.weights) == "random":
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
        if options.get("model", TrainConfig.model) in quick_models:
            options["model"] = str(quick_models[options.get("model", TrainConfig.model)])
    return TrainConfig(data=data, out=str(run_dir), **options)


# ---- running ---------------------------------------------------------------------------


@dataclass
class RunResult:
    """One row of the comparison table."""

    name: str
    description: str
    model: str
    status: str = "ok"
    """ok or failed."""
    error: str = ""
    """The one-line reason of a failed row."""
    trainable_params: int | None = None
    total_params: int | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    test_macro_f1: float | None = None
    time_s: float | None = None
    """Training time (the fit only, as metrics.json's training_time_s)."""
    peak_memory_mb: float | None = None
    """metrics.json's peak_memory_mb: CUDA allocator peak on a GPU, process peak RSS on CPU."""
    device: str = ""
    wall_s: float | None = None
    """Seconds the whole row took, data loading and evaluation included."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fill(self, metrics: dict[str, Any]) -> None:
        def accuracy(split: str) -> float | None:
            return metrics[split]["accuracy"] if split in metrics else None

        self.trainable_params = metrics.get("trainable_params")
        self.total_params = metrics.get("total_params")
        self.train_accuracy = accuracy("train")
        self.val_accuracy = accuracy("validation")
        self.test_accuracy = accuracy("test")
        self.test_macro_f1 = metrics["test"]["macro_f1"] if "test" in metrics else None
        self.time_s = metrics.get("training_time_s")
        self.peak_memory_mb = metrics.get("peak_memory_mb")
        self.device = str(metrics.get("device", ""))


@dataclass
class Job:
    """What one child process runs: `train` with a TrainConfig or the TF-IDF baseline."""

    kind: str
    """train or baseline."""
    config: TrainConfig | BaselineConfig
    run_dir: Path
    threads: int | None = None


@dataclass
class Experiments:
    """What `run_experiments` produced."""

    out: Path
    rows: list[RunResult]
    quick: bool
    data_summary: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def baseline(self) -> RunResult | None:
        return next((r for r in self.rows if r.name == "tfidf-baseline"), None)


def _context():
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # The server imports these once and every run forks from it. torch._dynamo is what
    # AdamW's constructor imports on first use (3-4 s on a 2-core CPU, per run otherwise).
    # Importing is all the server does: no torch threads or CUDA exist before the fork.
    ctx.set_forkserver_preload(
        ["gptclassify.training", "gptclassify.baseline", "gptclassify.plots", "torch._dynamo"]
    )
    return ctx


def _child(job: Job, conn) -> None:
    """Runs in the child process: one training run, its result sent back through `conn`."""
    import traceback

    job.run_dir.mkdir(parents=True, exist_ok=True)
    # Whatever the run prints (warnings, tracebacks) goes to its folder, not the runner's
    # terminal, which shows one line per row.
    with open(job.run_dir / "output.log", "w", encoding="utf-8") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
    try:
        if job.threads:
            import torch
            from threadpoolctl import threadpool_limits

            # torch's own pool, and the BLAS/OpenMP pools numpy, scipy and sklearn use.
            torch.set_num_threads(job.threads)
            threadpool_limits(job.threads)
        if job.kind == "baseline":
            from gptclassify.baseline import train_baseline

            metrics = train_baseline(job.config).metrics  # type: ignore[arg-type]
        else:
            from gptclassify.training import train

            metrics = train(job.config, quiet=True, progress=False).metrics  # type: ignore[arg-type]
        conn.send({"status": "ok", "metrics": metrics})
    except GPTClassifyError as exc:
        conn.send({"status": "failed", "error": str(exc)})
    except Exception as exc:  # any crash is this row's failure, not the grid's
        traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        conn.send({"status": "failed", "error": f"{type(exc).__name__}: {first}".rstrip(": ")})
    finally:
        conn.close()


def run_job(job: Job, ctx: Any = None) -> dict[str, Any]:
    """Run a job in a child process; {"status": "ok", "metrics": ...} or {"status":
    "failed", "error": one line}. A child that dies without answering is a failure too."""
    ctx = ctx or _context()
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(job, sender), name=f"gptclassify-{job.run_dir.name}")
    process.start()
    sender.close()
    try:
        try:
            message = receiver.recv()
        except EOFError:
            message = None
        process.join(timeout=60)
    finally:
        if process.is_alive():  # interrupted, or stuck after answering
            process.terminate()
            process.join()
        receiver.close()
    if message is None:
        return {"status": "failed", "error": _death(process.exitcode)}
    return message


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the run's process was killed by {name}{hint}"
    return f"the run's process exited with status {code} without a result"


def run_experiments(
    cfg: ExperimentsConfig | None = None,
    grid: list[GridEntry] | None = None,
    echo: Callable[[str], None] | None = None,
) -> Experiments:
    """Run every entry of the grid (`grid`, else cfg.grid, else the built-in one) and the
    baseline on one split; write results.csv, results.md and results.png into cfg.out."""
    from gptclassify.baseline import BaselineConfig
    from gptclassify.data import write_splits
    from gptclassify.training import load_data

    cfg = cfg or ExperimentsConfig()
    say = echo or (lambda line: None)
    if grid is None:
        grid = load_grid(cfg.grid) if cfg.grid else builtin_grid()
    grid = select(grid, cfg.only_names())
    out = Path(cfg.out or Path("runs") / f"experiments-{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)

    splits = load_data(TrainConfig(data=cfg.data, seed=cfg.seed))
    for warning in splits.warnings:
        say(f"Warning: {warning}")
    write_splits(splits, out / "data", meta={"written_by": "gptclassify experiments"})
    shared = DataConfig(data=str(out / "data"))
    sizes = " / ".join(f"{name} {len(part)}" for name, part in splits.parts())
    data_summary = f"{_data_source(cfg.data)}: {sizes} texts"
    say(f"Data: {data_summary} (written to {out / 'data'})")

    quick_models = write_quick_models(out / "quick-models") if cfg.quick else None
    threads = cfg.threads if cfg.threads is not None else (1 if cfg.quick else None)
    planned: list[tuple[RunResult, Job | str]] = []
    if cfg.baseline:
        bcfg = BaselineConfig(data=shared, seed=cfg.seed, out=str(out / "tfidf-baseline"))
        description = (
            f"TF-IDF ({bcfg.analyzer} {bcfg.ngram_min}-{bcfg.ngram_max}-grams"
            f"{', sublinear tf' if bcfg.sublinear_tf else ''}) + logistic regression "
            f"(C={bcfg.c:g})"
        )
        row = RunResult("tfidf-baseline", description, "TF-IDF + LR")
        planned.append((row, Job("baseline", bcfg, out / "tfidf-baseline", threads)))
    for entry in grid:
        row = RunResult(entry.name, entry.description, _model_label(entry.options, cfg.quick))
        try:
            tcfg = train_config(entry, shared, out / entry.name, cfg.seed, quick_models)
            planned.append((row, Job("train", tcfg, out / entry.name, threads)))
        except GPTClassifyError as exc:
            planned.append((row, str(exc)))

    ctx = _context()
    results = Experiments(out, [], cfg.quick, data_summary)
    for number, (row, job) in enumerate(planned, start=1):
        t0 = time.perf_counter()
        result = run_job(job, ctx) if isinstance(job, Job) else {"status": "failed", "error": job}
        row.wall_s = time.perf_counter() - t0
        if result["status"] == "ok":
            row.fill(result["metrics"])
            shown = row.test_accuracy if row.test_accuracy is not None else row.val_accuracy
            which = "test" if row.test_accuracy is not None else "validation"
            say(
                f"[{number}/{len(planned)}] {row.name}: {which} accuracy {shown * 100:.2f}% "
                f"({row.wall_s:.1f} s)"
            )
        else:
            row.status, row.error = "failed", result["error"]
            say(f"[{number}/{len(planned)}] {row.name}: failed: {row.error}")
        results.rows.append(row)
        # Rewritten after every row: an interrupted long grid still leaves its table so far.
        results.files["csv"] = write_csv(results.rows, out / "results.csv")
        results.files["md"] = write_markdown(results, out / "results.md")
    results.files["png"] = plot_results(results, out / "results.png")
    return results


def _data_source(data: DataConfig) -> str:
    if data.train:
        return data.train
    if data.data == "sms-spam":
        return "SMS Spam Collection" + (" (book split)" if data.book_split else "")
    return data.data


# ---- reporting -------------------------------------------------------------------------

CSV_COLUMNS = tuple(f.name for f in fields(RunResult))


def write_csv(rows: list[RunResult], path: Path) -> Path:
    """One line per row; accuracies and F1 as fractions (as in metrics.json)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in asdict(row).items()})
    return path


TABLE_HEADERS = (
    "name",
    "description",
    "model",
    "trainable params",
    "train acc (%)",
    "val acc (%)",
    "test acc (%)",
    "test macro F1",
    "time (s)",
    "peak memory (MB)",
    "status",
)


def table_cells(row: RunResult) -> list[str]:
    """The cells of a row as text, in TABLE_HEADERS order."""

    def pct(value: float | None) -> str:
        return "" if value is None or math.isnan(value) else f"{value * 100:.2f}"

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    return [
        row.name,
        row.description,
        row.model,
        num(row.trainable_params, ","),
        pct(row.train_accuracy),
        pct(row.val_accuracy),
        pct(row.test_accuracy),
        num(row.test_macro_f1, ".4f"),
        num(row.time_s, ".1f"),
        num(row.peak_memory_mb, ",.0f"),
        "ok" if row.ok else f"failed: {row.error}",
    ]


def write_markdown(results: Experiments, path: Path) -> Path:
    """A heading saying what was run, then the table."""
    mode = (
        "quick (tiny random-init models, 1 epoch: checks the pipeline, not the variations)"
        if results.quick
        else "full"
    )
    devices = sorted({r.device for r in results.rows if r.device})
    lines = [
        "# Experiments",
        "",
        f"- Data: {results.data_summary}; every row uses the same split ({results.out / 'data'}).",
        f"- Mode: {mode}. Device: {', '.join(devices) or 'n/a'}.",
        "- Time: training time in seconds. Peak memory: CUDA allocator peak on a GPU, process "
        "peak resident memory on CPU (each row runs in its own process).",
        "",
        "| " + " | ".join(TABLE_HEADERS) + " |",
        "|" + "|".join("---" if i < 3 or i == 10 else "---:" for i in range(11)) + "|",
    ]
    for row in results.rows:
        cells = [c.replace("|", "\\|").replace("\n", " ") for c in table_cells(row)]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rich_table(results: Experiments) -> Table:
    """The comparison for the terminal: the numbers only, in 80 columns (descriptions are in
    results.md; a failed row's name is red and its error is in `RunResult.error`)."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=f"Experiments ({'quick' if results.quick else 'full'}): {results.out}",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    table.add_column("name", no_wrap=True)  # the handle for --only: never broken
    for header in ("params", "train %", "val %", "test %", "F1", "time s", "MB"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in results.rows:
        cells = table_cells(row)[:-1]  # without status
        del cells[1:3]  # description, model
        cells[1] = _compact(row.trainable_params)
        if not row.ok:
            cells[0] = f"[red]{cells[0]}[/red]"
        table.add_row(*cells, style="bold" if row.name == "tfidf-baseline" else None)
    return table


def _compact(n: int | None) -> str:
    """14938 -> 14.9k, 1557611200 -> 1.56B: parameter counts that fit a narrow column."""
    if n is None:
        return ""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size * 0.9995:  # what rounds to 1000 of a unit is 1 of the next
            return f"{n / size:.3g}{suffix}"
    return str(n)


def plot_results(results: Experiments, path: Path) -> Path:
    """Horizontal bars of test accuracy (validation when there is no test split), the
    baseline as a dashed line; failed rows are labelled instead of drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    split = "test" if any(r.test_accuracy is not None for r in results.rows) else "validation"

    def value(row: RunResult) -> float | None:
        v = row.test_accuracy if split == "test" else row.val_accuracy
        return None if v is None else v * 100

    baseline = results.baseline
    rows = [r for r in results.rows if r is not baseline]
    values = [value(r) for r in rows]
    reference = value(baseline) if baseline is not None and baseline.ok else None
    known = [v for v in values if v is not None] + ([reference] if reference is not None else [])
    left = max(0.0, math.floor((min(known) if known else 50.0) / 5) * 5 - 5)

    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.32 * max(len(rows), 1)))
    y = list(range(len(rows)))[::-1]  # first entry on top
    ax.barh(y, [v if v is not None else 0 for v in values], color="tab:blue", left=0)
    for yi, v, row in zip(y, values, rows, strict=True):
        if v is None:
            ax.text(left + 0.5, yi, "failed" if not row.ok else "n/a", va="center", color="red")
        else:
            ax.text(v + 0.2, yi, f"{v:.2f}", va="center", fontsize=8)
    if reference is not None:
        ax.axvline(
            reference, color="tab:red", linestyle="--", label=f"TF-IDF + LR {reference:.2f}%"
        )
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y, [r.name for r in rows])
    ax.set_xlim(left, 101)
    ax.set_xlabel(f"{split.capitalize()} accuracy (%)")
    ax.set_title("Experiments" + (" (quick: tiny random models)" if results.quick else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def describe_grid(entries: list[GridEntry], quick: bool = False) -> Table:
    """The grid as a rich table (what `--list` prints)."""
    from rich.table import Table

    hidden = {"model", "weights"} if quick else {"model"}  # quick: the model label says it
    table = Table()
    table.add_column("name", no_wrap=True)  # the handle for --only: never broken
    table.add_column("model")
    table.add_column("options", overflow="fold")
    table.add_column("description")
    for entry in entries:
        options = ", ".join(f"{k}={v}" for k, v in entry.options.items() if k not in hidden)
        table.add_row(entry.name, _model_label(entry.options, quick), options, entry.description)
    return table
