"""The run's view of the training loop: progress bar, the book's log lines, checkpoints,
and stopping on a signal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from gptclassify.training import faults
from gptclassify.training.distributed import Dist
from gptclassify.training.loop import Callbacks
from gptclassify.training.state import TrainState

log = logging.getLogger("gptclassify.training")


class RunCallbacks(Callbacks):
    """The run's view of the loop: progress bar, the book's log lines, checkpoints, and
    stopping on a signal.

    checkpoint(state, fit_time, best): writes a checkpoint (the run's; a no-op off the main
    process). stop_requested(): whether Ctrl-C / SIGTERM asked this process to stop.
    checkpoint_every: --checkpoint-every (0: at epoch ends only). patience: --patience,
    to say in the log why a run stopped early. elapsed: fit time already spent (a resumed run).
    """

    def __init__(
        self,
        bar: tqdm,
        elapsed: float,
        *,
        checkpoint: Callable[[TrainState, float, bool], None],
        stop_requested: Callable[[], bool],
        dist: Dist,
        checkpoint_every: int = 0,
        patience: int | None = None,
    ) -> None:
        self.bar = bar
        self.started = time.perf_counter() - elapsed
        self.checkpoint = checkpoint
        self.stop_requested = stop_requested
        self.dist = dist
        self.checkpoint_every = checkpoint_every
        self.patience = patience

    def fit_time(self) -> float:
        return time.perf_counter() - self.started

    def on_step(self, state: TrainState, loss: float) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
        faults.reached("step")
        every = self.checkpoint_every
        if every and (state.step + 1) % every == 0:
            self.checkpoint(state, self.fit_time(), False)

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
        f1 = row.get("full_val_macro_f1")
        log.info(
            "Training accuracy: %.2f%% | Validation accuracy: %.2f%% | Full validation: "
            "accuracy %.2f%%, loss %.3f%s",
            row["train_accuracy"] * 100,
            row["val_accuracy"] * 100,
            row["full_val_accuracy"] * 100,
            row["full_val_loss"],
            "" if f1 is None else f", macro F1 at tuned thresholds {f1:.4f} (chooses the epoch)",
        )
        if state.stopped_early:
            patience = self.patience
            if patience is not None and state.epochs_without_gain >= patience:
                log.info("Stopping early: no validation improvement for %d epoch(s)", patience)
            else:  # a listener stopped it (--recipe auto's time budget)
                log.info("Stopping after this epoch, as a callback asked")
        faults.reached("epoch")
        self.checkpoint(state, self.fit_time(), state.best_epoch == row["epoch"])

    def should_stop(self) -> bool:
        stop = self.stop_requested()
        if self.dist.active:  # every rank stops at the same step, or none does
            stop = self.dist.sum_floats(float(stop))[0] > 0
        return stop
