"""Planning passes, with no threads: what a pass computes (`PassWork`), what it costs
(`PassCost`, fitted to passes run, `measure_pass_cost` at start), and where to cut a set of
waiting texts into passes (`plan_passes`). serve/batching.py's queue asks these at each round;
see its docstring for why a server cuts where it does.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gptclassify.predict import Encoded


@dataclass(frozen=True)
class PassWork:
    """What a pass computes, in tokens' worth, from its longest text, rows and real tokens.

    A padded runtime computes every padded token (longest x rows). A padding-free one (the
    PyTorch runtime of a causal model: fastpath.packed_blocks) computes the real tokens,
    plus an attention over the padded width that costs about `attention` x longest of a
    token per padded token (1 / (12 x emb_dim): a token's matmuls are 12 C^2 multiply-adds,
    its causal attention over T keys about T x C)."""

    packed: bool = False
    attention: float = 0.0

    @classmethod
    def of(cls, padding_free: bool, emb_dim: int) -> PassWork:
        """What the passes of a classifier compute (`Classifier.padding_free`, its width)."""
        return cls(packed=True, attention=1.0 / (12 * emb_dim)) if padding_free else cls()

    def __call__(self, longest: int, rows: int, real: int) -> float:
        if not self.packed:
            return float(longest * rows)
        return real + self.attention * longest * longest * rows


def plan_passes(
    lengths: Sequence[int], max_tokens: int, overhead: float, work: PassWork = PassWork()
) -> list[list[int]]:
    """Indices into `lengths`, longest first (stable), cut into passes that minimise the work:
    each pass costs `overhead` plus its `work` (for a padded runtime, its padded tokens:
    longest x rows), and holds at most `max_tokens` padded tokens unless it is a single text.

    Sorted, contiguous passes are optimal for this cost; the cut points come from a dynamic
    programme over the sorted lengths (quadratic in texts per round: `max_batch` bounds it).
    With a huge overhead it finds the fewest passes, as data.batches.token_budget_batches'
    greedy rule does; with none, a padded runtime's passes group equal lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    s = [lengths[i] for i in order]
    n = len(s)
    total = [0] * (n + 1)  # total[j]: tokens of the first j sorted texts
    for j, length in enumerate(s):
        total[j + 1] = total[j] + length
    best = [0.0] + [math.inf] * n  # best[j]: least cost of the first j sorted texts
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):  # the last pass is s[i:j], padded to s[i]
            padded = s[i] * (j - i)
            if j - i > 1 and padded > max_tokens:
                break  # longer passes only get wider
            cost = best[i] + overhead + work(s[i], j - i, total[j] - total[i])
            if cost <= best[j]:  # ties: the longer last pass, so fewer passes
                best[j], start[j] = cost, i
    passes: list[list[int]] = []
    j = n
    while j > 0:
        passes.append(order[start[j] : j])
        j = start[j]
    return passes[::-1]


class PassCost:
    """What a pass costs: seconds = fixed + per_token x its work (PassWork), least squares over the
    passes seen, recent ones weighing more (`decay` per pass), so the estimate follows the
    machine. `overhead` is fixed / per_token: the fixed cost in tokens' worth of compute;
    `seconds` predicts a pass's time (the server's admission control asks it).

    A `fixed_overhead` (the user's) is used as `overhead` as it is (the line is still fitted,
    for `seconds`); otherwise, until the passes seen differ enough in size to fit a line, the
    overhead is 0 (cut wherever padding is saved) and `seconds` knows nothing (None)."""

    def __init__(self, fixed_overhead: float | None = None, decay: float = 0.98) -> None:
        self.fixed_overhead = fixed_overhead
        self.decay = decay
        self._lock = threading.Lock()
        self._sums = [0.0] * 5  # weight, x, y, x^2, x*y (x: tokens, y: seconds)
        self._overhead = fixed_overhead if fixed_overhead is not None else 0.0
        self._line: tuple[float, float] | None = None  # (fixed seconds, seconds per token)

    @property
    def overhead(self) -> float:
        return self._overhead

    def seconds(self, work: float, passes: float = 1.0) -> float | None:
        """Predicted seconds of `passes` passes computing `work` tokens' worth in all; None
        before a line has been fitted."""
        line = self._line
        if line is None:
            return None
        fixed, per_token = line
        return passes * fixed + work * per_token

    def observe(self, tokens: float, seconds: float, weight: float = 1.0) -> None:
        with self._lock:
            d = self.decay
            new = (weight, weight * tokens, weight * seconds)
            new += (weight * tokens * tokens, weight * tokens * seconds)
            self._sums = [old * d + add for old, add in zip(self._sums, new, strict=True)]
            w, x, y, xx, xy = self._sums
            mean_x, mean_y = x / w, y / w
            var = xx / w - mean_x * mean_x
            if var <= 1e-6 * max(1.0, mean_x * mean_x):
                return  # passes of one size: no line to fit yet
            per_token = (xy / w - mean_x * mean_y) / var
            if per_token > 0:
                fixed = max(0.0, mean_y - per_token * mean_x)
                self._line = (fixed, per_token)
                if self.fixed_overhead is None:
                    self._overhead = fixed / per_token


def measure_pass_cost(
    run: Callable[[Encoded], np.ndarray],
    max_length: int,
    clock: Callable[[], float] = time.perf_counter,
    repeats: int = 3,
    work: PassWork = PassWork(),
) -> list[tuple[float, float]]:
    """(work, seconds) of a small pass and a large one, each the best of `repeats`,
    timed in turns after a first call of each that warms the runtime up (so a busy moment
    of the machine slows both alike)."""
    passes = [Encoded.filler([min(8, max_length)]), Encoded.filler([min(64, max_length)] * 16)]
    for encoded in passes:
        run(encoded)
    best = [math.inf, math.inf]
    for _ in range(repeats):
        for i, encoded in enumerate(passes):
            t = clock()
            run(encoded)
            best[i] = min(best[i], clock() - t)
    return [
        (work(int(e.lengths.max()), len(e), int(e.lengths.sum())), b)
        for e, b in zip(passes, best, strict=True)
    ]
