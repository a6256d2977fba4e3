"""A whole training run: build -> fit -> calibrate -> write the run folder.

`train(cfg)` is what `gptclassify train` calls. Every file it writes is written here, behind
one `is_main` flag (the process that writes; the others compute). The loop itself
(training/loop.py) touches no file.

Reliability: the run works in RUN.partial (training/folder.py) and publishes RUN in one
rename when done; it writes a checkpoint at the end of every epoch (and every
--checkpoint-every steps) from which `train(resume=RUN)` continues exactly, ending with the
same weights as a run that was never interrupted; Ctrl-C or SIGTERM finish the current step,
write a checkpoint and stop.

Speed: when the blocks before the first trainable one are frozen and deterministic, their
output for each text is computed once (training/prefix_cache.py) and every epoch and
evaluation runs only the trainable suffix. The result is the same as running the whole
network every step (tests/test_training.py checks it); `--cache off` turns it off.
"""

from __future__ import annotations

import csv
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from gptclassify import __version__, tokenizer
from gptclassify.args import RESUMABLE, TrainConfig, flat_dict, lora_target_list
from gptclassify.artifact import LoraInfo, Provenance, RunMetrics, write_metrics
from gptclassify.classifier import GPTClassifier, trainable_blocks
from gptclassify.data.batches import TokenSource
from gptclassify.data.encode import Encoded, InputPolicy, encode_ids
from gptclassify.data.prepared import write_splits
from gptclassify.data.sources import load_data
from gptclassify.data.split import Splits
from gptclassify.errors import GPTClassifyError
from gptclassify.files import sha256_file
from gptclassify.metrics import (
    classification_report,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from gptclassify.model_io import lora_base_name
from gptclassify.plots import plot_history
from gptclassify.predict.api import Classifier
from gptclassify.runtime import (
    peak_memory_mb,
    release_free_memory,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from gptclassify.training import faults
from gptclassify.training.build import (
    Backbone,
    build_backbone,
    build_classifier,
    class_weight_tensor,
    new_state,
    training_net,
)
from gptclassify.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from gptclassify.training.distributed import Dist
from gptclassify.training.folder import RunFolder
from gptclassify.training.loop import Callbacks, Engine, Sources, fit
from gptclassify.training.prefix_cache import (
    build_prefix_source,
    prefix_cache_bytes,
    prefix_is_cacheable,
)
from gptclassify.training.report import Fanout, open_reporters, reporting
from gptclassify.training.state import History, TrainState
from gptclassify.weights import weights_file

log = logging.getLogger("gptclassify.training")

HISTORY_COLUMNS = (
    "step",
    "epoch",
    "examples_seen",
    "train_loss",
    "val_loss",
    "train_accuracy",
    "val_accuracy",
    "full_val_accuracy",
    "full_val_loss",
)


@contextmanager
def run_logging(run_dir: Path, quiet: bool = False) -> Iterator[None]:
    """Log lines go to run_dir/train.log and (unless quiet) the terminal."""
    logger = logging.getLogger("gptclassify")
    logger.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / "train.log", encoding="utf-8")]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    if not quiet:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        # Lines meant for the file only (the terminal shows the error its own way).
        console.addFilter(lambda record: not getattr(record, "file_only", False))
        handlers.append(console)
    for h in handlers:
        logger.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()


