"""Hyperparameter search on Optuna: every trial is a normal training run.

`search(base, space, ...)` is the one mechanism: `gptclassify tune` is its open form, and a
built-in recipe (a small fixed space, a trial count or a time budget) can call it the same way.

- The data are resolved once and written to OUT/data; every trial trains on that folder, so
  all trials (and all workers) see the same split, and a trial that varies the seed varies
  only the training.
- A trial is `train()` into OUT/trial-NNNN (its own run folder: checkpoints, train.log,
  --report-to), run in this process, with a callback that reports the full-validation metric
  to Optuna after every epoch and stops the trial when the pruner says so. Trials that share
  the frozen blocks and the data reuse one frozen-prefix cache
  (a `PrefixMemo` passed to each trial's `train()`): only the first pays for it.
- The study lives in an Optuna storage: by default sqlite:///OUT/tune.db, so a search that
  was stopped continues where it was (a trial stopped by Ctrl-C is queued again and resumes
  from its checkpoint); a database URL shared by several processes or machines
  (postgresql://...) makes them workers of one study. `trials` counts the study's finished
  trials, whichever worker ran them.
- At the end: OUT/trials.csv and trials.md (params, metric, time, state), OUT/best.json with
  the command that reproduces the best trial, Optuna's history and importance plots as PNG,
  and only the best trial's weights (the others keep their metrics, history and log).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import re
import shlex
import shutil
import signal
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gptclassify.args import DataConfig, TrainConfig, get_path, options
from gptclassify.data.prepared import write_splits
from gptclassify.data.sources import load_data
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write
from gptclassify.metrics import selection_metric
from gptclassify.plots import plt
from gptclassify.training import train
from gptclassify.training.folder import PARTIAL
from gptclassify.training.loop import Callbacks
from gptclassify.training.prefix_cache import PrefixMemo
from gptclassify.training.run import TrainingInterrupted
from gptclassify.training.state import TrainState
from gptclassify.tune.space import SearchSpace

log = logging.getLogger("gptclassify.tune")

DIRECTIONS = {"val_accuracy": "maximize", "val_loss": "minimize"}
EPOCH_KEYS = {"val_accuracy": "full_val_accuracy", "val_loss": "full_val_loss"}
# What a trial folder keeps when its weights are dropped: its numbers, not a model.
KEPT_WHEN_DROPPED = ("metrics.json", "history.csv", "train.log", "loss.png", "accuracy.png")


class TrialFailed(Exception):
    """A trial's settings or run failed with a one-line reason (the search goes on)."""


@dataclass
class TrialRow:
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    duration_s: float | None
    run: str | None
    test_accuracy: float | None = None
    error: str | None = None


@dataclass
class SearchResult:
    study: str
    storage: str
    metric: str
    out: Path
    rows: list[TrialRow]
    best: TrialRow | None
    command: str | None
    """`gptclassify train ...` reproducing the best trial."""
    wall_s: float
    prefix_cache: dict[str, float] = field(default_factory=dict)
    """Reuse of frozen-prefix caches by this process: hits, misses, built_s, saved_s (build
    time not spent again), lookup_s (the cost of finding them)."""
    files: dict[str, Path] = field(default_factory=dict)


class PruneOnEpoch(Callbacks):
    """Reports the full-validation metric after each epoch; stops a trial the pruner drops."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.key = EPOCH_KEYS[metric]

    def on_epoch(self, state: TrainState, row: dict[str, Any]) -> None:
        import optuna  # lazy: track (optuna)

        # Multi-label runs choose their epochs by macro F1 (training/loop.py): so does this.
        key = "full_val_macro_f1" if self.key == "full_val_accuracy" else self.key
        value = float(row.get(key, row[self.key]))
        if math.isfinite(value):
            self.trial.report(value, step=int(row["epoch"]))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")


def train_command(cfg: TrainConfig, out: str | None = None) -> str:
    """The `gptclassify train` command line that runs `cfg` (options at their defaults left out)."""
    parts = ["gptclassify", "train"]
    for o in options(TrainConfig):
        if o.name == "out":
            continue
        value = get_path(cfg, o.path)
        if value == o.default:
            continue
        if o.hint is bool:
            parts.append(o.flag if value else f"--no-{o.flag[2:]}")
        else:
            parts += [o.flag, repr(value) if isinstance(value, float) else str(value)]
    if out:
        parts += ["--out", out]
    return shlex.join(parts)


def trial_config(
    base: TrainConfig, data: DataConfig, params: dict[str, Any], out: Path
) -> TrainConfig:
    """`base` with the trial's options, on the shared split, into `out` (checked again)."""
    values = {**base.to_dict(), "data": dataclasses.asdict(data), "out": str(out)}
    cfg = TrainConfig.from_dict(values)
    for name, value in params.items():
        setattr(cfg, name, value)
    return TrainConfig.from_dict(cfg.to_dict(), source="trial options")


