"""Dynamic micro-batching: the texts of concurrent requests share model passes.

A request puts its texts (already tokenized, an `Encoded`) on one bounded queue and awaits a
future. Worker threads take what is waiting, oldest first, up to `max_batch` texts and
`max_tokens` real tokens; when less than that is waiting they wait for more, but never
longer than `max_wait` after the oldest waiting text arrived (under load the queue is never
short, so nobody waits on purpose). What a worker took is sorted by length and run in passes
of at most `max_tokens` padded tokens (`budget_chunks`: the rule of
data.batches.token_budget_batches), through the classifier's runtime, which batches the same
way `predict` does. Each row goes back to its request on the request's event loop.

The event loop never runs the model, so it goes on answering (health checks, refusals) while
a large pass runs. A full queue refuses at once (`QueueFull`, the server's 429); a request
still unanswered after its timeout gets `RequestTimeout`, and its texts that have not run are
dropped from the queue, as are those of a request whose client went away.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gptclassify.data.encode import Encoded


class QueueFull(Exception):
    """The queue cannot take the request's texts now."""


class RequestTimeout(Exception):
    """The request was not answered within its timeout."""


class ShuttingDown(Exception):
    """The server stopped before the request ran."""


class PassObserver(Protocol):
    """Told about every model pass (for metrics)."""

    def on_pass(self, texts: int, padded_tokens: int, seconds: float) -> None: ...

    def on_wait(self, seconds: Sequence[float]) -> None: ...


@dataclass(frozen=True)
class BatchLimits:
    max_tokens: int = 4096
    """Real tokens taken per round, and padded tokens per pass."""
    max_batch: int = 64
    """Texts per round (and so per pass)."""
    max_wait_s: float = 0.002
    max_queue: int = 1024
    """Texts waiting (not yet taken by a worker)."""
    workers: int = 1


def budget_chunks(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices into `lengths`, longest first (stable), cut into passes whose padded size
    (longest x rows) stays within `max_tokens`; a text longer than that runs alone.

    The rule of data.batches.token_budget_batches, without torch (a runtime may have none).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        if current and new_width * (len(current) + 1) > max_tokens:
            chunks.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        chunks.append(current)
    return chunks


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


class MicroBatcher:
    """The queue and its worker threads; `run` turns an `Encoded` into (N, K) logits."""

    def __init__(
        self,
        run: Callable[[Encoded], np.ndarray],
        limits: BatchLimits,
        observer: PassObserver | None = None,
    ) -> None:
        self.run = run
        self.limits = limits
        self.observer = observer
        self._pending: deque[_Item] = deque()
        self._pending_tokens = 0
        self._running = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    # ---- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            self._stopping = False
        for i in range(self.limits.workers):
            thread = threading.Thread(target=self._work, name=f"gptclassify-batch-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Refuse new work, fail what is waiting, let running passes finish."""
        with self._cond:
            self._stopping = True
            waiting = list(self._pending)
            self._pending.clear()
            self._pending_tokens = 0
            self._cond.notify_all()
        for item in waiting:
            self._fail(item.job, ShuttingDown("the server is shutting down"))
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

    # ---- the event loop's side ----------------------------------------------------------

    async def submit(self, encoded: Encoded, timeout: float | None) -> np.ndarray:
        """Logits (N, K) of `encoded`'s rows, in order, once workers have run them."""
        n = len(encoded)
        job = _Job(asyncio.get_running_loop(), n)
        now = time.monotonic()
        lengths = [int(x) for x in encoded.lengths]
        with self._cond:
            if self._stopping:
                raise ShuttingDown("the server is shutting down")
            if len(self._pending) + n > self.limits.max_queue:
                raise QueueFull(
                    f"the queue holds {len(self._pending)} of at most {self.limits.max_queue} "
                    f"texts; this request has {n}"
                )
            for row in range(n):
                self._pending.append(_Item(job, row, encoded.ids[row], lengths[row], now))
            self._pending_tokens += sum(lengths)
            self._cond.notify_all()
        try:
            return await asyncio.wait_for(job.future, timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {timeout:g} s") from None
        finally:
            if not job.done:  # timed out, or the client went away: drop its waiting texts
                self._abandon(job)

    def _abandon(self, job: _Job) -> None:
        with self._cond:
            job.done = True
            kept = [item for item in self._pending if item.job is not job]
            if len(kept) != len(self._pending):
                self._pending = deque(kept)
                self._pending_tokens = sum(item.length for item in kept)

    # ---- the workers' side --------------------------------------------------------------

    def _work(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            if items:
                self._run(items)

    def _full(self) -> bool:
        return (
            len(self._pending) >= self.limits.max_batch
            or self._pending_tokens >= self.limits.max_tokens
        )

    def _take(self) -> list[_Item] | None:
        """The next round's texts, oldest first; None when stopping."""
        limits = self.limits
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            deadline = self._pending[0].queued_at + limits.max_wait_s
            while self._pending and not self._full() and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            taken: list[_Item] = []
            tokens = 0
            while self._pending and len(taken) < limits.max_batch:
                item = self._pending[0]
                if taken and tokens + item.length > limits.max_tokens:
                    break
                self._pending.popleft()
                self._pending_tokens -= item.length
                if not item.job.done:
                    taken.append(item)
                    tokens += item.length
            self._running += len(taken)
        if self.observer is not None and taken:
            now = time.monotonic()
            self.observer.on_wait([now - item.queued_at for item in taken])
        return taken

    def _run(self, items: list[_Item]) -> None:
        try:
            for chunk in budget_chunks([item.length for item in items], self.limits.max_tokens):
                live = [items[i] for i in chunk if not items[i].job.done]
                if live:
                    self._run_pass(live)
        finally:
            with self._cond:
                self._running -= len(items)

    def _run_pass(self, items: list[_Item]) -> None:
        encoded = Encoded(
            ids=[item.ids for item in items],
            lengths=np.array([item.length for item in items], dtype=np.int64),
            labels=None,
            truncated=0,
        )
        t0 = time.perf_counter()
        try:
            logits = self.run(encoded)
        except Exception as exc:  # the requests get the error, the worker goes on
            for item in items:
                self._fail(item.job, exc)
            return
        seconds = time.perf_counter() - t0
        if self.observer is not None:
            width = max(item.length for item in items)
            self.observer.on_pass(len(items), width * len(items), seconds)
        for item, row in zip(items, logits, strict=True):
            self._deliver(item, row)

    def _deliver(self, item: _Item, row: np.ndarray) -> None:
        job = item.job
        with self._cond:
            if job.done:
                return
            job.rows[item.row] = row
            job.remaining -= 1
            if job.remaining:
                return
            job.done = True
        _call_soon(job, _resolve, job.future, np.stack(job.rows))  # type: ignore[arg-type]

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
