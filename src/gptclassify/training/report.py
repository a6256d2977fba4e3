"""Reporting a run to the experiment trackers people already run: TensorBoard and MLflow.

`--report-to tensorboard,mlflow` (RuntimeArgs.report_to) adds reporters to the run's
callbacks (training/loop.py's `Callbacks`). They see what the log sees: the loss of every
optimizer step, the learning rate and examples/s, the loss estimates, the epoch accuracies,
and at the end the final metrics, the confusion matrix and the run's settings.

- TensorBoard: event files in RUN/tensorboard (the run folder's own, so they travel with it).
  A resumed run opens its writer with `purge_step` at the first step it redoes, so the steps
  an interrupted run wrote after its last checkpoint are dropped by TensorBoard, not shown twice.
- MLflow: params (every TrainConfig option by flat name), metrics per step, tags (base model,
  data fingerprint, git commit of the working directory when there is one), the run
  folder's files as artifacts (checkpoints excepted: they repeat the weights), the model as
  an MLflow pyfunc model at `model` (training/mlflow_model.py: `mlflow.pyfunc.load_model(
  "runs:/<id>/model")` predicts on a DataFrame or a list of texts; with its signature and an
  input example), the train / validation / test splits as the run's dataset inputs, and
  with --register-model NAME a new version of that registered model. The run id is
  kept in RUN/mlflow.json, so a resumed run continues the same MLflow run; steps it already
  holds are not logged again. Every MLflow call runs on a thread of its own with bounded
  retries: a tracking server that is down costs warnings, never the training or its speed.

Only the process that writes files (rank 0) reports. The trackers are the `track` extra,
imported only when a run asks for them.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from gptclassify.args import TrainConfig, flat_dict, report_targets
from gptclassify.artifact import read_classifier_config
from gptclassify.files import atomic_write
from gptclassify.plots import confusion_figure
from gptclassify.training.checkpoint import CHECKPOINTS
from gptclassify.training.loop import Callbacks
from gptclassify.training.state import TrainState

log = logging.getLogger("gptclassify.training")

TENSORBOARD_DIR = "tensorboard"
MLFLOW_FILE = "mlflow.json"
"""In the run folder: the MLflow tracking URI, experiment and run id a resumed run continues."""
EXPERIMENT = "gptclassify"
"""MLflow experiment of runs that name none (MLFLOW_EXPERIMENT_NAME names one)."""


MODEL_PATH = "model"
"""The run's MLflow pyfunc model: `runs:/<run id>/model`."""
MODEL_LEFT_OUT = (CHECKPOINTS, TENSORBOARD_DIR, MLFLOW_FILE, "data")
"""Run folder entries the pyfunc model does not carry (the splits are dataset inputs)."""
EXAMPLE_TEXTS = 3


def example_texts(folder: Path) -> list[str]:
    """The model's input example: a few texts of the run's validation split (what the
    model is meant to read), or fixed ones when the folder has none."""
    path = folder / "data" / "validation.csv"
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as f:
            rows = [row["text"] for row in itertools.islice(csv.DictReader(f), EXAMPLE_TEXTS)]
        if rows:
            return rows
    return ["an example text", "another text"]


class Reporter(Callbacks):
    """A callback that also hears how the run ended. A reporter that raises is switched off
    with a warning (by `Fanout`): reporting never fails a run."""

    failed = False

    def on_finish(self, metrics: dict[str, Any]) -> None:
        """After the final evaluation, before the run folder is published (metrics.json's
        content)."""

    def close(self, status: str, folder: Path | None) -> None:
        """The run ended: FINISHED (with `folder`, the published run folder), KILLED or FAILED."""


class Fanout(Callbacks):
    """Several callbacks as one, called in order; the run stops when any asks to."""

    def __init__(self, callbacks: Sequence[Callbacks]) -> None:
        self.callbacks = list(callbacks)

    def _each(self, method: str, *args: Any, reporters_only: bool = False) -> None:
        for cb in self.callbacks:
            if not isinstance(cb, Reporter):
                if not reporters_only:
                    getattr(cb, method)(*args)  # the run's own and tune's: their errors count
                continue
            if cb.failed:
                continue
            try:
                getattr(cb, method)(*args)
            except Exception as exc:
                cb.failed = True
                log.warning("Warning: %s stopped reporting (%s)", type(cb).__name__, exc)

    def on_step(self, state: TrainState, loss: float) -> None:
        self._each("on_step", state, loss)

    def on_estimate(self, state: TrainState, row: dict[str, Any]) -> None:
        self._each("on_estimate", state, row)

    def on_epoch(self, state: TrainState, row: dict[str, Any]) -> None:
        self._each("on_epoch", state, row)

    def should_stop(self) -> bool:
        return any([cb.should_stop() for cb in self.callbacks])  # every one is asked

    def on_finish(self, metrics: dict[str, Any]) -> None:
        self._each("on_finish", metrics, reporters_only=True)