class TrainingInterrupted(GPTClassifyError):
    """Ctrl-C or SIGTERM stopped the run after a step; a checkpoint was written."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum
        """What a shell reports for a process stopped by that signal (130, 143)."""


def train(
    cfg: TrainConfig | None = None,
    quiet: bool = False,
    progress: bool = True,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    callbacks: Sequence[Callbacks] = (),
) -> Classifier:
    """Fine-tune a classifier as `cfg` says, write the run folder, and return the classifier.

    resume: a run folder (or its .partial) to continue from its newest checkpoint, with the
    run's own config; `overrides` may change only `args.RESUMABLE` options (more epochs).
    overwrite: replace an existing run folder at `cfg.out` (it stays until the new run is
    complete).
    callbacks: more listeners to the loop (they hear each step and epoch before the run
    checkpoints it; `tune` prunes trials there).
    """
    if resume is not None and cfg is not None:
        raise GPTClassifyError("resume a run with its own config: give resume=RUN, not a config")
    if resume is None:
        cfg = cfg or TrainConfig()
        if overrides:
            cfg = TrainConfig.from_dict({**cfg.to_dict(), **overrides})
        device = cfg.runtime.device
    else:
        device = RunFolder.peek_config(resume).get("runtime", {}).get("device", "auto")
    dist, target = Dist.from_env(device)
    try:
        return _train(cfg, dist, target, quiet, progress, resume, overwrite, overrides, callbacks)
    finally:
        dist.close()


def _train(
    cfg: TrainConfig | None,
    dist: Dist,
    device: torch.device,
    quiet: bool,
    progress: bool,
    resume: str | Path | None,
    overwrite: bool,
    overrides: dict[str, Any] | None,
    callbacks: Sequence[Callbacks] = (),
) -> Classifier:
    # Rank 0 claims (or reopens) the run folder; the others learn where it is.
    folder = None
    if dist.is_main:
        if resume is not None:
            folder = RunFolder.resume(resume)
        else:
            assert cfg is not None
            folder = RunFolder.new(cfg.out, overwrite)
    final = Path(dist.broadcast_text(str(folder.final) if folder else None))
    folder = folder or RunFolder.at(final)
    if resume is not None:
        cfg = resumed_config(folder, overrides or {})
    assert cfg is not None
    cfg.out = str(folder.final)
    if not dist.is_main:  # only rank 0 logs (no stray "last resort" output elsewhere)
        logging.getLogger("gptclassify").addHandler(logging.NullHandler())
    failed_early = False
    logs = run_logging(folder.work, quiet=quiet) if dist.is_main else nullcontext()
    with logs:
        try:
            run = Run(cfg, folder, progress and not quiet, dist, device, callbacks)
            return run.execute()
        except TrainingInterrupted as exc:
            log.info("%s", exc)
            raise
        except BaseException as exc:
            # The log keeps why a run ended (a crash leaves the folder to inspect).
            reason = str(exc).strip() or type(exc).__name__
            log.error("Run failed: %s", reason, extra={"file_only": True})
            # Bad input or settings before the first checkpoint: nothing worth keeping.
            failed_early = isinstance(exc, GPTClassifyError) and resume is None
            failed_early = failed_early and dist.is_main
            failed_early = failed_early and latest_checkpoint(folder.work) is None
            raise
        finally:
            if failed_early:
                folder.discard()


def resumed_config(folder: RunFolder, overrides: dict[str, Any]) -> TrainConfig:
    """The run's recorded TrainConfig, with the few options a resumed run may change."""
    record = folder.read_record()
    cfg = TrainConfig.from_dict(record["train_config"], source=str(folder.checkpoints / "run.json"))
    recorded = flat_dict(cfg)
    for name, value in overrides.items():
        if name not in recorded:
            raise GPTClassifyError(f"--{name.replace('_', '-')}: not an option of train")
        if value == recorded[name]:
            continue
        if name not in RESUMABLE:
            allowed = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(RESUMABLE))
            raise GPTClassifyError(
                f"--{name.replace('_', '-')} {value}: the run was started with "
                f"{recorded[name]!r}; a resumed run keeps its settings (only {allowed} may change)"
            )
        setattr(cfg, name, value)
    return TrainConfig.from_dict(cfg.to_dict())  # validated again


@dataclass
class Prepared:
    """What the build step made: data, model, inputs."""

    splits: Splits
    labels: list[str]
    encoded: dict[str, Encoded]
    policy: InputPolicy
    backbone: Backbone
    model: GPTClassifier
    start: int
    """Index of the first trainable block: blocks before it are a frozen prefix."""


