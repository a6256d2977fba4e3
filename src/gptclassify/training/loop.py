"""The training loop: `fit(state, engine, sources, train, eval, callbacks)`. No file I/O.

The loop is the book's (AdamW, loss estimates every `eval_freq` steps on `eval_iter`
batches, accuracy estimates each epoch) plus what a tool needs: the best validation epoch is
kept, early stopping, gradient accumulation, class weights. Everything it changes lives in the
`TrainState`; everything it reports goes to `callbacks` (the run step logs, draws progress
and writes checkpoints there).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from gptclassify import progress
from gptclassify.args import EvalArgs, TrainArgs
from gptclassify.data.batches import (
    TOKENS_PER_BATCH,
    TRAIN_TOKENS_PER_PASS,
    TokenSource,
    shuffled_batches,
    token_budget_batches,
    token_pieces,
)
from gptclassify.errors import GPTClassifyError
from gptclassify.metrics import sigmoid, tuned_macro_f1
from gptclassify.runtime import autocast
from gptclassify.training.distributed import Dist
from gptclassify.training.prefix_cache import PrefixSource
from gptclassify.training.state import TrainState, selection_score

Source = TokenSource | PrefixSource


@dataclass
class Sources:
    """The two splits the loop reads; both token batches or both cached-prefix batches."""

    train: Source
    validation: Source


class TrainingDiverged(GPTClassifyError):
    """The loss became NaN or infinite; the step that produced it was not applied."""


@dataclass
class Engine:
    """How batches become losses: the modules to call, precision, class weights, and the
    process group (training/distributed.py; one process by default).

    `net` is what training steps call, as `net(*batch.args)` -> logits: the classifier (or
    its fast view) for token batches, `FromBlock` for cached-prefix ones, possibly wrapped
    (torch.compile, DistributedDataParallel). `eval_net` is what no-grad passes call (the
    same module without the DDP wrapper, which only matters for gradients).
    """

    net: nn.Module
    device: torch.device
    dtype: torch.dtype
    class_weights: Tensor | None = None
    """Single-label: (K,) weight per class. Multi-label: (K,) pos_weight per label (how much
    more a positive example of that label counts than a negative one)."""
    num_classes: int = 2
    dist: Dist = field(default_factory=Dist.single)
    eval_net: nn.Module | None = None
    multi_label: bool = False
    """One sigmoid per label and binary cross-entropy (labels are (B, K) 0/1 floats)."""

    def __post_init__(self) -> None:
        if self.eval_net is None:
            self.eval_net = self.net

    @contextmanager
    def amp(self) -> Iterator[None]:
        with autocast(self.device, self.dtype):
            yield

    def weight(self, labels: Tensor) -> float:
        """The loss weight of a batch: its size, or the sum of its class weights."""
        if self.class_weights is None or self.multi_label:
            return float(len(labels))
        return float(self.class_weights[labels.to(self.class_weights.device)].sum())

    def loss_sum(
        self, source: Source, idx: Tensor, net: nn.Module | None = None
    ) -> tuple[Tensor, float, Tensor]:
        """(sum of per-example losses, sum of their weights, logits) for one batch.

        Summing and dividing by the weight total of a whole optimizer step makes accumulated
        micro-batches of any sizes equal to one big batch.
        """
        batch = source.batch(idx)
        with self.amp():
            logits = (net or self.net)(*batch.args)
        if self.multi_label:
            # Per text, the mean over labels of each label's binary cross-entropy.
            per_label = F.binary_cross_entropy_with_logits(
                logits.float(), batch.labels, pos_weight=self.class_weights, reduction="none"
            )  # (B, K)
            loss = per_label.mean(dim=1).sum()
        else:
            loss = F.cross_entropy(
                logits.float(), batch.labels, weight=self.class_weights, reduction="sum"
            )
        return loss, self.weight(batch.labels), logits

    def correct(self, logits: Tensor, labels: Tensor) -> float:
        """Right answers in a batch: the class (argmax), or multi-label the whole label set
        at threshold 0.5 (subset accuracy)."""
        if self.multi_label:
            return float(((logits > 0) == (labels > 0.5)).all(dim=1).sum())
        return float((logits.argmax(dim=-1) == labels).sum())

    @torch.no_grad()
    def estimate(
        self, source: Source, batches: list[Tensor], desc: str | None = None
    ) -> tuple[float, float]:
        """(mean loss, accuracy) over the given batches, in eval mode, restoring train mode.

        Under torchrun each rank evaluates its share of every batch and the sums are added.
        `desc`: show this pass's progress under that name (progress.stage), for long ones.
        """
        loss, accuracy, _ = self.evaluate(source, batches, desc)
        return loss, accuracy

    @torch.no_grad()
    def evaluate(
        self,
        source: Source,
        batches: list[Tensor],
        desc: str | None = None,
        keep_logits: bool = False,
    ) -> tuple[float, float, np.ndarray | None]:
        """estimate(), plus with `keep_logits` the logits of every row of `source` the batches
        hold, in source order (float32; rows not in any batch stay 0), on every rank."""
        out = torch.zeros((len(source), self.num_classes)) if keep_logits else None
        net = self.eval_net
        was_training = net.training
        net.eval()
        total_loss = total_weight = correct = count = 0.0
        shown = desc is not None and self.dist.is_main
        bar = progress.make(
            desc or "", sum(map(len, batches)), "text", enabled=None if shown else False
        )
        try:
            for batch in batches:
                idx = self.dist.shard(batch)
                if len(idx) == 0:
                    continue
                loss, weight, logits = self.loss_sum(source, idx, net)
                labels = source.labels[idx].to(logits.device)
                total_loss += float(loss)
                total_weight += weight
                correct += self.correct(logits, labels)
                count += len(idx)
                if out is not None:
                    out[idx] = logits.float().cpu()
                bar.update(len(batch))  # every rank's share
        finally:
            bar.close()
            net.train(was_training)
        if self.dist.active:
            total_loss, total_weight, correct, count = self.dist.sum_floats(
                total_loss, total_weight, correct, count
            )
        # Each row is written by one rank: the sum over ranks is every rank's whole table.
        kept = self.dist.sum(out).numpy() if out is not None else None
        if count == 0:
            return float("nan"), float("nan"), kept
        return total_loss / total_weight, correct / count, kept

    @torch.no_grad()
    def logits(
        self, source: Source, tokens_per_batch: int = TOKENS_PER_BATCH, desc: str = "evaluation"
    ) -> np.ndarray:
        """Logits for every example of a source (length-bucketed), in source order; its
        progress shown as `desc` (progress.stage).

        Under torchrun each rank computes its share of the rows; a sum over ranks of
        buffers where each row is written by one rank gives every rank all the logits.
        """
        net = self.eval_net
        was_training = net.training
        net.eval()
        rows = self.dist.rows(len(source))
        seq_lens = torch.tensor([len(source.encoded.ids[i]) for i in rows.tolist()])
        out = torch.zeros((len(source), self.num_classes), dtype=torch.float32)
        # In tokens, as the frozen-prefix pass: the longest texts come first.
        total = int(seq_lens.sum()) * self.dist.world_size
        bar = progress.make(desc, total, "token", enabled=None if self.dist.is_main else False)
        try:
            for part in token_budget_batches(seq_lens, tokens_per_batch, max_batch=256):
                idx = rows[part]
                batch = source.batch(idx)
                with self.amp():
                    logits = net(*batch.args)
                out[idx] = logits.float().cpu()
                bar.update(int(seq_lens[part].sum()) * self.dist.world_size)  # ranks alike
        finally:
            bar.close()
            net.train(was_training)
        return self.dist.sum(out).numpy()


class Callbacks:
    """What the loop reports; the run step overrides what it needs. All no-ops here."""

    def on_step(self, state: TrainState, loss: float) -> None:
        """After every optimizer step (and its loss estimate, if one was due)."""

    def on_estimate(self, state: TrainState, row: dict[str, Any]) -> None:
        """After a loss estimate (a row of history.steps)."""

    def on_epoch(self, state: TrainState, row: dict[str, Any]) -> None:
        """After an epoch's evaluation and model selection (a row of history.epochs)."""

    def should_stop(self) -> bool:
        """Asked before every step: True ends the loop there (e.g. on Ctrl-C), unfinished."""
        return False


