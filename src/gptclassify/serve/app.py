"""The FastAPI app: routes that decode a request, call the service, and encode the answer.

`create_app(classifier, settings)` builds it; `gptclassify serve` runs it under uvicorn. The
model work is in predict/ (through serve/service.py); the shapes are in serve/schemas.py
and serve/formats.py; every error, ours or FastAPI's, leaves as TEI's `{"error",
"error_type"}` with TEI's status codes, never with a stack trace.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware

from gptclassify import __version__
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier
from gptclassify.serve import formats
from gptclassify.serve.batching import ADMIT_SHARE
from gptclassify.serve.metrics import CONTENT_TYPE, ServeMetrics
from gptclassify.serve.middleware import (
    Admission,
    BearerAuth,
    BodyLimit,
    RequestMetrics,
    StrictJSONRoute,
    error_response,
)
from gptclassify.serve.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    ErrorBody,
    ExplainRequest,
    ExplainResponse,
    Health,
    Info,
    ModelCard,
    ModelList,
    OpenAIErrorBody,
    Prediction,
    PredictParameters,
    PredictRequest,
)
from gptclassify.serve.service import APIError, ClassifierService, tei_texts
from gptclassify.serve.settings import ServeSettings

log = logging.getLogger("gptclassify.serve")

OPEN_PATHS = ("/health", "/ping", "/")
SAGEMAKER_MAX_BODY = 6 * 2**20
"""SageMaker's limit on an /invocations body (InvokeEndpoint's Body: 6 MB, 6291456 bytes):
the body cap of /invocations, whatever --max-body-bytes says for the other routes."""
"""Answered to GET (and HEAD) without the API key: the health checks and the page (static, no
data: its API calls carry the key the user types in). The API's schema needs the key, as
--api-key's help says of every other route. `POST /` (predict) needs the key."""
OPEN_ROUTES = tuple((method, path) for path in OPEN_PATHS for method in ("GET", "HEAD"))
SWITCH_INTERVAL_S = 0.0005
"""While the app runs, Python's thread switch interval (its default: 5 ms). The pass thread
needs the GIL between its model's operations; under a flood of requests the event loop
thread holds it, and a waiting thread gets it only after the interval: up to 5 ms per
operation, hundreds per pass. At 0.5 ms the passes keep their pace (RESULTS.md, issue 21)."""
MODEL_ROUTES = ("/predict", "/", "/invocations", "/classify", "/v1/classify")
"""The POST routes whose texts go through the queue (its early admission guards them)."""

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": what}
    for code, what in {
        400: "Empty input",
        401: "Missing or wrong API key",
        413: "Body, batch or text too large",
        415: "Content-Type not JSON (or, on the predict routes, CSV)",
        422: "Malformed JSON, wrong types, empty text",
        429: "Overloaded: the queue is full, or the predicted wait is longer than the "
        "timeout (Retry-After says when to try again)",
        424: "The model pass failed",
        503: "Timed out or shutting down",
    }.items()
}

OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorBody, "description": entry["description"]}
    for code, entry in ERRORS.items()
}
CSV_TYPE = "text/csv; charset=utf-8"
CSV_BODY = {
    "requestBody": {
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "inputs\nOk lar, see you at home\nWINNER!! Call now to claim\n",
            }
        }
    }
}
"""The predict routes' second body type (SageMaker's text/csv), beside the JSON model."""

DESCRIPTION = """\
{model}

- `POST /predict` (also `POST /` and `POST /invocations`), `GET /ping`: Hugging Face
  text-embeddings-inference's API and input grammar (text pairs are refused), and the
  Inference API's `parameters.top_k` / `function_to_apply`, plus `parameters.threshold`
  for two classes. A request with `parameters` (what huggingface_hub's InferenceClient
  sends) is answered in the Inference API's shape, a list per input (`[[...]]` for one
  text); without, in TEI's (a flat list for one text). These routes also read `text/csv`
  bodies (one text per row; a header row `inputs` or `text` is optional) and answer CSV to
  `Accept: text/csv`, as SageMaker sends them; /invocations takes bodies up to 6 MB.
- `POST /classify` (also `/v1/classify`), `GET /v1/models`, `GET /v1/models/{{id}}`: vLLM's
  classification API, as the openai client reads it.
- `POST /explain`: each token's class probabilities along the text and its attribution.
- `GET /metrics`: Prometheus text format (the process's CPU, memory and file descriptors
  included).

Errors are `{{"error": ..., "error_type": ...}}` (TEI's shape), and on /classify and /v1/
`{{"error": {{"message", "type", "param", "code"}}}}` (vLLM's and OpenAI's): 413 too
large, 415 unsupported Content-Type, 422 invalid input, 429 overloaded (with Retry-After),
503 timed out.
"""


