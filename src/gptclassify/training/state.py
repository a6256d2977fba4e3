"""Training state as one object: what a checkpoint saves and a resumed run restores.

`TrainState` holds the model and optimizer plus every counter, random-number state and
model-selection fact the loop reads, so that a run restored from `state_dict()` continues
exactly where it stopped: same batches, same estimates, same kept epoch. The frozen parts of
the model are not in it (they are rebuilt from the base weights and the seed), nor is the
frozen-prefix cache (rebuilt from the texts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from gptclassify.classifier import GPTClassifier


@dataclass
class History:
    """What the loop measured: loss estimates every `eval_freq` steps, and one row per epoch."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    """{step, epoch, examples_seen, train_loss, val_loss}"""
    epochs: list[dict[str, Any]] = field(default_factory=list)
    """{epoch, step, examples_seen, train_accuracy, val_accuracy, full_val_loss,
    full_val_accuracy}"""


@dataclass
class TrainState:
    model: GPTClassifier
    optimizer: torch.optim.Optimizer
    order_rng: torch.Generator
    """Draws each epoch's batch order."""
    eval_rng: torch.Generator
    """Draws the batches of the estimates, so that evaluating never changes the training order."""
    step: int = -1
    """Optimizer steps done, minus one (the book counts from -1, so the first loss estimate
    comes after the first step)."""
    epoch: int = 1
    """The epoch in progress (1-based); epochs + 1 once all are done."""
    epoch_steps: int = 0
    """Optimizer steps done in `epoch`."""
    epoch_order_state: Tensor | None = None
    """order_rng's state when `epoch` began: a run resumed mid-epoch redraws the same order."""
    examples_seen: int = 0
    best_score: tuple[float, ...] | None = None
    best_epoch: int = 0
    best_weights: dict[str, Tensor] = field(default_factory=dict)
    """The trainable parameters of the best epoch so far."""
    epochs_without_gain: int = 0
    stopped_early: bool = False
    finished: bool = False
    """Set when the loop ended (all epochs, or early stopping); the model then holds the best
    epoch's weights."""
    history: History = field(default_factory=History)

    @classmethod
    def create(
        cls, model: GPTClassifier, optimizer: torch.optim.Optimizer, seed: int
    ) -> TrainState:
        """A fresh state: data order from `seed` (as the book's seeded loader), estimates from
        seed + 1."""
        return cls(
            model,
            optimizer,
            order_rng=torch.Generator().manual_seed(seed),
            eval_rng=torch.Generator().manual_seed(seed + 1),
        )

    def trainable(self) -> dict[str, Tensor]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values (no objects): see training/checkpoint.py for the files."""
        return {
            "model": {n: p.detach().clone() for n, p in self.trainable().items()},
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "epoch_steps": self.epoch_steps,
            "examples_seen": self.examples_seen,
            "rng": {
                "order": self.order_rng.get_state(),
                "order_epoch_start": self.epoch_order_state,
                "eval": self.eval_rng.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "best": {
                "score": list(self.best_score) if self.best_score is not None else None,
                "epoch": self.best_epoch,
                "weights": {n: t.clone() for n, t in self.best_weights.items()},
                "epochs_without_gain": self.epochs_without_gain,
            },
            "stopped_early": self.stopped_early,
            "finished": self.finished,
            "history": {"steps": self.history.steps, "epochs": self.history.epochs},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore everything `state_dict` saved; the model must have the same trainable
        parameters (names and shapes) and the optimizer the same parameter groups."""
        params = self.trainable()
        saved = state["model"]
        if set(saved) != set(params):
            missing = sorted(set(params) - set(saved))[:3]
            extra = sorted(set(saved) - set(params))[:3]
            raise ValueError(f"trainable parameters differ (missing {missing}, unexpected {extra})")
        with torch.no_grad():
            for name, value in saved.items():
                params[name].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.epoch_steps = int(state["epoch_steps"])
        self.examples_seen = int(state["examples_seen"])
        rng = state["rng"]
        self.order_rng.set_state(rng["order"])
        self.epoch_order_state = rng["order_epoch_start"]
        self.eval_rng.set_state(rng["eval"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        best = state["best"]
        self.best_score = tuple(best["score"]) if best["score"] is not None else None
        self.best_epoch = int(best["epoch"])
        self.best_weights = {n: t.to(params[n].device) for n, t in best["weights"].items()}
        self.epochs_without_gain = int(best["epochs_without_gain"])
        self.stopped_early = bool(state["stopped_early"])
        self.finished = bool(state["finished"])
        self.history = History(list(state["history"]["steps"]), list(state["history"]["epochs"]))

    def keep_if_best(self, score: tuple[float, ...]) -> bool:
        """Record the current weights as the best when `score` beats the best so far.

        Patience counts epochs without a gain in the metric itself (`score[0]`): a tie broken
        by a lower loss keeps the newer weights but does not reset it. On the corpus's small
        validation sets accuracy plateaus for many epochs while the loss edges down by
        thousandths; resetting on those ran reuters_r8 to its epoch cap every time, for the
        same kept accuracy (benchmarks/RESULTS.md, round 4 session 7).
        """
        best = self.best_score
        gained = best is None or score[0] > best[0]
        kept = best is None or score > best
        if kept:
            self.best_score = score
            self.best_epoch = self.epoch
            self.best_weights = {n: p.detach().clone() for n, p in self.trainable().items()}
        self.epochs_without_gain = 0 if gained else self.epochs_without_gain + 1
        return gained

    def restore_best(self) -> None:
        """Load the best epoch's weights into the model (no-op before the first epoch ends)."""
        params = self.trainable()
        with torch.no_grad():
            for name, value in self.best_weights.items():
                params[name].copy_(value)


def selection_score(best_by: str, val_accuracy: float, val_loss: float) -> tuple[float, ...]:
    """Higher is better. Accuracy ties are common on small validation sets; the lower loss
    breaks them. A NaN loss never wins."""
    loss = -val_loss if math.isfinite(val_loss) else -math.inf
    return (loss,) if best_by == "val_loss" else (val_accuracy, loss)
