"""Batches for the model: which rows go together, and the tensors of one batch.

`TokenSource` turns rows of an `Encoded` split into right-padded token-id batches. The
frozen-prefix cache (training/prefix_cache.py) is another source with the same interface.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gptclassify.data.encode import Encoded

TOKENS_PER_BATCH = 4096
"""Padded tokens per batch for no-grad passes (prefix cache, full-split logits): large enough
for efficient matmuls, small enough to keep activation memory (and peak RSS) modest."""


@dataclass
class Batch:
    args: tuple[Tensor, Tensor]
    """What the model is called with: (input_ids (B, T), attention_mask (B, T)) for token
    batches, (hidden states (B, T, C), lengths (B,)) for cached-prefix batches."""
    lengths: Tensor
    """(B,) real tokens per row."""
    labels: Tensor | None
    """(B,) class ids."""

    def __len__(self) -> int:
        return self.lengths.shape[0]


def attention_mask(lengths: Tensor, width: int) -> Tensor:
    """(B, width) 1 for the first `lengths` positions of each row, 0 after (right padding)."""
    return (torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]).long()


class TokenSource:
    """Batches of token ids, padded to the batch's longest sequence."""

    start = 0
    """The block the model starts from (token batches start at the embedding)."""

    def __init__(self, encoded: Encoded, device: torch.device) -> None:
        self.encoded = encoded
        self.device = device
        self.lengths = torch.from_numpy(encoded.lengths)
        """(N,) real tokens per text."""
        self.labels = torch.from_numpy(encoded.labels) if encoded.labels is not None else None
        """(N,) class ids, or None."""

    def __len__(self) -> int:
        return len(self.encoded)

    def batch(self, idx: Tensor) -> Batch:
        seqs = [self.encoded.ids[i] for i in idx.tolist()]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.encoded.pad_id, dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        lengths = self.lengths[idx]
        # The mask covers the real tokens; a fixed pad length's padding ids are padding too.
        mask = attention_mask(lengths, width)
        labels = self.labels[idx] if self.labels is not None else None
        return Batch(
            (self._to_device(ids), self._to_device(mask)),
            self._to_device(lengths),
            self._to_device(labels) if labels is not None else None,
        )

    def _to_device(self, tensor: Tensor) -> Tensor:
        if self.device.type == "cuda":
            # Page-locked host memory lets the copy run asynchronously with the GPU's work.
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)


GROUP_BATCHES = 16
"""Length-grouped shuffling (`shuffled_batches(lengths=...)`) sorts runs of this many batches."""


def shuffled_batches(
    n: int,
    batch_size: int,
    shuffle: bool,
    drop_last: bool,
    generator: torch.Generator | None = None,
    lengths: Tensor | None = None,
) -> list[Tensor]:
    """Batches of row indices, in a random order when `shuffle`.

    `lengths` (N,): group by length, as transformers' `group_by_length` does. The shuffled
    order is cut into runs of GROUP_BATCHES batches, each run is sorted by length and cut
    into batches, and the batches are shuffled: every batch is still a random draw of the
    data, but of texts of similar length, so a batch pads far less (the padded tokens of a
    training epoch fall 1.2-3.6x on the development corpus's long-tailed sets).
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if lengths is None:
        batches = list(order.split(batch_size))
    else:
        batches = []
        for run in order.split(batch_size * GROUP_BATCHES):
            by_length = torch.argsort(lengths[run], descending=True, stable=True)
            batches += list(run[by_length].split(batch_size))
    if drop_last and batches:
        short = [i for i, b in enumerate(batches) if len(b) < batch_size]  # at most one
        for i in reversed(short):
            batches.pop(i)
    if lengths is not None and shuffle and len(batches) > 1:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches


TRAIN_TOKENS_PER_PASS = 8192
"""Padded tokens one training forward/backward pass may hold: a training batch (an optimizer
step's texts) with more is run as several passes whose gradients add up to the same step
(`token_pieces`). Activations kept for the backward grow with the tokens of a pass, and
batches of 8 long posts through 4 trainable blocks took most of a 24 GB machine (RESULTS.md,
issue 32, round 4 session 5)."""


def token_pieces(idx: Tensor, lengths: Tensor, max_tokens: int, min_size: int = 1) -> list[Tensor]:
    """`idx` (one batch, in its order) cut into consecutive pieces of at most `max_tokens`
    padded tokens (size x longest text), each of at least `min_size` texts (a piece of one
    text may exceed the budget: a text is never cut). The batch itself when it fits."""
    if len(idx) == 0 or len(idx) * int(lengths[idx].max()) <= max_tokens:
        return [idx]
    pieces = _cut(idx.tolist(), lengths, max_tokens, min_size=min_size)
    if len(pieces) > 1 and len(pieces[-1]) < min_size:  # the tail joins the piece before it
        pieces[-2:] = [pieces[-2] + pieces[-1]]
    return [torch.tensor(p, dtype=torch.long) for p in pieces]


def _cut(
    order: list[int],
    lengths: Tensor,
    max_tokens: int,
    max_batch: int | None = None,
    min_size: int = 1,
) -> list[list[int]]:
    """`order` cut greedily into consecutive runs of at most `max_tokens` padded tokens
    (run size x its longest text) and `max_batch` texts; a run is cut only once it holds
    `min_size` texts."""
    runs: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        n = int(lengths[i])
        new_width = max(width, n)
        if len(current) >= min_size and (
            new_width * (len(current) + 1) > max_tokens or (max_batch and len(current) >= max_batch)
        ):
            runs.append(current)
            current, new_width = [], n
        current.append(i)
        width = new_width
    if current:
        runs.append(current)
    return runs


def token_budget_batches(
    lengths: Tensor, max_tokens: int, max_batch: int | None = None
) -> list[Tensor]:
    """Length-sorted batches of at most `max_tokens` padded tokens: little padding, big matmuls.

    The order inside the data is lost; callers index results back by the returned indices.
    """
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    return [
        torch.tensor(run, dtype=torch.long) for run in _cut(order, lengths, max_tokens, max_batch)
    ]
