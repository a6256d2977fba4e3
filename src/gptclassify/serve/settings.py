"""What a server allows and how it batches: one dataclass, filled from `gptclassify serve` flags."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gptclassify.errors import GPTClassifyError


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    """When set, every route but /health and the page itself needs `Authorization: Bearer`."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed by CORS; none by default (same-origin only)."""
    model_name: str | None = None
    """The model id of /v1/models and /classify (default: the model folder's name)."""

    # ---- caps on one request (413 beyond) ----
    max_body_bytes: int = 1 << 20
    max_texts: int = 64
    """Texts per request (TEI's max client batch size)."""
    max_chars: int = 20_000
    """Characters per text (checked before tokenizing)."""

    # ---- micro-batching ----
    max_batch_tokens: int = 4096
    """Padded tokens per model pass, as `predict` batches (data.batches.TOKENS_PER_BATCH); a
    longer single text still runs, alone."""
    max_batch: int = 64
    """Texts per model pass."""
    max_wait_ms: float = 2.0
    """How long the oldest waiting text may wait for others to share its pass."""
    pass_overhead_tokens: float | None = None
    """What one more model pass costs, in padded tokens (where waiting texts are cut into
    passes); None: measured at start and refitted to the passes run (serve/batching.PassCost)."""
    max_queue: int = 1024
    """Texts waiting for a pass; a request that does not fit is refused with 429."""
    timeout_s: float = 30.0
    """Per request, queueing plus inference; 503 after that."""
    workers: int = 1
    """Threads running model passes. On a CPU one already uses every core, and more make
    their OpenMP thread pools compete (each calling thread gets its own)."""
    max_explain_waiting: int = 4
    """Explanations queued behind the one running; more are refused with 429."""

    def __post_init__(self) -> None:
        positive = (
            "max_body_bytes",
            "max_texts",
            "max_chars",
            "max_batch_tokens",
            "max_batch",
            "max_queue",
            "workers",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise GPTClassifyError(f"--{name.replace('_', '-')} must be >= 1")
        if self.max_wait_ms < 0 or self.timeout_s <= 0 or self.max_explain_waiting < 0:
            raise GPTClassifyError("--max-wait-ms must be >= 0 and --timeout > 0")
        if self.pass_overhead_tokens is not None and self.pass_overhead_tokens < 0:
            raise GPTClassifyError("--pass-overhead-tokens must be >= 0")
        if self.max_queue < self.max_texts:
            raise GPTClassifyError(
                f"--max-queue ({self.max_queue}) must hold one request of --max-texts "
                f"({self.max_texts}) texts"
            )
        if not 0 <= self.port <= 65535:
            raise GPTClassifyError(f"--port {self.port} is not a TCP port")
        if self.api_key is not None and not self.api_key.strip():
            raise GPTClassifyError("--api-key is empty")

    @property
    def loopback(self) -> bool:
        """Whether the server is reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
