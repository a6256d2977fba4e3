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

Beside this module: build.py (the build steps: data checked and encoded, backbone,
classifier), callbacks.py (the run's view of the loop), results.py (the finish steps, each
returning a value: LoRA record, surface head, evaluation, baseline, provenance, metrics; then
the one write), history.py, logs.py, signals.py; their public names are importable from here
too.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.contrib.logging import logging_redirect_tqdm

from gptclassify import __version__, surface
from gptclassify.args import (
    IN_MEMORY,
    IN_MEMORY_FIELDS,
    RESUMABLE,
    DataConfig,
    TrainConfig,
    flat_dict,
)
from gptclassify.classifier import GPTClassifier, trainable_blocks
from gptclassify.data.batches import TokenSource
from gptclassify.data.encode import Encoded, InputPolicy
from gptclassify.data.prepared import write_splits
from gptclassify.data.sources import load_data
from gptclassify.data.split import Splits
from gptclassify.errors import GPTClassifyError, option
from gptclassify.files import sha256_file
from gptclassify.predict.api import Classifier
from gptclassify.predict.torch_runtime import TorchRuntime
from gptclassify.progress import make as make_progress
from gptclassify.progress import reporting as report_progress
from gptclassify.runtime import (
    release_free_memory,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from gptclassify.training.build import (
    Backbone,
    build_backbone,
    build_classifier,
    check_batch_size,
    check_task,
    encode_splits,
    label_counts,
    loss_weights,
    new_state,
    training_net,
    training_parts,
)
from gptclassify.training.callbacks import RunCallbacks
from gptclassify.training.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    resume_advice,
    save_checkpoint,
)
from gptclassify.training.distributed import Dist
from gptclassify.training.folder import RunFolder
from gptclassify.training.history import HISTORY_COLUMNS, write_history
from gptclassify.training.logs import run_logging
from gptclassify.training.loop import Callbacks, Engine, Sources, fit
from gptclassify.training.prefix_cache import (
    CachePlan,
    PrefixMemo,
    PrefixSource,
    build_prefix_source,
    plan_prefix_cache,
    prefix_cache_bytes,
    prefix_is_cacheable,
)
from gptclassify.training.report import Fanout, open_reporters, reporting
from gptclassify.training.results import (
    Evaluation,
    SurfaceFit,
    baseline_beats,
    compare_with_baseline,
    describe_lora,
    evaluate_run,
    fit_surface,
    run_metrics,
    run_provenance,
    write_run,
)
from gptclassify.training.signals import TrainingInterrupted, stop_on_signals
from gptclassify.training.state import TrainState

__all__ = [
    "HISTORY_COLUMNS",
    "Prepared",
    "Run",
    "RunCallbacks",
    "TrainingInterrupted",
    "resumed_config",
    "run_logging",
    "train",
    "write_history",
]

log = logging.getLogger("gptclassify.training")


