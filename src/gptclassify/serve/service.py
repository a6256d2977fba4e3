"""One loaded classifier behind the HTTP routes: request caps, tokenizing, the micro-batching
queue, explanations, and the facts /info reports.

Everything a route needs beyond decoding its body and encoding its answer is here, and every
refusal is an `APIError` carrying TEI's status code and error type.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from gptclassify import __version__
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier, Encoded, TextRejected
from gptclassify.serve.batching import (
    BatchLimits,
    MicroBatcher,
    PassCost,
    PassObserver,
    PassWork,
    QueueFull,
    RequestTimeout,
    ShuttingDown,
    measure_pass_cost,
)
from gptclassify.serve.schemas import EXPLAIN_METHODS
from gptclassify.serve.settings import ServeSettings

STARTUP_WEIGHT = 8.0
"""The passes timed at start count as this many passes each in the cost fit."""
TOKENIZE_INLINE_CHARS = 8192
"""Requests with more characters than this are tokenized on a thread, off the event loop."""


class APIError(Exception):
    """A refusal, in TEI's terms: HTTP status and error type (and headers to send)."""

    def __init__(
        self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = headers or {}


def too_large(message: str) -> APIError:
    return APIError(413, "validation", message)


def invalid(message: str) -> APIError:
    return APIError(422, "validation", message)


PAIRS_REFUSED = (
    "is a text pair, which this model cannot classify (it reads one text); a batch of "
    'texts is a list of lists: [["text 1"], ["text 2"]]'
)


def tei_texts(inputs: str | list[str] | list[list[str]]) -> tuple[list[str], bool]:
    """The texts of TEI's `inputs` and whether it was one sequence (answered with one list of
    predictions) rather than a batch (a list per sequence), as TEI's router reads them: a
    string, or a list whose first element is a string, is one sequence (`[text]` one text,
    `[text, text]` a pair); a list of lists is a batch. Pairs are a 422."""
    if isinstance(inputs, str):
        return [inputs], True
    if not inputs:
        raise APIError(400, "empty", "inputs is an empty list: nothing to classify")
    if isinstance(inputs[0], str):
        if len(inputs) == 1:
            return [inputs[0]], True
        if len(inputs) == 2:
            raise invalid("inputs " + PAIRS_REFUSED)
        raise invalid(
            f"inputs is a list of {len(inputs)} strings: a list of strings is one text "
            '(["text"]) or a pair; a batch of texts is a list of lists: [["text 1"], ["text 2"]]'
        )
    texts = []
    for i, sequence in enumerate(inputs):
        if len(sequence) == 1:
            texts.append(sequence[0])  # type: ignore[arg-type]
        elif len(sequence) == 2:
            raise invalid(f"inputs.{i} " + PAIRS_REFUSED)
        else:
            raise invalid(
                f"inputs.{i} has {len(sequence)} strings: each sequence of a batch is [text]"
            )
    return texts, False


@dataclass
class Classified:
    logits: np.ndarray
    """(N, K) logits, in request order."""
    tokens: int
    """Tokens read (after truncation)."""


class ClassifierService:
    """`classifier`: a loaded Classifier, or a function that loads one: then it is loaded by
    `start`, on the thread that will run its passes (see `MicroBatcher.start`)."""

    def __init__(
        self,
        classifier: Classifier | Callable[[], Classifier],
        settings: ServeSettings,
        observer: PassObserver | None = None,
    ) -> None:
        self.settings = settings
        self.batcher = MicroBatcher(
            self._logits,
            BatchLimits(
                max_tokens=settings.max_batch_tokens,
                max_batch=settings.max_batch,
                max_wait_s=settings.max_wait_ms / 1000.0,
                max_queue=settings.max_queue,
                workers=settings.workers,
            ),
            observer,
            PassCost(settings.pass_overhead_tokens),
        )
        self._loader = None if isinstance(classifier, Classifier) else classifier
        self._started = False
        if isinstance(classifier, Classifier):
            self._attach(classifier)

    def _attach(self, classifier: Classifier) -> None:
        self.classifier = classifier
        path = classifier.path
        self.model_id = self.settings.model_name or (
            path.name if path is not None else "gptclassify"
        )
        self.model_sha256 = classifier.weights_sha256
        self.can_explain = classifier.runtime.name == "torch"
        self.batcher.work = PassWork.of(classifier.padding_free, classifier.gpt_config.emb_dim)

    def start(self) -> None:
        """Load the classifier (when given a loader), time two passes (unless the pass cost
        is set), and start the pass thread, all on that thread; errors are raised here.
        Starting a started service does nothing."""
        if self._started:
            return
        self.batcher.start(prepare=self._prepare)
        self._started = True

    def _prepare(self) -> None:
        if self._loader is not None:
            self._attach(self._loader())
        # the kernels of every pass shape, built before any request
        self.classifier.warm_up(self.settings.max_batch_tokens)
        if self.settings.pass_overhead_tokens is None:  # also warms the runtime up
            for work, seconds in measure_pass_cost(
                self._logits, self.classifier.policy.max_length, work=self.batcher.work
            ):
                self.batcher.cost.observe(work, seconds, weight=STARTUP_WEIGHT)

    def stop(self) -> None:
        self.batcher.stop()
        self._started = False

    # ---- classification -------------------------------------------------------------------

    def _logits(self, encoded: Encoded) -> np.ndarray:
        # One call per pass: the queue has already sorted and sized it.
        return self.classifier.logits_encoded(encoded)

    def texts(self, inputs: str | list[str]) -> list[str]:
        """The request's texts, checked against the caps."""
        texts = [inputs] if isinstance(inputs, str) else inputs
        s = self.settings
        if not texts:
            raise APIError(400, "empty", "inputs is an empty list: nothing to classify")
        if len(texts) > s.max_texts:
            raise too_large(f"batch size {len(texts)} > maximum allowed batch size {s.max_texts}")
        for i, text in enumerate(texts):
            if len(text) > s.max_chars:
                raise too_large(
                    f"text {i + 1} has {len(text)} characters; at most {s.max_chars} are allowed"
                )
        return texts

    def check_threshold(self, threshold: float | None) -> None:
        """A decision threshold applies to two classes (or to every label of a multi-label
        model)."""
        n = len(self.classifier.labels)
        if threshold is not None and n != 2 and not self.classifier.multi_label:
            raise invalid(f"threshold needs a two-class model; this one has {n}")

    async def classify(
        self,
        texts: list[str],
        truncate: bool = True,
        side: str | None = None,
        limit: int | None = None,
        gone: Callable[[], Awaitable[object]] | None = None,
    ) -> Classified:
        """Logits of `texts` through the queue (see `encode` for `truncate`, `side` and
        `limit`). `gone`: awaitable that returns when the client has gone away; the request
        then leaves the queue (its texts are never computed) and gets a 499."""
        args = (texts, truncate, side, limit)
        if sum(map(len, texts)) > TOKENIZE_INLINE_CHARS:
            encoded = await asyncio.to_thread(self.encode, *args)
        else:
            encoded = self.encode(*args)
        win = None
        if self.classifier.long_texts.chunk:  # --long-texts chunk: windows go through the queue
            win = self.classifier.windows(encoded.raw)
            encoded = win.encoded
        try:
            logits = await _unless_gone(self.batcher.submit(encoded, self.settings.timeout_s), gone)
        except QueueFull as exc:
            retry = str(max(1, math.ceil(exc.retry_after)))
            raise APIError(
                429, "overloaded", f"Model is overloaded: {exc}", {"Retry-After": retry}
            ) from None
        except ClientGone:
            raise APIError(499, "cancelled", "the client closed the connection") from None
        except RequestTimeout as exc:
            raise APIError(503, "timeout", f"Request timed out: {exc}") from None
        except ShuttingDown as exc:
            raise APIError(503, "unhealthy", str(exc)) from None
        except Exception as exc:  # a failed pass: say so, without internals
            raise APIError(424, "backend", f"Inference failed: {type(exc).__name__}") from exc
        if win is not None:
            logits = self.classifier.combine_windows(logits, win)
        return Classified(logits, int(encoded.lengths.sum()))

    def encode(
        self,
        texts: list[str],
        truncate: bool = True,
        side: str | None = None,
        limit: int | None = None,
    ) -> Encoded:
        """Token ids under the model's input policy; refuses empty texts and, without
        `truncate`, texts longer than the model reads (unless they are read in windows).
        `side` ("end" or "start": which end of a long text is cut) and `limit` (tokens kept,
        at most the model's) change the policy for this request."""
        policy = self.classifier.policy
        if side is not None or limit is not None:
            if self.classifier.long_texts.chunk:
                raise invalid(
                    "this model reads long texts whole, in windows (--long-texts chunk): "
                    "truncation_direction and truncate_prompt_tokens do not apply"
                )
            policy = dataclasses.replace(
                policy,
                truncate=side or policy.truncate,
                max_length=min(limit or policy.max_length, policy.max_length),
            )
        try:
            if self.classifier.long_texts.chunk:
                return self.classifier.encode_checked(texts, True, keep_raw=True)
            return self.classifier.encode_checked(texts, truncate, policy=policy)
        except TextRejected as exc:
            if exc.reason in ("empty", "not-text"):
                raise invalid(str(exc)) from None
            raise too_large(f"{exc} (send truncate: true to cut it)") from None

    # ---- explanations ---------------------------------------------------------------------

    async def explain(self, text: str, method: str, steps: int, target: str | None) -> Any:
        """`Classifier.explain` on the pass thread, taking turns with the passes."""
        s = self.settings
        if not self.can_explain:
            raise APIError(
                501,
                "backend",
                f"explanations need the PyTorch runtime; this server runs "
                f"{self.classifier.runtime.name}",
            )
        if len(text) > s.max_chars:
            raise too_large(f"the text has {len(text)} characters; at most {s.max_chars}")
        if not text.strip():  # whitespace only is empty too, as for classification
            raise invalid("the text is empty (or only whitespace): nothing to explain")
        if self.batcher.tasks > s.max_explain_waiting:
            raise APIError(429, "overloaded", "Model is overloaded: too many explanations waiting")
        try:
            return await self.batcher.call(
                partial(self.classifier.explain, text, method, steps, target), s.timeout_s
            )
        except RequestTimeout:
            raise APIError(503, "timeout", f"no explanation within {s.timeout_s:g} s") from None
        except ShuttingDown as exc:
            raise APIError(503, "unhealthy", str(exc)) from None
        except GPTClassifyError as exc:
            raise invalid(str(exc)) from None

    def check_special_tokens(self, add: bool) -> None:
        """vLLM's add_special_tokens: false only where the tokenizer adds none anyway."""
        tok = self.classifier.policy.tokenizer
        if not add and (tok.prefix or tok.suffix):
            raise invalid(
                "add_special_tokens false is not supported: this model's tokenizer adds "
                "special tokens around every text, and the model was trained with them"
            )

    # ---- facts ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        c = self.classifier
        s = self.settings
        test = (c.metrics or {}).get("test") or {}
        return {
            "model_id": self.model_id,
            "labels": list(c.labels),
            "task": c.task,
            "long_texts": c.long_texts.mode,
            "base_model": c.provenance.base_model,
            "runtime": c.runtime.describe(),
            "max_input_tokens": c.policy.max_length,
            "truncate": c.policy.truncate,
            "max_client_batch_size": s.max_texts,
            "max_chars": s.max_chars,
            "max_body_bytes": s.max_body_bytes,
            "max_batch_texts": s.max_batch,
            "max_batch_tokens": s.max_batch_tokens,
            "max_wait_ms": s.max_wait_ms,
            "pass_overhead_tokens": round(self.batcher.cost.overhead, 1),
            "max_queue": s.max_queue,
            "timeout_s": s.timeout_s,
            "model_sha256": self.model_sha256,
            "version": __version__,
            "explain": self.can_explain,
            "explain_methods": list(EXPLAIN_METHODS) if self.can_explain else [],
            "auth": s.api_key is not None,
            "test_accuracy": test.get("accuracy"),
        }


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def _unless_gone(work: Awaitable[Any], gone: Callable[[], Awaitable[object]] | None) -> Any:
    """`await work`, unless `gone()` returns first: then `work` is cancelled (the queue drops
    what it had not run) and `ClientGone` is raised."""
    if gone is None:
        return await work
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
        watcher.cancel()
    if task.done() and not task.cancelled():
        return task.result()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        pass
    raise ClientGone()
