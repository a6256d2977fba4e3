"""Dynamic micro-batching: the texts of concurrent requests share model passes.

A request puts its texts (already tokenized, an `Encoded`) on one bounded queue and awaits a
future. A worker thread waits until texts are waiting; while fewer than a pass's worth are
(`max_batch` texts or `max_tokens` tokens), it waits for more, but never longer than
`max_wait` after the oldest waiting text arrived (under load the queue is never short, so
nobody waits on purpose). It sorts the oldest `max_batch` waiting texts by length, as
`predict` sorts, plans them into passes (`plan_passes`), runs the pass that holds the oldest
text through the classifier's runtime, and leaves the others waiting, to be planned again
with what arrives meanwhile: the oldest text always goes next, and later passes draw on a
fuller pool. Each row goes back to its request on the request's event loop.

Where to cut: `predict` sorts a whole file, so its batches hold texts of nearly one length;
a server only has the texts that happen to be waiting, and one pass padded to the longest of
a few dozen random messages computes far more tokens than they hold. Every pass also has a
fixed cost (on a CPU, mostly reading every weight once): `PassCost` fits it to the passes
run, from two timed at start (`measure_pass_cost`), in tokens' worth of compute, and
`plan_passes` cuts the sorted texts where the padding saved outweighs the extra passes,
within the `max_tokens` budget per pass. A runtime that skips padding (`PassWork`: the
PyTorch runtime of a causal model) pays for little more than real tokens, so its waiting
texts mostly go in one pass, sharing the fixed cost.

The event loop never runs the model, so it goes on answering (health checks, refusals) while
a large pass runs. A request is refused at once (`QueueFull`, the server's 429 with a
Retry-After) when the queue is full, or when it could not be answered within its timeout
anyway: its predicted wait, the work queued ahead of it and its own (real tokens, and a
pass's fixed cost per pass) at the fitted pass cost (`PassCost.seconds`), is longer than
ADMIT_SHARE of the timeout (the rest is the prediction's margin). Computing it would only make the requests behind it late too: under overload the
server then spends its passes on requests it can answer in time, and the others hear so in
milliseconds. A request still unanswered after its timeout gets `RequestTimeout`, and its
texts that have not run are dropped from the queue, as are those of a request whose client
went away (the caller cancels `submit`); a pass never holds a text whose request is gone when
the pass starts. The observer counts the texts dropped, and those computed for a request that
went away while their pass ran (the only waste left).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gptclassify.predict import Encoded
from gptclassify.serve.planning import PassCost, PassWork, measure_pass_cost, plan_passes

__all__ = [
    "BatchLimits",
    "MicroBatcher",
    "PassCost",
    "PassObserver",
    "ADMIT_SHARE",
    "PassWork",
    "QueueFull",
    "RequestTimeout",
    "ShuttingDown",
    "measure_pass_cost",
    "plan_passes",
]


class QueueFull(Exception):
    """The queue cannot take the request's texts now: `retry_after` seconds from now it
    should (predicted), `reason` says why ("queue" full or predicted "wait")."""

    def __init__(self, message: str, retry_after: float, reason: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.reason = reason


class RequestTimeout(Exception):
    """The request was not answered within its timeout."""


class ShuttingDown(Exception):
    """The server stopped before the request ran."""


class PassObserver(Protocol):
    """Told about every model pass (for metrics)."""

    def on_pass(self, texts: int, tokens: int, padded_tokens: int, seconds: float) -> None: ...

    def on_wait(self, seconds: Sequence[float]) -> None: ...

    def on_refused(self, reason: str, texts: int) -> None:
        """A request's `texts` were refused (`QueueFull.reason`)."""

    def on_dropped(self, texts: int) -> None:
        """Waiting texts were dropped, never computed: their request had gone."""

    def on_wasted(self, texts: int) -> None:
        """Texts were computed for a request that went away during their pass."""


ADMIT_SHARE = 0.7
"""A request is admitted while its predicted wait is at most this share of its timeout. The
prediction (the fitted pass cost times the work queued) runs short when the CPU is contended,
and a request admitted at the edge of its timeout then times out after its texts were
computed: measured under overload (RESULTS.md, issue 21), admitting up to the whole timeout
ended 322-434 of ~2,000 admitted requests in 503s, 7-12% of the computed texts wasted; at
0.7, one and none."""


