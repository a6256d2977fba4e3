"""Prometheus metrics of one server: requests, latencies, model passes, the queue.

Each app has its own registry (two apps in one process, as in tests, never share counts);
prometheus_client writes the exposition format.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServeMetrics:
    def __init__(
        self,
        depth: Callable[[], float],
        running: Callable[[], float],
        predicted_wait: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # The standard process metrics every exporter has: process_cpu_seconds_total,
        # process_resident_memory_bytes, process_open_fds, process_start_time_seconds, ...
        # (read from /proc: Linux only; elsewhere the collector reports none).
        ProcessCollector(registry=r)
        self.requests = Counter(
            "gptclassify_requests",
            "HTTP requests answered, by route, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gptclassify_request_duration_seconds",
            "Time from a request's arrival to its answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.texts = Counter(
            "gptclassify_texts", "Texts classified (every request shape).", registry=r
        )
        self.tokens = Counter(
            "gptclassify_tokens",
            "Tokens of the texts run (padding not counted: see the padded tokens per pass).",
            registry=r,
        )
        self.batch_texts = Histogram(
            "gptclassify_batch_texts", "Texts per model pass.", buckets=TEXT_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "gptclassify_batch_padded_tokens",
            "Padded tokens per model pass.",
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.pass_seconds = Histogram(
            "gptclassify_batch_duration_seconds",
            "Time of one model pass.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "gptclassify_queue_wait_seconds",
            "Time a text waited in the queue before its pass.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "gptclassify_queue_depth", "Texts waiting for a model pass.", registry=r
        )
        self.queue_depth.set_function(depth)
        self.running = Gauge("gptclassify_running_texts", "Texts in model passes now.", registry=r)
        self.running.set_function(running)
        self.predicted_wait = Gauge(
            "gptclassify_predicted_wait_seconds",
            "Predicted seconds until a new one-text request would be answered (admission "
            "refuses a request whose predicted wait is longer than its timeout).",
            registry=r,
        )
        self.predicted_wait.set_function(predicted_wait)
        self.refused = Counter(
            "gptclassify_refused_texts",
            "Texts refused with 429, by reason: the queue was full (queue), they could not "
            "have been answered within the timeout (wait), or the work already queued could "
            "not (busy: refused before the body was read, one per request).",
            ["reason"],
            registry=r,
        )
        self.dropped = Counter(
            "gptclassify_dropped_texts",
            "Texts dropped from the queue, never computed: their request timed out or its "
            "client went away.",
            registry=r,
        )
        self.wasted = Counter(
            "gptclassify_wasted_texts",
            "Texts computed for a request that timed out or went away during their pass.",
            registry=r,
        )
        self.explanations = Counter(
            "gptclassify_explanations", "Explanations computed.", registry=r
        )

    # PassObserver (serve/batching.py)
    def on_pass(self, texts: int, tokens: int, padded_tokens: int, seconds: float) -> None:
        self.tokens.inc(tokens)
        self.batch_texts.observe(texts)
        self.batch_tokens.observe(padded_tokens)
        self.pass_seconds.observe(seconds)

    def on_wait(self, seconds: Sequence[float]) -> None:
        for s in seconds:
            self.queue_wait.observe(s)

    def on_refused(self, reason: str, texts: int) -> None:
        self.refused.labels(reason).inc(texts)

    def on_dropped(self, texts: int) -> None:
        self.dropped.inc(texts)

    def on_wasted(self, texts: int) -> None:
        self.wasted.inc(texts)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
