"""The frozen-prefix cache: run the frozen blocks once per text, train on what comes out.

When the blocks before the first trainable one are frozen and deterministic (no dropout),
running the model from their output for a text gives the same result as running it from
the tokens: every epoch and evaluation then costs only the trainable suffix. `PrefixSource`
has the interface of `data.batches.TokenSource`; its batches call `FromBlock(model, start)`.
The cache is rebuilt, never stored: it is a function of the texts and the frozen weights.

Where it lives (`plan_prefix_cache`): in memory up to --cache-gb; beyond that in a
memory-mapped file (`DiskStates`, the same float32 values, so training is bit for bit the
same) up to --cache-disk-gb and the disk's free space; only beyond both does the run go
without it. The file is scratch: removed when the run ends, never part of a run folder.
Within one process, runs given one `PrefixMemo` (`train(..., prefix_memo=memo)`) reuse each
other's caches (the trials of a search share frozen blocks and data): a cache is looked up by the token ids it was built
from, the frozen blocks' number, the precision and device, and a fingerprint of the frozen
weights themselves, so a reused cache is always the one this run would have built.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import shutil
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from gptclassify import progress, torch_private
from gptclassify.classifier import GPTClassifier
from gptclassify.data.batches import TOKENS_PER_BATCH, Batch, TokenSource, token_budget_batches
from gptclassify.data.encode import Encoded
from gptclassify.errors import GPTClassifyError
from gptclassify.fastpath import fast_view
from gptclassify.runtime import autocast, release_free_memory
from gptclassify.training.distributed import Dist

CACHE_DTYPE = torch.float32
"""The cache's values, in memory and on disk alike: the frozen blocks' output in fp32 (under
bf16 autocast too), exactly what the uncached path hands the first trainable block."""

DISK_HEADROOM = 1_000_000_000
"""Bytes of free disk a memory-mapped cache leaves to everything else (logs, checkpoints)."""

RELEASE_EVERY = 64 * 2**20
"""Bytes read or written through the mapping between two releases of its pages: the kernel
keeps the file in its page cache, but pages still mapped count as this process's memory
(peak RSS would otherwise grow to the whole file)."""


@dataclass(frozen=True)
class CachePlan:
    """Where the frozen-prefix cache lives for one run."""

    where: Literal["memory", "disk", "off"]
    nbytes: int
    """Size of the whole cache (every split), in bytes."""
    folder: Path | None = None
    """The folder of the memory-mapped files (where == "disk")."""
    reason: str = ""
    """Why not in memory (disk) or not at all (off), for the log."""


def plan_prefix_cache(nbytes: int, memory_gb: float, disk_gb: float, folder: Path) -> CachePlan:
    """Memory when `nbytes` fits `memory_gb`; else a memory-mapped file in `folder` when it fits
    `disk_gb` and the free space there (less DISK_HEADROOM); else no cache."""
    if nbytes <= memory_gb * 1e9:
        return CachePlan("memory", nbytes)
    over = f"{nbytes / 1e9:.2f} GB > --cache-gb {memory_gb:g}"
    free = _free_bytes(folder)
    if nbytes > disk_gb * 1e9:
        return CachePlan("off", nbytes, reason=f"{over} and > --cache-disk-gb {disk_gb:g}")
    if nbytes > free - DISK_HEADROOM:
        return CachePlan(
            "off",
            nbytes,
            reason=f"{over}, and {folder} has {free / 1e9:.2f} GB free (a file needs "
            f"{(nbytes + DISK_HEADROOM) / 1e9:.2f} GB with 1 GB to spare)",
        )
    return CachePlan("disk", nbytes, folder, reason=over)


def _free_bytes(folder: Path) -> int:
    """Free space on the file system that holds (or will hold) `folder`."""
    probe = folder.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


class DiskStates:
    """A (rows, cols) float32 tensor whose storage is a memory-mapped file at `path`.

    The file's space is reserved up front (posix_fallocate) so that a full disk is one clear
    error here, not a SIGBUS in the middle of an epoch. `close` removes the file.
    """

    def __init__(self, path: Path, rows: int, cols: int) -> None:
        self.path = path
        self.nbytes = rows * cols * CACHE_DTYPE.itemsize
        self._since_release = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, self.nbytes)
            else:  # macOS: a sparse file, as large
                os.ftruncate(fd, self.nbytes)
            self.map = mmap.mmap(fd, self.nbytes)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise GPTClassifyError(
                f"{path}: cannot reserve {self.nbytes / 1e9:.2f} GB for the frozen-prefix cache "
                f"({exc.strerror or exc}); use --prefix-cache-dir on a larger disk, or --cache off"
            ) from None
        os.close(fd)  # the mapping keeps the file open
        # Zeros until written (a fresh file reads as zeros): rows of other ranks stay 0 until
        # the sum over ranks, as in memory.
        self.tensor = torch.frombuffer(self.map, dtype=CACHE_DTYPE).view(rows, cols)

    def touched(self, nbytes: int) -> None:
        """Count bytes read or written through the mapping; release its pages now and then."""
        self._since_release += nbytes
        if self._since_release >= RELEASE_EVERY:
            self.release()

    def release(self) -> None:
        """Unmap the resident pages (the data stays in the file and the page cache: for a
        shared file mapping MADV_DONTNEED drops the process's references, not the data)."""
        self._since_release = 0
        if hasattr(self.map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self.map.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Remove the file. (The mapping goes with the last tensor that views it.)"""
        del self.tensor
        try:
            self.map.close()
        except BufferError:
            pass  # a view is still alive somewhere: unmapped when it is collected
        self.path.unlink(missing_ok=True)


class PrefixSource:
    """Cached hidden states entering block `start`, stored packed: (sum of lengths, C), in
    memory on the training device or in a memory-mapped file (`disk`)."""

    def __init__(
        self,
        states: Tensor,
        seq_lens: Tensor,
        tokens: TokenSource,
        start: int,
        disk: DiskStates | None = None,
    ) -> None:
        self.states = states
        self.disk = disk
        self.device = tokens.device
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
        if self.disk is not None:
            self.disk.touched(int(lens.sum()) * self.states.shape[1] * self.states.element_size())
            out = out.to(self.device)
        lengths = self.lengths[idx].to(out.device)
        labels = self.labels[idx].to(out.device) if self.labels is not None else None
        return Batch((out, lengths), lengths, labels)

    def close(self) -> None:
        """Remove a disk-backed cache's file (nothing to do for one in memory)."""
        if self.disk is not None:
            del self.states
            self.disk.close()
            self.disk = None


def prefix_is_cacheable(pool: str, fixed_length: bool, drop_rate: float) -> bool:
    """Whether per-text prefix states reproduce the uncached forward exactly.

    Needs deterministic frozen blocks (no dropout), and per-text states that do not depend on
    which texts share a batch: true with a fixed pad length, or with right padding that the
    pooled position never sees (every pool but `last`, which reads the batch's padding).
    """
    if drop_rate > 0:
        return False
    return fixed_length or pool != "last"


def prefix_cache_bytes(encoded: Sequence[Encoded], emb_dim: int) -> int:
    return sum(sum(len(s) for s in e.ids) for e in encoded) * emb_dim * CACHE_DTYPE.itemsize


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
    frozen = [("wte", model.gpt.wte.weight)]
    if model.gpt.wpe is not None:  # rotary families have no position embeddings
        frozen.append(("wpe", model.gpt.wpe.weight))
    frozen += [(f"h.{i}.{n}", p) for i in range(end) for n, p in model.gpt.h[i].named_parameters()]
    identity = (end, tuple((p.data_ptr(), torch_private.version(p)) for _, p in frozen))
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
    disk_path: Path | None = None,
    memo: PrefixMemo | None = None,
) -> PrefixSource:
    """`compute_prefix_source`, or the same cache from an earlier run of this process when
    `memo` is given (one process only; caches in memory only: a file-backed cache is removed
    when its run ends)."""
    if memo is None or (dist is not None and dist.active) or disk_path is not None:
        return compute_prefix_source(
            model, source, end, dtype, tokens_per_batch, dist, disk_path=disk_path
        )
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
    disk_path: Path | None = None,
) -> PrefixSource:
    """Run embeddings + blocks [0, end) once per text, in length-sorted batches.

    disk_path: keep the states in a memory-mapped file there (`DiskStates`) instead of in
    the device's memory; the values are the same.

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
    rows, width = int(seq_lens.sum()), model.gpt.config.emb_dim
    disk = DiskStates(disk_path, rows, width) if disk_path is not None else None
    if disk is not None:
        states = disk.tensor
    else:
        states = torch.empty(rows, width, dtype=CACHE_DTYPE, device=source.device)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), seq_lens.cumsum(0)])
    dist = dist or Dist.single()
    mine = dist.rows(len(seq_lens))
    if dist.active and disk is None:
        states.zero_()  # rows of other ranks stay 0 until the sum
    # One bar for the whole pass (every rank's share), shown by rank 0, in tokens: the
    # batches run the longest texts first, so a count of texts starts with an ETA many
    # times too long.
    bar = progress.make(
        f"frozen-prefix pass (blocks 0-{end - 1})",
        total=int(seq_lens.sum()),
        unit="token",
        enabled=None if dist.is_main else False,
    )
    try:
        with autocast(source.device, dtype):
            for part in token_budget_batches(seq_lens[mine], tokens_per_batch):
                idx = mine[part]
                batch = source.batch(idx)
                h = view.prefix(batch.args[0], batch.lengths, end)  # (B, T, C)
                for row, i in enumerate(idx.tolist()):
                    n = int(seq_lens[i])
                    states[offsets[i] : offsets[i] + n] = h[row, :n].to(CACHE_DTYPE)
                if disk is not None:
                    disk.touched(int(seq_lens[idx].sum()) * width * CACHE_DTYPE.itemsize)
                del h
                release_free_memory()
                bar.update(int(seq_lens[idx].sum()) * dist.world_size)  # ranks move alike
        if disk is None:
            dist.sum(states)
        elif dist.active:
            # In pieces: a collective on the whole file would hold it (and a device copy of
            # it, under NCCL) in memory at once.
            for piece in states.split(max(RELEASE_EVERY // (width * CACHE_DTYPE.itemsize), 1)):
                dist.sum(piece)
                disk.touched(piece.numel() * CACHE_DTYPE.itemsize)
        if disk is not None:
            disk.release()
    except BaseException:
        if disk is not None:
            del states
            disk.close()
        raise
    finally:
        bar.close()
        model.train(was_training)
    return PrefixSource(states, seq_lens, source, end, disk)
