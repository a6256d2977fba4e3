"""Every use of PyTorch's private API, in one place, each with a fallback.

PyTorch promises nothing about names that start with an underscore: any release may rename
or drop them. Everything the package reads from them goes through here, so a new PyTorch
that lacks one costs speed (or a cached result), never a crash or a wrong answer.

Checked on PyTorch 2.13.0 (CPU build; the version CI installs first): every name below
exists there except `torch._C._cpu._is_amx_tile_supported` (older releases; 2.13 has
`torch.cpu._is_amx_tile_supported`). The oneDNN operators (`torch.ops.mkldnn._linear_pointwise`,
`_reorder_linear_weight`) are the ones torch.compile's CPU freezing pass emits for linear
layers; `Tensor._version` is autograd's in-place counter.
"""

from __future__ import annotations

import itertools
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor

_ALWAYS_NEW = itertools.count()


@cache
def onednn_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (AVX-512 or AMX; not AVX2-only CPUs).
    Fallback: False (no bf16 kernels, so nothing fused or packed)."""
    try:
        return bool(torch.backends.mkldnn.is_available()) and bool(
            torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):
        return False


def cpu_has_amx() -> bool | None:
    """Whether the CPU has Intel AMX tiles; None when this PyTorch cannot tell (the caller
    falls back to /proc/cpuinfo's flags)."""
    for owner in (torch.cpu, getattr(torch._C, "_cpu", None)):
        try:
            return bool(owner._is_amx_tile_supported())  # type: ignore[union-attr]
        except (AttributeError, RuntimeError):
            continue
    return None


def has_fused_linear() -> bool:
    """Whether oneDNN's fused linear (`_linear_pointwise`) exists in this PyTorch."""
    return hasattr(torch.ops.mkldnn, "_linear_pointwise")


def has_weight_reorder() -> bool:
    """Whether oneDNN's weight packing (`_reorder_linear_weight`) exists in this PyTorch."""
    return hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """gelu_tanh(x @ weight.T + bias) as one oneDNN kernel (the GELU in the matmul's
    epilogue); bf16 `x`, `weight` (plain, or packed by `pack_linear_weight`) and `bias`. No
    backward. Fallback (the operator missing): F.linear then GELU on a plain weight."""
    if has_fused_linear():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "tanh")
    return F.gelu(F.linear(x, weight, bias), approximate="tanh")


def has_fused_linear_mul() -> bool:
    """Whether oneDNN's linear with a multiplied epilogue (`_linear_pointwise.binary`)
    exists in this PyTorch."""
    return has_fused_linear() and hasattr(torch.ops.mkldnn._linear_pointwise, "binary")


GATE_ATTRS = {"gelu_tanh": ("gelu", "tanh"), "silu": ("swish", "")}
"""A gated MLP's activation (model.SwiGLU) as oneDNN's post-op name and algorithm."""


def linear_gated(
    x: Tensor,
    gate: Tensor,
    up: Tensor,
    gate_bias: Tensor | None,
    up_bias: Tensor | None,
    activation: str,
) -> Tensor:
    """act(x @ gate.T + gate_bias) * (x @ up.T + up_bias) as two oneDNN kernels: the
    activation in the first matmul's epilogue, the product in the second's. 2-D bf16 `x`,
    weights plain or packed by `pack_linear_weight`. No backward; only called where
    `has_fused_linear_mul()`."""
    attr, algorithm = GATE_ATTRS[activation]
    gated = torch.ops.mkldnn._linear_pointwise(x, gate, gate_bias, attr, [], algorithm)
    return torch.ops.mkldnn._linear_pointwise.binary(x, gated, up, up_bias, "mul")


def packed_linear(x: Tensor, packed: Tensor, bias: Tensor | None) -> Tensor:
    """x (N, in) @ W.T + bias with W packed by `pack_linear_weight` (only called where
    packing succeeded, so the operator exists)."""
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def pack_linear_weight(weight: Tensor) -> Tensor | None:
    """`weight` (out, in) reordered once into oneDNN's blocked layout (what torch.compile's
    freezing does), or None where this PyTorch has no such operator (the caller keeps the
    plain weight)."""
    if not has_weight_reorder():
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight)


def version(tensor: Tensor) -> int:
    """The tensor's in-place version counter: every in-place change (an optimizer step,
    `copy_`) bumps it. Fallback: a new number on every call, so a cache keyed by it is
    never reused (correct, only slower)."""
    try:
        return tensor._version
    except AttributeError:
        return -1 - next(_ALWAYS_NEW)
