"""Device, precision, seeding and threads: decided here, once, and passed down."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import math
import os
import platform
import random
import resource
import sys
import time
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Literal

import torch

from gptclassify import packaged, torch_private
from gptclassify.errors import GPTClassifyError, option

Precision = Literal["auto", "fp32", "bf16"]


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu; anything else must be available. On the CPU,
    PyTorch's threads are capped at what the process may really use (`cap_threads`)."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        cap_threads()
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise GPTClassifyError(
            f"{option('device')}: unknown device {device!r} (auto, cpu, cuda, cuda:N, mps)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GPTClassifyError(
            f"{option('device', 'cuda')}: no CUDA GPU is available to this PyTorch build"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise GPTClassifyError(f"{option('device', 'mps')}: Apple MPS is not available")
    if dev.type == "cpu":
        cap_threads()
    return dev


@cache
def cap_threads() -> int:
    """Lower PyTorch's intra-op threads to `usable_cpus()` where its default is higher (it
    counts the cores it may run on, not a cgroup's CPU quota); once per process, and never
    where OMP_NUM_THREADS says how many. Returns the threads passes run with."""
    if not os.environ.get("OMP_NUM_THREADS"):
        usable = usable_cpus()
        if torch.get_num_threads() > usable:
            torch.set_num_threads(usable)
    return torch.get_num_threads()


BF16_MIN_SPEEDUP = 1.2
"""`--precision auto` takes bf16 on a CPU only where a bf16 matmul runs at least this much
faster than the fp32 one (measured: `bf16_speedup`). On the project's AMD EPYC (Zen 3, AVX2,
no native bf16) bf16 ran 1.3-3.8x *slower* (benchmarks/RESULTS.md, issue 35)."""


@cache
def cpu_has_fast_bf16() -> bool:
    """True when bf16 matmuls measurably pay on this CPU: oneDNN has bf16 kernels here, and
    either the CPU has Intel AMX (bf16 tiles: 2-4x fp32 on the AMX Xeon, RESULTS.md) or a
    micro-benchmark (`bf16_speedup`, cached per CPU and PyTorch version) finds bf16 at least
    BF16_MIN_SPEEDUP faster. AVX512-BF16 without AMX, or oneDNN's bf16 emulation on plain
    AVX-512, is decided by that measurement rather than by the flag."""
    if not _onednn_bf16():
        return False
    if _cpu_has_amx():
        return True
    return cached_bf16_speedup() >= BF16_MIN_SPEEDUP


def _onednn_bf16() -> bool:
    return torch_private.onednn_bf16()


def _cpu_has_amx() -> bool:
    """Whether oneDNN may use AMX tiles here: the CPU has them and oneDNN's ISA cap
    (ONEDNN_MAX_CPU_ISA, or the older DNNL_MAX_CPU_ISA, e.g. AVX512_CORE_BF16 to run an AMX
    Xeon as an AVX-512 CPU) does not forbid them. Under such a cap the measurement decides."""
    if not _isa_cap_allows_amx(os.environ):
        return False
    amx = torch_private.cpu_has_amx()
    return "amx_bf16" in _cpu_flags() if amx is None else amx


def _isa_cap(environ: Mapping[str, str] = os.environ) -> str:
    """oneDNN's ISA cap from the environment ("" where none is set)."""
    return (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "").upper()


def _isa_cap_allows_amx(environ: Mapping[str, str]) -> bool:
    cap = _isa_cap(environ)
    return cap in ("", "ALL", "DEFAULT") or "AMX" in cap


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_speedup(rows: int = 128, repeats: int = 3) -> float:
    """fp32 time / bf16 time of one SmolLM2-shaped linear layer (576 -> 1536) over `rows`
    rows, best of `repeats` each, interleaved so that other load hits both alike. Above 1:
    bf16 is faster. Tens of milliseconds on an idle 2-core CPU."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1536, 576, generator=gen)
    x = torch.randn(rows, 576, generator=gen)
    wb, xb = w.bfloat16(), x.bfloat16()
    best = {torch.float32: math.inf, torch.bfloat16: math.inf}
    with torch.inference_mode():
        for i in range(repeats + 1):
            for dtype, (a, b) in ((torch.float32, (x, w)), (torch.bfloat16, (xb, wb))):
                start = time.perf_counter()
                torch.nn.functional.linear(a, b)
                if i:  # the first round builds the kernels
                    best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


def cached_bf16_speedup(cache_dir: Path | None = None) -> float:
    """`bf16_speedup`, measured once per CPU model, flags and PyTorch version and kept in
    the package's cache (~/.cache/gptclassify/cpu-bf16.json, or $GPTCLASSIFY_CACHE), so that every run on a machine
    makes the same choice even when a busy moment would tip one measurement. oneDNN's ISA
    cap is part of the key: a capped process measures other kernels."""
    key = hashlib.sha256(
        f"{platform.processor()}|{_cpu_model()}|{sorted(_cpu_flags())}|{torch.__version__}"
        f"|{_isa_cap()}".encode()
    ).hexdigest()[:16]
    path = (cache_dir or packaged.cache_dir()) / "cpu-bf16.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(known, dict) and isinstance(known.get(key), float):
            return known[key]
    except (OSError, ValueError):
        known = {}
    speedup = bf16_speedup()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**known, key: speedup}), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a read-only home: measured again next time
    return speedup


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype:
    """The compute dtype for matmuls: bf16 only where the hardware runs it fast."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision != "auto":
        raise GPTClassifyError(
            f"{option('precision')}: {precision!r} is not one of auto, fp32, bf16"
        )
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    return torch.float32


def usable_cpus() -> int:
    """How many CPUs this process can really keep busy: the CPUs it may run on (its affinity
    mask: taskset, cpuset, a container's --cpuset-cpus), capped by its cgroup's CPU quota
    (a container's --cpus, a CI runner's or a Kubernetes pod's limit), rounded down, at least
    1. `os.cpu_count()` (and PyTorch's default thread count) see the host's cores instead:
    under a 2-CPU quota on a 64-core host that is 64 threads taking turns on 2 CPUs' time."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def cgroup_cpu_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")
) -> float | None:
    """The CPU time this process's cgroup may use, in CPUs (quota / period); None where there
    is no limit or the system does not say. cgroup v2: `cpu.max` ("200000 100000"; "max
    100000" is no limit); v1: `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: no limit). The
    process's own group and every parent up to the root count: the smallest limit holds."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, group = parts
        rel = Path(group.lstrip("/"))
        if controllers == "":  # v2: the unified hierarchy (alone, or beside v1 under unified/)
            bases = [root, root / "unified"]
        elif "cpu" in controllers.split(","):
            bases = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
        else:
            continue
        for base in bases:
            for directory in [base / rel, *(base / parent for parent in rel.parents)]:
                limit = _cgroup_limit_in(directory)
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _cgroup_limit_in(directory: Path) -> float | None:
    try:
        quota, period = (directory / "cpu.max").read_text(encoding="ascii").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((directory / "cpu.cfs_quota_us").read_text(encoding="ascii"))
        period_us = int((directory / "cpu.cfs_period_us").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


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
    """Peak memory of this process so far: the CUDA allocator's peak on a GPU, else peak RSS.

    On Linux the peak is /proc/self/status's VmHWM, this program's own: getrusage's ru_maxrss
    keeps the peak of what ran before exec (a 5 GB parent that started this process through
    fork + exec shows here as 5 GB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB on Linux


def total_memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
