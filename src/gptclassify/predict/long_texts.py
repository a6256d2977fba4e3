"""Texts longer than the model reads: cut them (truncate), or classify them in windows
(chunk) and aggregate the windows' probabilities.

`--long-texts chunk` splits the token ids of an over-long text into windows of the model's
`max_length` tokens whose starts are `--stride` tokens apart (the last window ends at the
text's end, so every token is read), classifies every window like a text of its own, and
combines them per text: `--aggregate mean` averages the windows' probabilities (a topic or
sentiment spread through the text), `max` answers "is any part of it spam?": for a two-class
model the second class (the positive one of the binary metrics: spam in ham/spam) takes its
largest probability over the windows and the first class the rest; with more classes (and
for every label of a multi-label model) each class's largest probability, renormalised to
sum to 1 for single-label models. A text that fits the model is one window, classified exactly as without chunking (the
same ids, the same logits, bit for bit). A model's prefix and suffix tokens (a BOS token)
are put around every window, as around every text.

Aggregated probabilities are handed back as logits whose softmax (or sigmoid) gives them, so
every consumer of logits (prediction tables, the server's answer formats) works unchanged.
No torch here: the ONNX runtime chunks too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gptclassify.data.encode import Encoded, InputPolicy, encode_ids
from gptclassify.errors import GPTClassifyError
from gptclassify.metrics import sigmoid, softmax

if TYPE_CHECKING:
    from gptclassify.predict.api import Classifier

MODES = ("truncate", "chunk")
AGGREGATES = ("mean", "max")


@dataclass(frozen=True)
class LongTexts:
    """What happens to a text longer than the model reads."""

    mode: str = "truncate"
    """truncate: cut it to the model's max_length (the input policy's side); chunk: windows."""
    stride: int | None = None
    """Tokens between the starts of consecutive windows (default: half a window, so windows
    overlap by half and a message cut by one window's edge is whole in the next)."""
    aggregate: str = "mean"
    """How windows' probabilities combine: mean, or max (any window)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise GPTClassifyError(f"--long-texts: {self.mode!r} is not one of truncate, chunk")
        if self.aggregate not in AGGREGATES:
            raise GPTClassifyError(f"--aggregate: {self.aggregate!r} is not one of mean, max")
        if self.stride is not None and (
            not isinstance(self.stride, int) or isinstance(self.stride, bool) or self.stride < 1
        ):
            raise GPTClassifyError(f"--stride must be a positive integer, got {self.stride!r}")
        if self.stride is not None and self.mode != "chunk":
            raise GPTClassifyError(
                f"--stride {self.stride}: windows are for --long-texts chunk (with "
                f"--long-texts {self.mode} nothing is split); add --long-texts chunk or drop "
                "--stride"
            )

    @property
    def chunk(self) -> bool:
        return self.mode == "chunk"

    def report(self, cut: np.ndarray, count: np.ndarray) -> dict[str, Any]:
        """What an evaluation report says of long texts: how many were truncated (`cut`), or
        how many took several windows and how many windows were read (`count`, per text)."""
        if self.chunk:
            return {
                "long_texts": "chunk",
                "chunked": int((count > 1).sum()),
                "windows": int(count.sum()),
                "aggregate": self.aggregate,
            }
        return {"long_texts": "truncate", "truncated": int(cut.sum())}


@dataclass
class Windows:
    """The windows of some texts: `encoded` holds one row per window, `owner` says whose."""

    encoded: Encoded
    owner: np.ndarray
    """(W,) the text (0-based) each window belongs to; non-decreasing."""
    counts: np.ndarray
    """(N,) windows per text (1 for a text that fits)."""

    @property
    def chunked(self) -> int:
        """How many texts were split into more than one window."""
        return int((self.counts > 1).sum())


def windows(raw: Sequence[list[int]], policy: InputPolicy, stride: int | None) -> Windows:
    """Every text's windows under `policy` (a text that fits: itself, as `encode_ids` gives
    it). `raw` holds untruncated ids with the tokenizer's prefix and suffix."""
    tok = policy.tokenizer
    pre, post = list(tok.prefix), list(tok.suffix)
    width = policy.max_length - len(pre) - len(post)  # text tokens per window
    if width < 1:
        raise GPTClassifyError(
            f"--long-texts chunk: windows of {policy.max_length} tokens leave no room for text "
            "beside the model's prefix and suffix tokens"
        )
    step = stride if stride is not None else max(1, width // 2)
    if step > width:
        raise GPTClassifyError(
            f"--stride {step} is larger than a window ({width} text tokens): text between "
            "windows would never be read"
        )
    rows: list[list[int]] = []
    owner: list[int] = []
    counts = np.zeros(len(raw), dtype=np.int64)
    for i, ids in enumerate(raw):
        if len(ids) <= policy.max_length:
            rows.append(ids)
            owner.append(i)
            counts[i] = 1
            continue
        body = ids[len(pre) : len(ids) - len(post)]
        starts = list(range(0, len(body) - width, step)) + [len(body) - width]
        for start in dict.fromkeys(starts):
            rows.append(pre + body[start : start + width] + post)
            owner.append(i)
        counts[i] = len(dict.fromkeys(starts))
    encoded = encode_ids(rows, policy)
    return Windows(encoded, np.asarray(owner, dtype=np.int64), counts)


def combine(
    logits: np.ndarray,
    win: Windows,
    how: str,
    multi_label: bool,
    temperature: float = 1.0,
) -> np.ndarray:
    """Per-text logits from per-window logits: a one-window text keeps its own logits
    (bit-equal); a longer one gets logits whose softmax (single-label, at `temperature`) or
    sigmoid (multi-label) is the windows' aggregated probabilities."""
    logits = np.asarray(logits)
    n = len(win.counts)
    out = np.zeros((n, logits.shape[1]), dtype=np.float64)
    first = np.concatenate([[0], np.cumsum(win.counts)[:-1]])
    for i in range(n):
        start, count = int(first[i]), int(win.counts[i])
        if count == 1:
            out[i] = logits[start]
            continue
        part = logits[start : start + count]
        probs = sigmoid(part) if multi_label else softmax(part, temperature)
        if how != "max":
            p = probs.mean(axis=0)
        elif not multi_label and probs.shape[1] == 2:
            # "Any window is positive": the second class (the positive one of the binary
            # metrics, e.g. spam) takes its largest window probability; the first the rest.
            top = float(probs[:, 1].max())
            p = np.array([1.0 - top, top])
        else:  # each class's (or label's) largest window probability
            p = probs.max(axis=0)
        if multi_label:
            p = np.clip(p, 1e-15, 1 - 1e-15)
            out[i] = np.log(p) - np.log1p(-p)
        else:
            p = np.clip(p / p.sum(), 1e-300, None)
            out[i] = np.log(p) * temperature  # softmax(out / T) == p
    return out.astype(logits.dtype, copy=False) if logits.dtype == np.float64 else out


def classifier_windows(classifier: Classifier, raw: Sequence[list[int]]) -> Windows:
    """The windows of tokenized texts under a classifier's input policy and `long_texts`
    stride."""
    return windows(raw, classifier.policy, classifier.long_texts.stride)


def combine_classifier_windows(
    classifier: Classifier, logits: np.ndarray, win: Windows
) -> np.ndarray:
    """Per-text logits from the logits of `classifier_windows(...)`'s rows, aggregated as the
    classifier's `long_texts` says (at its temperature; a sigmoid per label for multi-label)."""
    return combine(
        logits,
        win,
        classifier.long_texts.aggregate,
        classifier.multi_label,
        classifier.temperature,
    )
