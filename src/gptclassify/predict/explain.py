"""Why a classifier gave its label: class probabilities along the text, and token attributions.

Two views of one text, both computed on the PyTorch model in fp32 (the master weights, not
the runtime's low-precision copies: gradients need the precision):

- **Along the text** (`TokenExplanation.probs`): the class probabilities of every prefix.
  Under the causal mask position t sees only tokens 0..t, so one forward pass that applies
  `ln_f` and the head at every position (not only at the pooled one, as
  `GPTClassifier.forward` does) reads off the classification of each prefix: where in the
  message did it become spam? Only causal models have this view.
- **Attribution** (`TokenExplanation.attribution`): how much each token's embedding moved the
  explained score, the log-probability of the target class. Integrated gradients
  (Sundararajan et al., 2017) average the gradient along the straight path from a baseline
  (all token embeddings zero, positions kept) to the text, so the attributions add up to the
  score's change from baseline to text (`completeness_gap` says how closely, with the steps
  used). Gradient x input is the one-gradient approximation of the same, cheaper and noisier.
  A `--lexical` model's bag-of-tokens term does not depend on the embeddings: it is held
  fixed along the path (the scores and probabilities include it; the attributions explain
  the network's part of the change). A model with a surface-feature head (surface.py) is
  treated the same way: the head's logits of the text are a constant along the path, and the
  probabilities along the text include the head's logits of each prefix; where the head
  alone decides (its network weight 0), every attribution is 0.

Nothing here changes the model: gradients are taken with respect to the embeddings only
(`torch.autograd.grad`), so explanations can run beside inference on the same weights.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from gptclassify import tokenizer
from gptclassify.classifier import GPTClassifier
from gptclassify.data.encode import InputPolicy, not_text, not_unicode
from gptclassify.errors import GPTClassifyError
from gptclassify.surface import SurfaceHead, read_texts

if TYPE_CHECKING:
    from gptclassify.predict.api import Classifier

METHODS = ("integrated-gradients", "gradient-x-input")
DEFAULT_STEPS = 32
MAX_STEPS = 512
TOKENS_PER_PASS = 4096
"""Interpolated rows of one backward pass are capped by this many tokens (activation memory)."""


@dataclass(frozen=True)
class TokenExplanation:
    """One token of the explained text."""

    text: str
    """The characters of this token (a character split across tokens goes to the last one)."""
    token_id: int
    attribution: float
    """Contribution to the explained score (log p(target)); positive pushes toward the target."""
    probs: tuple[float, ...] | None
    """Class probabilities of the text up to and including this token (causal models)."""


@dataclass(frozen=True)
class Explanation:
    text: str
    labels: tuple[str, ...]
    target: str
    """The class explained (the predicted one unless asked otherwise)."""
    probs: tuple[float, ...]
    """Class probabilities of the whole text, from this explanation's fp32 pass."""
    method: str
    steps: int | None
    """Integration steps (integrated gradients), None for gradient x input."""
    tokens: tuple[TokenExplanation, ...]
    score: float
    """log p(target) of the text: the function the attributions explain."""
    baseline_score: float | None
    """log p(target) of the baseline (integrated gradients)."""
    completeness_gap: float | None
    """sum(attributions) - (score - baseline_score): near 0 when the integral converged."""
    padding_attribution: float
    """Attribution of padding positions (fixed-length input policies pad every text)."""
    truncated_tokens: int
    """Tokens cut from the text by the model's input policy (not shown, not attributed)."""

    @property
    def label(self) -> str:
        """The class with the highest probability."""
        return self.labels[max(range(len(self.probs)), key=self.probs.__getitem__)]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "target": self.target,
            "labels": list(self.labels),
            "probs": dict(zip(self.labels, self.probs, strict=True)),
            "method": self.method,
            "steps": self.steps,
            "score": self.score,
            "baseline_score": self.baseline_score,
            "completeness_gap": self.completeness_gap,
            "padding_attribution": self.padding_attribution,
            "truncated_tokens": self.truncated_tokens,
            "tokens": [
                {
                    "text": t.text,
                    "id": t.token_id,
                    "attribution": t.attribution,
                    "probs": list(t.probs) if t.probs is not None else None,
                }
                for t in self.tokens
            ],
        }


