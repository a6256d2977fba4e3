"""From texts to model inputs: tokenize, truncate, pad, batch; and the frozen-prefix cache.

Two interchangeable sources give batches to the classifier:

- `TokenSource` holds token ids; the model runs from the embedding on.
- `PrefixSource` holds the hidden states that enter the first trainable block, computed once
  per text. When the blocks before it are frozen and deterministic (no dropout), running the
  model from those states gives the same result as running it from the tokens: the epochs
  then cost only the trainable suffix. `prefix_is_cacheable` says when that holds.

Padding is always on the right: real tokens keep their positions, and under the causal mask
they never see the padding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gptclassify import tokenizer
from gptclassify.config import PAD_TOKEN_ID
from gptclassify.errors import GPTClassifyError

TOKENS_PER_BATCH = 4096
"""Padded tokens per batch for no-grad passes (prefix cache, full-split logits): large enough
for efficient matmuls, small enough to keep activation memory (and peak RSS) modest."""


@dataclass(frozen=True)
class InputPolicy:
    """How texts become fixed or variable-length id sequences."""

    max_length: int
    """Tokens kept per text (the rest is cut, see `truncate`)."""
    pad_length: int | None
    """Every sequence is padded to this length; None: pad each batch to its own longest."""
    truncate: str = "end"
    """"end": cut the end (keep the start); "start": cut the start (keep the end)."""

    @classmethod
    def resolve(
        cls,
        pad_to: str,
        max_length: int | None,
        truncate: str,
        context_length: int,
        train_lengths: Sequence[int] = (),
    ) -> InputPolicy:
        """Turn the --pad-to / --max-length flags into lengths for this model and data."""
        cap = min(max_length or context_length, context_length)
        if pad_to in ("batch", "none"):
            return cls(cap, None, truncate)
        if pad_to == "context":
            return cls(cap, context_length, truncate)
        if pad_to == "longest":
            # The book pads everything to the longest training text and cuts longer
            # validation/test texts to that length.
            if not train_lengths:
                raise GPTClassifyError("--pad-to longest needs training texts to measure")
            longest = min(max(train_lengths), cap)
            return cls(longest, longest, truncate)
        n = int(pad_to)
        if n > context_length:
            raise GPTClassifyError(f"--pad-to {n} exceeds the model context ({context_length})")
        return cls(min(cap, n), n, truncate)

    def apply(self, ids: list[int]) -> list[int]:
        ids = tokenizer.truncate(
            ids, self.max_length, keep="right" if self.truncate == "end" else "left"
        )
        return tokenizer.pad(ids, self.pad_length) if self.pad_length is not None else ids


@dataclass
class Encoded:
    """Token sequences of one split, ready for batching."""

    ids: list[list[int]]
    """Per text: truncated ids, right-padded when the policy has a fixed length."""
    lengths: Tensor
    """(N,) real (non-padding) tokens per text."""
    labels: Tensor | None
    """(N,) class ids, or None for unlabelled text."""
    truncated: int
    """How many texts were cut to fit."""

    def __len__(self) -> int:
        return len(self.ids)


def encode(
    texts: Sequence[str], policy: InputPolicy, labels: Sequence[int] | None = None
) -> Encoded:
    """Tokenize, truncate and (for fixed lengths) pad texts under `policy`."""
    return encode_ids(tokenizer.encode_batch(texts), policy, labels)


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
            raise GPTClassifyError(f"{where}text {i + 1} is empty: nothing to classify")
    return Encoded(
        ids=[policy.apply(ids) for ids in raw],
        lengths=torch.tensor([min(len(ids), policy.max_length) for ids in raw], dtype=torch.long),
        labels=torch.tensor(list(labels), dtype=torch.long) if labels is not None else None,
        truncated=sum(len(ids) > policy.max_length for ids in raw),
    )


@dataclass
class Batch:
    inputs: Tensor
    """(B, T) token ids, or (B, T, C) hidden states entering block `start`."""
    lengths: Tensor
    """(B,) real tokens per row."""
    labels: Tensor | None
    """(B,) class ids."""

    def __len__(self) -> int:
        return self.lengths.shape[0]


class TokenSource:
    """Batches of token ids, padded to the batch's longest sequence."""

    start = 0

    def __init__(self, encoded: Encoded, device: torch.device) -> None:
        self.encoded = encoded
        self.device = device

    def __len__(self) -> int:
        return len(self.encoded)

    def batch(self, idx: Tensor) -> Batch:
        seqs = [self.encoded.ids[i] for i in idx.tolist()]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), PAD_TOKEN_ID, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        labels = (
            self.encoded.labels[idx].to(self.device) if self.encoded.labels is not None else None
        )
        return Batch(ids.to(self.device), self.encoded.lengths[idx].to(self.device), labels)


