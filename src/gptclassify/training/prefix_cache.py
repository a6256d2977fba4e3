"""The frozen-prefix cache: run the frozen blocks once per text, train on what comes out.

When the blocks before the first trainable one are frozen and deterministic (no dropout),
running the model from their output for a text gives the same result as running it from
the tokens: every epoch and evaluation then costs only the trainable suffix. `PrefixSource`
has the interface of `data.batches.TokenSource`; its batches call `FromBlock(model, start)`.
The cache is rebuilt, never stored: it is a function of the texts and the frozen weights.

Within one process, `shared_prefix_cache()` lets runs reuse each other's caches (the trials of
a search share frozen blocks and data): a cache is looked up by the token ids it was built
from, the frozen blocks' number, the precision and device, and a fingerprint of the frozen
weights themselves, so a reused cache is always the one this run would have built.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gptclassify.classifier import GPTClassifier
from gptclassify.data.batches import TOKENS_PER_BATCH, Batch, TokenSource, token_budget_batches
from gptclassify.data.encode import Encoded
from gptclassify.fastpath import fast_view
from gptclassify.runtime import autocast, release_free_memory
from gptclassify.training.distributed import Dist


class PrefixSource:
    """Cached hidden states entering block `start`, stored packed: (sum of lengths, C)."""

    def __init__(self, states: Tensor, seq_lens: Tensor, tokens: TokenSource, start: int) -> None:
        self.states = states
        self.seq_lens = seq_lens
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), seq_lens.cumsum(0)])
        self.encoded = tokens.encoded
        self.lengths = tokens.lengths
        self.labels = tokens.labels
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
        lengths = self.lengths[idx].to(out.device)
        labels = self.labels[idx].to(out.device) if self.labels is not None else None
        return Batch((out, lengths), lengths, labels)


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


@dataclass
class PrefixMemo:
    """Caches kept between runs of one process, newest last, and what reusing them saved."""

    capacity: int = 4
    """Caches kept at most (each holds a hidden state per token of its split); 0 keeps
    none and only counts the builds."""
    entries: OrderedDict[str, tuple[PrefixSource, float]] = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0
    saved_s: float = 0.0
    """Build time of the caches that were reused instead of built again."""
    built_s: float = 0.0
    lookup_s: float = 0.0
    """Time spent computing lookup keys (hashing token ids and frozen weights)."""


_memo: PrefixMemo | None = None


@contextmanager
def shared_prefix_cache(capacity: int = 4) -> Iterator[PrefixMemo]:
    """Runs started inside reuse the frozen-prefix caches of earlier runs (same process)."""
    global _memo
    previous, _memo = _memo, PrefixMemo(capacity)
    try:
        yield _memo
    finally:
        _memo = previous


def _memo_key(model: GPTClassifier, source: TokenSource, end: int, dtype: torch.dtype) -> str:
    """Everything a cache depends on: token ids, frozen weights, model shape and attention
    mask, blocks, precision, device."""
    digest = hashlib.sha256(
        f"{end}|{dtype}|{source.device}|{model.causal}|{model.gpt.config!r}|".encode()
    )
    digest.update(_weights_key(model, end).encode())
    ids = source.encoded.ids
    digest.update(np.asarray([len(t) for t in ids], dtype=np.int64).tobytes())
    digest.update(np.fromiter((i for t in ids for i in t), dtype=np.int64).tobytes())
    return digest.hexdigest()


_weight_keys: weakref.WeakKeyDictionary[GPTClassifier, tuple[Any, str]] = (
    weakref.WeakKeyDictionary()
)


def _weights_key(model: GPTClassifier, end: int) -> str:
    """A fingerprint of the embeddings and blocks [0, end), computed once per model while
    those tensors are unchanged (their version counters count in-place changes)."""
    frozen = [("wte", model.gpt.wte.weight), ("wpe", model.gpt.wpe.weight)]
    frozen += [(f"h.{i}.{n}", p) for i in range(end) for n, p in model.gpt.h[i].named_parameters()]
    identity = (end, tuple((p.data_ptr(), p._version) for _, p in frozen))
    known = _weight_keys.get(model)
    if known is not None and known[0] == identity:
        return known[1]
    key = "|".join(f"{name}:{tuple(p.shape)}:{_weights_sum(p)}" for name, p in frozen)
    _weight_keys[model] = (identity, key)
    return key


@torch.no_grad()
def _weights_sum(p: Tensor, chunk: int = 1 << 20) -> str:
    """Plain and position-weighted float64 sums of a tensor: hashing every byte would cost
    about as much as a small cache, and these tell apart any two weights that differ in
    practice (a changed value moves both sums)."""
    flat = p.detach().flatten()
    plain = weighted = 0.0
    for i in range(0, flat.numel(), chunk):
        part = flat[i : i + chunk].double()
        ramp = torch.arange(i + 1, i + 1 + part.numel(), dtype=torch.float64, device=part.device)
        plain += float(part.sum())
        weighted += float((part * ramp).sum())
    return f"{plain!r}:{weighted!r}"


def build_prefix_source(
    model: GPTClassifier,
    source: TokenSource,
    end: int,
    dtype: torch.dtype = torch.float32,
    tokens_per_batch: int = TOKENS_PER_BATCH,
    dist: Dist | None = None,
) -> PrefixSource:
    """`compute_prefix_source`, or the same cache from an earlier run of this process when
    `shared_prefix_cache()` is on (one process only)."""
    memo = _memo
    if memo is None or (dist is not None and dist.active):
        return compute_prefix_source(model, source, end, dtype, tokens_per_batch, dist)
    t_key = time.perf_counter()
    key = _memo_key(model, source, end, dtype) if memo.capacity else None  # 0: count only
    memo.lookup_s += time.perf_counter() - t_key
    if key is not None and key in memo.entries:
        cached, cost = memo.entries[key]
        memo.entries.move_to_end(key)
        memo.hits += 1
        memo.saved_s += cost
        # The states are shared read-only; labels and lengths are this run's own.
        return PrefixSource(cached.states, cached.seq_lens, source, end)
    t0 = time.perf_counter()
    built = compute_prefix_source(model, source, end, dtype, tokens_per_batch, dist)
    cost = time.perf_counter() - t0
    memo.misses += 1
    memo.built_s += cost
    if key is not None:
        memo.entries[key] = (built, cost)
        while len(memo.entries) > memo.capacity:
            memo.entries.popitem(last=False)
    return built


@torch.no_grad()
def compute_prefix_source(
    model: GPTClassifier,
    source: TokenSource,
    end: int,
    dtype: torch.dtype = torch.float32,
    tokens_per_batch: int = TOKENS_PER_BATCH,
    dist: Dist | None = None,
) -> PrefixSource:
    """Run embeddings + blocks [0, end) once per text, in length-sorted batches.

    Under torchrun (`dist`) each rank computes its share of the texts and a sum over ranks
    (each row written by one rank, so exact) gives every rank the whole cache.

    `dtype` is the matmul precision: bf16 runs under autocast with the frozen blocks' weights
    cast once (fastpath.fast_view), the same numbers as the uncached path. no_grad rather
    than inference_mode: the states later feed layers that save their inputs for backward,
    which inference tensors cannot be.
    """
    was_training = model.training
    view = fast_view(model, dtype, blocks=range(end))
    view.eval()
    enc = source.encoded
    seq_lens = torch.tensor([len(s) for s in enc.ids], dtype=torch.long)
    states = torch.empty(
        int(seq_lens.sum()), model.gpt.config.emb_dim, dtype=torch.float32, device=source.device
    )
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), seq_lens.cumsum(0)])
    dist = dist or Dist.single()
    mine = dist.rows(len(seq_lens))
    if dist.active:
        states.zero_()  # rows of other ranks stay 0 until the sum
    try:
        with autocast(source.device, dtype):
            for part in token_budget_batches(seq_lens[mine], tokens_per_batch):
                idx = mine[part]
                batch = source.batch(idx)
                h = view.prefix(batch.args[0], batch.lengths, end)  # (B, T, C)
                for row, i in enumerate(idx.tolist()):
                    n = int(seq_lens[i])
                    states[offsets[i] : offsets[i] + n] = h[row, :n].float()
                del h
                release_free_memory()
    finally:
        model.train(was_training)
    dist.sum(states)
    return PrefixSource(states, seq_lens, source, end)
