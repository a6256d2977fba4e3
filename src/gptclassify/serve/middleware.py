"""ASGI layers around the routes: the API key, the body-size cap, early admission and
request metrics; and the JSON reading of the routes themselves (`StrictJSONRoute`).

They sit in front of FastAPI's own request handling on purpose: a request without the key
is refused before its body is read or parsed, an oversized body is refused from its
Content-Length header, or, when it has none (chunked), as soon as what arrived passes the cap,
and under overload a request to the model is refused before its body is read or tokenized
when the work already queued could not be answered within the timeout (`Admission`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Collection
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gptclassify.serve.metrics import ServeMetrics


def error_response(status: int, error_type: str, message: str, **headers: str) -> JSONResponse:
    """TEI's error body."""
    return JSONResponse({"error": message, "error_type": error_type}, status, headers=headers)


class BodyTooLarge(HTTPException):
    """Raised while FastAPI reads a body past the cap (FastAPI passes HTTPExceptions on)."""

    error_type = "validation"

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


class DuplicateKey(HTTPException):
    """A JSON object in the body names a field twice (Python's json keeps the last silently,
    so `{"inputs": "a", "inputs": "b"}` would classify "b" without a word)."""

    error_type = "validation"

    def __init__(self, key: str) -> None:
        super().__init__(
            422, f"body: the key {key!r} appears twice in one JSON object; name each field once"
        )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


class StrictJSONRequest(Request):
    """A request whose JSON body refuses duplicate keys (FastAPI parses bodies with `json()`)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_unique_keys)
        return self._json


class StrictJSONRoute(APIRoute):
    """FastAPI's route reading its body through `StrictJSONRequest` (FastAPI's documented way
    to customise the request: a route class)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict(request: Request):
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            response = error_response(
                413, "validation", f"request body is larger than {self.max_bytes} bytes"
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)


class BearerAuth:
    """`Authorization: Bearer <key>` on every request but those of `open_routes` ((method,
    path) pairs: `GET /` is open where `POST /` is not), compared in constant time (digests
    of equal length, so not even the key's length shows in the timing)."""

    def __init__(
        self, app: ASGIApp, api_key: str, open_routes: Collection[tuple[str, str]]
    ) -> None:
        self.app = app
        self.digest = hashlib.sha256(api_key.encode()).digest()
        self.open_routes = frozenset(open_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or (scope["method"], scope["path"]) in self.open_routes
            or self._allowed(scope)
        ):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401,
            "unauthorized",
            "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
            **{"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        value = _header(scope, b"authorization") or ""
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            return False
        given = hashlib.sha256(token.strip().encode()).digest()
        return hmac.compare_digest(given, self.digest)


class Admission:
    """A 429 with Retry-After, before the body is read, for a POST to one of `routes` while
    a request of the usual size would not be admitted: its predicted wait (`wait()`: for one
    more text of the mean length queued so far, None before the pass cost is known) is
    longer than `limit_s` (the queue's own limit, ADMIT_SHARE of the timeout).

    The queue's own admission (`MicroBatcher.submit`) decides on the request's real tokens,
    after FastAPI has read and validated its body and the request has been tokenized: under
    overload most requests are refused, and that work took the CPU from the model's passes.
    This refusal costs a header lookup. It is a prediction like the queue's: a request much
    shorter than the mean could have been taken; one longer would have been refused anyway.
    `refused()` counts it."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Collection[str],
        wait: Callable[[], float | None],
        limit_s: float,
        refused: Callable[[], None],
        why: str = "",
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.wait = wait
        self.limit_s = limit_s
        self.refused = refused
        self.why = why or f"{limit_s:g} s"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.routes:
            wait = self.wait()
            if wait is not None and wait > self.limit_s:
                self.refused()
                response = error_response(
                    429,
                    "overloaded",
                    f"Model is overloaded: the predicted wait, {wait:.1f} s for the work "
                    f"queued and a text of the usual length, is longer than {self.why}",
                    **{"Retry-After": str(max(1, math.ceil(wait)))},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RequestMetrics:
    """Counts every answer by route and status, and its latency. Paths that are not routes
    count as "other", so scanners cannot grow the label set."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes: Collection[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope["path"]
            route = path if path in self.routes else "other"
            self.metrics.observe_request(
                route, scope["method"], status, time.perf_counter() - start
            )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