def fit(
    state: TrainState,
    engine: Engine,
    sources: Sources,
    train: TrainArgs,
    eval: EvalArgs,
    callbacks: Callbacks | None = None,
) -> TrainState:
    """Train until all epochs are done, early stopping, or `callbacks.should_stop()`.

    Continues from wherever `state` is (a fresh state, or one restored from a checkpoint).
    When the loop ends (`state.finished`), the model holds the best validation epoch's
    weights; when stopped from outside it holds the latest ones.
    """
    cb = callbacks or Callbacks()
    engine.net.train()
    while not state.finished:
        if state.epoch > train.epochs or state.stopped_early:
            state.restore_best()
            state.finished = True
            break
        if state.epoch_steps == 0:
            state.epoch_order_state = state.order_rng.get_state()
        else:  # resumed mid-epoch: draw this epoch's order again
            state.order_rng.set_state(state.epoch_order_state)
        batches = shuffled_batches(
            len(sources.train),
            train.batch_size,
            True,
            True,
            generator=state.order_rng,
            lengths=sources.train.lengths if train.group_by_length else None,
        )
        groups = [
            batches[i : i + train.grad_accum] for i in range(0, len(batches), train.grad_accum)
        ]
        for group in groups[state.epoch_steps :]:
            if cb.should_stop():
                engine.net.eval()
                return state
            loss = _step(state, engine, sources.train, group)
            if eval.eval_freq and state.step % eval.eval_freq == 0:
                row = _loss_estimates(state, engine, sources, train, eval)
                cb.on_estimate(state, row)
            cb.on_step(state, loss)
        _end_epoch(state, engine, sources, train, eval, cb)
    engine.net.eval()
    return state