def shown_url(url: str) -> str:
    """A storage URL with its password hidden (it goes into files and onto terminals)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def default_storage(out: Path) -> str:
    return f"sqlite:///{(out / 'tune.db').resolve()}"


def open_storage(url: str) -> Any:
    import optuna  # lazy: track (optuna)

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several processes on one SQLite file wait for each other's writes instead of
        # failing at once with "database is locked".
        kwargs = {"connect_args": {"timeout": 120}}
    # Workers started together race to create the schema of a new database (the losers
    # see "table already exists" or a lock) and succeed on a later try.
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:  # a bad URL, a missing driver, an unreachable server
            if attempt < 4 and "No module named" not in str(exc):
                time.sleep(1.0 + attempt)
                continue
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise GPTClassifyError(f"--storage {shown_url(url)}: cannot open ({first})") from None
    raise AssertionError("unreachable")


def prepare_data(base: TrainConfig, out: Path) -> tuple[DataConfig, str]:
    """The split every trial trains on (OUT/data, written once), and its fingerprint."""
    splits = load_data(base.data, base.train.seed)
    fingerprint = splits.fingerprint()
    shared = DataConfig(data=str(out / "data"))
    if (out / "data").is_dir():
        if load_data(shared, base.train.seed).fingerprint() != fingerprint:
            raise GPTClassifyError(
                f"{out / 'data'}: holds another split than the data asked for; use another --out"
            )
    else:
        write_splits(splits, out / "data", meta={"written_by": "gptclassify tune"})
    return shared, fingerprint


class _OwnFailures(logging.Filter):
    """Optuna logs a failed trial's traceback. A trial that failed for a reason of its own
    (TrialFailed) has said so in one line already: no traceback; one stopped by Ctrl-C or
    SIGTERM is not a failure: nothing (the search says how to continue)."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        trial = record.getMessage().split(" failed ", 1)[0]
        if isinstance(exc, TrainingInterrupted):
            self.stopped.add(trial)
            return False
        if trial in self.stopped:  # its "failed with value None" line
            return False
        if isinstance(exc, TrialFailed):
            record.exc_info = None
        return True


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial at INFO and warns that its plots are experimental; the search
    prints its own one line per trial."""
    import optuna  # lazy: track (optuna)

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials_log = logging.getLogger("optuna.study._optimize")
    own = _OwnFailures()
    trials_log.addFilter(own)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        trials_log.removeFilter(own)
        optuna.logging.set_verbosity(before)


def check_space(base: TrainConfig, space: SearchSpace) -> None:
    """Every choice, and both ends of every range, must be a value `train` takes: a space
    that holds one it refuses is refused before the first trial (not found trial by trial)."""
    for param in space.params:
        if param.kind == "choice":
            values = list(param.choices)
        elif param.kind in ("int", "logint"):
            values = [int(param.low or 0), int(param.high or 0)]
        else:
            values = [param.low, param.high]
        for value in values:
            try:
                trial_config(base, DataConfig(), {param.name: value}, Path("trial-check"))
            except GPTClassifyError as exc:
                raise GPTClassifyError(
                    f"search space {param.describe()}: {param.name}={value!r} is refused by "
                    f"train ({exc})"
                ) from None


def _finished(trial: Any) -> bool:
    """Counts toward `trials`: complete, pruned, or failed for a reason of its own (a trial
    stopped by Ctrl-C is not finished: it is queued again)."""
    import optuna  # lazy: track (optuna)

    state = trial.state
    if state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        return True
    return state == optuna.trial.TrialState.FAIL and not trial.user_attrs.get("interrupted")


def _requeue_interrupted(study: Any) -> None:
    """Trials stopped by Ctrl-C (or SIGTERM) run again with the same options, resuming from
    their checkpoints (once: unless a later trial already took the same run over)."""
    trials = study.get_trials(deepcopy=False)
    for t in trials:
        if not t.user_attrs.get("interrupted"):
            continue
        origin = t.user_attrs.get("resumes", t.number)
        if any(u.number > t.number and u.user_attrs.get("resumes") == origin for u in trials):
            continue
        study.enqueue_trial(t.params, user_attrs={"resumes": origin}, skip_if_exists=False)


def search(
    base: TrainConfig,
    space: SearchSpace,
    *,
    out: str | Path | None = None,
    trials: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study: str | None = None,
    metric: str = "val_accuracy",
    sampler: str = "tpe",
    pruner: str = "median",
    keep_all: bool = False,
    seed: int | None = None,
    echo: Callable[[str], None] | None = None,
    share_cache: bool = True,
) -> SearchResult:
    """Search `space` around `base` until the study holds `trials` finished trials (or
    `timeout` seconds pass); write the table, plots and best.json into `out`.

    share_cache: trials reuse each other's frozen-prefix caches (off: every trial builds
    its own, as separate `train` runs would; for measuring the saving).
    """
    import optuna  # lazy: track (optuna)

    say = echo or (lambda line: None)
    if metric not in DIRECTIONS:
        raise GPTClassifyError(f"--metric: {metric!r} is not one of {', '.join(DIRECTIONS)}")
    check_space(base, space)
    t0 = time.perf_counter()
    out = Path(out or Path("runs") / f"tune-{datetime.now():%Y%m%d-%H%M%S}")
    out.mkdir(parents=True, exist_ok=True)
    shared, fingerprint = prepare_data(base, out)
    url = storage or default_storage(out)
    name = study or out.resolve().name
    with _quiet_optuna():
        the_sampler = (
            optuna.samplers.TPESampler(seed=seed)
            if sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=seed)
        )
        # Pruning starts once 3 trials have finished, from the first epoch on: searches
        # here are small (tens of trials of a few epochs each).
        the_pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
            if pruner == "median"
            else optuna.pruners.NopPruner()
        )
        st = optuna.create_study(
            storage=open_storage(url),
            study_name=name,
            sampler=the_sampler,
            pruner=the_pruner,
            direction=DIRECTIONS[metric],
            load_if_exists=True,
        )
        recorded = st.user_attrs
        for key, value in (("metric", metric), ("data_sha256", fingerprint)):
            if key in recorded and recorded[key] != value:
                what = "metric" if key == "metric" else "training data"
                raise GPTClassifyError(
                    f"study {name!r} in {shown_url(url)} was started with another {what}; use another "
                    "--study"
                )
            if key not in recorded:
                st.set_user_attr(key, value)
        _requeue_interrupted(st)

        memo = PrefixMemo(capacity=4 if share_cache else 0)

        def objective(trial: Any) -> float:
            return _run_trial(trial, base, shared, space, out, metric, say, memo)

        def enough(study_: Any, trial: Any) -> None:
            if sum(_finished(t) for t in study_.get_trials(deepcopy=False)) >= trials:
                study_.stop()

        if sum(_finished(t) for t in st.get_trials(deepcopy=False)) < trials:
            try:
                st.optimize(
                    objective,
                    timeout=timeout,
                    callbacks=[enough],
                    catch=(TrialFailed,),
                    gc_after_trial=False,
                )
            except TrainingInterrupted as exc:
                # The trial's own advice (train --resume) would leave the study behind.
                again = (
                    f"--out {out}"
                    + (f" --storage {shown_url(url)}" if storage else "")
                    + (f" --study {name}" if study else "")
                )
                raise TrainingInterrupted(
                    f"Stopped by {signal.Signals(exc.exit_code - 128).name}; the trial's "
                    "checkpoint is kept and the study in "
                    f"{shown_url(url)}. Continue the search with the same gptclassify "
                    f"tune command ({again}): the stopped trial resumes from its checkpoint",
                    exc.exit_code - 128,
                ) from None
        result = SearchResult(
            study=name,
            storage=shown_url(url),
            metric=metric,
            out=out,
            rows=[_row(t) for t in st.get_trials(deepcopy=False)],
            best=None,
            command=None,
            wall_s=0.0,
            prefix_cache={
                "hits": memo.hits,
                "misses": memo.misses,
                "built_s": memo.built_s,
                "saved_s": memo.saved_s,
                "lookup_s": memo.lookup_s,
            },
        )
        complete = [r for r in result.rows if r.state == "COMPLETE"]
        if complete:
            best = _row(st.best_trial)
            result.best = best
            best_cfg = trial_config(base, shared, best.params, out / "best")
            result.command = train_command(best_cfg, out=str(out / "best"))
        if not keep_all:
            _drop_weights(out, result)
        result.files.update(_plots(st, out))
    result.wall_s = time.perf_counter() - t0
    result.files.update(write_tables(result))
    return result


def _run_trial(
    trial: Any,
    base: TrainConfig,
    shared: DataConfig,
    space: SearchSpace,
    out: Path,
    metric: str,
    say: Callable[[str], None],
    memo: PrefixMemo | None = None,
) -> float:
    import optuna  # lazy: track (optuna)

    origin = trial.user_attrs.get("resumes", trial.number)
    run_dir = out / f"trial-{origin:04d}"
    params = space.suggest(trial)
    trial.set_user_attr("run", str(run_dir))
    trial.set_user_attr("host", socket.gethostname())
    shown = ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
    try:
        cfg = trial_config(base, shared, params, run_dir)
    except GPTClassifyError as exc:
        trial.set_user_attr("error", str(exc))
        say(f"trial {trial.number}: {shown}: failed: {exc}")
        raise TrialFailed(str(exc)) from None
    callbacks = [PruneOnEpoch(trial, metric)]
    partial = run_dir.with_name(run_dir.name + PARTIAL)
    t0 = time.perf_counter()
    try:
        if "resumes" in trial.user_attrs and (partial / "checkpoints" / "run.json").is_file():
            clf = train(
                resume=run_dir,
                quiet=True,
                progress=False,
                callbacks=callbacks,
                prefix_memo=memo,
            )
        else:
            clf = train(
                cfg,
                quiet=True,
                progress=False,
                overwrite=True,
                callbacks=callbacks,
                prefix_memo=memo,
            )
    except optuna.TrialPruned:
        say(f"trial {trial.number}: {shown}: pruned ({time.perf_counter() - t0:.1f} s)")
        raise
    except TrainingInterrupted:
        trial.set_user_attr("interrupted", True)
        raise
    except GPTClassifyError as exc:
        trial.set_user_attr("error", str(exc))
        say(f"trial {trial.number}: {shown}: failed: {exc}")
        raise TrialFailed(str(exc)) from None
    metrics = clf.metrics or {}
    value = validation_value(metrics["validation"], metric)
    if "test" in metrics:
        trial.set_user_attr("test_accuracy", float(metrics["test"]["accuracy"]))
    say(f"trial {trial.number}: {shown}: {metric} {value:.4f} ({time.perf_counter() - t0:.1f} s)")
    return value


def validation_value(report: dict[str, Any], metric: str) -> float:
    """A trial's value from its validation report: the loss, or what its run is judged by
    (metrics.selection_metric: accuracy, or macro F1 on multi-label data)."""
    if metric == "val_loss":
        return float(report["loss"])
    return selection_metric(report)[1]


def _row(t: Any) -> TrialRow:
    duration = t.duration.total_seconds() if t.duration is not None else None
    return TrialRow(
        number=t.number,
        state=t.state.name,
        value=t.value,
        params=dict(t.params),
        duration_s=duration,
        run=t.user_attrs.get("run"),
        test_accuracy=t.user_attrs.get("test_accuracy"),
        error=t.user_attrs.get("error"),
    )


def _drop_weights(out: Path, result: SearchResult) -> None:
    """Every trial folder under `out` but the best keeps only its numbers and log; pruned and
    stopped trials' unfinished folders go (their numbers are in the table)."""
    best_run = Path(result.best.run).resolve() if result.best and result.best.run else None
    running = {Path(r.run).resolve() for r in result.rows if r.state == "RUNNING" and r.run}
    for folder in sorted(out.glob("trial-*")):
        resolved = folder.resolve()
        if resolved == best_run or not folder.is_dir():
            continue
        if folder.name.endswith(PARTIAL):
            final = folder.with_name(folder.name[: -len(PARTIAL)]).resolve()
            stopped = [r for r in result.rows if r.run and Path(r.run).resolve() == final]
            # An interrupted trial keeps its checkpoint until its requeued run finishes.
            if final not in running and all(r.state == "PRUNED" for r in stopped) and stopped:
                shutil.rmtree(folder, ignore_errors=True)
            continue
        if resolved in running:
            continue
        for child in folder.iterdir():
            if child.name in KEPT_WHEN_DROPPED:
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _plots(study: Any, out: Path) -> dict[str, Path]:
    """Optuna's optimisation history and parameter importances, as PNG (when there is enough
    to draw: importances need two complete trials that differ)."""
    from optuna.visualization import matplotlib as ovm  # lazy: track (optuna)

    files: dict[str, Path] = {}
    for key, draw in (
        ("history", ovm.plot_optimization_history),
        ("importance", ovm.plot_param_importances),
    ):
        # Optuna's plots switch matplotlib to its ggplot style: keep that to these figures.
        # (It also warns when there are too few trials for importances: the plot says so.)
        with plt.rc_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                ax = draw(study)
            except Exception as exc:  # not enough trials yet: no plot, the table says why
                log.info("No %s plot: %s", key, exc)
                continue
            figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            figure.tight_layout()
            path = out / f"{key}.png"
            figure.savefig(path, dpi=120)
            plt.close(figure)
        files[key] = path
    return files


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_tables(result: SearchResult) -> dict[str, Path]:
    """trials.csv, trials.md and best.json in the output folder."""
    out = result.out
    names = sorted({k for r in result.rows for k in r.params})
    header = ["trial", "state", result.metric, "test_accuracy", *names, "time_s", "run", "error"]
    lines = []
    for r in result.rows:
        lines.append(
            [
                r.number,
                r.state,
                r.value,
                r.test_accuracy,
                *[r.params.get(n) for n in names],
                r.duration_s,
                r.run,
                r.error,
            ]
        )
    with open(out / "trials.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in line] for line in lines])
    md = [
        f"# Study {result.study}: {len(result.rows)} trials, {result.metric}",
        "",
        "| " + " | ".join(header[:-2]) + " |",
        "|" + "---|" * (len(header) - 2),
    ]
    md += ["| " + " | ".join(_fmt(v) for v in line[:-2]) + " |" for line in lines]
    if result.best is not None:
        md += ["", f"Best: trial {result.best.number} ({result.metric} {result.best.value:.4f})"]
        md += ["", "```bash", result.command or "", "```"]
    atomic_write(out / "trials.md", "\n".join(md) + "\n")
    best = None
    if result.best is not None:
        best = {
            "trial": result.best.number,
            "metric": result.metric,
            "value": result.best.value,
            "params": result.best.params,
            "run": result.best.run,
            "command": result.command,
        }
    atomic_write(
        out / "best.json",
        json.dumps(
            {
                "study": result.study,
                "storage": result.storage,
                "best": best,
                "prefix_cache": result.prefix_cache,
                "wall_s": result.wall_s,
            },
            indent=2,
        )
        + "\n",
    )
    return {"csv": out / "trials.csv", "md": out / "trials.md", "best": out / "best.json"}
