"""Running a grid: every entry trains in a process of its own, on one shared split.

- The data options are resolved once (data.sources.load_data) and the split is written to
  OUT/data; every entry (and the TF-IDF baseline, the first row) trains on that folder, so
  all rows see exactly the same texts even when an entry changes the seed.
- Each entry runs `train()` into OUT/<name>/ in a process of its own. Peak memory is then
  the run's own: metrics.json's `peak_memory_mb` is the CUDA allocator's peak on a GPU and
  the process's peak resident memory on CPU (which includes the few hundred MB the imported
  libraries take, as a standalone `gptclassify train` would). A separate process also means
  a crash or an out-of-memory kill fails one row, not the grid. Processes are forked from a
  server that has imported torch and gptclassify once (multiprocessing's forkserver), so a
  row does not pay seconds of imports; where forkserver does not exist (Windows) they are
  spawned.
- An entry that fails is a row with status `failed` and its one-line error (the traceback,
  if any, is in OUT/logs/<name>.log); the runner goes on with the next entry.
- OUT/results.csv and OUT/results.md are rewritten after every row (an interrupted grid
  keeps its table so far); OUT/results.png is drawn at the end.

Quick mode runs with one CPU thread per run: tiny matmuls gain nothing from more threads,
and on a busy machine 2-thread runs were many times slower (OpenMP threads spin-waiting for
each other; benchmarks/RESULTS.md, "Figures that left the docstrings").
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from gptclassify.args import DataConfig, ExperimentsConfig, TrainConfig
from gptclassify.artifact import RunMetrics
from gptclassify.baseline import BaselineConfig, train_baseline
from gptclassify.data.prepared import write_splits
from gptclassify.data.sources import load_data
from gptclassify.errors import GPTClassifyError
from gptclassify.experiments.grid import (
    GridEntry,
    builtin_grid,
    load_grid,
    model_label,
    select,
    train_config,
    write_quick_models,
)
from gptclassify.experiments.report import plot_results, write_csv, write_markdown
from gptclassify.experiments.results import Experiments, RunResult
from gptclassify.training import train


@dataclass
class Job:
    """What one child process runs: `train` with a TrainConfig or the TF-IDF baseline."""

    kind: str
    """train or baseline."""
    config: TrainConfig | BaselineConfig
    run_dir: Path
    threads: int | None = None


def _context():

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    # The server imports these once and every run forks from it. torch._dynamo is what
    # AdamW's constructor imports on first use (seconds on a small CPU, per run otherwise).
    # Importing is all the server does: no torch threads or CUDA exist before the fork.
    ctx.set_forkserver_preload(["gptclassify.experiments.runner", "torch._dynamo"])
    return ctx


def _child(job: Job, conn) -> None:
    """Runs in the child process: one training run, its result sent back through `conn`."""
    logs = job.run_dir.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # Whatever the run prints (warnings, tracebacks) goes to OUT/logs/<name>.log, not the
    # runner's terminal, which shows one line per row.
    with open(logs / f"{job.run_dir.name}.log", "w", encoding="utf-8") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
    try:
        if job.threads:
            # torch's own pool, and the BLAS/OpenMP pools numpy, scipy and sklearn use.
            torch.set_num_threads(job.threads)
            threadpool_limits(job.threads)
        if job.kind == "baseline":
            metrics = train_baseline(job.config).metrics  # type: ignore[arg-type]
        else:
            # A grid run again into the same OUT replaces its rows (each complete or absent).
            run = train(job.config, quiet=True, progress=False, overwrite=True)  # type: ignore[arg-type]
            metrics = run.metrics
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
    cfg = cfg or ExperimentsConfig()
    say = echo or (lambda line: None)
    if grid is None:
        grid = load_grid(cfg.grid) if cfg.grid else builtin_grid()
    grid = select(grid, cfg.only_names())
    out = Path(cfg.out or Path("runs") / f"experiments-{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)

    splits = load_data(cfg.data, cfg.seed)
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
        row = RunResult(entry.name, entry.description, model_label(entry.options, cfg.quick))
        try:
            tcfg = train_config(entry, shared, out / entry.name, cfg.seed, quick_models)
            if "report_to" not in entry.options:
                tcfg.report_to = cfg.report_to
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
            row.fill(RunMetrics.from_json(result["metrics"], f"{row.name}: metrics"))
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
