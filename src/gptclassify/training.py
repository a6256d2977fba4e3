"""Fine-tuning: `train(cfg)` -> `fit(...)` -> final evaluation -> the run folder.

The loop is the book's (AdamW, loss estimates every `eval_freq` steps on `eval_iter` batches,
accuracy estimates each epoch, full accuracies at the end), plus what a tool needs: the best
validation epoch is kept, early stopping, gradient accumulation, class weights, and a run
folder with weights, config, metrics, history, plots and a log.

Speed: when the blocks before the first trainable one are frozen and deterministic, their
output for each text is computed once (`inputs.build_prefix_source`) and every epoch and
evaluation runs only the trainable suffix. The result is the same as running the whole
network every step (tests/test_training.py checks it); `--cache off` turns it off.
"""

from __future__ import annotations

import csv
import logging
import math
import resource
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.contrib.logging import logging_redirect_tqdm

from gptclassify import tokenizer
from gptclassify.classifier import GPTClassifier, trainable_blocks
from gptclassify.config import PRESETS, GPTConfig, TrainConfig, lora_target_list
from gptclassify.errors import GPTClassifyError
from gptclassify.evaluate import (
    classification_report,
    expected_calibration_error,
    fit_temperature,
    softmax,
)
from gptclassify.inputs import (
    TOKENS_PER_BATCH,
    Encoded,
    InputPolicy,
    PrefixSource,
    TokenSource,
    build_prefix_source,
    encode_ids,
    prefix_cache_bytes,
    prefix_is_cacheable,
    shuffled_batches,
    token_budget_batches,
)
from gptclassify.model import GPTModel
from gptclassify.predict import Classifier
from gptclassify.runtime import (
    autocast,
    release_free_memory,
    resolve_device,
    resolve_precision,
    seed_everything,
)

log = logging.getLogger("gptclassify.training")
Source = TokenSource | PrefixSource
SPLITS = ("train", "validation", "test")


# ---- building blocks ------------------------------------------------------------------


@dataclass
class Backbone:
    model: GPTModel
    description: str
    """Where the weights came from, for logs and config.json."""
    pretrained_dir: Path | None = None
    """The Hugging Face folder the pretrained weights were read from (None: random init)."""


def build_backbone(cfg: TrainConfig) -> Backbone:
    """The GPT-2 to fine-tune: pretrained (preset or folder) or a seeded random init."""
    from gptclassify.files import read_json
    from gptclassify.weights import gpt_config_from_hf, load_hf_directory, pretrained_dir

    path = Path(cfg.model).expanduser()
    if cfg.model.endswith(".json"):  # TrainConfig ensures --weights random
        return Backbone(GPTModel(GPTConfig.from_json(path)), f"random init of {cfg.model}")
    if cfg.weights == "pretrained":
        directory = pretrained_dir(cfg.model)
        return Backbone(load_hf_directory(directory), cfg.model, directory)
    if cfg.model in PRESETS:
        return Backbone(GPTModel(PRESETS[cfg.model]), f"random init of the {cfg.model} shape")
    if not path.is_dir():
        raise GPTClassifyError(f"--model {cfg.model}: not a preset, a folder or a .json config")
    config = gpt_config_from_hf(read_json(path / "config.json"), str(path / "config.json"))
    return Backbone(GPTModel(config), f"random init of {cfg.model}")


def build_classifier(
    cfg: TrainConfig, num_classes: int, backbone: Backbone | None = None
) -> tuple[GPTClassifier, int]:
    """Backbone + head + LoRA + freezing; returns (model, index of the first trainable block)."""
    backbone = backbone or build_backbone(cfg)
    torch.manual_seed(cfg.seed)  # LoRA's random A matrices depend on the seed only
    model = GPTClassifier(backbone.model, num_classes, pool=cfg.pool, causal=cfg.causal_mask)
    if cfg.trainable == "lora":
        model.add_lora(cfg.lora_rank, cfg.lora_alpha, lora_target_list(cfg.lora_targets))
    start = model.set_trainable(cfg.trainable)
    return model, start


