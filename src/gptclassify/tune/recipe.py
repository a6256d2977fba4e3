"""`train --recipe auto`: choose learning rate, epochs and trainable depth by validation score
within a time budget.

The book's recipe (last block, lr 5e-5, 5 epochs) was tuned on SMS spam with GPT-2; on other
data or another backbone it can lose to a bag-of-words baseline. `auto_recipe` trains a short,
fixed list of candidates (the data-fitted recipe, the default on a user's data, first; then
the book's, the cheapest), on one split, and keeps the one with the best full-validation
accuracy (macro F1 on label sets; ties: the lower validation loss, then the cheaper). Rules:

- Every candidate is a normal training run (`train()`), in a work folder beside OUT. Candidates
  that share their frozen blocks share one frozen-prefix cache
  (a `PrefixMemo` passed to each `train()`): only the first pays for it.
- The budget counts work, not wall time: this process's CPU time over its torch threads
  (`work_clock`), so a machine busy with other work runs the same candidates as an idle one,
  only later. A candidate starts only when its predicted work fits what is left (predicted
  from the candidates measured so far: work per epoch and per trainable block, plus the
  frozen-prefix cache build unless an earlier candidate built the same cache); one that runs
  past the budget stops at the end of its current epoch and keeps its best epoch, like early
  stopping. The first candidate always runs to its end. A skipped candidate is named with
  the --budget that would have run it.
- The chosen candidate's run folder becomes OUT (one rename: complete or absent), with
  recipe.json saying what was tried, what each scored and cost, and why this one won; the
  other candidates' folders are removed (their numbers are in recipe.json).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from gptclassify.args import TrainConfig
from gptclassify.data.sources import load_data
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write
from gptclassify.metrics import selection_metric
from gptclassify.predict.api import Classifier
from gptclassify.training import train
from gptclassify.training.folder import PARTIAL
from gptclassify.training.loop import Callbacks
from gptclassify.training.prefix_cache import PrefixMemo
from gptclassify.training.state import TrainState
from gptclassify.tune.search import prepare_data, trial_config

log = logging.getLogger("gptclassify.recipe")

RECIPES = ("book", "fitted", "auto")
# What the auto recipe chooses: a user who sets one of these with --recipe auto is told so.
CHOSEN = (
    "lr",
    "epochs",
    "trainable",
    "lora_rank",
    "lora_alpha",
    "patience",
    "lexical",
    "group_by_length",
)
RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class Candidate:
    name: str
    params: dict[str, Any]
    """TrainConfig flat names -> values, applied on top of the user's options."""
    why: str


# In order of value for the time, measured on SmolLM2-135M (benchmarks/quality.py, RESULTS.md):
# four trainable blocks at lr 2e-4 (the fitted recipe, with enough steps for small data) were
# the best variant on both SMS splits (+0.9 and +2.0 points of test accuracy over the book's
# recipe, mean of 3 seeds); the book's recipe is the cheapest second opinion; a 10x lr over
# more epochs is cheaper and fixes underfitting on other data (issue 20's held-back sets);
# LoRA on every layer costs the whole network every step and runs only when the budget allows.
# Every candidate runs with `--lexical auto`: the surface head (surface.py, TF-IDF word and
# character n-grams, seconds) weighs in where it raises validation accuracy, and ships alone
# where it beats the network, so no candidate validates below the TF-IDF baseline.
LEXICAL = {"lexical": "auto"}
FITTED = "fitted"
"""The name of the candidate whose options `fitted_options` computes from the data size."""
CANDIDATES: tuple[Candidate, ...] = (
    Candidate(
        FITTED,
        {},
        "the data-fitted recipe (the default): four blocks, lr 2e-4, at least 600 steps, "
        "early stopping",
    ),
    Candidate("book", {**LEXICAL}, "the book's recipe: last block, lr 5e-5, 5 epochs"),
    Candidate(
        "last-block lr 5e-4 10 ep",
        {"lr": 5e-4, "epochs": 10, "patience": 3, **LEXICAL},
        "the same trainable part, 10x the learning rate, longer",
    ),
    Candidate(
        "lora r16 lr 5e-4",
        {
            "trainable": "lora",
            "lora_rank": 16,
            "lora_alpha": 16.0,
            "lr": 5e-4,
            "epochs": 5,
            **LEXICAL,
        },
        "low-rank adapters on every layer (the whole network runs every step)",
    ),
)


