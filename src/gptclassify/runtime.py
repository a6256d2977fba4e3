"""Device, precision, seeding and threads: decided here, once, and passed down."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import random
import resource
import sys
from collections.abc import Iterator
from functools import cache
from typing import Literal

import torch

from gptclassify.errors import GPTClassifyError

Precision = Literal["auto", "fp32", "bf16"]


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else must be available."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise GPTClassifyError(
            f"--device: unknown device {device!r} (auto, cpu, cuda, cuda:N, mps)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GPTClassifyError("--device cuda: no CUDA GPU is available to this PyTorch build")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise GPTClassifyError("--device mps: Apple MPS is not available")
    return dev


@cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (Intel AMX or AVX512-BF16)."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    """The compute dtype for matmuls: bf16 only where the hardware runs it fast."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise GPTClassifyError(f"--precision: {precision!r} is not one of auto, fp32, bf16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Mixed precision for matmuls when dtype is bf16; a no-op for fp32.

    Master weights stay fp32 (the optimizer updates fp32 copies); autocast keeps LayerNorm,
    softmax and the loss in fp32.
    """
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


@cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library is not glibc (macOS, musl, Windows)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc only; a no-op elsewhere).

    Activations of varying sizes make glibc's heap fragment and resident memory creep up
    during long no-grad passes; trimming after each batch lowers the peak at no measurable
    cost in time (figures: benchmarks/RESULTS.md, "Figures that left the docstrings").
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, torch (all devices) and return a CPU generator for data order."""
    random.seed(seed)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: the CUDA allocator's peak on a GPU, else peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def total_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