@dataclass(frozen=True)
class BatchLimits:
    max_tokens: int = 4096
    """Padded tokens per pass (a longer text runs alone)."""
    max_batch: int = 64
    """Texts planned together (and so at most per pass)."""
    max_wait_s: float = 0.002
    max_queue: int = 1024
    """Texts waiting (not yet taken by a worker)."""
    workers: int = 1


class _Job:
    """One request: its rows' results, filled in by workers."""

    __slots__ = ("loop", "future", "rows", "remaining", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop, n: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[np.ndarray] = loop.create_future()
        self.rows: list[np.ndarray | None] = [None] * n
        self.remaining = n
        self.done = False
        """Answered, failed or abandoned: its waiting texts are skipped."""


@dataclass(slots=True)
class _Item:
    job: _Job
    row: int
    ids: list[int]
    length: int
    queued_at: float


@dataclass(slots=True)
class _Task:
    """Other model work (an explanation) for the pass thread."""

    job: _Job
    fn: Callable[[], object]


class MicroBatcher:
    """The queue and its worker threads; `run` turns an `Encoded` into (N, K) logits."""

    def __init__(
        self,
        run: Callable[[Encoded], np.ndarray],
        limits: BatchLimits,
        observer: PassObserver | None = None,
        cost: PassCost | None = None,
        work: PassWork | None = None,
    ) -> None:
        self.run = run
        self.limits = limits
        self.observer = observer
        self.cost = cost or PassCost()
        """What a pass costs (`plan_passes` cuts by it), refitted after every pass."""
        self.work = work if work is not None else PassWork()
        """What a pass computes, given its texts (padded or real tokens: the runtime's)."""
        self._pending: deque[_Item] = deque()
        self._pending_tokens = 0
        self._seen_texts = 0
        self._seen_tokens = 0
        self._running = 0
        self._running_tokens = 0
        self._tasks: deque[_Task] = deque()
        self._tasks_running = 0
        self._task_turn = True
        """Whether a waiting task goes before waiting texts (they take turns)."""
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # ---- life cycle ---------------------------------------------------------------------

    def start(self, prepare: Callable[[], None] | None = None) -> None:
        """Start the workers. `prepare` (a warm-up, a measurement) runs first, on a worker's
        own thread, and `start` returns when it is done: every model call happens on the
        threads that run the passes, so a runtime whose thread pools belong to the calling
        thread (OpenMP's do) keeps one set of them busy, not two taking turns."""
        with self._cond:
            self._stopping = False
        ready = threading.Event()
        failed: list[BaseException] = []

        def first() -> None:
            try:
                if prepare is not None:
                    prepare()
            except BaseException as exc:  # raised again by start, on the caller's thread
                failed.append(exc)
                return
            finally:
                ready.set()
            self._work()

        for i in range(self.limits.workers):
            target = first if i == 0 else self._work
            thread = threading.Thread(target=target, name=f"gptclassify-batch-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        ready.wait()
        if failed:
            self.stop()
            raise failed[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new work, fail what is waiting, let running passes finish."""
        with self._cond:
            self._stopping = True
            waiting = [item.job for item in self._pending] + [task.job for task in self._tasks]
            self._pending.clear()
            self._tasks.clear()
            self._pending_tokens = 0
            self._cond.notify_all()
        for job in waiting:
            self._fail(job, ShuttingDown("the server is shutting down"))
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    # ---- state, for /metrics ------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Texts waiting for a pass."""
        return len(self._pending)

    @property
    def running(self) -> int:
        """Texts in passes now."""
        return self._running

    def predicted_wait(self, texts: int = 0, tokens: int = 0) -> float | None:
        """Seconds until `texts` more texts of `tokens` real tokens would be answered, if they
        joined the queue now: every text waiting or running goes first, in passes of at most
        `max_batch` texts and `max_tokens` tokens, each costing the fitted fixed time plus
        the fitted time per token (None before a fit: nothing is known yet). Spread over the
        workers; a running pass counts whole (it may have just begun)."""
        limits = self.limits
        with self._cond:
            queued_texts = len(self._pending) + texts
            queued_tokens = self._pending_tokens + tokens
            running, running_tokens = self._running, self._running_tokens
        passes = max(
            math.ceil(queued_texts / limits.max_batch), math.ceil(queued_tokens / limits.max_tokens)
        )
        seconds = self.cost.seconds(queued_tokens, passes)
        if seconds is None:
            return None
        if running:
            seconds += self.cost.seconds(running_tokens, 1) or 0.0
        return seconds / limits.workers

    def busy(self) -> float | None:
        """`predicted_wait` for one more text of the mean length queued so far: what a
        request of unknown size most likely waits (see serve.middleware.Admission)."""
        mean = self._seen_tokens / self._seen_texts if self._seen_texts else 1.0
        return self.predicted_wait(1, max(1, round(mean)))

    @property
    def tasks(self) -> int:
        """Tasks (`call`) waiting or running."""
        return len(self._tasks) + self._tasks_running

    # ---- the event loop's side ----------------------------------------------------------

    async def submit(self, encoded: Encoded, timeout: float | None) -> np.ndarray:
        """Logits (N, K) of `encoded`'s rows, in order, once workers have run them.
        `QueueFull` at once when the queue is full, or when the predicted wait (see
        `predicted_wait`) is longer than ADMIT_SHARE of `timeout`; its Retry-After is then
        that wait: when the work queued now will have been answered (a shorter one brings
        every refused client back while the queue is still as full)."""
        n = len(encoded)
        job = _Job(asyncio.get_running_loop(), n)
        now = time.monotonic()
        lengths = [int(x) for x in encoded.lengths]
        if timeout is not None:
            wait = self.predicted_wait(n, sum(lengths))
            if wait is not None and wait > ADMIT_SHARE * timeout:
                self._refused("wait", n)
                raise QueueFull(
                    f"the predicted wait, {wait:.1f} s for the work queued and this request's, "
                    f"is longer than {ADMIT_SHARE:.0%} of the {timeout:g} s timeout",
                    retry_after=wait,
                    reason="wait",
                )
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self._pending) + n > self.limits.max_queue:
                full = QueueFull(
                    f"the queue holds {len(self._pending)} of at most {self.limits.max_queue} "
                    f"texts; this request has {n}",
                    retry_after=self.predicted_wait() or 1.0,
                    reason="queue",
                )
            else:
                full = None
                for row in range(n):
                    self._pending.append(_Item(job, row, encoded.ids[row], lengths[row], now))
                self._pending_tokens += sum(lengths)
                self._seen_texts += n
                self._seen_tokens += sum(lengths)
                self._cond.notify_all()
        if full is not None:
            self._refused("queue", n)
            raise full
        return await self._answer(job, timeout)

    def _refused(self, reason: str, texts: int) -> None:
        if self.observer is not None:
            self.observer.on_refused(reason, texts)

    async def call(self, fn: Callable[[], object], timeout: float | None) -> object:
        """`fn()` run on a pass thread, between passes (waiting texts and tasks take turns),
        so that every model call of the server happens on the threads that run the passes."""
        job = _Job(asyncio.get_running_loop(), 1)
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            self._tasks.append(_Task(job, fn))
            self._cond.notify_all()
        return await self._answer(job, timeout)

    async def _answer(self, job: _Job, timeout: float | None) -> Any:
        """The job's result, once workers have set it; `RequestTimeout` after `timeout`."""
        try:
            return await asyncio.wait_for(job.future, timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {timeout:g} s") from None
        finally:
            if not job.done:  # timed out, or the client went away: drop its waiting work
                self._abandon(job)

    def _abandon(self, job: _Job) -> None:
        with self._cond:
            job.done = True
            kept = [item for item in self._pending if item.job is not job]
            dropped = len(self._pending) - len(kept)
            if dropped:
                self._pending = deque(kept)
                self._pending_tokens = sum(item.length for item in kept)
            self._tasks = deque(task for task in self._tasks if task.job is not job)
        if dropped and self.observer is not None:
            self.observer.on_dropped(dropped)

    # ---- the workers' side --------------------------------------------------------------

    def _work(self) -> None:
        while True:
            work = self._take()
            if work is None:
                return
            if isinstance(work, _Task):
                self._run_task(work)
                continue
            self._run_pass(work)

    def _run_task(self, task: _Task) -> None:
        try:
            result = task.fn()
        except Exception as exc:
            self._fail(task.job, exc)
        else:
            with self._cond:
                done, task.job.done = task.job.done, True
            if not done:
                _call_soon(task.job, _resolve, task.job.future, result)
        finally:
            with self._cond:
                self._tasks_running -= 1

    def _full(self) -> bool:
        return (
            len(self._pending) >= self.limits.max_batch
            or self._pending_tokens >= self.limits.max_tokens
        )

    def _take(self) -> list[_Item] | _Task | None:
        """The next pass: the oldest waiting text and those `plan_passes` puts with it, out
        of the `max_batch` oldest. The others stay at the front of the queue, and are planned
        again with whatever arrives meanwhile. Or the next task, when it is their turn.
        None when stopping."""
        limits = self.limits
        with self._cond:
            while True:
                while not self._pending and not self._tasks:
                    if self._stopping:
                        return None
                    self._cond.wait()
                if self._tasks and (self._task_turn or not self._pending):
                    self._task_turn = False
                    self._tasks_running += 1
                    return self._tasks.popleft()
                self._task_turn = True
                deadline = self._pending[0].queued_at + limits.max_wait_s
                while self._pending and not self._full() and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                candidates: list[_Item] = []
                dropped = 0
                while self._pending and len(candidates) < limits.max_batch:
                    item = self._pending.popleft()
                    if item.job.done:  # abandoned, or another row of its request failed
                        self._pending_tokens -= item.length
                        dropped += 1
                    else:
                        candidates.append(item)
                if dropped and self.observer is not None:
                    self.observer.on_dropped(dropped)
                if candidates:
                    break
            lengths = [item.length for item in candidates]
            plan = plan_passes(lengths, limits.max_tokens, self.cost.overhead, self.work)
            chosen = set(next(p for p in plan if 0 in p))  # candidates[0] is the oldest
            taken = [item for i, item in enumerate(candidates) if i in chosen]
            back = [item for i, item in enumerate(candidates) if i not in chosen]
            self._pending.extendleft(reversed(back))
            self._pending_tokens -= sum(item.length for item in taken)
            self._running += len(taken)
            self._running_tokens += sum(item.length for item in taken)
            if back:
                self._cond.notify()  # another worker may take them
        if self.observer is not None:
            now = time.monotonic()
            self.observer.on_wait([now - item.queued_at for item in taken])
        return taken

    def _run_pass(self, items: list[_Item]) -> None:
        encoded = Encoded.unlabelled([i.ids for i in items], [i.length for i in items])
        t0 = time.perf_counter()
        try:
            logits = self.run(encoded)
        except Exception as exc:  # the requests get the error, the worker goes on
            for item in items:
                self._fail(item.job, exc)
            return
        finally:  # before any answer goes out, so /metrics never counts an answered text
            with self._cond:
                self._running -= len(items)
                self._running_tokens -= sum(item.length for item in items)
        seconds = time.perf_counter() - t0
        longest = max(item.length for item in items)
        tokens = sum(item.length for item in items)
        self.cost.observe(self.work(longest, len(items), tokens), seconds)
        if self.observer is not None:
            self.observer.on_pass(len(items), tokens, longest * len(items), seconds)
        wasted = sum(not self._deliver(item, row) for item, row in zip(items, logits, strict=True))
        if wasted and self.observer is not None:
            self.observer.on_wasted(wasted)

    def _deliver(self, item: _Item, row: np.ndarray) -> bool:
        """Hand a row to its request; False when the request had gone."""
        job = item.job
        with self._cond:
            if job.done:
                return False
            job.rows[item.row] = row
            job.remaining -= 1
            if job.remaining:
                return True
            job.done = True
        _call_soon(job, _resolve, job.future, np.stack(job.rows))  # type: ignore[arg-type]
        return True

    def _fail(self, job: _Job, exc: BaseException) -> None:
        with self._cond:
            if job.done:
                return
            job.done = True
        _call_soon(job, _reject, job.future, exc)


def _call_soon(job: _Job, callback: Callable[..., None], *args: object) -> None:
    try:
        job.loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the event loop is closed: nobody is waiting any more
        pass


def _resolve(future: asyncio.Future, value: np.ndarray) -> None:
    if not future.done():
        future.set_result(value)


def _reject(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
