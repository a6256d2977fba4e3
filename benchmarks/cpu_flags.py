"""What this CPU is and which matrix instructions it has, from its flags (no torch): the CPU
line of a benchmark's header, so a figure says what it was measured on.

The precision `auto` picks is decided elsewhere (gptclassify.runtime.cpu_has_fast_bf16 asks
oneDNN); these flags explain the figures:

- Intel AMX (`amx_bf16`, `amx_int8`: Sapphire Rapids and later): bf16 and int8 tile matmuls.
- AVX512-BF16 (`avx512_bf16`, e.g. AMD EPYC Zen 4 and later): bf16 dot products on vector units.
- VNNI (`avx512_vnni`, `avx_vnni`): int8 dot products on vector units.

The flags come from /proc/cpuinfo (Linux). Elsewhere they are unknown (an empty set).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
SHOWN_FLAGS = ("avx2", "avx512f", *BF16_FLAGS, *INT8_FLAGS, "amx_tile")
"""The flags a benchmark header prints: those the choice of precision depends on."""


@dataclass(frozen=True)
class CpuInfo:
    name: str
    flags: frozenset[str]

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def fast_bf16(self) -> bool:
        """Native bf16 matmul instructions (AMX or AVX512-BF16)."""
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def fast_int8(self) -> bool:
        """Native int8 dot-product instructions (AMX-INT8 or VNNI)."""
        return any(f in self.flags for f in INT8_FLAGS)

    def summary(self) -> str:
        """'<name>; flags: avx2 avx512f ...' with the flags that matter here."""
        shown = [f for f in SHOWN_FLAGS if f in self.flags]
        return f"{self.name}; flags: {' '.join(shown) if shown else 'unknown'}"


@cache
def cpu_info() -> CpuInfo:
    """This machine's CPU (cached)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    return parse_cpuinfo(text, default_name=platform.processor() or platform.machine())


def parse_cpuinfo(text: str, default_name: str = "unknown CPU") -> CpuInfo:
    """The first processor's name and flags from /proc/cpuinfo's text (x86 `model name` and
    `flags`; ARM `Features`)."""
    name, flags = None, None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name is None:
            name = value.strip()
        elif key in ("flags", "Features") and flags is None:
            flags = frozenset(value.split())
    return CpuInfo(name or default_name, flags or frozenset())