def create_app(
    classifier: Classifier | Callable[[], Classifier], settings: ServeSettings | None = None
) -> FastAPI:
    """The app around a loaded classifier, or around a function that loads one (loaded when
    the app starts, on the thread that runs its passes: `gptclassify serve` does this, and
    starts the service before uvicorn so a bad model folder is a one-line error)."""
    settings = settings or ServeSettings()
    metrics = ServeMetrics(
        depth=lambda: service.batcher.depth,
        running=lambda: service.batcher.running,
        predicted_wait=lambda: service.batcher.predicted_wait(1, 1) or 0.0,
    )
    service = ClassifierService(classifier, settings, observer=metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        previous = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        service.start()
        try:
            yield
        finally:
            service.stop()
            sys.setswitchinterval(previous)

    # No /docs or /redoc: FastAPI's pages load Swagger UI / ReDoc from a CDN (blank offline).
    # The schema is at /openapi.json and, as TEI serves it, /api-doc/openapi.json.
    app = FastAPI(
        title="gptclassify",
        version=__version__,
        description=DESCRIPTION.format(model="Classify texts with a gptclassify model."),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.router.route_class = StrictJSONRoute  # duplicate JSON keys are a 422, not the last one
    app.state.service = service
    app.state.metrics = metrics
    _add_error_handlers(app)
    _add_routes(app, service, metrics)
    routes = {route.path for route in app.routes if hasattr(route, "path")}

    # Outermost last: CORS answers preflights before the key is asked for; metrics count
    # every answer, refusals included; the key is checked before the body is read, and so is
    # the queue's predicted wait (under overload most requests end there, at little cost).
    app.add_middleware(
        Admission,
        routes=MODEL_ROUTES,
        wait=lambda: service.batcher.busy(),
        limit_s=ADMIT_SHARE * settings.timeout_s,
        refused=lambda: metrics.on_refused("busy", 1),
        why=f"{ADMIT_SHARE:.0%} of the {settings.timeout_s:g} s timeout",
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        per_path={"/invocations": SAGEMAKER_MAX_BODY},
    )
    if settings.api_key:
        app.add_middleware(BearerAuth, api_key=settings.api_key, open_routes=OPEN_ROUTES)
    app.openapi = _openapi(app, service, bearer=bool(settings.api_key))  # type: ignore[method-assign]
    app.add_middleware(RequestMetrics, metrics=metrics, routes=routes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app


def _add_routes(app: FastAPI, service: ClassifierService, metrics: ServeMetrics) -> None:
    started = int(time.time())

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        html, csp = _page()
        return HTMLResponse(
            html,
            headers={
                "Content-Security-Policy": csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    @app.get("/health", response_model=Health, tags=["service"], operation_id="health")
    @app.get(  # SageMaker's health check, as TEI serves it
        "/ping", response_model=Health, tags=["service"], operation_id="ping"
    )
    async def health() -> dict[str, str]:
        """200 while the server runs; never needs the API key, never waits for the model."""
        return {"status": "ok"}

    @app.get("/api-doc/openapi.json", include_in_schema=False)
    async def api_doc() -> JSONResponse:
        """The schema, where TEI serves its own."""
        return JSONResponse(app.openapi())

    @app.get("/info", response_model=Info, responses=ERRORS, tags=["service"])
    async def info() -> JSONResponse:
        """The model and the server's limits."""
        return JSONResponse(service.info())

    @app.get(
        "/metrics",
        tags=["service"],
        responses=ERRORS,
        response_class=PlainTextResponse,
        response_description="Prometheus' text exposition format (version 0.0.4)",
    )
    async def prometheus() -> Response:
        """Prometheus text format: requests, latencies, batch sizes, queue depth, and the
        standard process metrics (CPU seconds, resident memory, open file descriptors,
        start time)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    predictions = {
        "response_model": list[Prediction] | list[list[Prediction]],
        "responses": {
            **ERRORS,
            200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
            406: {"model": ErrorBody, "description": "Accept allows neither JSON nor CSV"},
        },
        "tags": ["classify"],
        "openapi_extra": CSV_BODY,
    }

    @app.post("/predict", operation_id="predict", **predictions)
    @app.post(  # TEI's (and Inference Endpoints') route
        "/", operation_id="predict_root", summary="Predict (TEI's route)", **predictions
    )
    @app.post(  # SageMaker's
        "/invocations",
        operation_id="invocations",
        summary="Predict (SageMaker's route; bodies up to 6 MB)",
        **predictions,
    )
    async def predict(body: PredictRequest, request: Request) -> Response:
        """Text-embeddings-inference's predict: every class with its score, highest first,
        for one text (`"text"` or `["text"]`: a list) or for each text of a batch
        (`[["text"], ["text"]]`: a list of lists). Text pairs are refused (422).

        With `parameters` (the Inference API's field, which huggingface_hub's
        InferenceClient always sends) the answer is the Inference API's: a list per input,
        so one text gets `[[...]]`. A `text/csv` body is a batch, one text per row; with
        `Accept: text/csv` the answer is CSV: per text, the label and then every class's
        score in the model's class order (see /info)."""
        clf = service.classifier
        texts, single = tei_texts(body.inputs)
        texts = service.texts(texts)
        params = body.parameters or PredictParameters()
        service.check_threshold(params.threshold)
        side = None
        if body.truncation_direction is not None:  # TEI's right cuts the end, left the start
            side = "end" if body.truncation_direction.lower() == "right" else "start"
        truncate = True if body.truncate is None else body.truncate
        result = await service.classify(texts, truncate, side, gone=_disconnected(request))
        metrics.texts.inc(len(texts))
        # A multi-label model's default is a sigmoid per label, as TEI does for models whose
        # config says multi_label_classification.
        default = "sigmoid" if clf.multi_label else "softmax"
        function = "none" if body.raw_scores else params.function_to_apply or default
        threshold = None if clf.multi_label else params.threshold
        rows = formats.tei_predictions(
            result.logits, clf.labels, clf.temperature, function, params.top_k, threshold
        )
        if getattr(request.state, "answer", "json") == "csv":
            return Response(formats.csv_predictions(rows, clf.labels), media_type=CSV_TYPE)
        inference_api = body.parameters is not None
        return JSONResponse(rows[0] if single and not inference_api else rows)

    @app.post(
        "/classify",
        response_model=ClassifyResponse,
        responses=OPENAI_ERRORS,
        tags=["classify"],
        operation_id="classify",
    )
    @app.post(
        "/v1/classify",
        response_model=ClassifyResponse,
        responses=OPENAI_ERRORS,
        tags=["classify"],
        operation_id="classify_v1",
    )
    async def classify(body: ClassifyRequest, request: Request) -> JSONResponse:
        """vLLM's classify: per text the label and every class's probability (in the
        model's class order, see /info; the raw scores with `use_activation: false`), and
        the tokens read."""
        clf = service.classifier
        if body.model is not None and body.model != service.model_id:
            raise APIError(404, "not_found", f"The model `{body.model}` does not exist.")
        texts = service.texts(body.input)
        service.check_threshold(body.threshold)
        if body.priority != 0:
            raise APIError(
                422,
                "validation",
                "priority: this server answers first come first served; only 0 is accepted",
            )
        service.check_special_tokens(body.add_special_tokens)
        # vLLM's truncation_side: "left" cuts a text's start (keeps its last tokens), "right"
        # its end; without it, truncate_prompt_tokens keeps the last tokens (vLLM's default)
        # and a text without truncate_prompt_tokens is cut as the model was trained to.
        by_side = {"left": "start", "right": "end", None: None}
        side, limit = by_side[body.truncation_side], None
        k = body.truncate_prompt_tokens
        if k is not None:  # vLLM keeps k tokens (-1: max_model_len)
            max_len = clf.policy.max_length
            if k == 0 or k > max_len:
                raise APIError(
                    422,
                    "validation",
                    f"truncate_prompt_tokens {k}: must be -1 or between 1 and "
                    f"max_model_len ({max_len})",
                )
            side, limit = side or "start", max_len if k == -1 else k
        activation = next(
            (v for v in (body.use_activation, body.softmax, body.activation) if v is not None),
            True,
        )
        result = await service.classify(texts, True, side, limit, gone=_disconnected(request))
        metrics.texts.inc(len(texts))
        return JSONResponse(
            formats.vllm_classification(
                result.logits,
                clf.labels,
                clf.temperature,
                service.model_id,
                result.tokens,
                body.threshold,
                label_sets=clf if clf.multi_label else None,
                activation=activation,
                request_id=body.request_id,
            )
        )

    def card() -> dict[str, Any]:
        return {
            "id": service.model_id,
            "object": "model",
            "created": started,
            "owned_by": "gptclassify",
            "root": service.model_id,
            "parent": None,
            "max_model_len": service.classifier.policy.max_length,
        }

    @app.get("/v1/models", response_model=ModelList, responses=OPENAI_ERRORS, tags=["classify"])
    async def models() -> dict[str, Any]:
        """The one served model (vLLM / OpenAI model list)."""
        return {"object": "list", "data": [card()]}

    @app.get(
        "/v1/models/{model_id:path}",
        response_model=ModelCard,
        responses=OPENAI_ERRORS,
        tags=["classify"],
    )
    async def model(model_id: str) -> dict[str, Any]:
        """One model by its id (OpenAI's `models.retrieve`); 404 for any other id."""
        if model_id != service.model_id:
            raise APIError(404, "not_found", f"The model `{model_id}` does not exist.")
        return card()

    @app.post("/explain", response_model=ExplainResponse, responses=ERRORS, tags=["explain"])
    async def explain(body: ExplainRequest) -> JSONResponse:
        """Why the text gets its label: per token, the class probabilities of the text up to
        it, and its attribution to the target class's log-probability (method named)."""
        result = await service.explain(body.inputs, body.method, body.steps, body.target)
        metrics.explanations.inc()
        return JSONResponse({"model": service.model_id, **result.to_json()})


def _add_error_handlers(app: FastAPI) -> None:
    # Each error in the shape of the route's API: TEI's, or vLLM's / OpenAI's on /classify
    # and /v1/ (middleware.error_response).
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        path = request.url.path
        return error_response(exc.status, exc.error_type, exc.message, path, **exc.headers)

    @app.exception_handler(GPTClassifyError)
    async def user_error(request: Request, exc: GPTClassifyError) -> JSONResponse:
        return error_response(422, "validation", str(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation", _describe(exc.errors()), request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kinds = {401: "unauthorized", 404: "not_found", 405: "validation", 413: "validation"}
        kind = getattr(exc, "error_type", None) or kinds.get(exc.status_code, "validation")
        return error_response(
            exc.status_code, kind, str(exc.detail), request.url.path, **(exc.headers or {})
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "backend", "internal server error", request.url.path)


def _disconnected(request: Request) -> Callable[[], Any]:
    """An awaitable factory that returns once the client has closed the connection (the
    body has been read: what the server receives next is the disconnect)."""

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return gone


def _describe(errors: Any) -> str:
    """pydantic's errors in one line: where and what, never the offending input."""
    parts = []
    for e in list(errors)[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = len(errors) - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _openapi(app: FastAPI, service: ClassifierService, bearer: bool):
    """The generated schema, its description written from the served model (once it is
    loaded: until then, and only then, it is not cached), and with an API key the bearer
    scheme on every route that needs the key."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        loaded = getattr(service, "classifier", None) is not None
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=DESCRIPTION.format(model=describe_model(service)),
            routes=app.routes,
        )
        if bearer:
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    if (method.upper(), path) not in OPEN_ROUTES:
                        operation["security"] = [{"bearer": []}]
        if loaded:
            app.openapi_schema = schema
        return schema

    return openapi


def describe_model(service: ClassifierService) -> str:
    """The served model in a sentence: its id, classes and the backbone it was fine-tuned
    from (config.json's base_model and the architecture's family)."""
    clf = getattr(service, "classifier", None)
    if clf is None:
        return "Classify texts with a gptclassify model."
    labels = ", ".join(clf.labels[:8]) + (", ..." if len(clf.labels) > 8 else "")
    base = clf.provenance.base_model
    family = clf.gpt_config.family
    backbone = f"{base} ({family})" if base not in ("", "unknown") else f"a {family} decoder"
    task = "multi-label" if clf.multi_label else "one label of"
    return (
        f"Classify texts with `{service.model_id}`: {task} {len(clf.labels)} classes "
        f"({labels}), fine-tuned from {backbone}; runtime: {clf.runtime.describe()}."
    )


@cache
def _page() -> tuple[str, str]:
    """The page and a Content-Security-Policy that lets only its own inline script and style
    run (by hash): even text that slipped into the page as markup could not execute."""
    html = (resources.files("gptclassify.serve") / "static" / "index.html").read_text("utf-8")

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
            for b in blocks
        )

    csp = (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return html, csp