def open_reporters(cfg: TrainConfig, run_dir: Path) -> list[Reporter]:
    """The reporters `cfg.runtime.report_to` asks for, writing into `run_dir` (the work folder)."""
    kinds = {"tensorboard": TensorBoardReporter, "mlflow": MLflowReporter}
    return [kinds[name](cfg, run_dir) for name in report_targets(cfg.runtime.report_to)]


@dataclass
class RunEnd:
    """Filled in while a run works: where it was published, if it was."""

    folder: Path | None = None


@contextmanager
def reporting(reporters: Sequence[Callbacks]) -> Iterator[RunEnd]:
    """Close every reporter when the run ends, with how it ended."""
    end = RunEnd()
    status = "FAILED"
    try:
        yield end
        status = "FINISHED"
    except BaseException as exc:
        # Ctrl-C / SIGTERM (training/run.py's TrainingInterrupted) and a pruned tuning trial
        # are stops, not failures.
        stopped = ("TrainingInterrupted", "TrialPruned", "KeyboardInterrupt")
        if type(exc).__name__ in stopped:
            status = "KILLED"
        raise
    finally:
        for cb in reporters:
            if isinstance(cb, Reporter):
                try:
                    cb.close(status, end.folder if status == "FINISHED" else None)
                except Exception as exc:  # reporting never fails a run
                    log.warning("Warning: %s: could not close (%s)", type(cb).__name__, exc)


def report_params(cfg: TrainConfig) -> dict[str, Any]:
    """Every TrainConfig option by flat name, as trackers take them (scalars; None as '')."""
    flat = flat_dict(cfg.data_without_objects())  # data in memory: by description
    return {k: ("" if v is None else v) for k, v in flat.items()}


