"""From texts to token sequences: tokenize, truncate, and (for fixed lengths) pad.

Padding is always on the right: real tokens keep their positions, and under the causal mask
they never see the padding. No torch here: the ONNX runtime classifies without it.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gptclassify import progress, tokenizer
from gptclassify.config import PAD_TOKEN_ID
from gptclassify.data import tables
from gptclassify.errors import GPTClassifyError

FILLER_TOKEN_ID = 13
"""GPT-2's ".": any real token would do; a pass costs the same whatever ids it holds."""


@dataclass(frozen=True)
class InputPolicy:
    """How texts become fixed or variable-length id sequences."""

    max_length: int
    """Tokens kept per text (the rest is cut, see `truncate`)."""
    pad_length: int | None
    """Every sequence is padded to this length; None: pad each batch to its own longest."""
    truncate: str = "end"
    """"end": cut the end (keep the start); "start": cut the start (keep the end)."""
    tokenizer: tokenizer.Tokenizer = field(default_factory=tokenizer.gpt2, compare=False)
    """The model's tokenizer (its ids, padding id and BOS/EOS tokens)."""

    @classmethod
    def resolve(
        cls,
        pad_to: str,
        max_length: int | None,
        truncate: str,
        context_length: int,
        train_lengths: Sequence[int] = (),
        tok: tokenizer.Tokenizer | None = None,
    ) -> InputPolicy:
        """Turn the --pad-to / --max-length flags into lengths for this model and data."""
        tok = tok or tokenizer.gpt2()
        cap = min(max_length or context_length, context_length)
        if pad_to in ("batch", "none"):
            return cls(cap, None, truncate, tok)
        if pad_to == "context":
            return cls(cap, context_length, truncate, tok)
        if pad_to == "longest":
            # The book pads everything to the longest training text and cuts longer
            # validation/test texts to that length.
            if not train_lengths:
                raise GPTClassifyError("--pad-to longest needs training texts to measure")
            longest = min(max(train_lengths), cap)
            return cls(longest, longest, truncate, tok)
        n = int(pad_to)
        if n > context_length:
            raise GPTClassifyError(f"--pad-to {n} exceeds the model context ({context_length})")
        return cls(min(cap, n), n, truncate, tok)

    def apply(self, ids: list[int]) -> list[int]:
        ids = self.tokenizer.truncate(
            ids, self.max_length, keep="right" if self.truncate == "end" else "left"
        )
        if self.pad_length is None:
            return ids
        return tokenizer.pad(ids, self.pad_length, self.tokenizer.pad_id)


@dataclass
class Encoded:
    """Token sequences of one split, ready for batching."""

    ids: list[list[int]]
    """Per text: truncated ids, right-padded when the policy has a fixed length."""
    lengths: np.ndarray
    """(N,) int64: real (non-padding) tokens per text."""
    labels: np.ndarray | None
    """(N,) int64 class ids, a multi-label (N, K) float32 0/1 matrix, or None for unlabelled
    text."""
    cut: np.ndarray
    """(N,) bool: whether each text was longer than the policy's max_length (and cut)."""
    pad_id: int = PAD_TOKEN_ID
    """The id batches are padded with."""
    raw: list[list[int]] | None = field(default=None, repr=False)
    """The untruncated ids, when a caller asked to keep them (long texts read in windows)."""

    @property
    def truncated(self) -> int:
        """How many texts were cut to fit."""
        return int(self.cut.sum())

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def unlabelled(cls, ids: Sequence[list[int]], lengths: Sequence[int] | None = None) -> Encoded:
        """Sequences already cut to fit (e.g. rows gathered from other Encoded); `lengths`:
        their real tokens, when they are padded."""
        return cls(
            ids=list(ids),
            lengths=np.array(
                [len(row) for row in ids] if lengths is None else lengths, dtype=np.int64
            ),
            labels=None,
            cut=np.zeros(len(ids), dtype=bool),
        )

    @classmethod
    def filler(cls, lengths: Sequence[int]) -> Encoded:
        """Texts of `lengths` tokens each, all one token: passes whose cost, not answer,
        matters (warm-ups, timings)."""
        # Padded with the filler too: an id every model's vocabulary has.
        filler = cls.unlabelled([[FILLER_TOKEN_ID] * n for n in lengths])
        return dataclasses.replace(filler, pad_id=FILLER_TOKEN_ID)


TOKENIZE_CHUNK = 10_000
"""Texts handed to the tokenizer's batch encoding at a time (the table readers' chunk): the
threads get long lists, and the only large thing alive is the result."""


@dataclass(frozen=True)
class Tokenized:
    """Token ids of some texts, and what tokenizing them cost."""

    ids: list[list[int]]
    seconds: float

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.ids)

    @property
    def seconds_per_million(self) -> float:
        """Seconds per million tokens (what a 10x larger training set will cost, x10)."""
        return self.seconds / max(self.tokens, 1) * 1e6