def explain(
    model: GPTClassifier,
    text: str,
    labels: Sequence[str],
    policy: InputPolicy,
    temperature: float = 1.0,
    method: str = "integrated-gradients",
    steps: int = DEFAULT_STEPS,
    target: str | None = None,
    multi_label: bool = False,
    surface: SurfaceHead | None = None,
) -> Explanation:
    """Both views of `text` for `model` (see the module docstring).

    multi_label: probabilities are each label's sigmoid, and the attribution is to the
    target label's log-sigmoid (one chosen label is explained; default: the likeliest)."""
    if method not in METHODS:
        raise GPTClassifyError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if not 1 <= steps <= MAX_STEPS:
        raise GPTClassifyError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if target is not None and target not in labels:
        raise GPTClassifyError(f"target {target!r} is not a class ({', '.join(labels)})")
    if bad := not_unicode(text):
        raise GPTClassifyError(f"the text {not_text(bad)}")
    raw = policy.tokenizer.encode(text)
    if not raw or not text.strip():  # whitespace only: empty, as everywhere (data/encode.py)
        raise GPTClassifyError("the text is empty (or only whitespace): nothing to explain")
    ids = policy.apply(raw)
    n_real = min(len(raw), policy.max_length)
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    lengths = torch.tensor([n_real], dtype=torch.long, device=device)  # (1,)

    head = _Head(surface, ids, n_real, policy.tokenizer, device)
    with torch.no_grad():
        logits = head.add(model(input_ids, _mask(lengths, len(ids))).float())  # (1, K)
        probs = _probs(logits, temperature, multi_label)[0]
        along = _prefix_probs(model, input_ids, n_real, temperature, multi_label, head)
    t = labels.index(target) if target is not None else int(probs.argmax())

    with torch.enable_grad():
        if method == "integrated-gradients":
            attr, score, base_score = _integrated_gradients(
                model, input_ids, lengths, t, temperature, steps, multi_label, head
            )
        else:
            attr, score = _gradient_x_input(
                model, input_ids, lengths, t, temperature, multi_label, head
            )
            base_score = None
    gap = float(attr.sum()) - (score - base_score) if base_score is not None else None

    real_ids = ids[:n_real]
    pieces = token_texts(real_ids, policy.tokenizer)
    tokens = tuple(
        TokenExplanation(
            text=pieces[i],
            token_id=real_ids[i],
            attribution=float(attr[i]),
            probs=tuple(float(p) for p in along[i]) if along is not None else None,
        )
        for i in range(n_real)
    )
    return Explanation(
        text=text,
        labels=tuple(labels),
        target=labels[t],
        probs=tuple(float(p) for p in probs),
        method=method,
        steps=steps if method == "integrated-gradients" else None,
        tokens=tokens,
        score=score,
        baseline_score=base_score,
        completeness_gap=gap,
        padding_attribution=float(attr[n_real:].sum()),
        truncated_tokens=len(raw) - n_real,
    )


def explain_classifier(
    classifier: Classifier,
    text: str,
    method: str = "integrated-gradients",
    steps: int = DEFAULT_STEPS,
    target: str | None = None,
) -> Explanation:
    """`explain` for a Classifier on the PyTorch runtime: its model, labels, input policy,
    temperature, task and surface head (`Classifier.explain` calls this)."""
    return explain(
        classifier.model,
        text,
        classifier.labels,
        classifier.policy,
        classifier.temperature,
        method,
        steps,
        target,
        multi_label=classifier.multi_label,
        surface=classifier.surface,
    )


def token_texts(ids: Sequence[int], tok: tokenizer.Tokenizer | None = None) -> list[str]:
    """The characters each token contributes to the decoded text.

    Byte-level BPE tokens are byte sequences; a character whose UTF-8 bytes span several
    tokens (an emoji, often) belongs to the token that completes it, the earlier ones get
    "". The pieces joined are the decoded text.
    """
    tok = tok or tokenizer.gpt2()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces = [decoder.decode(tok.token_bytes(i)) for i in ids]
    if pieces:
        pieces[-1] += decoder.decode(b"", final=True)
    return pieces


# ---- the two views ------------------------------------------------------------------------


class _Head:
    """A surface head's part of the logits for one explained text (or nothing)."""

    def __init__(self, surface: SurfaceHead | None, ids, n_real: int, tok, device) -> None:
        self.surface = surface
        self.network_weight = 1.0 if surface is None else float(surface.network_weight)
        self.text = None
        self.prefixes = None
        if surface is not None:
            rows = [ids[:n_real]] * n_real
            texts = read_texts(rows, list(range(1, n_real + 1)), tok)
            prefix = torch.from_numpy(surface.logits(texts)).to(device)  # (n_real, K)
            self.prefixes, self.text = prefix, prefix[-1:]

    def add(self, network: Tensor, prefixes: bool = False) -> Tensor:
        """network logits (S, K) -> the classifier's (the head's of the whole text added to
        every row, or with `prefixes` each prefix's)."""
        if self.surface is None:
            return network
        extra = self.prefixes if prefixes else self.text
        return network.float() * self.network_weight + extra


def _probs(logits: Tensor, temperature: float, multi_label: bool) -> Tensor:
    """Class probabilities (softmax at the temperature), or each label's sigmoid."""
    if multi_label:
        return torch.sigmoid(logits.float())
    return torch.softmax(logits.float() / temperature, dim=-1)