def class_weight_tensor(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced' heuristic)."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    if (counts == 0).any():
        missing = int((counts == 0).nonzero()[0])
        raise GPTClassifyError(f"--class-weights auto: class {missing} has no training examples")
    return counts.sum() / (num_classes * counts)


@dataclass
class Trainer:
    """What every step and estimate needs, bundled so helpers take one argument."""

    model: GPTClassifier
    device: torch.device
    dtype: torch.dtype
    class_weights: torch.Tensor | None = None

    @contextmanager
    def amp(self) -> Iterator[None]:
        with autocast(self.device, self.dtype):
            yield

    def loss_sum(
        self, source: Source, idx: torch.Tensor
    ) -> tuple[torch.Tensor, float, torch.Tensor]:
        """(sum of per-example losses, sum of their weights, logits) for one batch.

        Summing and dividing by the weight total of a whole optimizer step makes accumulated
        micro-batches of any sizes equal to one big batch.
        """
        batch = source.batch(idx)
        with self.amp():
            logits = self.model(batch.inputs, batch.lengths, start=source.start)
        loss = F.cross_entropy(
            logits.float(), batch.labels, weight=self.class_weights, reduction="sum"
        )
        if self.class_weights is None:
            weight = float(len(batch))
        else:
            weight = float(self.class_weights[batch.labels].sum())
        return loss, weight, logits

    @torch.no_grad()
    def estimate(self, source: Source, batches: list[torch.Tensor]) -> tuple[float, float]:
        """(mean loss, accuracy) over the given batches, in eval mode, restoring train mode."""
        was_training = self.model.training
        self.model.eval()
        total_loss = total_weight = correct = count = 0.0
        try:
            for idx in batches:
                loss, weight, logits = self.loss_sum(source, idx)
                labels = source.encoded.labels[idx].to(logits.device)
                total_loss += float(loss)
                total_weight += weight
                correct += float((logits.argmax(dim=-1) == labels).sum())
                count += len(idx)
        finally:
            self.model.train(was_training)
        if count == 0:
            return float("nan"), float("nan")
        return total_loss / total_weight, correct / count

    @torch.no_grad()
    def logits(self, source: Source, tokens_per_batch: int = TOKENS_PER_BATCH) -> np.ndarray:
        """Logits for every example of a source (length-bucketed), in source order."""
        was_training = self.model.training
        self.model.eval()
        seq_lens = torch.tensor([len(s) for s in source.encoded.ids])
        out = np.zeros((len(source), self.model.num_classes), dtype=np.float32)
        try:
            for idx in token_budget_batches(seq_lens, tokens_per_batch, max_batch=256):
                batch = source.batch(idx)
                with self.amp():
                    logits = self.model(batch.inputs, batch.lengths, start=source.start)
                out[idx.numpy()] = logits.float().cpu().numpy()
        finally:
            self.model.train(was_training)
        return out


@dataclass
class FitResult:
    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    examples_seen: int = 0
    stopped_early: bool = False


def fit(
    trainer: Trainer,
    train: Source,
    validation: Source,
    cfg: TrainConfig,
    generator: torch.Generator,
    on_step: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> FitResult:
    """The training loop. Leaves the model holding the best validation epoch's weights.

    `on_step(step, loss)` runs after every optimizer step; `on_epoch(epoch, row)` after each
    epoch's evaluation, with that epoch's history row.
    """
    model = trainer.model
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        # Fused AdamW: one kernel for all parameters instead of a loop over them.
        fused=trainer.device.type in ("cuda", "cpu"),
    )
    # Estimates draw their own batches so that evaluating never changes the training order.
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
    result = FitResult()
    best_score: tuple[float, ...] = (-math.inf,)
    best_state: dict[str, torch.Tensor] = {}
    epochs_without_gain = 0
    step = -1  # the book counts from -1 so the first estimate comes after the first step

    def sample(source: Source) -> list[torch.Tensor]:
        return shuffled_batches(len(source), cfg.batch_size, True, False, eval_gen)[: cfg.eval_iter]

    model.train()
    for epoch in range(1, cfg.epochs + 1):
        batches = shuffled_batches(
            len(train), cfg.batch_size, shuffle=True, drop_last=True, generator=generator
        )
        for group_start in range(0, len(batches), cfg.grad_accum):
            group = batches[group_start : group_start + cfg.grad_accum]
            weights = [
                float(len(idx))
                if trainer.class_weights is None
                else float(trainer.class_weights[train.encoded.labels[idx]].sum())
                for idx in group
            ]
            total_weight = sum(weights)
            step_loss = 0.0
            for idx in group:
                loss, _, _ = trainer.loss_sum(train, idx)
                (loss / total_weight).backward()
                step_loss += float(loss.detach())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            result.examples_seen += sum(len(idx) for idx in group)
            if on_step is not None:
                on_step(step, step_loss / total_weight)
            if cfg.eval_freq and step % cfg.eval_freq == 0:
                train_loss, _ = trainer.estimate(train, sample(train))
                val_loss, _ = trainer.estimate(validation, sample(validation))
                result.steps.append(
                    {
                        "step": step,
                        "epoch": epoch,
                        "examples_seen": result.examples_seen,
                        "train_loss": train_loss,
                        "val_loss": val_loss,
                    }
                )
                log.info(
                    "Ep %d (Step %06d): Train loss %.3f, Val loss %.3f",
                    epoch,
                    step,
                    train_loss,
                    val_loss,
                )
        _, train_acc = trainer.estimate(train, sample(train))
        _, val_acc = trainer.estimate(validation, sample(validation))
        full_val_loss, full_val_acc = trainer.estimate(
            validation, shuffled_batches(len(validation), 256, False, False)
        )
        result.epochs.append(
            {
                "epoch": epoch,
                "step": step,
                "examples_seen": result.examples_seen,
                "train_accuracy": train_acc,
                "val_accuracy": val_acc,
                "full_val_loss": full_val_loss,
                "full_val_accuracy": full_val_acc,
            }
        )
        # The book's line (estimates on eval_iter batches), then the full-validation figures
        # that choose the kept epoch, so the log shows why an epoch was kept.
        log.info(
            "Training accuracy: %.2f%% | Validation accuracy: %.2f%% | Full validation: "
            "accuracy %.2f%%, loss %.3f",
            train_acc * 100,
            val_acc * 100,
            full_val_acc * 100,
            full_val_loss,
        )
        if on_epoch is not None:
            on_epoch(epoch, result.epochs[-1])
        # Accuracy ties are common on small validation sets; the lower loss breaks them.
        score = (-full_val_loss,) if cfg.best_by == "val_loss" else (full_val_acc, -full_val_loss)
        if score > best_score:
            best_score, result.best_epoch, epochs_without_gain = score, epoch, 0
            best_state = {
                n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad
            }
        else:
            epochs_without_gain += 1
            if cfg.patience is not None and epochs_without_gain >= cfg.patience:
                log.info("Stopping early: no validation improvement for %d epoch(s)", cfg.patience)
                result.stopped_early = True
                break
    if best_state:
        with torch.no_grad():
            named = dict(model.named_parameters())
            for name, value in best_state.items():
                named[name].copy_(value)
    model.eval()
    return result


# ---- the whole job --------------------------------------------------------------------


def load_data(cfg: TrainConfig):
    """The train/validation/test splits named by the config (see data.py)."""
    from gptclassify import data as data_mod

    dc = cfg.data
    if dc.train:
        return data_mod.load_split_files(
            dc.train,
            dc.validation,
            dc.test,
            text_column=dc.text_column,
            label_column=dc.label_column,
            seed=cfg.seed,
        )
    if dc.data == "sms-spam":
        from gptclassify.datasets import prepare_sms_spam

        return prepare_sms_spam(
            source=dc.sms_source, seed=cfg.seed, book_split=dc.book_split, balance=dc.balance
        )
    return data_mod.load_prepared(dc.data)


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


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


def train(cfg: TrainConfig | None = None, quiet: bool = False, progress: bool = True) -> Classifier:
    """Fine-tune a classifier as `cfg` says, write the run folder, and return the classifier."""
    cfg = cfg or TrainConfig()
    run_dir = Path(cfg.out) if cfg.out else default_run_dir()
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_logging(run_dir, quiet=quiet):
            try:
                return _train(cfg, run_dir, progress and not quiet)
            except BaseException as exc:
                # The log keeps why a run ended (a crash or Ctrl-C leaves the folder to inspect).
                reason = str(exc).strip() or type(exc).__name__
                log.error("Run failed: %s", reason, extra={"file_only": True})
                raise
    except GPTClassifyError:
        # Bad input or settings: nothing worth keeping, so no empty run folder is left behind.
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(cfg: TrainConfig, run_dir: Path, progress: bool) -> Classifier:
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    generator = seed_everything(cfg.seed)
    log.info(
        "Run folder: %s | device %s | precision %s",
        run_dir,
        device,
        str(dtype).removeprefix("torch."),
    )

    # The model first: a bad --model or --trainable fails before any data download.
    torch.manual_seed(cfg.seed)  # a random init depends on the seed only
    backbone = build_backbone(cfg)
    release_free_memory()  # the file's tensors and transposed copies are garbage now
    trainable_blocks(cfg.trainable, backbone.model.config.n_layers)
    splits = load_data(cfg)
    labels = list(splits.label_names)
    parts = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    parts = {k: v for k, v in parts.items() if v is not None and len(v.texts) > 0}
    if "validation" not in parts:
        raise GPTClassifyError("the validation split is empty; use more data or another --split")
    _save_splits(splits, run_dir / "data")

    model, start = build_classifier(cfg, len(labels), backbone)
    base = backbone.description
    model.to(device)
    context = model.gpt.config.context_length
    raw = {k: tokenizer.encode_batch(v.texts) for k, v in parts.items()}
    policy = InputPolicy.resolve(
        cfg.pad_to, cfg.max_length, cfg.truncate, context, [len(r) for r in raw["train"]]
    )
    encoded: dict[str, Encoded] = {
        name: encode_ids(raw[name], policy, [labels.index(y) for y in part.labels], part.source)
        for name, part in parts.items()
    }
    for name, enc in encoded.items():
        counts = np.bincount(enc.labels.numpy(), minlength=len(labels))
        log.info(
            "%-10s %5d texts (%s); %d truncated to %d tokens (%s kept)",
            name,
            len(enc),
            ", ".join(f"{n} {c}" for n, c in zip(labels, counts, strict=True)),
            enc.truncated,
            policy.max_length,
            "start" if cfg.truncate == "end" else "end",
        )
    if cfg.pool == "last" and policy.pad_length is None:
        log.info(
            "Note: --pool last with --pad-to batch reads padding whose amount depends on the batch"
        )

    total_params = sum(p.numel() for p in model.parameters())
    trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "Model %s: %s parameters, %s trainable (%s)",
        base,
        f"{total_params:,}",
        f"{trainable_params:,}",
        cfg.trainable,
    )

    sources: dict[str, Source] = {k: TokenSource(v, device) for k, v in encoded.items()}
    cacheable = (
        cfg.cache == "auto"
        and start > 0
        and prefix_is_cacheable(cfg.pool, policy.pad_length is not None, model.gpt.config.drop_rate)
    )
    if cacheable:
        need = prefix_cache_bytes(list(encoded.values()), model.gpt.config.emb_dim)
        if need > cfg.cache_gb * 1e9:
            log.info(
                "Frozen-prefix cache would need %.1f GB (> --cache-gb %.1f); running the whole network",
                need / 1e9,
                cfg.cache_gb,
            )
            cacheable = False
    if cacheable:
        t_cache = time.perf_counter()
        sources = {k: build_prefix_source(model, s, start, dtype) for k, s in sources.items()}
        log.info(
            "Cached the frozen blocks 0-%d for all texts in %.1f s",
            start - 1,
            time.perf_counter() - t_cache,
        )

    if cfg.compile:
        model = torch.compile(model, dynamic=True)  # type: ignore[assignment]
    weights = (
        class_weight_tensor(encoded["train"].labels, len(labels)).to(device)
        if cfg.class_weights == "auto"
        else None
    )
    trainer = Trainer(model, device, dtype, weights)

    t_fit = time.perf_counter()
    n_steps = cfg.epochs * math.ceil((len(encoded["train"]) // cfg.batch_size) / cfg.grad_accum)
    bar = _progress(n_steps, progress)
    # Log lines are printed above the progress bar instead of through it. (The redirect adds
    # a console handler of its own, so it must not run when the terminal should stay quiet.)
    redirect = (
        logging_redirect_tqdm(loggers=[logging.getLogger("gptclassify")])
        if progress
        else nullcontext()
    )
    with redirect:
        fit_result = fit(
            trainer, sources["train"], sources["validation"], cfg, generator, on_step=bar.update
        )
    bar.close()
    fit_time = time.perf_counter() - t_fit
    log.info(
        "Training completed in %.2f minutes; kept epoch %d (best full-validation %s)",
        fit_time / 60,
        fit_result.best_epoch,
        "loss" if cfg.best_by == "val_loss" else "accuracy",
    )

    lora = _lora_settings(cfg, model, backbone)
    logits = {k: trainer.logits(s) for k, s in sources.items()}
    temperature = 1.0
    calibration: dict[str, float] | None = None
    if cfg.calibrate:
        y_val = encoded["validation"].labels.numpy()
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
        k: classification_report(softmax(v, temperature), encoded[k].labels.numpy(), labels)
        for k, v in logits.items()
    }
    line = " | ".join(
        f"{k.capitalize()} accuracy: {r['accuracy'] * 100:.2f}%" for k, r in reports.items()
    )
    log.info(line)
    total_time = time.perf_counter() - t0

    raw_model = getattr(model, "_orig_mod", model)
    settings = {
        "base_model": base,
        "weights": cfg.weights,
        "trainable": cfg.trainable,
        "pad_to": cfg.pad_to,
        "lora": lora,
        "train_config": cfg.to_dict(),
    }
    classifier = Classifier(
        raw_model,
        labels,
        policy,
        temperature,
        device=device,
        precision=cfg.precision,
        settings=settings,
    )
    classifier.save(run_dir)
    metrics: dict[str, Any] = {
        **reports,
        "best_epoch": fit_result.best_epoch,
        "stopped_early": fit_result.stopped_early,
        "epochs_run": len(fit_result.epochs),
        "examples_seen": fit_result.examples_seen,
        "training_time_s": fit_time,
        "total_time_s": total_time,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "frozen_prefix_cache": cacheable,
        "device": str(device),
        "precision": str(dtype).removeprefix("torch."),
        "peak_memory_mb": peak_memory_mb(device),
        "truncated": {k: e.truncated for k, e in encoded.items()},
        "calibration": calibration,
    }
    _write_metrics(run_dir, metrics)
    classifier.metrics = metrics
    _write_history(run_dir / "history.csv", fit_result)
    from gptclassify.plots import plot_history

    plot_history(fit_result.steps, fit_result.epochs, run_dir)
    log.info("Saved model, metrics, history and plots to %s", run_dir)
    return classifier


def _lora_settings(cfg: TrainConfig, model: GPTClassifier, backbone: Backbone) -> dict | None:
    """How config.json describes LoRA; merges the adapters first when --merge-lora is set.

    Unmerged adapters on a pretrained base are saved alone (with the head) and the base is
    named and checksummed; on a random base the whole model must be saved.
    """
    if cfg.trainable != "lora":
        return None
    from gptclassify.files import sha256_file
    from gptclassify.weights import weights_file

    info: dict[str, Any] = {
        "rank": cfg.lora_rank,
        "alpha": cfg.lora_alpha,
        "targets": list(lora_target_list(cfg.lora_targets)),
        "merged": cfg.merge_lora,
        "adapters_only": False,
    }
    if cfg.merge_lora:
        model.merge_lora()
    elif backbone.pretrained_dir is not None:
        info["adapters_only"] = True
        # A preset name works on any machine (Hub cache); a folder is kept as an absolute path.
        info["base"] = cfg.model if cfg.model in PRESETS else str(backbone.pretrained_dir.resolve())
        info["base_sha256"] = sha256_file(weights_file(backbone.pretrained_dir))
    return info


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    bar = tqdm(
        total=total, desc="train", unit="step", disable=not enabled, leave=False, dynamic_ncols=True
    )

    class _Bar:
        def update(self, step: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

        def close(self) -> None:
            bar.close()

    return _Bar()


def _save_splits(splits, directory: Path) -> None:
    """Keep the exact texts this run saw, so `evaluate RUN` needs no other input."""
    from gptclassify.data import write_splits

    write_splits(splits, directory, meta={"written_by": "gptclassify train"})


def _write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    import json

    from gptclassify.files import atomic_write

    atomic_write(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")


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


def _write_history(path: Path, fit_result: FitResult) -> None:
    rows = [dict(r) for r in fit_result.steps] + [
        {k: r[k] for k in HISTORY_COLUMNS if k in r} for r in fit_result.epochs
    ]
    rows.sort(key=lambda r: (r["step"], "train_accuracy" in r))
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in HISTORY_COLUMNS})
