"""What a grid run produced: one `RunResult` per row, collected in `Experiments`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gptclassify.artifact import RunMetrics


@dataclass
class RunResult:
    """One row of the comparison table."""

    name: str
    description: str
    model: str
    status: str = "ok"
    """ok or failed."""
    error: str = ""
    """The one-line reason of a failed row."""
    trainable_params: int | None = None
    total_params: int | None = None
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    test_accuracy: float | None = None
    test_macro_f1: float | None = None
    time_s: float | None = None
    """Training time (the fit only, as metrics.json's training_time_s)."""
    peak_memory_mb: float | None = None
    """metrics.json's peak_memory_mb: CUDA allocator peak on a GPU, process peak RSS on CPU."""
    device: str = ""
    wall_s: float | None = None
    """Seconds the whole row took, data loading and evaluation included."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fill(self, metrics: RunMetrics) -> None:
        """The row's figures from the run's metrics.json."""
        self.trainable_params = metrics.trainable_params
        self.total_params = metrics.total_params
        self.train_accuracy = metrics.accuracy("train")
        self.val_accuracy = metrics.accuracy("validation")
        self.test_accuracy = metrics.accuracy("test")
        test = metrics.splits.get("test")
        self.test_macro_f1 = test["macro_f1"] if test else None
        self.time_s = metrics.training_time_s
        self.peak_memory_mb = metrics.peak_memory_mb
        self.device = metrics.device


@dataclass
class Experiments:
    """What `run_experiments` produced."""

    out: Path
    rows: list[RunResult]
    quick: bool
    data_summary: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def baseline(self) -> RunResult | None:
        return next((r for r in self.rows if r.name == "tfidf-baseline"), None)
