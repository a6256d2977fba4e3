"""The run's view of the training loop: progress bar, the book's log lines, checkpoints,
and stopping on a signal."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from gptclassify.training import faults
from gptclassify.training.loop import Callbacks
from gptclassify.training.state import TrainState

if TYPE_CHECKING:
    from gptclassify.training.run import Run

log = logging.getLogger("gptclassify.training")


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
            patience = self.run.cfg.eval.patience
            if patience is not None and state.epochs_without_gain >= patience:
                log.info("Stopping early: no validation improvement for %d epoch(s)", patience)
            else:  # a listener stopped it (--recipe auto's time budget)
                log.info("Stopping after this epoch, as a callback asked")
        faults.reached("epoch")
        self.run.checkpoint(state, self.fit_time(), best=state.best_epoch == row["epoch"])

    def should_stop(self) -> bool:
        stop = self.run.stop_signal is not None
        if self.run.dist.active:  # every rank stops at the same step, or none does
            stop = self.run.dist.sum_floats(float(stop))[0] > 0
        return stop