def _prefix_probs(
    model: GPTClassifier,
    input_ids: Tensor,
    n_real: int,
    temperature: float,
    multi_label: bool = False,
    head: _Head | None = None,
) -> Tensor | None:
    """(n_real, K) class probabilities of each prefix of the real tokens, from one pass."""
    if not model.causal:
        return None  # each prefix would need its own pass
    ids = input_ids[:, :n_real]
    h = model.gpt.hidden_states(ids, causal=True)[0]  # (T, C) after ln_f, every position
    if model.pool == "mean":
        counts = torch.arange(1, n_real + 1, device=h.device, dtype=h.dtype)[:, None]
        pooled = h.cumsum(dim=0) / counts  # mean of each prefix
    elif model.pool == "first":
        pooled = h[:1].expand(n_real, -1)  # every prefix is read at its first token
    else:
        pooled = h  # last-real and last: a prefix (no padding) is read at its last token
    logits = model.head(pooled).float()
    if model.lexical is not None:  # its bag-of-tokens term: the mean over each prefix
        counts = torch.arange(1, n_real + 1, device=h.device, dtype=torch.float32)[:, None]
        per_token = model.lexical.weight.float()[ids[0]]  # (T, K)
        logits = logits + per_token.cumsum(dim=0) / counts + model.lexical.bias.float()
    if head is not None:
        logits = head.add(logits, prefixes=True)
    return _probs(logits, temperature, multi_label)


def _score(
    model: GPTClassifier,
    embeddings: Tensor,
    positions: Tensor,
    lengths: Tensor,
    target: int,
    temperature: float,
    multi_label: bool = False,
    input_ids: Tensor | None = None,
    head: _Head | None = None,
) -> Tensor:
    """log p(target) per row (S,) from token embeddings (S, T, C); a `--lexical` model's
    bag-of-tokens logits of `input_ids` (1, T) are added, the same for every row."""
    logits = model.forward_from(embeddings + positions, lengths.expand(len(embeddings)), 0)
    if model.lexical is not None and input_ids is not None:
        logits = logits.float() + model.lexical(input_ids, lengths)
    if head is not None:
        logits = head.add(logits)
    if multi_label:
        return F.logsigmoid(logits.float()[:, target])
    return F.log_softmax(logits.float() / temperature, dim=-1)[:, target]


def _embeddings(model: GPTClassifier, input_ids: Tensor) -> tuple[Tensor, Tensor]:
    """Token embeddings (1, T, C) and position embeddings (1, T, C), detached."""
    T = input_ids.shape[1]
    tok = model.gpt.wte(input_ids).detach()
    if model.gpt.wpe is None:  # rotary positions live in the attention
        return tok, torch.zeros_like(tok)
    pos = model.gpt.wpe(torch.arange(T, device=input_ids.device))[None].detach()
    return tok, pos


def _integrated_gradients(
    model: GPTClassifier,
    input_ids: Tensor,
    lengths: Tensor,
    target: int,
    temperature: float,
    steps: int,
    multi_label: bool = False,
    head: _Head | None = None,
) -> tuple[Tensor, float, float]:
    """Attributions (T,), score at the text, score at the baseline (zero token embeddings).

    The path integral uses the midpoint rule: alphas (k + 0.5) / steps.
    """
    x, pos = _embeddings(model, input_ids)
    baseline = torch.zeros_like(x)
    T = x.shape[1]
    alphas = (torch.arange(steps, device=x.device, dtype=x.dtype) + 0.5) / steps
    grads = torch.zeros_like(x[0])  # (T, C)
    rows = max(1, TOKENS_PER_PASS // T)
    for chunk in alphas.split(rows):
        path = (baseline + chunk[:, None, None] * (x - baseline)).requires_grad_(True)
        score = _score(model, path, pos, lengths, target, temperature, multi_label, input_ids, head)
        (grad,) = torch.autograd.grad(score.sum(), path, allow_unused=True)
        if grad is not None:  # None: the head alone decides, nothing flows to the embeddings
            grads += grad.sum(dim=0)
    attr = ((x[0] - baseline[0]) * grads / steps).sum(dim=-1)  # (T,)
    with torch.no_grad():
        ends = _score(
            model,
            torch.cat([x, baseline]),
            pos,
            lengths,
            target,
            temperature,
            multi_label,
            input_ids,
            head,
        )
    return attr.detach().cpu(), float(ends[0]), float(ends[1])


def _gradient_x_input(
    model: GPTClassifier,
    input_ids: Tensor,
    lengths: Tensor,
    target: int,
    temperature: float,
    multi_label: bool = False,
    head: _Head | None = None,
) -> tuple[Tensor, float]:
    """Attributions (T,) = embedding . gradient, and the score at the text."""
    x, pos = _embeddings(model, input_ids)
    x = x.requires_grad_(True)
    score = _score(model, x, pos, lengths, target, temperature, multi_label, input_ids, head)
    (grad,) = torch.autograd.grad(score.sum(), x, allow_unused=True)
    if grad is None:  # the head alone decides
        grad = torch.zeros_like(x)
    return (x * grad).sum(dim=-1)[0].detach().cpu(), float(score[0].detach())


def _mask(lengths: Tensor, width: int) -> Tensor:
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).long()
