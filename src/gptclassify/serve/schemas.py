"""Request and response bodies of the HTTP API (pydantic), in the shapes clients already speak.

- `/predict`: Hugging Face text-embeddings-inference (TEI) and the Hugging Face Inference
  API's text classification (`parameters.top_k`, `parameters.function_to_apply`), plus our
  `parameters.threshold`.
- `/classify`, `/v1/models`: vLLM's classification API (the OpenAI-style list objects).
- `/explain`, `/info`, errors: ours; errors have TEI's shape, `{"error", "error_type"}`.

Requests are strict (a number where a string belongs is a 422, never coerced) and ignore
fields they do not know, as TEI and vLLM clients send a few we have no use for.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# predict/explain.py's METHODS, DEFAULT_STEPS and MAX_STEPS (not imported: it needs torch, and
# a server on another runtime has none; tests/test_serve.py checks they agree).
EXPLAIN_METHODS = ("integrated-gradients", "gradient-x-input")
EXPLAIN_STEPS = 32
EXPLAIN_MAX_STEPS = 512


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class PredictParameters(_Request):
    top_k: int | None = Field(None, ge=1, description="Only the k likeliest classes.")
    function_to_apply: Literal["softmax", "sigmoid", "none"] | None = Field(
        None, description="softmax (default), sigmoid per class, or none (the raw scores)."
    )
    threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Two-class models: the second class (e.g. spam) is the label when its "
        "probability is at least this; the answer then lists the label first.",
    )


class PredictRequest(_Request):
    inputs: str | list[str] = Field(description="One text, or a list of texts.")
    raw_scores: bool = Field(False, description="Scores before the softmax (logits).")
    truncate: bool = Field(
        True,
        description="Cut texts longer than the model's input to fit; false: refuse them (413).",
    )
    parameters: PredictParameters | None = None


class Prediction(BaseModel):
    label: str
    score: float


class ClassifyRequest(_Request):
    model: str | None = Field(None, description="The served model's id (see /v1/models).")
    input: str | list[str]
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Ours: as /predict's parameters.threshold."
    )


class ClassifyData(BaseModel):
    index: int
    label: str
    probs: list[float]
    num_classes: int


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int = 0
    prompt_tokens_details: None = None


class ClassifyResponse(BaseModel):
    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ClassifyData]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str
    parent: None = None
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ExplainRequest(_Request):
    inputs: str = Field(description="The text to explain.")
    method: Literal["integrated-gradients", "gradient-x-input"] = "integrated-gradients"
    steps: int = Field(EXPLAIN_STEPS, ge=1, le=EXPLAIN_MAX_STEPS, description="Integration steps.")
    target: str | None = Field(None, description="The class to explain (default: the label).")


class ExplainedToken(BaseModel):
    text: str
    id: int
    attribution: float
    probs: list[float] | None


class ExplainResponse(BaseModel):
    model: str
    label: str
    target: str
    labels: list[str]
    probs: dict[str, float]
    method: str
    steps: int | None
    score: float
    baseline_score: float | None
    completeness_gap: float | None
    padding_attribution: float
    truncated_tokens: int
    tokens: list[ExplainedToken]


class Info(BaseModel):
    model_id: str
    labels: list[str]
    task: str = "single-label"
    """single-label (softmax) or multi-label (a sigmoid per label)."""
    long_texts: str = "truncate"
    """truncate, or chunk (texts longer than the model reads are classified in windows)."""
    base_model: str
    runtime: str
    max_input_tokens: int
    truncate: str
    max_client_batch_size: int
    max_chars: int
    max_body_bytes: int
    max_batch_texts: int
    max_batch_tokens: int
    max_wait_ms: float
    pass_overhead_tokens: float
    max_queue: int
    timeout_s: float
    model_sha256: str | None
    version: str
    explain: bool
    explain_methods: list[str]
    auth: bool
    test_accuracy: float | None


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ErrorBody(BaseModel):
    error: str
    error_type: str