class Run:
    """One training run in `folder`, on one process of `dist` (rank 0, `is_main`, writes the
    files and logs; every rank computes)."""

    def __init__(
        self,
        cfg: TrainConfig,
        folder: RunFolder,
        progress: bool = True,
        dist: Dist | None = None,
        device: torch.device | None = None,
        callbacks: Sequence[Callbacks] = (),
    ) -> None:
        self.cfg = cfg
        self.folder = folder
        self.run_dir = folder.work
        self.dist = dist or Dist.single()
        self.is_main = self.dist.is_main
        self.progress = progress and self.is_main
        self.device = device or resolve_device(cfg.runtime.device)
        self.dtype = resolve_precision(cfg.runtime.precision, self.device)
        self.stop_signal: int | None = None
        """Set by Ctrl-C / SIGTERM: the loop stops after the current step."""
        # Trackers (--report-to) listen on the process that writes files only.
        reporters = open_reporters(cfg, folder.work) if self.is_main else []
        self.callbacks = Fanout([*reporters, *callbacks])

    def execute(self) -> Classifier:
        with reporting(self.callbacks.callbacks) as end:
            classifier = self._execute()
            end.folder = self.folder.final
        return classifier

    def _execute(self) -> Classifier:
        t0 = time.perf_counter()
        cfg = self.cfg
        with self.stop_on_signals():
            seed_everything(cfg.train.seed)
            log.info(
                "Run folder: %s (published as %s when done) | device %s | precision %s",
                self.folder.work,
                self.folder.final,
                self.device,
                str(self.dtype).removeprefix("torch."),
            )
            prep = self.build()
            resume_from = self.record(prep)
            sources, cached = self.sources(prep)
            engine = self.engine(prep, sources)
            state = new_state(prep.model, cfg.train, self.device)
            elapsed = 0.0
            if resume_from is not None:
                elapsed = self.restore(state, resume_from)
            t_fit = time.perf_counter()
            self.fit(state, engine, sources, elapsed)
            fit_time = elapsed + time.perf_counter() - t_fit
            if not state.finished:
                self.checkpoint(state, fit_time)
                signum = self.stop_signal or signal.SIGINT
                raise TrainingInterrupted(
                    f"Stopped by {signal.Signals(signum).name} after step {state.step + 1} "
                    f"(epoch {state.epoch}); a checkpoint is in {self.folder.checkpoints}. "
                    f"Continue with: gptclassify train --resume {self.folder.final}",
                    signum,
                )
        log.info(
            "Training completed in %.2f minutes; kept epoch %d (best full-validation %s)",
            fit_time / 60,
            state.best_epoch,
            "loss" if cfg.eval.best_by == "val_loss" else "accuracy",
        )
        return self.finish(prep, state, engine, sources, cached, t0, fit_time)

    @contextmanager
    def stop_on_signals(self) -> Iterator[None]:
        """Ctrl-C / SIGTERM: finish the current step, checkpoint, stop (a second one aborts)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.stop_signal is not None:
                raise KeyboardInterrupt  # asked twice: stop now
            self.stop_signal = signum
            log.info("%s received: stopping after this step", signal.Signals(signum).name)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def record(self, prep: Prepared) -> Path | None:
        """Write the run's record (fresh run), or check it and find the checkpoint to resume
        from (resumed run)."""
        checkpoint = latest_checkpoint(self.folder.work)
        fingerprint = prep.splits.fingerprint()
        if self.dist.broadcast_text(fingerprint) != fingerprint:
            raise GPTClassifyError(
                f"rank {self.dist.rank} read other training data than rank 0: every process "
                "(and node) must see the same data files"
            )
        if checkpoint is None:
            if self.is_main:
                self.folder.write_record(
                    {
                        "format": "gptclassify-run",
                        "gptclassify": __version__,
                        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "train_config": self.cfg.to_dict(),
                        "data_sha256": fingerprint,
                    }
                )
            return None
        recorded = self.folder.read_record().get("data_sha256")
        if recorded != fingerprint:
            raise GPTClassifyError(
                f"{self.folder.final}: the training data differ from the data the run started "
                "on; a resumed run must see the same rows (start a new run instead)"
            )
        return checkpoint

    def restore(self, state: TrainState, checkpoint: Path) -> float:
        """Load a checkpoint into `state`; returns the fit time it had already spent."""
        saved, meta = load_checkpoint(checkpoint)
        try:
            state.load_state_dict(saved)
        except (ValueError, KeyError) as exc:
            raise GPTClassifyError(f"{checkpoint}: does not fit this run ({exc})") from None
        done = state.epoch - 1
        if self.cfg.train.epochs < done:
            raise GPTClassifyError(
                f"--epochs {self.cfg.train.epochs}: the run has already completed {done} epochs"
            )
        if state.finished and self.cfg.train.epochs > done and not state.stopped_early:
            state.finished = False  # more epochs asked for: continue from the latest weights
        if state.stopped_early and self.cfg.train.epochs > done:
            log.info("The run stopped early (--patience); more epochs do not continue it")
        log.info(
            "Resumed from %s: %d steps done, epoch %d of %d",
            checkpoint.name,
            state.step + 1,
            min(state.epoch, self.cfg.train.epochs),
            self.cfg.train.epochs,
        )
        return float(meta.get("fit_time_s", 0.0))

    def checkpoint(self, state: TrainState, fit_time: float, best: bool = False) -> None:
        if self.is_main:
            save_checkpoint(
                self.folder.work,
                state.state_dict(),
                {"fit_time_s": fit_time, "best": best, "epoch": state.epoch},
                keep=self.cfg.runtime.keep_checkpoints,
            )

    # ---- build ------------------------------------------------------------------------

    def build(self) -> Prepared:
        cfg = self.cfg
        # The model first: a bad --model or --trainable fails before any data is read.
        torch.manual_seed(cfg.train.seed)  # a random init depends on the seed only
        backbone = build_backbone(cfg)
        release_free_memory()  # the file's tensors and transposed copies are garbage now
        trainable_blocks(cfg.backbone.trainable, backbone.model.config.n_layers)
        splits = load_data(cfg.data, cfg.train.seed)
        for warning in splits.warnings:
            log.warning("Warning: %s", warning)
        labels = list(splits.label_names)
        parts = {name: part for name, part in splits.parts() if len(part.texts) > 0}
        if "validation" not in parts:
            raise GPTClassifyError(
                "the validation split is empty; use more data or another --split"
            )
        if self.is_main:
            # The exact texts this run saw, so `evaluate RUN` needs no other input.
            write_splits(splits, self.run_dir / "data", meta={"written_by": "gptclassify train"})

        model, start = build_classifier(cfg, len(labels), backbone)
        model.to(self.device)
        raw = {k: tokenizer.encode_batch(v.texts) for k, v in parts.items()}
        policy = InputPolicy.resolve(
            cfg.inputs.pad_to,
            cfg.inputs.max_length,
            cfg.inputs.truncate,
            model.gpt.config.context_length,
            [len(r) for r in raw["train"]],
        )
        encoded = {
            name: encode_ids(raw[name], policy, splits.label_ids(part), part.source)
            for name, part in parts.items()
        }
        n_train = len(encoded["train"])
        if cfg.train.batch_size % self.dist.world_size:
            raise GPTClassifyError(
                f"--batch-size {cfg.train.batch_size} is the global batch: it must divide "
                f"evenly over the {self.dist.world_size} processes"
            )
        if n_train < cfg.train.batch_size:
            raise GPTClassifyError(
                f"--batch-size {cfg.train.batch_size} is larger than the {n_train} training "
                f"texts: an epoch would have no full batch (the last, partial batch is "
                f"dropped, as in the book); use --batch-size {n_train} or less"
            )
        for name, enc in encoded.items():
            counts = np.bincount(enc.labels, minlength=len(labels))
            log.info(
                "%-10s %5d texts (%s); %d truncated to %d tokens (%s kept)",
                name,
                len(enc),
                ", ".join(f"{n} {c}" for n, c in zip(labels, counts, strict=True)),
                enc.truncated,
                policy.max_length,
                "start" if cfg.inputs.truncate == "end" else "end",
            )
        if cfg.inputs.pool == "last" and policy.pad_length is None:
            log.info(
                "Note: --pool last with --pad-to batch reads padding whose amount depends on "
                "the batch"
            )
        log.info(
            "Model %s: %s parameters, %s trainable (%s)",
            backbone.description,
            f"{sum(p.numel() for p in model.parameters()):,}",
            f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,}",
            cfg.backbone.trainable,
        )
        return Prepared(splits, labels, encoded, policy, backbone, model, start)

    def sources(self, prep: Prepared) -> tuple[dict[str, Any], bool]:
        """Token sources for every split, or the frozen-prefix cache when it is exact and fits."""
        cfg, model = self.cfg, prep.model
        sources: dict[str, Any] = {k: TokenSource(v, self.device) for k, v in prep.encoded.items()}
        cacheable = (
            cfg.runtime.cache == "auto"
            and prep.start > 0
            and prefix_is_cacheable(
                cfg.inputs.pool, prep.policy.pad_length is not None, model.gpt.config.drop_rate
            )
        )
        if cacheable:
            need = prefix_cache_bytes(list(prep.encoded.values()), model.gpt.config.emb_dim)
            if need > cfg.runtime.cache_gb * 1e9:
                log.info(
                    "Frozen-prefix cache would need %.1f GB (> --cache-gb %.1f); running the "
                    "whole network",
                    need / 1e9,
                    cfg.runtime.cache_gb,
                )
                cacheable = False
        if cacheable:
            t_cache = time.perf_counter()
            sources = {
                k: build_prefix_source(model, s, prep.start, self.dtype, dist=self.dist)
                for k, s in sources.items()
            }
            log.info(
                "Cached the frozen blocks 0-%d for all texts in %.1f s",
                prep.start - 1,
                time.perf_counter() - t_cache,
            )
        return sources, cacheable

    def engine(self, prep: Prepared, sources: dict[str, Any]) -> Engine:
        start = sources["train"].start  # > 0: the frozen prefix is cached
        net = training_net(prep.model, self.dtype, start)
        if self.cfg.runtime.compile:
            net = torch.compile(net, dynamic=True)  # type: ignore[assignment]
        weights = (
            class_weight_tensor(sources["train"].labels, len(prep.labels)).to(self.device)
            if self.cfg.train.class_weights == "auto"
            else None
        )
        return Engine(
            self.dist.wrap(net, self.device),
            self.device,
            self.dtype,
            weights,
            num_classes=len(prep.labels),
            dist=self.dist,
            eval_net=net,
        )

    # ---- fit --------------------------------------------------------------------------

    def fit(
        self, state: TrainState, engine: Engine, sources: dict[str, Any], elapsed: float = 0.0
    ) -> None:
        cfg = self.cfg
        n_batches = len(sources["train"]) // cfg.train.batch_size
        n_steps = cfg.train.epochs * math.ceil(n_batches / cfg.train.grad_accum)
        bar = tqdm(
            total=n_steps,
            initial=state.step + 1,
            desc="train",
            unit="step",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        # Log lines are printed above the progress bar instead of through it. (The redirect
        # adds a console handler of its own, so it must not run when the terminal should
        # stay quiet.)
        redirect = (
            logging_redirect_tqdm(loggers=[logging.getLogger("gptclassify")])
            if self.progress
            else nullcontext()
        )
        with redirect:
            fit(
                state,
                engine,
                Sources(sources["train"], sources["validation"]),
                cfg.train,
                cfg.eval,
                # Reporters hear a step or epoch before it is checkpointed (so what they
                # sent never misses steps a resumed run does not redo).
                Fanout([self.callbacks, RunCallbacks(self, bar, elapsed)]),
            )
        bar.close()

    # ---- evaluate and write -----------------------------------------------------------

    def finish(
        self,
        prep: Prepared,
        state: TrainState,
        engine: Engine,
        sources: dict[str, Any],
        cached: bool,
        t0: float,
        fit_time: float,
    ) -> Classifier:
        cfg, labels = self.cfg, prep.labels
        lora = self.lora_info(prep)
        if lora is not None and lora.merged:
            engine = self.engine(prep, sources)  # evaluate the merged model that is saved
        logits = {k: engine.logits(s) for k, s in sources.items()}
        temperature = 1.0
        calibration: dict[str, float] | None = None
        if cfg.eval.calibrate:
            y_val = prep.encoded["validation"].labels
            temperature = fit_temperature(logits["validation"], y_val)
            calibration = {
                "temperature": temperature,
                "val_ece_before": expected_calibration_error(softmax(logits["validation"]), y_val),
                "val_ece_after": expected_calibration_error(
                    softmax(logits["validation"], temperature), y_val
                ),
            }
            log.info(
                "Calibrated temperature %.3f: validation ECE %.4f -> %.4f",
                temperature,
                calibration["val_ece_before"],
                calibration["val_ece_after"],
            )
        reports = {
            k: classification_report(softmax(v, temperature), prep.encoded[k].labels, labels)
            for k, v in logits.items()
        }
        log.info(
            " | ".join(
                f"{k.capitalize()} accuracy: {r['accuracy'] * 100:.2f}%" for k, r in reports.items()
            )
        )
        model = prep.model
        provenance = Provenance(
            base_model=prep.backbone.description,
            weights=cfg.backbone.weights,
            trainable=cfg.backbone.trainable,
            pad_to=cfg.inputs.pad_to,
            lora=lora,
            train_config=cfg.to_dict(),
        )
        classifier = Classifier(
            model,
            labels,
            prep.policy,
            temperature,
            device=self.device,
            precision=cfg.runtime.precision,
            provenance=provenance,
        )
        metrics = RunMetrics(
            splits=reports,
            best_epoch=state.best_epoch,
            stopped_early=state.stopped_early,
            epochs_run=len(state.history.epochs),
            examples_seen=state.examples_seen,
            training_time_s=fit_time,
            total_time_s=time.perf_counter() - t0,
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
            total_params=sum(p.numel() for p in model.parameters()),
            frozen_prefix_cache=cached,
            device=str(self.device),
            precision=str(self.dtype).removeprefix("torch."),
            peak_memory_mb=peak_memory_mb(self.device),
            truncated={k: e.truncated for k, e in prep.encoded.items()},
            calibration=calibration,
            world_size=self.dist.world_size,
            backend=self.dist.backend,
        )
        classifier.metrics = metrics.to_json()
        if self.is_main:
            # Everything goes into the work folder, which then becomes RUN in one rename: a
            # kill between two of these files leaves RUN as it was (resume redoes them).
            classifier.save(self.run_dir)
            faults.reached("publish")
            write_metrics(self.run_dir, metrics)
            write_history(self.run_dir / "history.csv", state.history)
            plot_history(state.history.steps, state.history.epochs, self.run_dir)
            self.callbacks.on_finish(metrics.to_json())
            faults.reached("publish")
            log.info("Saved model, metrics, history and plots; publishing %s", self.folder.final)
            self.folder.publish()
        classifier.path = self.folder.final
        return classifier

    def lora_info(self, prep: Prepared) -> LoraInfo | None:
        """How config.json describes LoRA; merges the adapters first when --merge-lora is set.

        Unmerged adapters on a pretrained base are saved alone (with the head) and the base
        is named and checksummed; on a random base the whole model must be saved.
        """
        b = self.cfg.backbone
        if b.trainable != "lora":
            return None
        info = LoraInfo(b.lora_rank, b.lora_alpha, lora_target_list(b.lora_targets), b.merge_lora)
        if b.merge_lora:
            prep.model.merge_lora()
        elif prep.backbone.pretrained_dir is not None:
            directory = prep.backbone.pretrained_dir
            info = LoraInfo(
                info.rank,
                info.alpha,
                info.targets,
                merged=False,
                adapters_only=True,
                base=lora_base_name(b.model, directory),
                base_sha256=sha256_file(weights_file(directory)),
            )
        return info


class RunCallbacks(Callbacks):
    """The run's view of the loop: progress bar, the book's log lines, checkpoints, and
    stopping on a signal."""

    def __init__(self, run: Run, bar: tqdm, elapsed: float) -> None:
        self.run = run
        self.bar = bar
        self.started = time.perf_counter() - elapsed

    def fit_time(self) -> float:
        return time.perf_counter() - self.started

    def on_step(self, state: TrainState, loss: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        faults.reached("step")
        every = self.run.cfg.runtime.checkpoint_every
        if every and (state.step + 1) % every == 0:
            self.run.checkpoint(state, self.fit_time())

    def on_estimate(self, state: TrainState, row: dict[str, Any]) -> None:
        log.info(
            "Ep %d (Step %06d): Train loss %.3f, Val loss %.3f",
            row["epoch"],
            row["step"],
            row["train_loss"],
            row["val_loss"],
        )
        faults.reached("estimate")

    def on_epoch(self, state: TrainState, row: dict[str, Any]) -> None:
        # The book's line (estimates on eval_iter batches), then the full-validation figures
        # that choose the kept epoch, so the log shows why an epoch was kept.
        log.info(
            "Training accuracy: %.2f%% | Validation accuracy: %.2f%% | Full validation: "
            "accuracy %.2f%%, loss %.3f",
            row["train_accuracy"] * 100,
            row["val_accuracy"] * 100,
            row["full_val_accuracy"] * 100,
            row["full_val_loss"],
        )
        if state.stopped_early:
            log.info(
                "Stopping early: no validation improvement for %d epoch(s)",
                self.run.cfg.eval.patience,
            )
        faults.reached("epoch")
        self.run.checkpoint(state, self.fit_time(), best=state.best_epoch == row["epoch"])

    def should_stop(self) -> bool:
        stop = self.run.stop_signal is not None
        if self.run.dist.active:  # every rank stops at the same step, or none does
            stop = self.run.dist.sum_floats(float(stop))[0] > 0
        return stop


def write_history(path: Path, history: History) -> None:
    """history.csv: loss-estimate rows and epoch rows, in step order."""
    rows = [dict(r) for r in history.steps] + [
        {k: r[k] for k in HISTORY_COLUMNS if k in r} for r in history.epochs
    ]
    rows.sort(key=lambda r: (r["step"], "train_accuracy" in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in HISTORY_COLUMNS})