def tokenize(
    texts: Sequence[str],
    encode_batch: Callable[[Sequence[str]], list[list[int]]] = tokenizer.encode_batch,
    chunk: int = TOKENIZE_CHUNK,
    desc: str = "tokenizing",
) -> Tokenized:
    """Token ids of `texts` (untruncated), `chunk` texts at a time through `encode_batch`: the
    tokenizer's batch encoding (tiktoken's runs threads outside the GIL); any tokenizer that
    maps a list of texts to lists of ids can stand in. Progress shown as `desc`
    (progress.stage)."""
    t0 = time.perf_counter()
    ids: list[list[int]] = []
    with progress.stage(desc, total=len(texts), unit="text") as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            ids.extend(encode_batch(part))
            bar.update(len(part))
    return Tokenized(ids, time.perf_counter() - t0)


_SURROGATE = re.compile("[\ud800-\udfff]")


def not_unicode(text: str) -> str | None:
    """A lone surrogate in `text` ("\\udce9": what Python makes of a non-UTF-8 byte, or a
    JSON escape of half a pair), else None: such a string is not text, and tokenizers
    would quietly replace it."""
    found = _SURROGATE.search(text)
    return found.group() if found else None


def blank(text: str) -> bool:
    """Empty or only whitespace (`str.isspace`) and zero-width characters: not a text to
    classify, the same in training (such rows are skipped), the CLI (an error row), the
    Python API and the server (refused)."""
    return tables.blank(text)


def encode(
    texts: Sequence[str], policy: InputPolicy, labels: Sequence[int] | None = None
) -> Encoded:
    """Tokenize, truncate and (for fixed lengths) pad texts under `policy`; an empty text, or
    one of only whitespace, is refused (naming it)."""
    for i, text in enumerate(texts):
        if isinstance(text, str) and blank(text):
            raise GPTClassifyError(f"text {i + 1} is {EMPTY}: nothing to classify")
        if isinstance(text, str) and (bad := not_unicode(text)):
            raise GPTClassifyError(f"text {i + 1} {not_text(bad)}")
    return encode_ids(policy.tokenizer.encode_batch(texts), policy, labels)


EMPTY = "empty (or only whitespace)"


def not_text(surrogate: str) -> str:
    return f"holds {surrogate!a}, half of a surrogate pair: not valid Unicode"


def encode_ids(
    raw: Sequence[list[int]],
    policy: InputPolicy,
    labels: Sequence[int] | None = None,
    source: str = "",
) -> Encoded:
    """`encode` for texts already tokenized (e.g. to measure lengths before choosing a policy)."""
    for i, ids in enumerate(raw):
        if not ids:
            where = f"{source}: " if source else ""
            raise GPTClassifyError(f"{where}text {i + 1} is {EMPTY}: nothing to classify")
    return Encoded(
        ids=[policy.apply(ids) for ids in raw],
        lengths=np.array([min(len(ids), policy.max_length) for ids in raw], dtype=np.int64),
        labels=_label_array(labels) if labels is not None else None,
        cut=np.array([len(ids) > policy.max_length for ids in raw], dtype=bool),
        pad_id=policy.tokenizer.pad_id,
    )


def _label_array(labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N,) int64 class ids, or a multi-label (N, K) 0/1 matrix kept as float32."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        return labels.astype(np.float32, copy=False)
    return np.array(list(labels), dtype=np.int64)


def pad_batch(
    seqs: Sequence[Sequence[int]], lengths: np.ndarray, pad_id: int = PAD_TOKEN_ID
) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both (B, width) int64, right-padded to the longest row.

    The mask covers the `lengths` real tokens of each row; a fixed pad length's padding ids
    are padding too.
    """
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
    mask = (np.arange(width)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    return ids, mask


def token_passes(encoded: Encoded, batch_size: int, max_tokens: int) -> list[np.ndarray]:
    """Row indices of `encoded` in passes: longest texts first, at most `batch_size` rows and
    at most `max_tokens` padded tokens (rows x the pass's longest text) each; a text longer
    than `max_tokens` runs alone.

    For runtimes that compute every padded token (ONNX Runtime): a pass's activations, the
    attention scores above all (rows x heads x width^2), then follow the token budget, not
    the batch size times the longest text.
    """
    widths = np.fromiter((len(s) for s in encoded.ids), dtype=np.int64, count=len(encoded))
    order = np.argsort(-encoded.lengths, kind="stable")
    passes: list[np.ndarray] = []
    start = 0
    while start < len(order):
        # Sorted longest first, so the pass's first text sets its width.
        rows = min(batch_size, max(1, max_tokens // int(widths[order[start]])))
        passes.append(order[start : start + rows])
        start += rows
    return passes
