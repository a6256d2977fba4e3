"""Request and response bodies of the HTTP API (pydantic), in the shapes clients already speak.

- `/predict` (also `POST /` and `/invocations`): Hugging Face text-embeddings-inference
  (TEI): its input grammar (a text, `[text]`, a pair `[text, text]`, or a batch of those
  as a list of lists) and fields, plus the Hugging Face Inference API's `parameters.top_k`,
  `parameters.function_to_apply`, and our `parameters.threshold`.
- `/classify`, `/v1/models`: vLLM's classification API (the OpenAI-style list objects).
- `/explain`, `/info`: ours. Errors have TEI's shape, `{"error", "error_type"}`, and on
  /classify and /v1/ vLLM's and OpenAI's, `{"error": {"message", "type", "param", "code"}}`.

Requests are strict (a number where a string belongs is a 422, never coerced) and refuse
fields they do not know (a 422 naming the field): every field TEI or vLLM defines for these
routes is declared here, and is either honoured or refused with a 422 saying why, so that
no request is answered as if a field it sent had been read when it was not.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# predict/explain.py's METHODS, DEFAULT_STEPS and MAX_STEPS (not imported: it needs torch, and
# a server on another runtime has none; tests/test_serve.py checks they agree).
EXPLAIN_METHODS = ("integrated-gradients", "gradient-x-input")
EXPLAIN_STEPS = 32
EXPLAIN_MAX_STEPS = 512


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


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


TEIInputs = str | list[str] | list[list[str]]
"""TEI's grammar (router/src/http/types.rs, `PredictInput`): a string is one text; a list
whose first element is a string is one sequence, `[text]` or the pair `[text, text]`; a list
of lists is a batch of such sequences. serve/service.py's `tei_texts` reads it."""


class PredictRequest(_Request):
    inputs: TEIInputs = Field(
        description='One text: "text" or ["text"]; a batch: [["text"], ["text"], ...]. '
        'Text pairs (["a", "b"]) are refused (422): the model classifies one text.'
    )
    raw_scores: bool = Field(False, description="Scores before the softmax (logits).")
    truncate: bool | None = Field(
        None,
        description="Cut texts longer than the model's input to fit (the default); false: "
        "refuse them (413).",
    )
    truncation_direction: Literal["left", "right", "Left", "Right"] | None = Field(
        None,
        description="Which end of a long text is cut: right (its end) or left (its start). "
        "Default: the end the model was trained to cut (see /info's truncate).",
    )
    parameters: PredictParameters | None = None


class Prediction(BaseModel):
    label: str
    score: float


class ClassifyRequest(_Request):
    model: str | None = Field(None, description="The served model's id (see /v1/models).")
    input: str | list[str] = Field(description="One text, or a list of texts.")
    truncate_prompt_tokens: int | None = Field(
        None,
        ge=-1,
        description="Read only each text's last k tokens (k at most max_model_len); -1: its "
        "last max_model_len. Default: texts are cut as the model was trained to cut them.",
    )
    use_activation: bool | None = Field(
        None, description="false: `probs` holds the raw scores (logits) instead."
    )
    softmax: bool | None = Field(None, description="Deprecated in vLLM: use_activation.")
    activation: bool | None = Field(None, description="Deprecated in vLLM: use_activation.")
    user: str | None = Field(None, description="The caller's end user (not used).")
    request_id: str | None = Field(
        None, max_length=200, description="Echoed in the answer's id (classify-REQUEST_ID)."
    )
    priority: int = Field(0, description="Only 0: this server schedules first come first served.")
    add_special_tokens: bool = Field(
        True, description="Only true, unless the tokenizer adds no special tokens anyway."
    )
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Ours: as /predict's parameters.threshold."
    )
    truncation_side: Literal["left", "right"] | None = Field(
        None,
        description="Which end of a long text is cut: left (its start: the last tokens are "
        "kept, vLLM's default for truncate_prompt_tokens) or right (its end). Applies to "
        "truncate_prompt_tokens and to the model's own cut.",
    )
    # vLLM's fields that change nothing here: accepted (as vLLM accepts them for a model
    # they do not apply to) and ignored.
    cache_salt: str | None = Field(
        None, description="Accepted, ignored: this server keeps no prefix cache across requests."
    )
    mm_processor_kwargs: dict[str, Any] | None = Field(
        None, description="Accepted, ignored: the model reads text only."
    )
    padding: Any = Field(
        None,
        description="Accepted, ignored: answers do not depend on padding (texts are padded "
        "on the right, which the causal mask hides from their tokens).",
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


class OpenAIErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: int


class OpenAIErrorBody(BaseModel):
    """vLLM's and OpenAI's error (on /classify and /v1/)."""

    error: OpenAIErrorInfo