def read_run_record(run_dir: Path) -> dict[str, Any]:
    """checkpoints/run.json of the run (written before the first step), or {}."""
    try:
        return json.loads((run_dir / CHECKPOINTS / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def git_commit(directory: Path | None = None) -> str | None:
    """The commit checked out where the run was started, when that is a git repository."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) == 40 else None


class Throughput:
    """Examples per second between optimizer steps, over a short sliding window."""

    def __init__(self, window: int = 10) -> None:
        self.window = window
        self.marks: list[tuple[float, int]] = []

    def update(self, examples_seen: int) -> float | None:
        self.marks.append((time.perf_counter(), examples_seen))
        self.marks = self.marks[-(self.window + 1) :]
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def step_scalars(state: TrainState, loss: float, speed: Throughput) -> dict[str, float]:
    """What is reported after every optimizer step."""
    scalars = {"train_loss": loss, "lr": float(state.optimizer.param_groups[0]["lr"])}
    rate = speed.update(state.examples_seen)
    if rate is not None:
        scalars["examples_per_s"] = rate
    return scalars


ESTIMATES = {"train_loss": "estimate_train_loss", "val_loss": "estimate_val_loss"}
EPOCH_METRICS = (
    "train_accuracy",
    "val_accuracy",
    "full_val_accuracy",
    "full_val_loss",
    "full_val_macro_f1",  # multi-label runs only
)


def final_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """{split}_{accuracy,loss,macro_f1,roc_auc} and training_time_s from metrics.json's
    content."""
    out: dict[str, float] = {}
    for split in ("train", "validation", "test"):
        report = metrics.get(split)
        if not isinstance(report, dict):
            continue
        for key in ("accuracy", "loss", "macro_f1", "roc_auc"):
            value = report.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                out[f"{split}_{key}"] = float(value)
    if isinstance(metrics.get("training_time_s"), int | float):
        out["training_time_s"] = float(metrics["training_time_s"])
    return out


# ---- TensorBoard ---------------------------------------------------------------------------


def _after_earlier_event_files(logdir: Path) -> None:
    """Return once a new event file's name sorts after those in `logdir`.

    TensorBoard reads a folder's event files in name order, and a name starts with the
    second the file was opened (`events.out.tfevents.<seconds>.<host>.<pid>...`): a run
    resumed within the second its interrupted run started would sort by process id, maybe
    first, and its purge of the redone steps would then come before the steps it purges
    (the folder would read as the redone steps only). Waits at most a second."""
    newest = 0
    for f in logdir.glob("events.out.tfevents.*"):
        stamp = f.name.split(".")[3]
        if stamp.isdigit():
            newest = max(newest, int(stamp))
    while int(time.time()) <= newest:
        time.sleep(0.05)


class TensorBoardReporter(Reporter):
    """Event files in RUN/tensorboard, through torch's SummaryWriter."""

    def __init__(self, cfg: TrainConfig, run_dir: Path) -> None:
        # Fails here, before any training, when the extra is missing (torch's own import
        # error would not name the package).
        import tensorboard  # noqa: F401  # lazy: track (tensorboard)
        from torch.utils.tensorboard import SummaryWriter  # lazy: track (tensorboard)

        self._writer_class = SummaryWriter
        self.cfg = cfg
        self.logdir = run_dir / TENSORBOARD_DIR
        self.writer: Any = None
        self.speed = Throughput()
        self.last_step = -1

    def _open(self, state: TrainState) -> Any:
        if self.writer is None:
            # A resumed run redoes the steps after its checkpoint: events an interrupted run
            # wrote from this step on are purged by TensorBoard when it reads the folder.
            resumed = self.logdir.is_dir() and any(self.logdir.iterdir())
            if resumed:
                _after_earlier_event_files(self.logdir)
            self.writer = self._writer_class(
                str(self.logdir), purge_step=max(state.step, 0) if resumed else None
            )
        return self.writer

    def _scalars(self, state: TrainState, group: str, values: dict[str, float]) -> None:
        writer = self._open(state)
        for key, value in values.items():
            writer.add_scalar(f"{group}/{key}", value, state.step)
        self.last_step = max(self.last_step, state.step)

    def on_step(self, state: TrainState, loss: float) -> None:
        self._scalars(state, "step", step_scalars(state, loss, self.speed))

    def on_estimate(self, state: TrainState, row: dict[str, Any]) -> None:
        self._scalars(state, "estimate", {ESTIMATES[k]: row[k] for k in ESTIMATES})

    def on_epoch(self, state: TrainState, row: dict[str, Any]) -> None:
        self._scalars(state, "epoch", {k: row[k] for k in EPOCH_METRICS if k in row})
        self.writer.flush()  # on disk before the epoch's checkpoint, for a resumed run

    def on_finish(self, metrics: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams  # lazy: track (tensorboard)

        if self.writer is None:  # a resumed run that had nothing left to train
            self.writer = self._writer_class(str(self.logdir))
        step = max(self.last_step, 0)
        final = final_scalars(metrics)
        for key, value in final.items():
            self.writer.add_scalar(f"final/{key}", value, step)
        for split in ("validation", "test"):
            matrix = (metrics.get(split) or {}).get("confusion_matrix")
            if matrix:
                names = list(metrics[split]["per_class"])  # the classes, in label order
                figure = confusion_figure(matrix, names, f"{split} split")
                self.writer.add_figure(f"confusion/{split}", figure, step)
        # The settings as hparams (the HParams tab), with the final metrics beside them;
        # written into this run's own event file (add_hparams would make a sub-run).
        final_tags = {f"final/{k}": v for k, v in final.items()}
        for summary in hparams(report_params(self.cfg), final_tags):
            self.writer.file_writer.add_summary(summary)
        # The last event: closed before the run folder is renamed into place.
        self.writer.close()
        self.writer = None

    def close(self, status: str, folder: Path | None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


# ---- MLflow --------------------------------------------------------------------------------


class MLflowReporter(Reporter):
    """One MLflow run per gptclassify run, written from a thread of its own.

    The training thread only puts small records on a queue; the reporting thread creates or
    reopens the run, sends metrics in batches and retries a failed call a few times before
    it warns and drops it. At the end the run waits at most `close_timeout` seconds for what
    is still queued.
    """

    RETRIES = 3
    QUEUE = 10_000
    EPOCH_FLUSH_S = 5.0
    # MLflow's own HTTP client retries 7 times with exponential backoff (minutes against a
    # server that is down); these bound each call instead. A user's own settings win.
    HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}

    def __init__(self, cfg: TrainConfig, run_dir: Path, close_timeout: float = 60.0) -> None:
        import mlflow  # lazy: track (mlflow)

        for key, value in self.HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        self.mlflow = mlflow
        self.cfg = cfg
        self.run_dir = run_dir
        self.close_timeout = close_timeout
        self.speed = Throughput()
        self.queue: queue.Queue[Callable[[], None] | None] = queue.Queue(self.QUEUE)
        self.client: Any = None
        self.run_id: str | None = None
        self.done_steps: dict[str, int] = {}
        """For a resumed MLflow run: the last step each metric already has."""
        self.record: dict[str, Any] = {}
        """The tracking URI, experiment and run id that RUN/mlflow.json keeps."""
        self.tagged_data = False
        self.broken = False
        self.dropped = 0
        self.last_step = -1
        self.thread = threading.Thread(target=self._work, name="gptclassify-mlflow", daemon=True)
        self.thread.start()
        self._submit(self._start)

    # -- the training thread's side

    def _submit(self, task: Callable[[], None]) -> None:
        try:
            self.queue.put_nowait(task)
        except queue.Full:  # a tracker that cannot keep up loses records, never slows training
            self.dropped += 1

    def _metrics(self, state: TrainState, values: dict[str, float]) -> None:
        step = state.step
        self.last_step = max(self.last_step, step)
        items = [(k, float(v), step) for k, v in values.items() if math.isfinite(float(v))]
        self._submit(lambda: self._log_metrics(items))

    def on_step(self, state: TrainState, loss: float) -> None:
        self._metrics(state, step_scalars(state, loss, self.speed))

    def on_estimate(self, state: TrainState, row: dict[str, Any]) -> None:
        self._metrics(state, {ESTIMATES[k]: row[k] for k in ESTIMATES})

    def on_epoch(self, state: TrainState, row: dict[str, Any]) -> None:
        self._metrics(state, {k: row[k] for k in EPOCH_METRICS if k in row})
        # Before the epoch's checkpoint, give the epoch's reports a moment to reach the
        # server: a run killed later then loses none of them (a resumed run does not redo
        # the steps before its checkpoint).
        self.flush(self.EPOCH_FLUSH_S)

    def flush(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for what is queued now to be sent (or given up)."""
        if self.broken or not self.thread.is_alive():
            return False
        done = threading.Event()
        self._submit(done.set)
        return done.wait(timeout)

    def on_finish(self, metrics: dict[str, Any]) -> None:
        step = max(self.last_step, 0)
        items = [(f"final_{k}", v, step) for k, v in final_scalars(metrics).items()]
        self._submit(lambda: self._log_metrics(items))
        # Before the folder is published: the run's record usually lands in it from here
        # (a quick run may end before a new tracking store has created the run).
        self.flush(self.EPOCH_FLUSH_S)

    def close(self, status: str, folder: Path | None) -> None:
        if folder is not None:
            self._submit(lambda: self._upload(folder))
            self._submit(lambda: self._log_model(folder))
        self._submit(lambda: self._end(status))
        self._submit(None)
        self.thread.join(self.close_timeout)
        if self.thread.is_alive():
            log.warning(
                "Warning: MLflow: gave up waiting after %.0f s; the rest of this run's "
                "reports are not sent",
                self.close_timeout,
            )
        if self.dropped:
            log.warning("Warning: MLflow: %d reports were dropped", self.dropped)

    # -- the reporting thread's side

    def _work(self) -> None:
        while True:
            task = self.queue.get()
            if task is None:
                return
            if self.broken:
                continue
            for attempt in range(self.RETRIES):
                try:
                    task()
                    break
                except Exception as exc:
                    if attempt == self.RETRIES - 1:
                        self._give_up(exc)
                    else:
                        time.sleep(0.5 * 2**attempt)

    def _give_up(self, exc: Exception) -> None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if self.run_id is None:
            # No run: nothing later can be logged; say so once.
            self.broken = True
            log.warning("Warning: MLflow: reporting is off for this run (%s)", first)
        else:
            log.warning("Warning: MLflow: a report was not sent (%s)", first)

    def _start(self) -> None:
        """Reopen the run a resumed run began, or create one (and record its id)."""
        mlflow = self.mlflow
        record_path = self.run_dir / MLFLOW_FILE
        record: dict[str, Any] = {}
        if record_path.is_file():
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = {}
        uri = record.get("tracking_uri") or mlflow.get_tracking_uri()
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        if record.get("run_id"):
            run_id = record["run_id"]
            self.client.update_run(run_id, status="RUNNING")
            for key in ("train_loss", *ESTIMATES.values(), *EPOCH_METRICS):
                history = self.client.get_metric_history(run_id, key)
                if history:
                    self.done_steps[key] = max(m.step for m in history)
            self.run_id = run_id
            self.record = record
            return
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id if experiment else self.client.create_experiment(name)
        )
        tags = {"gptclassify.base_model": self.cfg.backbone.model, "mlflow.source.type": "LOCAL"}
        commit = git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        final = self.run_dir.name.removesuffix(".partial")
        run = self.client.create_run(experiment_id, tags=tags, run_name=final)
        self.run_id = run.info.run_id
        self.record = {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": self.run_id}
        self._write_record(self.run_dir)
        params = report_params(self.cfg)
        Param = mlflow.entities.Param
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def _log_metrics(self, items: list[tuple[str, float, int]]) -> None:
        if self.run_id is None:
            return
        if not self.tagged_data:
            # The data fingerprint is recorded before the first step (checkpoints/run.json).
            fingerprint = read_run_record(self.run_dir).get("data_sha256")
            if fingerprint:
                self.client.set_tag(self.run_id, "gptclassify.data_sha256", fingerprint)
            self.tagged_data = True
        fresh = [i for i in items if i[2] > self.done_steps.get(i[0], -1)]
        if not fresh:
            return
        now = int(time.time() * 1000)
        Metric = self.mlflow.entities.Metric
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, s) for k, v, s in fresh])

    def _write_record(self, folder: Path) -> None:
        """RUN/mlflow.json. A quick run against a slow tracking store may be published (its
        work folder renamed) before the run was created: the published folder then gets
        the record when its files are uploaded (`_upload`)."""
        try:
            atomic_write(folder / MLFLOW_FILE, json.dumps(self.record, indent=2) + "\n")
        except OSError:
            pass

    def _upload(self, folder: Path) -> None:
        if self.run_id is None:
            return
        if self.record and not (folder / MLFLOW_FILE).is_file():
            self._write_record(folder)
        for path in sorted(folder.iterdir()):
            if path.name == CHECKPOINTS:
                continue
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=path.name)
            else:
                self.client.log_artifact(self.run_id, str(path))

    def _log_model(self, folder: Path) -> None:
        """The published model as a pyfunc model (`model`), the splits as dataset inputs, and
        the registered model version (--register-model)."""
        if self.run_id is None:
            return
        self._log_datasets(folder)
        from mlflow.models.signature import ModelSignature  # lazy: track (mlflow)
        from mlflow.types.schema import ColSpec, Schema  # lazy: track (mlflow)

        labels = read_classifier_config(folder).labels
        code = Path(__file__).with_name("mlflow_model.py")
        signature = ModelSignature(
            # one unnamed string column: a list of texts or a one-column DataFrame (named
            # `text` or anything) both pass MLflow's schema check
            inputs=Schema([ColSpec("string")]),
            outputs=Schema(
                [ColSpec("string", "label")] + [ColSpec("double", f"p({n})") for n in labels]
            ),
        )
        example = pd.DataFrame({"text": example_texts(folder)})
        with tempfile.TemporaryDirectory(prefix="gptclassify-mlflow-") as tmp:
            files = Path(tmp) / "model_folder"
            files.mkdir()
            for path in folder.iterdir():
                if path.name in MODEL_LEFT_OUT:
                    continue
                if path.is_dir():
                    shutil.copytree(path, files / path.name)
                else:
                    shutil.copy2(path, files / path.name)
            saved = Path(tmp) / "model"
            self.mlflow.pyfunc.save_model(
                path=str(saved),
                python_model=str(code),
                artifacts={"model_folder": str(files)},
                signature=signature,
                input_example=example,
                pip_requirements=["gptclassify[torch]", "mlflow", "pandas"],
            )
            self.client.log_artifacts(self.run_id, str(saved), artifact_path=MODEL_PATH)
        name = self.cfg.runtime.register_model
        if name:
            from mlflow.exceptions import MlflowException  # lazy: track (mlflow)

            try:
                self.client.get_registered_model(name)
            except MlflowException:
                self.client.create_registered_model(name)
            source = f"{self.client.get_run(self.run_id).info.artifact_uri}/{MODEL_PATH}"
            version = self.client.create_model_version(name, source, run_id=self.run_id)
            log.info("MLflow: registered %s version %s", name, version.version)

    def _log_datasets(self, folder: Path) -> None:
        """RUN/data's train / validation / test.csv (the exact rows the run saw) as MLflow
        dataset inputs, with their context (training, validation, testing)."""
        from mlflow.entities import DatasetInput, InputTag  # lazy: track (mlflow)

        datasets = []
        for part, context in (
            ("train", "training"),
            ("validation", "validation"),
            ("test", "testing"),
        ):
            path = folder / "data" / f"{part}.csv"
            if not path.is_file():
                continue
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            dataset = self.mlflow.data.from_pandas(
                frame,
                source=str(path),
                name=part,
                targets="label" if "label" in frame.columns else None,
            )
            tags = [InputTag(key="mlflow.data.context", value=context)]
            datasets.append(DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags))
        if datasets:
            self.client.log_inputs(self.run_id, datasets=datasets)

    def _end(self, status: str) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id, status)
