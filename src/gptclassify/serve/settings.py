"""What a server allows and how it batches: one dataclass, whose fields are the
`gptclassify serve` flags."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from gptclassify.args import opt
from gptclassify.errors import GPTClassifyError


@dataclass(frozen=True)
class ServeSettings:
    """Each field is a `gptclassify serve` flag (through args.options, the walker train's
    flags come from too), with the help shown here."""

    host: str = field(
        default="127.0.0.1",
        metadata=opt(
            "Address to listen on; 0.0.0.0 exposes the server to the network (set --api-key)."
        ),
    )
    port: int = field(default=8000, metadata=opt("TCP port.", minimum=0, maximum=65535))
    api_key: str | None = field(
        default=None,
        metadata=opt(
            "Require 'Authorization: Bearer KEY' on every route but /health, /ping and the "
            "page, the API schema included (or set GPTCLASSIFY_API_KEY).",
            envvar="GPTCLASSIFY_API_KEY",
        ),
    )
    cors_origins: tuple[str, ...] = field(
        default=(),
        metadata=opt(
            "Allow browser pages from this origin (repeatable); none by default.",
            flag="cors_origin",
        ),
    )
    model_name: str | None = field(
        default=None,
        metadata=opt("Model id for /v1/models and /classify (default: the folder's name)."),
    )

    # ---- caps on one request (413 beyond) ----
    max_body_bytes: int = field(
        default=1 << 20, metadata=opt("Request body size (413 beyond).", minimum=1)
    )
    max_texts: int = field(
        default=64,  # TEI's max client batch size
        metadata=opt("Texts per request (413 beyond).", minimum=1),
    )
    max_chars: int = field(
        default=20_000,  # checked before tokenizing
        metadata=opt("Characters per text (413 beyond).", minimum=1),
    )

    # ---- micro-batching ----
    max_batch_tokens: int = field(
        # as `predict` batches (data.batches.TOKENS_PER_BATCH); a longer text still runs, alone
        default=4096,
        metadata=opt("Padded tokens per model pass.", minimum=1),
    )
    max_batch: int = field(default=64, metadata=opt("Texts per model pass.", minimum=1))
    max_wait_ms: float = field(
        default=2.0,  # counted from the oldest waiting text's arrival
        metadata=opt("How long a waiting text may wait for others to share its pass.", minimum=0),
    )
    pass_overhead_tokens: float | None = field(
        default=None,  # refitted to the passes run: serve/planning.PassCost
        metadata=opt(
            "What one more model pass costs, in padded tokens (where waiting texts are cut "
            "into passes). Default: measured at start, then fitted to the passes run.",
            minimum=0,
        ),
    )
    max_queue: int = field(
        default=1024, metadata=opt("Texts waiting for a pass (429 when full).", minimum=1)
    )
    timeout_s: float = field(
        default=30.0,
        metadata=opt(
            "Seconds per request, queueing included (503 after); a request whose predicted "
            "wait is over 70% of it gets a 429 at once.",
            flag="timeout",
            minimum=0,
            open_minimum=True,
        ),
    )
    workers: int = field(
        # each calling thread gets its own OpenMP pool: more threads on a CPU compete
        default=1,
        metadata=opt(
            "Threads running model passes. On a CPU, one already uses every core, and more "
            "make their thread pools compete; more can help on a GPU.",
            flag="inference_threads",
            minimum=1,
        ),
    )
    max_explain_waiting: int = field(
        default=4, metadata=opt("Explanations queued behind the one running (429 beyond).")
    )
    """Not a flag (cli/serve.py leaves it out): the default has served."""

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