def train(
    cfg: TrainConfig | None = None,
    quiet: bool = False,
    progress: bool = True,
    *,
    resume: str | Path | None = None,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    callbacks: Sequence[Callbacks] = (),
    note: str | None = None,
    prefix_memo: PrefixMemo | None = None,
) -> Classifier:
    """Fine-tune a classifier as `cfg` says, write the run folder, and return the classifier.

    resume: a run folder (or its .partial) to continue from its newest checkpoint, with the
    run's own config; `overrides` may change only `args.RESUMABLE` options (more epochs).
    overwrite: replace an existing run folder at `cfg.out` (it stays until the new run is
    complete).
    callbacks: more listeners to the loop (they hear each step and epoch before the run
    checkpoints it; `tune` prunes trials there).
    note: a line for the top of the run's log (the CLI says which recipe set the options).
    prefix_memo: frozen-prefix caches shared with other runs of this process (recipe auto's
    candidates, a search's trials): a cache this run needs is taken from it when an earlier
    run built the same one, and kept in it otherwise.
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
    finished = False
    try:
        result = _train(
            cfg,
            dist,
            target,
            quiet,
            progress,
            resume,
            overwrite,
            overrides,
            callbacks,
            note,
            prefix_memo,
        )
        finished = True
        return result
    finally:
        dist.close(finished)


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
    note: str | None = None,
    prefix_memo: PrefixMemo | None = None,
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
        try:
            cfg = resumed_config(folder, overrides or {})
        except BaseException:
            folder.release()  # the run is left as it was, and free
            raise
    assert cfg is not None
    cfg.out = str(folder.final)
    if not dist.is_main:  # only rank 0 logs (no stray "last resort" output elsewhere)
        logging.getLogger("gptclassify").addHandler(logging.NullHandler())
    failed_early = False
    logs = run_logging(folder.work, quiet=quiet) if dist.is_main else nullcontext()
    # Every long stage under this run reports as its progress bar does (progress.py).
    with logs, report_progress(progress and not quiet and dist.is_main):
        try:
            if note:
                log.info("%s", note)
            run = Run(cfg, folder, progress and not quiet, dist, device, callbacks, prefix_memo)
            return run.execute()
        except TrainingInterrupted as exc:
            log.info("%s", exc)
            raise
        except BaseException as exc:
            # The log keeps why a run ended (a crash leaves the folder to inspect).
            reason = str(exc).strip() or type(exc).__name__
            log.error("Run failed: %s", reason, extra={"file_only": True})
            # Any failure before the first checkpoint (bad input or settings, a library's
            # error on odd data, Ctrl-C while building): nothing worth keeping, and a
            # leftover RUN.partial would block the next run at this --out.
            failed_early = isinstance(exc, Exception | KeyboardInterrupt) and resume is None
            failed_early = failed_early and dist.is_main
            failed_early = failed_early and latest_checkpoint(folder.work) is None
            raise
        finally:
            if failed_early:
                folder.discard()
            folder.release()  # the run folder is free again (a killed process frees it too)


def resumed_config(folder: RunFolder, overrides: dict[str, Any]) -> TrainConfig:
    """The run's recorded TrainConfig, with the few options a resumed run may change.

    Relative paths are read from the folder the run was started in (not today's), and the
    files it read besides its data (a --class-weights JSON, a --model shape) must hold what
    they held then: a resumed run trains on what it started with, or is refused."""
    record = folder.read_record()
    cfg = TrainConfig.from_dict(record["train_config"], source=str(folder.checkpoints / "run.json"))
    if isinstance(record.get("cwd"), str):
        _resolve_from(cfg, Path(record["cwd"]))
    recorded_files = record.get("inputs_sha256") or {}
    for flag, path in _external_files(cfg).items():
        if flag not in recorded_files:
            continue
        if not path.is_file():
            raise GPTClassifyError(
                f"{flag} {path}: the file the run started with is gone; put it back to "
                "resume, or start a new run"
            )
        if sha256_file(path) != recorded_files[flag]:
            raise GPTClassifyError(
                f"{flag} {path}: changed since the run started (sha256 differs from its "
                "run.json); a resumed run trains on what it started with: put the original "
                "back, or start a new run"
            )
    if any(str(getattr(cfg.data, k) or "").startswith(IN_MEMORY) for k in IN_MEMORY_FIELDS):
        # Data given in memory: the run's own data/ folder holds its exact rows.
        saved = next(
            (f / "data" for f in (folder.work, folder.final) if (f / "data").is_dir()), None
        )
        if saved is None:
            raise GPTClassifyError(
                f"{folder.final}: the run was trained on data in memory and its data/ folder "
                "is gone; start a new run"
            )
        cfg.data = DataConfig(data=str(saved))
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


def _resolve_from(cfg: TrainConfig, started_in: Path) -> None:
    """Relative file paths of a run's record made absolute against the folder it was started
    in, so a resume from elsewhere reads the same files."""

    def resolved(value: Any) -> Any:
        if not isinstance(value, str) or not value or Path(value).is_absolute():
            return value
        if str(value).startswith(IN_MEMORY):
            return value
        there = started_in / value
        return str(there) if there.exists() else value

    for name in IN_MEMORY_FIELDS:
        value = getattr(cfg.data, name)
        if name != "data" or value != DataConfig().data:
            setattr(cfg.data, name, resolved(value))
    if cfg.train.class_weights not in ("none", "balanced", "auto"):
        cfg.train.class_weights = resolved(cfg.train.class_weights)
    model = cfg.backbone.model
    if model.endswith((".json", ".gguf")) or (started_in / model / "config.json").is_file():
        cfg.backbone.model = resolved(model)


def _external_files(cfg: TrainConfig) -> dict[str, Path]:
    """The small files besides the data a run reads its settings from, by flag."""
    out = {}
    if cfg.train.class_weights not in ("none", "balanced", "auto"):
        out["--class-weights"] = Path(cfg.train.class_weights)
    model = cfg.backbone.model
    if model.endswith(".json"):
        out["--model"] = Path(model)
    elif (Path(model) / "config.json").is_file():
        out["--model"] = Path(model) / "config.json"
    return out


def _score(value: float, metric: str) -> str:
    """A validation score for the log: accuracy in percent, macro F1 as a fraction."""
    return f"{value:.4f}" if metric == "macro_f1" else f"{value * 100:.2f}%"


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
        prefix_memo: PrefixMemo | None = None,
    ) -> None:
        self.cfg = cfg
        self.prefix_memo = prefix_memo
        self.folder = folder
        self.run_dir = folder.work
        self.dist = dist or Dist.single()
        self.is_main = self.dist.is_main
        self.progress = progress and self.is_main
        self.device = device or resolve_device(cfg.runtime.device)
        self.dtype = resolve_precision(cfg.runtime.precision, self.device)
        self.stop_signal: int | None = None
        """Set by Ctrl-C / SIGTERM: the loop stops after the current step."""
        self.cache_folder: Path | None = None
        """The memory-mapped frozen-prefix cache's folder while it exists (removed at the end)."""
        self.disk_sources: list[PrefixSource] = []
        # Trackers (--report-to) listen on the process that writes files only.
        reporters = open_reporters(cfg, folder.work) if self.is_main else []
        self.callbacks = Fanout([*reporters, *callbacks])

    def execute(self) -> Classifier:
        try:
            with reporting(self.callbacks.callbacks) as end:
                classifier = self._execute()
                end.folder = self.folder.final
            return classifier
        finally:
            self.close_cache()  # a memory-mapped cache never outlives the run, however it ends

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
                    f"Continue with: {resume_advice(self.folder.final)}",
                    signum,
                )
        log.info(
            "Training completed in %.2f minutes; kept epoch %d (best full-validation %s)",
            fit_time / 60,
            state.best_epoch,
            "loss"
            if cfg.eval.best_by == "val_loss"
            else "macro F1 at tuned thresholds"
            if engine.multi_label
            else "accuracy",
        )
        return self.finish(prep, state, engine, sources, cached, t0, fit_time)

    def stop_on_signals(self) -> AbstractContextManager[None]:
        """Ctrl-C / SIGTERM: finish the current step, checkpoint, stop (a second one aborts)."""
        return stop_on_signals(self._stop)

    def _stop(self, signum: int) -> None:
        self.stop_signal = signum

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
                        "cwd": str(Path.cwd()),  # where relative paths are read from
                        "inputs_sha256": {
                            flag: sha256_file(path)
                            for flag, path in _external_files(self.cfg).items()
                            if path.is_file()
                        },
                    }
                )
        elif self.folder.read_record().get("data_sha256") != fingerprint:
            raise GPTClassifyError(
                f"{self.folder.final}: the training data differ from the data the run started "
                "on; a resumed run must see the same rows (start a new run instead)"
            )
        if self.is_main:
            # The exact texts this run saw, so `evaluate RUN` needs no other input: written
            # once the checks pass (a refused resume leaves the run's split as it was).
            write_splits(
                prep.splits, self.run_dir / "data", meta={"written_by": "gptclassify train"}
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
                f"{option('epochs', self.cfg.train.epochs)}: the run has already completed "
                f"{done} epochs"
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
        """Data, model and inputs, in that order (training/build.py's steps), said in the log."""
        cfg = self.cfg
        # The data first: reading them takes seconds, resolving a model may download
        # gigabytes, so a bad file or column fails before any download starts.
        splits = load_data(cfg.data, cfg.train.seed)
        for warning in splits.warnings:
            log.warning("Warning: %s", warning)
        labels = list(splits.label_names)
        check_task(splits, cfg.data.task, cfg.eval)
        if splits.multi_label:
            log.info(
                "Multi-label data: %d labels (%s); sigmoid per label, binary cross-entropy",
                len(labels),
                ", ".join(labels),
            )
        parts = training_parts(splits)
        torch.manual_seed(cfg.train.seed)  # a random init depends on the seed only
        backbone = build_backbone(cfg)
        release_free_memory()  # the file's tensors and transposed copies are garbage now
        trainable_blocks(cfg.backbone.trainable, backbone.model.config.n_layers)

        model, start = build_classifier(cfg, len(labels), backbone)
        model.to(self.device)
        policy, encoded, tokenized = encode_splits(
            parts, splits, backbone.tokenizer, cfg.inputs, model.gpt.config.context_length
        )
        n_tokens = sum(t.tokens for t in tokenized.values())
        seconds = sum(t.seconds for t in tokenized.values())
        log.info(
            "Tokenized %s texts, %s tokens, in %.2f s (%.2f s per million tokens)",
            f"{sum(len(t.ids) for t in tokenized.values()):,}",
            f"{n_tokens:,}",
            seconds,
            seconds / max(n_tokens, 1) * 1e6,
        )
        check_batch_size(cfg.train.batch_size, len(encoded["train"]), self.dist.world_size)
        for name, enc in encoded.items():
            counts = label_counts(enc, len(labels))
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
            plan = self.cache_plan(
                prefix_cache_bytes(list(prep.encoded.values()), model.gpt.config.emb_dim)
            )
            cacheable = plan.where != "off"
        if cacheable:
            t_cache = time.perf_counter()
            sources = {
                k: build_prefix_source(
                    model,
                    s,
                    prep.start,
                    self.dtype,
                    dist=self.dist,
                    disk_path=plan.folder / f"{k}.f32" if plan.folder else None,
                    memo=self.prefix_memo,
                )
                for k, s in sources.items()
            }
            self.disk_sources = [s for s in sources.values() if s.disk is not None]
            log.info(
                "Cached the frozen blocks 0-%d for all texts in %.1f s",
                prep.start - 1,
                time.perf_counter() - t_cache,
            )
        return sources, cacheable

    def cache_plan(self, nbytes: int) -> CachePlan:
        """Where the frozen-prefix cache goes (memory, a memory-mapped file, or nowhere), said
        in the log. A file goes in its own folder: RUN.partial/prefix-cache, or a new folder
        under --prefix-cache-dir; one left by a killed run is replaced."""
        rt = self.cfg.runtime
        rank = f"-rank{self.dist.rank}" if self.dist.active else ""
        if rt.prefix_cache_dir is None:
            folder = self.run_dir / f"prefix-cache{rank}"
        else:
            # Named after the run (the same again on --resume, so a killed run's file is
            # replaced, not left beside a new one) and its full path (runs of the same name
            # elsewhere do not collide).
            tag = hashlib.sha256(str(self.folder.final.absolute()).encode()).hexdigest()[:8]
            name = f"gptclassify-prefix-cache-{self.folder.final.name}-{tag}{rank}"
            folder = Path(rt.prefix_cache_dir) / name
        plan = plan_prefix_cache(nbytes, rt.cache_gb, rt.cache_disk_gb, folder)
        if plan.where == "memory":
            log.info("Frozen-prefix cache: in memory, %.2f GB", nbytes / 1e9)
        elif plan.where == "disk":
            shutil.rmtree(folder, ignore_errors=True)
            self.cache_folder = folder
            log.info(
                "Frozen-prefix cache: %.2f GB in a memory-mapped file in %s (%s; removed at "
                "the end)",
                nbytes / 1e9,
                folder,
                plan.reason,
            )
        else:
            log.warning(
                "Frozen-prefix cache: not used (%s); running the whole network every step, "
                "several times slower per epoch",
                plan.reason,
            )
        return plan

    def close_cache(self) -> None:
        """Remove a memory-mapped cache's files and folder (memory needs nothing)."""
        for source in self.disk_sources:
            source.close()
        self.disk_sources = []
        if self.cache_folder is not None:
            shutil.rmtree(self.cache_folder, ignore_errors=True)
            self.cache_folder = None

    def engine(self, prep: Prepared, sources: dict[str, Any]) -> Engine:
        start = sources["train"].start  # > 0: the frozen prefix is cached
        net = training_net(prep.model, self.dtype, start)
        if self.cfg.runtime.compile:
            net = torch.compile(net, dynamic=True)  # type: ignore[assignment]
        multi = prep.splits.multi_label
        weights = loss_weights(
            self.cfg.train.class_weights, sources["train"].labels, prep.labels, multi
        )
        if weights is not None:
            weights = weights.to(self.device)
            log.info(
                "Loss weights (%s, --class-weights %s): %s",
                "pos_weight per label" if multi else "per class",
                self.cfg.train.class_weights,
                ", ".join(
                    f"{n} {w:.3g}" for n, w in zip(prep.labels, weights.tolist(), strict=True)
                ),
            )
        return Engine(
            self.dist.wrap(net, self.device),
            self.device,
            self.dtype,
            weights,
            num_classes=len(prep.labels),
            dist=self.dist,
            eval_net=net,
            multi_label=multi,
        )

    # ---- fit --------------------------------------------------------------------------

    def fit(
        self, state: TrainState, engine: Engine, sources: dict[str, Any], elapsed: float = 0.0
    ) -> None:
        cfg = self.cfg
        n_batches = len(sources["train"]) // cfg.train.batch_size
        n_steps = cfg.train.epochs * math.ceil(n_batches / cfg.train.grad_accum)
        # A bar with rate and time left on a terminal, a plain line every 20 s in a log
        # (progress.py): never carriage-return frames piled up in a file.
        bar = make_progress("train", n_steps, "step", enabled=self.progress, initial=state.step + 1)
        # On a terminal, log lines are printed above the bar instead of through it. (The
        # redirect adds a console handler of its own, so it must not run when the terminal
        # should stay quiet.)
        redirect = (
            logging_redirect_tqdm(loggers=[logging.getLogger("gptclassify")])
            if self.progress and sys.stderr.isatty()
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
                Fanout(
                    [
                        self.callbacks,
                        RunCallbacks(
                            bar,
                            elapsed,
                            checkpoint=self.checkpoint,
                            stop_requested=lambda: self.stop_signal is not None,
                            dist=self.dist,
                            checkpoint_every=cfg.runtime.checkpoint_every,
                            patience=cfg.eval.patience,
                        ),
                    ]
                ),
            )
        bar.close()

    # ---- evaluate and write -----------------------------------------------------------

    def fit_surface(
        self, prep: Prepared, logits: dict[str, np.ndarray], labels_of: dict[str, Any]
    ) -> SurfaceFit:
        """The surface-head step (results.fit_surface) on the run's texts and class weights,
        said in the log."""
        tok = prep.policy.tokenizer
        texts = {k: surface.read_texts(e.ids, e.lengths, tok) for k, e in prep.encoded.items()}
        multi = prep.splits.multi_label
        train_labels = torch.as_tensor(labels_of["train"])
        # Multi-label: each label's pos_weight, the weight of its positives in its regression.
        weights = loss_weights(self.cfg.train.class_weights, train_labels, prep.labels, multi)
        fitted = fit_surface(
            texts,
            labels_of,
            logits,
            prep.model.num_classes,
            mode=self.cfg.eval.lexical,
            C=self.cfg.eval.lexical_c,
            class_weight=None if weights is None else dict(enumerate(weights.tolist())),
            multi_label=multi,
        )
        choice, head = fitted.choice, fitted.head
        sc, metric = choice.scores, choice.metric
        log.info(
            "Surface head (%s; %d fits in %.1f s): validation %s network %s, head alone %s%s "
            "-> ships %s (%s)",
            surface.DESCRIPTION + (", one regression per label" if multi else ""),
            choice.tried,
            choice.fit_time_s,
            "macro F1 at tuned thresholds" if metric == "macro_f1" else "accuracy",
            _score(sc["network"][metric], metric),
            _score(sc["head"][metric], metric),
            "" if head is None else f" ({head.features}, C={head.C:g})",
            choice.shipped
            if head is None or head.network_weight == 0
            else f"network + {head.weight:g} x head",
            _score(sc["shipped"][metric], metric),
        )
        return fitted

    def log_evaluation(self, result: Evaluation, labels: list[str], multi: bool) -> None:
        if multi:
            log.info(
                "Per-label thresholds tuned on validation (macro F1): %s",
                ", ".join(f"{n} {t:.3f}" for n, t in zip(labels, result.thresholds, strict=True)),
            )
        if result.calibration is not None:
            log.info(
                "Calibrated temperature %.3f: validation ECE %.4f -> %.4f",
                result.temperature,
                result.calibration["val_ece_before"],
                result.calibration["val_ece_after"],
            )
        log.info(
            " | ".join(
                f"{k.capitalize()} {'subset accuracy' if multi else 'accuracy'}: "
                f"{r['accuracy'] * 100:.2f}%, macro F1 {r['macro_f1']:.4f}"
                for k, r in result.reports.items()
            )
        )

    def compare_baseline(
        self, prep: Prepared, labels_of: dict[str, Any], result: Evaluation
    ) -> dict[str, Any]:
        """The TF-IDF baseline's scores on this run's split (results.compare_with_baseline),
        beside the model's in the log, compared on validation macro F1 (multi-label: one
        regression per label, thresholds tuned on validation as the model's are)."""
        multi = prep.splits.multi_label
        parts = {k: p for k, p in prep.splits.parts() if k in prep.encoded}
        baseline = compare_with_baseline(parts, labels_of, prep.labels, multi)
        log.info(
            "TF-IDF baseline (same split, %.1f s%s), %s / macro F1: %s",
            baseline["fit_time_s"],
            ", one regression per label, thresholds tuned on validation; compared on macro "
            "F1, what the thresholds maximise"
            if multi
            else "",
            "subset accuracy" if multi else "accuracy",
            " | ".join(
                f"{k} {baseline[k]['accuracy'] * 100:.2f}% / {baseline[k]['macro_f1']:.4f} "
                f"(this model {result.reports[k]['accuracy'] * 100:.2f}% / "
                f"{result.reports[k]['macro_f1']:.4f})"
                for k in ("validation", "test")
                if k in baseline and k in result.reports
            ),
        )
        if baseline_beats(baseline, result.reports):
            log.warning(
                "Warning: the TF-IDF + logistic regression baseline beats this model on "
                "validation (macro F1 %.4f vs %.4f): --lexical auto ships the better of "
                "the two in one model; or train longer, unfreeze more blocks, raise --lr, "
                "or try --recipe auto before shipping it",
                baseline["validation"]["macro_f1"],
                result.reports["validation"]["macro_f1"],
            )
        return baseline

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
        """Merge adapters if asked, evaluate every split, write the run folder, publish it:
        results.py's steps, each returning what the next one takes."""
        cfg, labels, backbone = self.cfg, prep.labels, prep.backbone
        location = backbone.pretrained_dir or backbone.weights_file
        lora = describe_lora(cfg.backbone, location, backbone.weights_file)
        if lora is not None and lora.merged:
            prep.model.merge_lora()  # the saved model is the merged one:
            engine = self.engine(prep, sources)  # evaluate that
        logits = {k: engine.logits(s) for k, s in sources.items()}
        self.close_cache()  # before the work folder becomes RUN
        labels_of = {k: e.labels for k, e in prep.encoded.items()}
        head = None
        if cfg.eval.lexical != "off":
            fitted = self.fit_surface(prep, logits, labels_of)
            head, logits = fitted.head, fitted.logits
        multi = prep.splits.multi_label
        result = evaluate_run(logits, labels_of, labels, multi, cfg.eval.calibrate)
        self.log_evaluation(result, labels, multi)
        baseline = None
        if cfg.eval.baseline and self.is_main:
            baseline = self.compare_baseline(prep, labels_of, result)
        provenance = run_provenance(cfg, backbone, lora)
        # The runtime first: its weight casts count in the run's time and peak memory.
        runtime = TorchRuntime(prep.model, self.device, cfg.runtime.precision)
        metrics = run_metrics(
            state,
            result,
            prep.model,
            {k: e.truncated for k, e in prep.encoded.items()},
            baseline,
            training_time_s=fit_time,
            total_time_s=time.perf_counter() - t0,
            cached=cached,
            device=self.device,
            precision=str(self.dtype).removeprefix("torch."),
            world_size=self.dist.world_size,
            backend=self.dist.backend,
        )
        classifier = Classifier.with_runtime(
            runtime,
            labels,
            prep.policy,
            result.temperature,
            provenance,
            surface=head,
            **(
                {
                    "task": "multi-label",
                    "thresholds": result.thresholds,
                    "label_sep": prep.splits.label_sep,
                }
                if multi
                else {}
            ),
            metrics=metrics.to_json(),
            path=self.folder.final,  # where the folder is published below
        )
        if self.is_main:
            # Everything goes into the work folder, which then becomes RUN in one rename: a
            # kill between two of these files leaves RUN as it was (resume redoes them).
            write_run(self.run_dir, classifier, metrics, state.history)
            self.callbacks.on_finish(metrics.to_json())  # trackers take the finished folder
            log.info("Saved model, metrics, history and plots; publishing %s", self.folder.final)
            self.folder.publish(keep_checkpoints=cfg.runtime.final_checkpoints == "keep")
        return classifier