class PrefixSource:
    """Cached hidden states entering block `start`, stored packed: (sum of lengths, C)."""

    def __init__(self, states: Tensor, seq_lens: Tensor, encoded: Encoded, start: int) -> None:
        self.states = states
        self.seq_lens = seq_lens
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), seq_lens.cumsum(0)])
        self.encoded = encoded
        self.start = start

    def __len__(self) -> int:
        return len(self.encoded)

    def batch(self, idx: Tensor) -> Batch:
        lens = self.seq_lens[idx]
        width = int(lens.max())
        # Positions past a row's own sequence are zeros: with pad-to-batch they stand for
        # padding, which the model cannot see (see prefix_is_cacheable).
        out = self.states.new_zeros(len(idx), width, self.states.shape[1])  # (B, T, C)
        for row, (i, n) in enumerate(zip(idx.tolist(), lens.tolist(), strict=True)):
            out[row, :n] = self.states[self.offsets[i] : self.offsets[i] + n]
        labels = (
            self.encoded.labels[idx].to(out.device) if self.encoded.labels is not None else None
        )
        return Batch(out, self.encoded.lengths[idx].to(out.device), labels)


def prefix_is_cacheable(pool: str, fixed_length: bool, drop_rate: float) -> bool:
    """Whether per-text prefix states reproduce the uncached forward exactly.

    Needs deterministic frozen blocks (no dropout), and per-text states that do not depend on
    which texts share a batch: true with a fixed pad length, or with right padding that the
    pooled position never sees (every pool but `last`, which reads the batch's padding).
    """
    if drop_rate > 0:
        return False
    return fixed_length or pool != "last"


def prefix_cache_bytes(encoded: Sequence[Encoded], emb_dim: int, bytes_per_value: int = 4) -> int:
    return sum(sum(len(s) for s in e.ids) for e in encoded) * emb_dim * bytes_per_value


@contextmanager
def low_precision_linears(
    modules: Sequence[nn.Module], dtype: torch.dtype, frozen_only: bool = True
) -> Iterator[None]:
    """Temporarily hold the Linear weights of `modules` in `dtype` (e.g. bf16).

    Under autocast a fp32 weight is cast to bf16 on every call; for a pass over many batches
    casting once gives the same numbers without re-reading and re-writing every weight per
    batch (measured: 1,494 SMS through GPT-2 small in batches of 8 took 15.0 s with per-call
    casts, 10.4 s cast once). LayerNorms keep fp32, as autocast computes them in fp32 anyway.
    `frozen_only` leaves parameters that require grad alone (their gradients must stay fp32);
    inference passes with no backward may cast everything. Not thread-safe: callers that may
    run concurrently must serialize the passes that use it.
    """
    saved: list[tuple[Tensor, Tensor]] = []
    try:
        for module in modules:
            for layer in module.modules():
                if type(layer) is nn.Linear:
                    for p in (layer.weight, layer.bias):
                        if (
                            p is not None
                            and not (frozen_only and p.requires_grad)
                            and p.dtype != dtype
                        ):
                            saved.append((p, p.data))
                            p.data = p.data.to(dtype)
        yield
    finally:
        for p, data in saved:
            p.data = data


@torch.no_grad()
def build_prefix_source(
    model,
    source: TokenSource,
    end: int,
    dtype: torch.dtype = torch.float32,
    tokens_per_batch: int = TOKENS_PER_BATCH,
) -> PrefixSource:
    """Run embeddings + blocks [0, end) once per text, in length-sorted batches.

    `dtype` is the matmul precision (bf16 runs under autocast, as the uncached path does).
    no_grad rather than inference_mode: the states later feed layers that save their inputs
    for backward, which inference tensors cannot be.
    """
    from gptclassify.runtime import autocast, release_free_memory

    was_training = model.training
    model.eval()
    enc = source.encoded
    seq_lens = torch.tensor([len(s) for s in enc.ids], dtype=torch.long)
    states = torch.empty(
        int(seq_lens.sum()), model.gpt.config.emb_dim, dtype=torch.float32, device=source.device
    )
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), seq_lens.cumsum(0)])
    cast = (
        low_precision_linears(model.gpt.h[:end], dtype) if dtype != torch.float32 else nullcontext()
    )
    try:
        with cast, autocast(source.device, dtype):
            for idx in token_budget_batches(seq_lens, tokens_per_batch):
                batch = source.batch(idx)
                h = model.prefix(batch.inputs, batch.lengths, end)  # (B, T, C)
                for row, i in enumerate(idx.tolist()):
                    n = int(seq_lens[i])
                    states[offsets[i] : offsets[i] + n] = h[row, :n].float()
                del h
                release_free_memory()
    finally:
        model.train(was_training)
    return PrefixSource(states, seq_lens, enc, end)


def shuffled_batches(
    n: int,
    batch_size: int,
    shuffle: bool,
    drop_last: bool,
    generator: torch.Generator | None = None,
) -> list[Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    batches = list(order.split(batch_size))
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def token_budget_batches(
    lengths: Tensor, max_tokens: int, max_batch: int | None = None
) -> list[Tensor]:
    """Length-sorted batches of at most `max_tokens` padded tokens: little padding, big matmuls.

    The order inside the data is lost; callers index results back by the returned indices.
    """
    order = torch.argsort(lengths, descending=True, stable=True)
    batches: list[Tensor] = []
    current: list[int] = []
    width = 0
    for i in order.tolist():
        n = int(lengths[i])
        new_width = max(width, n)
        if current and (
            new_width * (len(current) + 1) > max_tokens or (max_batch and len(current) >= max_batch)
        ):
            batches.append(torch.tensor(current, dtype=torch.long))
            current, new_width = [], n
        current.append(i)
        width = new_width
    if current:
        batches.append(torch.tensor(current, dtype=torch.long))
    return batches