# ---- the data-fitted recipe: what `train --data` runs by default ----------------------------

FITTED_TRAINABLE = "last-4-blocks"
FITTED_LR = 2e-4
MIN_STEPS = 600
"""Optimizer steps the fitted recipe gives a training split at least (the book's recipe gives
SMS's 1,045 texts 650; a few hundred texts get 100-200 from 5 epochs and underfit)."""
FITTED_EPOCHS = (3, 20)
"""Fewest and most epochs of the fitted recipe (large sets reach MIN_STEPS in one)."""
FITTED_PATIENCE = 3


def fitted_options(n_train: int, batch_size: int = 8, grad_accum: int = 1) -> dict[str, Any]:
    """The fitted recipe's options for a training split of `n_train` texts: four trainable
    blocks at lr 2e-4, enough epochs for MIN_STEPS optimizer steps (3 to 20), early stopping
    after FITTED_PATIENCE epochs without a better validation score, the surface head
    (`--lexical auto`: the model ships at least the TF-IDF baseline's validation accuracy),
    and batches of similar lengths (`--group-by-length`: the same steps at a fraction of
    the padding)."""
    steps = max(n_train // batch_size // max(grad_accum, 1), 1)
    low, high = FITTED_EPOCHS
    epochs = min(max(math.ceil(MIN_STEPS / steps), low), high)
    return {
        "trainable": FITTED_TRAINABLE,
        "lr": FITTED_LR,
        "epochs": epochs,
        "patience": FITTED_PATIENCE,
        "lexical": "auto",
        "group_by_length": True,
    }


def is_sms_job(cfg: TrainConfig) -> bool:
    """The default job: the SMS Spam Collection (shipped or downloaded), not a user's data."""
    d = cfg.data
    return (
        d.train is None
        and d.validation is None
        and d.test is None
        and isinstance(d.data, str)
        and d.data == "sms-spam"
    )


def resolve_recipe(
    recipe: str | None, cfg: TrainConfig, given: set[str]
) -> tuple[TrainConfig, str, str]:
    """(the config to train, the recipe that runs, why) for `--recipe` (None: the default:
    the fitted recipe on a user's data with pretrained weights; the book's recipe on the SMS
    job, the seeds' reference, and from random weights, an experiment run as given). The
    fitted recipe sets only the options in CHOSEN that are not in `given` (the options a user
    set explicitly keep their values)."""
    if recipe is None:
        if is_sms_job(cfg):
            recipe, why = "book", "the default on the SMS job (--recipe fitted or auto for others)"
        elif cfg.backbone.weights == "random":
            recipe, why = (
                "book",
                "random weights: the options as given (--recipe fitted to fit them)",
            )
        else:
            recipe, why = "fitted", "the default on your own data (--recipe book for the book's)"
    else:
        why = f"--recipe {recipe}"
    if recipe != "fitted":
        return cfg, recipe, why

    splits = load_data(cfg.data, cfg.train.seed)
    n_train = len(splits.train.texts)
    options = fitted_options(n_train, cfg.train.batch_size, cfg.train.grad_accum)
    kept = {k: v for k, v in options.items() if k not in given}
    new = _with(cfg, kept)
    said = ", ".join(f"{k} {v}" for k, v in kept.items())
    mine = sorted(set(options) - set(kept))
    why += f": {n_train} training texts -> {said}" + (
        f" (yours: {', '.join(mine)})" if mine else ""
    )
    return new, recipe, why


def _with(cfg: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """A copy of `cfg` with flat TrainConfig options replaced (data objects shared)."""
    new = TrainConfig.__new__(TrainConfig)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        object.__setattr__(
            new, f.name, dataclasses.replace(value) if dataclasses.is_dataclass(value) else value
        )
    for key, value in params.items():
        setattr(new, key, value)
    return new


@dataclass
class Tried:
    name: str
    params: dict[str, Any]
    why: str
    state: str
    """done, stopped (budget ran out mid-run; best epoch kept), skipped (predicted not to fit)
    or failed."""
    val_accuracy: float | None = None
    val_score: float | None = None
    """What candidates are compared on: full-validation accuracy, or macro F1 on label sets
    (what their thresholds maximise; subset accuracy would favour predicting few labels)."""
    metric: str = "accuracy"
    val_loss: float | None = None
    test_accuracy: float | None = None
    epochs_run: int | None = None
    seconds: float | None = None
    """Wall time."""
    work_s: float | None = None
    """Work time (`work_clock`): what the budget counts."""
    predicted_s: float | None = None
    note: str | None = None


@dataclass
class RecipeResult:
    classifier: Classifier | None
    chosen: str | None
    reason: str
    tried: list[Tried] = field(default_factory=list)
    budget_s: float = 0.0
    wall_s: float = 0.0
    prefix_cache: dict[str, float] = field(default_factory=dict)


def parse_budget(text: str | float | int) -> float:
    """'3m', '90s', '1h', '1m30s' or a number of seconds -> seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", s):
            seconds = float(s)
        else:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", s)
            if not parts or re.sub(r"\s", "", s) != "".join(n + u for n, u in parts):
                raise GPTClassifyError(
                    f"--budget {text!r}: not a duration (examples: 3m, 90s, 1h, 1m30s)"
                )
            unit = {"h": 3600.0, "m": 60.0, "s": 1.0}
            seconds = sum(float(n) * unit[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise GPTClassifyError(f"--budget {text!r}: must be more than 0 seconds")
    return seconds


def work_clock() -> float:
    """Seconds of work done by this process: its CPU time over the threads torch computes
    with. On an idle machine it runs with the wall clock; on a busy one it runs slower, as
    the process gets less of the CPU, so a budget buys the same candidates either way."""

    return time.process_time() / max(torch.get_num_threads(), 1)


class Deadline(Callbacks):
    """Stops a candidate at the end of the epoch during which the budget ran out (the run then
    ends as an early stop does, with its best epoch's weights). Times are `work_clock`'s."""

    def __init__(self, at: float | None) -> None:
        self.at = at
        self.hit = False

    def on_epoch(self, state: TrainState, row: dict[str, Any]) -> None:
        if self.at is not None and work_clock() >= self.at and not state.stopped_early:
            state.stopped_early = True
            self.hit = True


def _blocks(params: dict[str, Any], base: TrainConfig, n_layer: int | None) -> float:
    """Relative cost of one epoch: trainable blocks (LoRA and 'all' run every block)."""
    trainable = params.get("trainable", base.trainable)
    if trainable in ("lora", "all"):
        return float(n_layer or 12)
    if trainable == "head":
        return 0.5
    m = re.fullmatch(r"last-(\d+)-blocks", str(trainable))
    return float(m.group(1)) if m else 1.0


@dataclass
class Measured:
    """What one candidate cost, in work seconds (`work_clock`)."""

    units: float
    """Epochs run x trainable blocks."""
    train_s: float
    other_s: float
    """Around the training loop: loading, the frozen-prefix cache, evaluating."""
    cache_s: float
    """The part of other_s spent building frozen-prefix caches."""


def _cache_key(params: dict[str, Any], base: TrainConfig) -> str | None:
    """Candidates with the same key share one frozen-prefix cache (None: no cache)."""
    trainable = params.get("trainable", base.trainable)
    return None if trainable in ("lora", "all") else str(trainable)


def _predict_seconds(
    cand: Candidate,
    base: TrainConfig,
    measured: list[Measured],
    n_layer,
    built: dict[str | None, float],
) -> float | None:
    """Work seconds a candidate should take: its epochs x trainable blocks x the cost of one
    block-epoch, plus the cost around the training loop without the cache build, plus that
    build unless an earlier candidate built the same cache (`built`: cache key -> its cost),
    all from the latest candidate measured. None before anything was measured."""
    if not measured:
        return None
    m = measured[-1]
    epochs = cand.params.get("epochs", base.epochs)
    blocks = _blocks(cand.params, base, n_layer)
    key = _cache_key(cand.params, base)
    # LoRA also back-propagates through every frozen weight: about twice a forward more.
    factor = 1.6 if key is None else 1.0
    cache = 0.0 if key in built else (max(built.values(), default=m.cache_s) if key else 0.0)
    return max(m.other_s - m.cache_s, 0.0) + cache + epochs * blocks * m.train_s / m.units * factor


def auto_recipe(
    base: TrainConfig,
    budget: str | float = "3m",
    *,
    out: str | Path | None = None,
    candidates: tuple[Candidate, ...] = CANDIDATES,
    overwrite: bool = False,
    quiet: bool = False,
    echo: Callable[[str], None] | None = None,
) -> RecipeResult:
    """Train the candidates on `base`'s data within `budget`; publish the best one at `out`."""
    say = echo or (lambda line: None)
    budget_s = parse_budget(budget)
    out = Path(out or base.out or Path("runs") / f"auto-{datetime.now():%Y%m%d-%H%M%S}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise GPTClassifyError(f"{out}: exists and is not empty (use --overwrite to replace it)")
    work = out.with_name(out.name + ".recipe" + PARTIAL)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    t0 = time.monotonic()
    w0 = work_clock()
    deadline = w0 + budget_s
    tried: list[Tried] = []
    measured: list[Measured] = []
    built: dict[str | None, float] = {}  # cache key -> work seconds its build took
    n_layer: int | None = None
    runs: dict[str, Path] = {}
    try:
        shared, _ = prepare_data(base, work)
        n_train = _train_size(shared, base)
        candidates = tuple(
            Candidate(
                c.name,
                fitted_options(n_train, base.train.batch_size, base.train.grad_accum),
                c.why,
            )
            if c.name == FITTED
            else c
            for c in candidates
        )
        memo = PrefixMemo(capacity=2)
        for i, cand in enumerate(candidates):
            left = deadline - work_clock()
            predicted = _predict_seconds(cand, base, measured, n_layer, built)
            row = Tried(
                cand.name,
                dict(cand.params),
                cand.why,
                "skipped",
                predicted_s=predicted,
            )
            tried.append(row)
            if i and (left <= 0 or (predicted is not None and predicted > left)):
                used = work_clock() - w0
                need = _budget_text(used + (predicted or 0.0))
                row.note = (
                    f"predicted {predicted:.0f} s of work, {max(left, 0):.0f} s of the "
                    f"budget left; --budget {need} would run it"
                    if predicted is not None
                    else f"the budget ran out; --budget {need} would run it"
                )
                say(f"recipe auto: {cand.name}: skipped ({row.note})")
                continue
            run_dir = work / f"{i:02d}-{re.sub(r'[^A-Za-z0-9.-]+', '_', cand.name)}"
            try:
                cfg = trial_config(base, shared, row.params, run_dir)
            except GPTClassifyError as exc:
                row.state, row.note = "failed", str(exc)
                say(f"recipe auto: {cand.name}: failed: {exc}")
                continue
            stop = Deadline(None if i == 0 else deadline)
            started = time.monotonic()
            w_started = work_clock()
            built_before = memo.built_s
            say(
                f"recipe auto: {cand.name} ({cand.why}"
                + (f"; predicted {predicted:.0f} s of work" if predicted is not None else "")
                + ") ..."
            )
            try:
                clf = train(
                    cfg,
                    quiet=True,
                    progress=False,
                    overwrite=True,
                    callbacks=[stop],
                    prefix_memo=memo,
                )
            except GPTClassifyError as exc:
                row.state, row.note = "failed", str(exc)
                say(f"recipe auto: {cand.name}: failed: {exc}")
                continue
            seconds = time.monotonic() - started
            work_s = work_clock() - w_started
            metrics = clf.metrics or {}
            epochs_run = int(metrics.get("epochs_run") or 0)
            row.state = "stopped" if stop.hit else "done"
            row.val_accuracy = float(metrics["validation"]["accuracy"])
            row.metric, row.val_score = selection_metric(metrics["validation"])
            row.val_loss = float(metrics["validation"]["loss"])
            if "test" in metrics:
                row.test_accuracy = float(metrics["test"]["accuracy"])
            row.epochs_run, row.seconds, row.work_s = epochs_run, seconds, work_s
            if stop.hit:
                row.note = f"the budget ran out after epoch {epochs_run}; best epoch kept"
            runs[cand.name] = run_dir
            n_layer = n_layer or _n_layer(clf)
            # Wall-clock parts of the run, converted to work seconds by its own ratio.
            ratio = work_s / seconds if seconds > 0 else 1.0
            train_s = float(metrics.get("training_time_s") or seconds) * ratio
            cache_s = (memo.built_s - built_before) * ratio
            key = _cache_key(cand.params, base)
            if key is not None and cache_s > 0:
                built[key] = cache_s
            work_units = max(epochs_run, 1) * _blocks(cand.params, base, n_layer)
            if key is not None:
                measured.append(Measured(work_units, train_s, max(work_s - train_s, 0.0), cache_s))
            say(
                f"recipe auto: {cand.name}: validation {row.metric} {row.val_score:.4f}, "
                f"loss {row.val_loss:.4f} ({seconds:.0f} s, {work_s:.0f} s of work"
                + (", stopped by the budget" if stop.hit else "")
                + ")"
            )
        cache = {"hits": memo.hits, "misses": memo.misses, "saved_s": memo.saved_s}
        ran = [t for t in tried if t.state in ("done", "stopped")]
        if not ran:
            reasons = "; ".join(f"{t.name}: {t.note}" for t in tried)
            raise GPTClassifyError(f"--recipe auto: no candidate finished ({reasons})")
        best = _best(ran)
        reason = _reason(best, ran)
        say(f"recipe auto: chose {best.name}: {reason}")
        result = RecipeResult(
            None, best.name, reason, tried, budget_s, time.monotonic() - t0, cache
        )
        chosen = runs[best.name]
        atomic_write(chosen / RECIPE_FILE, json.dumps(_record(result, base), indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        chosen.rename(out)
        result.classifier = Classifier.load(out)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train_size(data, base: TrainConfig) -> int:

    return len(load_data(data, base.train.seed).train.texts)


def _budget_text(seconds: float) -> str:
    """A --budget that covers `seconds`, in whole minutes (with a margin of a tenth)."""
    return f"{max(math.ceil(seconds * 1.1 / 60), 1)}m"


def _n_layer(clf: Classifier) -> int | None:
    try:
        return int(clf.gpt_config.n_layer)
    except Exception:  # noqa: BLE001 - only a cost estimate
        return None


def _best(ran: list[Tried]) -> Tried:
    """The highest validation score; ties: the lower validation loss, then the faster run."""
    return min(ran, key=lambda t: (-t.val_score, t.val_loss, t.seconds))


def _reason(best: Tried, ran: list[Tried]) -> str:
    others = [t for t in ran if t is not best]
    if not others:
        return "the only candidate that ran within the budget"
    runner = max(others, key=lambda t: (t.val_score, -t.val_loss))
    metric = best.metric
    if best.val_score > runner.val_score:
        return (
            f"highest validation {metric} ({best.val_score:.4f}; next {runner.name} "
            f"{runner.val_score:.4f})"
        )
    return (
        f"validation {metric} tied at {best.val_score:.4f} with {runner.name}; "
        f"lower validation loss ({best.val_loss:.4f} against {runner.val_loss:.4f})"
    )


def _record(result: RecipeResult, base: TrainConfig) -> dict[str, Any]:
    return {
        "recipe": "auto",
        "chosen": result.chosen,
        "reason": result.reason,
        "budget_s": result.budget_s,
        "budget_counts": "work seconds: this process's CPU time over its torch threads",
        "wall_s": result.wall_s,
        "selection": "full-validation accuracy (macro F1 on label sets), then validation "
        "loss, then time",
        "tried": [asdict(t) for t in result.tried],
        "prefix_cache": result.prefix_cache,
        "data": asdict(base.data),
    }