def _step(state: TrainState, engine: Engine, train: Source, group: list[Tensor]) -> float:
    """One optimizer step on a group of global micro-batches (each rank takes its share)."""
    labels = train.labels
    total_weight = sum(engine.weight(labels[idx]) for idx in group)
    # DDP averages the ranks' gradients; dividing each rank's loss sum by the step's weight
    # per rank makes that average the gradient of the whole global step (one process: the
    # loss sum over the step's weight, exactly).
    norm = total_weight / engine.dist.world_size
    # Batches of long texts run as several passes (the same gradient; bounded memory). The
    # pieces come from the global batch, so every rank runs as many passes.
    passes = [
        piece
        for idx in group
        for piece in token_pieces(
            idx, train.lengths, TRAIN_TOKENS_PER_PASS, min_size=engine.dist.world_size
        )
    ]
    step_loss = 0.0
    for m, idx in enumerate(passes):
        with grad_sync(engine.net, last=m == len(passes) - 1):
            loss, _, _ = engine.loss_sum(train, engine.dist.shard(idx))
            (loss / norm).backward()
        step_loss += float(loss.detach())
    if engine.dist.active:
        (step_loss,) = engine.dist.sum_floats(step_loss)
    mean_loss = step_loss / total_weight
    if not math.isfinite(mean_loss):
        state.optimizer.zero_grad(set_to_none=True)
        raise TrainingDiverged(
            f"the training loss became {mean_loss} at step {state.step + 1} (epoch "
            f"{state.epoch}); that step was not applied. Try a lower --lr, --precision fp32, "
            "or check the data"
        )
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.epoch_steps += 1
    state.examples_seen += sum(len(idx) for idx in group)
    return mean_loss


def grad_sync(net: nn.Module, last: bool) -> AbstractContextManager[Any]:
    """DDP's no_sync() on all but the last micro-batch of a step (one gradient all-reduce
    per step); nothing for a plain module."""
    if last or not isinstance(net, DistributedDataParallel):
        return nullcontext()
    return net.no_sync()


def _sample(state: TrainState, source: Source, train: TrainArgs, eval: EvalArgs) -> list[Tensor]:
    batches = shuffled_batches(len(source), train.batch_size, True, False, state.eval_rng)
    return batches[: eval.eval_iter]


def _loss_estimates(
    state: TrainState, engine: Engine, sources: Sources, train: TrainArgs, eval: EvalArgs
) -> dict[str, Any]:
    train_loss, _ = engine.estimate(sources.train, _sample(state, sources.train, train, eval))
    val_loss, _ = engine.estimate(
        sources.validation, _sample(state, sources.validation, train, eval)
    )
    row = {
        "step": state.step,
        "epoch": state.epoch,
        "examples_seen": state.examples_seen,
        "train_loss": train_loss,
        "val_loss": val_loss,
    }
    state.history.steps.append(row)
    return row


def _end_epoch(
    state: TrainState,
    engine: Engine,
    sources: Sources,
    train: TrainArgs,
    eval: EvalArgs,
    cb: Callbacks,
) -> None:
    _, train_acc = engine.estimate(sources.train, _sample(state, sources.train, train, eval))
    _, val_acc = engine.estimate(
        sources.validation, _sample(state, sources.validation, train, eval)
    )
    full_val_loss, full_val_acc, logits = engine.evaluate(
        sources.validation,
        # Length-sorted: a batch of 256 in data order pads every text to its longest.
        token_budget_batches(sources.validation.lengths, TOKENS_PER_BATCH, max_batch=256),
        desc=f"epoch {state.epoch} validation",
        keep_logits=engine.multi_label,
    )
    row = {
        "epoch": state.epoch,
        "step": state.step,
        "examples_seen": state.examples_seen,
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "full_val_loss": full_val_loss,
        "full_val_accuracy": full_val_acc,
    }
    score = full_val_acc
    if logits is not None:
        # Multi-label: the epoch is chosen by what ships, macro F1 at per-label thresholds
        # tuned on validation, not by the subset accuracy at 0.5 (near zero on many labels).
        score = row["full_val_macro_f1"] = tuned_macro_f1(
            sigmoid(logits), sources.validation.labels.numpy()
        )
    state.history.epochs.append(row)
    gained = state.keep_if_best(selection_score(eval.best_by, score, full_val_loss))
    if not gained and eval.patience is not None and state.epochs_without_gain >= eval.patience:
        state.stopped_early = True
    state.epoch += 1
    state.epoch_steps = 0
    cb.on_epoch(state, row)
