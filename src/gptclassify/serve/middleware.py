"""ASGI layers around the routes: the API key, the body-size cap, early admission and
request metrics; and the JSON reading of the routes themselves (`StrictJSONRoute`).

They sit in front of FastAPI's own request handling on purpose: a request without the key
is refused before its body is read or parsed, an oversized body is refused from its
Content-Length header, or, when it has none (chunked), as soon as what arrived passes the cap,
and under overload a request to the model is refused before its body is read or tokenized
when the work already queued could not be answered within the timeout (`Admission`).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
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

OPENAI_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "BadRequestError",
    406: "BadRequestError",
    413: "BadRequestError",
    415: "BadRequestError",
    422: "UnprocessableEntityError",
    424: "InternalServerError",
    429: "RateLimitError",
    499: "BadRequestError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}
"""vLLM's `error.type` by status (its names are the openai client's exception classes)."""


def openai_route(path: str) -> bool:
    """The OpenAI-style routes (vLLM's /classify, everything under /v1/): their errors have
    vLLM's and OpenAI's shape."""
    return path == "/classify" or path.startswith("/v1/")


def error_response(
    status: int, error_type: str, message: str, path: str = "", **headers: str
) -> JSONResponse:
    """TEI's error body, `{"error": message, "error_type": ...}`; on the OpenAI-style routes
    (`openai_route(path)`) vLLM's and OpenAI's, `{"error": {"message", "type", "param",
    "code"}}` (code: the HTTP status, as vLLM sends it), which the openai client reads into
    its exception's `message`, `type` and `code`."""
    if openai_route(path):
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": OPENAI_TYPES.get(status, "InternalServerError"),
                "param": None,
                "code": status,
            }
        }
    else:
        body = {"error": message, "error_type": error_type}
    return JSONResponse(body, status, headers=headers)


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


CSV_ROUTES = frozenset({"/predict", "/", "/invocations"})
"""The routes that read `text/csv` bodies and answer `Accept: text/csv` (SageMaker's
content types; TEI's predict routes, which share one handler)."""
CSV_COLUMNS = ("inputs", "text")
"""Header names of the text column (the first is the Hugging Face inference toolkit's)."""


class UnsupportedMediaType(HTTPException):
    error_type = "validation"

    def __init__(self, found: str, path: str) -> None:
        allowed = "application/json" + (" or text/csv" if path in CSV_ROUTES else "")
        super().__init__(415, f"Content-Type {found!r} is not supported here: send {allowed}")


class NotAcceptable(HTTPException):
    error_type = "validation"

    def __init__(self, accept: str) -> None:
        super().__init__(406, f"Accept {accept!r}: this route answers application/json or text/csv")


class BadCSV(HTTPException):
    error_type = "validation"

    def __init__(self, what: str) -> None:
        super().__init__(422, f"body (text/csv): {what}")


def media_type(value: str | None) -> str | None:
    """`type/subtype` of a Content-Type or Accept entry, lower case, without parameters."""
    if value is None or not value.strip():
        return None
    return value.split(";", 1)[0].strip().lower()


def is_json(kind: str | None) -> bool:
    """No Content-Type (FastAPI reads such a body as JSON), application/json or +json."""
    return (
        kind is None
        or kind == "application/json"
        or (kind.startswith("application/") and kind.endswith("+json"))
    )


def answer_format(accept: str | None) -> str:
    """ "json" or "csv": the preferred of the two by the Accept header's q-values (the first
    listed on a tie; no header, */* or application/*: JSON); neither acceptable: 406."""
    if accept is None or not accept.strip():
        return "json"
    formats = {
        "application/json": "json",
        "application/*": "json",
        "*/*": "json",
        "text/csv": "csv",
        "text/*": "csv",
    }
    best: tuple[float, str] | None = None
    for part in accept.split(","):
        media, *params = part.split(";")
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        found = formats.get(media.strip().lower())
        if found is not None and q > 0 and (best is None or q > best[0]):
            best = (q, found)
    if best is None:
        raise NotAcceptable(accept)
    return best[1]


def csv_texts(body: bytes) -> list[str]:
    """The texts of a CSV body, one per row: without a header every row is one field (a
    text with commas is quoted, as CSV writers do); with a header naming `inputs` or `text`
    (the first row is taken as one when a cell of it is exactly such a name), that column."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadCSV(f"not UTF-8 (byte {exc.start})") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline="")) if row]
    except csv.Error as exc:
        raise BadCSV(str(exc)) from None
    if not rows:
        return []
    names = [cell.strip().lower() for cell in rows[0]]
    column = next((names.index(c) for c in CSV_COLUMNS if c in names), None)
    if column is None:
        width, column = 1, 0
    else:
        width, rows = len(names), rows[1:]
    for i, row in enumerate(rows):
        if len(row) != width:
            raise BadCSV(
                f"row {i + 1} has {len(row)} fields, expected {width} (one text per row: "
                'quote a text that holds commas, or send a header row "inputs")'
            )
    return [row[column] for row in rows]


class StrictJSONRoute(APIRoute):
    """FastAPI's route reading its body through `StrictJSONRequest` (FastAPI's documented way
    to customise the request: a route class). A POST's Content-Type must be JSON (415
    otherwise), or, on `CSV_ROUTES`, `text/csv`: its rows are read as TEI's batch
    `{"inputs": [[text], ...]}`; there `request.state.answer` is "json" or "csv" by the
    Accept header (406 when it allows neither)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()
        csv_route = self.path in CSV_ROUTES

        async def strict(request: Request):
            scope = request.scope
            if scope["method"] == "POST":
                found = request.headers.get("content-type")
                kind = media_type(found)
                if kind == "text/csv" and csv_route:
                    headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                    scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
                    request = CSVRequest(scope, request.receive)
                elif not is_json(kind):
                    raise UnsupportedMediaType(found or "", self.path)
                else:
                    request = StrictJSONRequest(scope, request.receive)
                if csv_route:
                    request.state.answer = answer_format(request.headers.get("accept"))
            else:
                request = StrictJSONRequest(scope, request.receive)
            return await handler(request)

        return strict


class CSVRequest(Request):
    """A `text/csv` body, read as TEI's batch: `{"inputs": [[text], [text], ...]}`."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = {"inputs": [[t] for t in csv_texts(await self.body())]}
        return self._json


class BodyLimit:
    """413 past `max_bytes` (or `per_path[path]`: SageMaker's 6 MB on /invocations)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, per_path: dict[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            response = error_response(
                413, "validation", f"request body is larger than {limit} bytes", scope["path"]
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
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
            scope["path"],
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
                    scope["path"],
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
