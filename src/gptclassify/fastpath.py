"""Speed without changing the function: the pooled final block, fused kernels, and weights
held in low precision beside the fp32 ones.

Everything here computes what the plain model computes (bit for bit where the precision is
the same); tests compare each piece against the plain path.

- `pooled_block`: a block evaluated at one position per row (the classified one).
- `packed_blocks`: causal blocks evaluated at the real tokens only (no work on padding).
- `FastMLP`: on CPU, with no gradient and under bf16 autocast, c_fc and GELU run as one
  oneDNN kernel (inference only: it has no backward); elsewhere the plain MLP.
- `FastGLU`: the same for gated MLPs (SwiGLU, GeGLU): the activation and the gate x up
  product inside the matmuls' epilogues.
- `PackedLinear`: a bf16 Linear that also holds its weight prepacked in oneDNN's own
  blocked layout (`blocked_weight`), made once, for no-grad CPU passes of up to
  PACKED_MAX_ROWS rows (`fast_view(prepack=True)`).
- `fast_view`: a classifier object sharing the model's parameters whose MLPs are FastMLPs
  and whose chosen Linear layers hold low-precision copies of their weights, made once. The
  model itself is never changed, so any number of threads can run views of one model.

Two words, two meanings: a *padding-free* pass (`packed_blocks`, `skip_padding`) packs the
real tokens of a batch into one matrix; a *prepacked* weight (`PackedLinear`, `prepack`) is
a weight reordered once into oneDNN's layout. The oneDNN operators are private PyTorch API
and are reached through torch_private.py only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptclassify import torch_private
from gptclassify.lora import LoRALinear, effective_weight
from gptclassify.model import MLP, Block, Rotary, SwiGLU, apply_rope, shallow_copy


def pooled_block(
    block: Block,
    x: Tensor,
    pos: Tensor,
    lengths: Tensor,
    causal: bool,
    rotary: Rotary | None = None,
) -> Tensor:
    """`block(x)` evaluated at one position per row: (B, T, C) -> (B, C). Same function, less work.

    `rotary`: the pass's rotary tables (GPTBody.rotary), made here when not given.

    Only the pooled query matters, and a score is q . (Wk h_j + bk): the key projection can be
    applied to the query instead (u = Wk^T q; the bk term is the same for every key, so softmax
    ignores it), and the value projection after the attention-weighted sum (y = Wv sum_j a_j h_j
    + bv, as the weights sum to 1). No (T x C) @ (C x C) matmul is left: per text the block
    costs a few C x C products plus O(n_heads * T * C). Masking matches GPTModel: causal sees
    keys <= pos (padding included, as the fused causal kernel does); non-causal sees real keys
    plus the position itself.

    With rotary positions, q/k norms or grouped-query attention (the Llama and Qwen families)
    the key projection cannot move to the query side (each key is rotated by its own
    position), so there the keys and values are projected at every position and the query,
    output projection and MLP at the pooled one only (`_pooled_rotary_block`).

    It runs in fp32 even under bf16 autocast: its matmuls have B rows, so autocast's per-step
    casts of the weights (and of their gradients) would cost more than the arithmetic.
    """
    attn = block.attn
    plain = (
        attn.rope_config is None
        and isinstance(attn.q_norm, nn.Identity)
        and attn.n_kv_heads == attn.n_heads
        and not attn.window
        and attn.scale is None
        and isinstance(block.post_attn_norm, nn.Identity)
    )
    if plain:
        fn = _pooled_block
    else:
        rope = attn.rope_of(rotary, x.shape[1], x.device)  # (T, hd) cos and sin, or None

        def fn(block, x, pos, lengths, causal):
            return _pooled_rotary_block(block, x, pos, lengths, causal, rope)

    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return fn(block, x.float(), pos, lengths, causal)
    return fn(block, x, pos, lengths, causal)


def _visible_keys(
    pos: Tensor, lengths: Tensor, seq_len: int, causal: bool, window: int = 0
) -> Tensor:
    """(B, T) bool: the keys the pooled query at `pos` sees (the masking pooled_block's
    docstring describes), within `window` positions of it for a sliding-window layer."""
    keys = torch.arange(seq_len, device=pos.device)[None, :]  # (1, T)
    if causal:
        seen = keys <= pos[:, None]
    else:
        seen = (keys < lengths[:, None]) | (keys == pos[:, None])
    if window:
        seen = seen & ((keys - pos[:, None]).abs() < window)  # model.window_mask's band
    return seen


def _pooled_rotary_block(
    block: Block,
    x: Tensor,
    pos: Tensor,
    lengths: Tensor,
    causal: bool,
    rope: tuple[Tensor, Tensor] | None,
) -> Tensor:
    B, T, C = x.shape
    attn = block.attn
    nh, nkv, hd = attn.n_heads, attn.n_kv_heads, attn.head_dim
    rows = torch.arange(B, device=x.device)
    allowed = _visible_keys(pos, lengths, T, causal, attn.window)  # (B, T)
    h = block.ln_1(x)  # (B, T, C)
    weight, bias = effective_weight(attn.c_attn)
    w_q, w_kv = weight.split([nh * hd, 2 * nkv * hd])
    b_q, b_kv = bias.split([nh * hd, 2 * nkv * hd]) if bias is not None else (None, None)
    q = F.linear(h[rows, pos], w_q, b_q)  # (B, nh * hd)
    k, v = F.linear(h, w_kv, b_kv).split(nkv * hd, dim=2)  # 2 x (B, T, nkv * hd)
    k, v = attn.expand_kv(attn.heads(k, attn.k_norm, rope), attn.heads(v))  # 2 x (B, nh, T, hd)
    # The query: the same norm, and the rotation of its own position.
    q = attn.q_norm(q.view(B, nh, hd))  # (B, nh, hd)
    if rope is not None:
        cos, sin = rope
        q = apply_rope(q, cos[pos][:, None, :], sin[pos][:, None, :])  # (B, nh, hd)
    y = F.scaled_dot_product_attention(
        q[:, :, None, :],
        k,
        v,
        attn_mask=allowed[:, None, None, :],
        dropout_p=attn.dropout if block.training else 0.0,
        scale=attn.scale,
    )  # (B, nh, 1, hd)
    y = attn.resid_dropout(attn.c_proj(y.reshape(B, nh * hd)))  # (B, C)
    out = x[rows, pos] + block.post_attn_norm(y)
    return out + block.post_mlp_norm(block.mlp(block.ln_2(out)))


def _pooled_block(block: Block, x: Tensor, pos: Tensor, lengths: Tensor, causal: bool) -> Tensor:
    B, T, C = x.shape
    # The head width is the config's (head_size may differ from C / n_heads).
    nh, hd = block.attn.n_heads, block.attn.head_dim
    rows = torch.arange(B, device=x.device)
    allowed = _visible_keys(pos, lengths, T, causal)  # (B, T)
    h = block.ln_1(x)  # (B, T, C)
    weight, bias = effective_weight(block.attn.c_attn)
    # split, not slicing: its backward is one concatenation instead of three zero-filled
    # full-size gradient buffers.
    w_q, w_k, w_v = weight.split(nh * hd)  # 3 x (nh * hd, C)
    b_q, _, b_v = bias.split(nh * hd) if bias is not None else (None, None, None)
    q = F.linear(h[rows, pos], w_q, b_q).view(B, nh, hd)  # (B, nh, hd)
    u = torch.einsum("bhd,hdc->bhc", q, w_k.view(nh, hd, C))  # (B, nh, C)
    scores = torch.einsum("bhc,btc->bht", u, h) / math.sqrt(hd)  # (B, nh, T)
    attn = torch.softmax(scores.masked_fill(~allowed[:, None, :], float("-inf")), dim=-1)
    attn = F.dropout(attn, block.attn.dropout, block.training)
    z = torch.einsum("bht,btc->bhc", attn, h)  # (B, nh, C)
    y = torch.einsum("bhc,hdc->bhd", z, w_v.view(nh, hd, C)).reshape(B, nh * hd)
    if b_v is not None:
        y = y + b_v
    out = x[rows, pos] + block.attn.resid_dropout(block.attn.c_proj(y))  # (B, C)
    return out + block.mlp(block.ln_2(out))


ROW_ALIGN = 64
"""Packed passes run their matmuls on a multiple of this many rows (copies of a real token
fill the rest)."""
CPU_ROW_TILE = 512
"""On a CPU, packed passes run their matmuls on at most this many rows at a time."""


def packed_blocks(
    blocks: Iterable[Block], x: Tensor, lengths: Tensor, rotary: Rotary | None = None
) -> Tensor:
    """Causal `blocks` run on the real tokens only: (B, T, C) right-padded -> (B, T, C), the
    padding positions zero. The same function at every real position, less work.
    `rotary`: the pass's rotary tables (GPTBody.rotary), made here when not given.

    Under the causal mask a real token never sees the padding after it, so the padding
    positions' work (most of a block's: its matmuls are per token) is waste. Here the real
    tokens are gathered into one matrix for the layer norms, projections and MLP, and
    scattered back into the padded (B, T, 3C) layout only for the attention itself, whose
    cost per padded token is about T / (12 C) of a token's matmuls. A batch of texts of
    mixed lengths then costs what its real tokens cost.

    The matrix has a multiple of ROW_ALIGN rows, and on a CPU its per-token work runs
    CPU_ROW_TILE rows at a time: oneDNN builds a kernel for every new matmul shape (several
    times the cost of the matmul), so a server whose passes hold any number of tokens would
    build kernels all the time; with these shapes it builds 8 per matmul, once. Tiles of 512
    rows also avoid a band of row counts where the AMX Xeon's bf16 kernels run slower per
    row (figures: RESULTS.md, "Figures that left the docstrings").
    """
    B, T, C = x.shape
    real = (torch.arange(T, device=x.device)[None, :] < lengths[:, None]).reshape(-1)
    idx = real.nonzero().squeeze(1)  # (N,) flat positions of the real tokens
    n = idx.shape[0]
    width = -(-n // ROW_ALIGN) * ROW_ALIGN
    rows = torch.cat([idx, idx[:1].expand(width - n)])  # (width,) padded with a real token
    tile = CPU_ROW_TILE if x.device.type == "cpu" else width

    def per_token(fn, z: Tensor) -> Tensor:
        return fn(z) if z.shape[0] <= tile else torch.cat([fn(part) for part in z.split(tile)])

    h = x.reshape(B * T, C).index_select(0, rows)  # (width, C)
    for block in blocks:
        attn = block.attn
        qkv = per_token(lambda z, b=block: b.attn.c_attn(b.ln_1(z)), h)  # (width, qkv_dim)
        padded = qkv.new_zeros(B * T, qkv.shape[1]).index_copy_(0, idx, qkv[:n])
        rope = attn.rope_of(rotary, T, x.device)
        y = attn.attend(padded.view(B, T, -1), is_causal=True, rope=rope)  # (B, T, nh * hd)
        y = y.reshape(B * T, -1).index_select(0, rows)  # (width, nh * hd)
        h = h + per_token(
            lambda z, b=block: b.post_attn_norm(b.attn.resid_dropout(b.attn.c_proj(z))), y
        )
        h = h + per_token(lambda z, b=block: b.post_mlp_norm(b.mlp(b.ln_2(z))), h)
    return h.new_zeros(B * T, C).index_copy_(0, idx, h[:n]).view(B, T, C)


class FastMLP(MLP):
    """MLP whose c_fc + GELU run as one oneDNN kernel when that is exact and possible.

    oneDNN computes the GELU in the matmul's epilogue: one pass over the (T, 4C) activations
    instead of three. Used for no-grad CPU passes under bf16 autocast with a plain Linear
    (the kernel has no backward); otherwise the plain MLP's computation.
    """

    @classmethod
    def of(cls, mlp: MLP) -> FastMLP:
        return shallow_copy(mlp, as_class=cls)  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        if _can_fuse(x, self.c_fc):
            layer = self.c_fc
            weight = layer.weight.to(torch.bfloat16)
            if isinstance(layer, PackedLinear) and layer.takes(x):
                weight = layer.blocked_weight
            bias = layer.bias.to(torch.bfloat16) if layer.bias is not None else None
            h = torch_private.linear_gelu(x.to(torch.bfloat16), weight, bias)
            return self.dropout(self.c_proj(h))
        return super().forward(x)


class FastGLU(SwiGLU):
    """Gated MLP (SwiGLU, GeGLU) whose gate activation and gate x up product run inside the
    two matmuls' epilogues (oneDNN post-ops) when possible: c_fc's gate and up halves
    become two products, act(x Wg) and then (x Wu) * that, instead of one product followed
    by three passes over the (T, 2 x hidden) activations, of which GELU-tanh's is slow on
    CPUs (RESULTS.md, issues 33 and 35, round 4 session 5). The same conditions as
    FastMLP (no-grad CPU passes under bf16 autocast, plain or packed Linear); otherwise the
    plain gated MLP. bf16 rounding differs from the plain bf16 path (the activation and the
    product are taken before the cast to bf16, so closer to fp32)."""

    halves: tuple[Tensor, Tensor] | None = None
    """c_fc's gate and up weights packed apart (PackedLinear's layout), made once; c_fc then
    keeps only its plain bf16 weight (its whole packed copy would never be read)."""

    @classmethod
    def of(cls, mlp: SwiGLU) -> FastGLU:
        fast = shallow_copy(mlp, as_class=cls)
        layer = mlp.c_fc
        if isinstance(layer, PackedLinear) and torch_private.has_fused_linear_mul():
            gate, up = layer.weight.detach().chunk(2)
            fast.halves = (
                torch_private.pack_linear_weight(gate.contiguous()),
                torch_private.pack_linear_weight(up.contiguous()),
            )
            plain = shallow_copy(layer, as_class=nn.Linear)
            del plain.__dict__["blocked_weight"]
            fast.c_fc = plain
        return fast  # type: ignore[return-value]

    def forward(self, x: Tensor) -> Tensor:
        layer = self.c_fc
        if not (_can_fuse(x, layer) and torch_private.has_fused_linear_mul()):
            return super().forward(x)
        if self.halves is not None and _packed_pass(x):
            gate, up = self.halves
        else:
            gate, up = layer.weight.to(torch.bfloat16).chunk(2)
        biases = layer.bias.to(torch.bfloat16).chunk(2) if layer.bias is not None else (None, None)
        h = torch_private.linear_gated(
            x.reshape(-1, x.shape[-1]).to(torch.bfloat16),
            gate,
            up,
            *biases,
            "gelu_tanh" if self.gelu else "silu",
        )
        return self.dropout(self.c_proj(h.view(*x.shape[:-1], h.shape[-1])))


def _can_fuse(x: Tensor, layer: nn.Module) -> bool:
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and type(layer) in (nn.Linear, PackedLinear)
        and _autocast_bf16()
        and torch_private.has_fused_linear()
        # oneDNN has no bf16 kernel to fuse into on CPUs without bf16 support (AVX2 only:
        # "could not create a primitive descriptor"); the plain MLP runs there
        and torch_private.onednn_bf16()
    )


PACKED_MAX_ROWS = 320
"""PackedLinear uses its packed weight for passes of at most this many rows (a batch of 8
SMS messages is ~256); larger ones take the plain kernel. Up to here packed products ran
faster with the plain kernel's values bit for bit; above it oneDNN picks other kernels for
some shapes, slower and with other values (benchmarks/packed_linear.py; RESULTS.md issue
26 and "Figures that left the docstrings")."""


class PackedLinear(nn.Linear):
    """A frozen bf16 Linear that also holds its weight prepacked in oneDNN's blocked layout
    (`blocked_weight`).

    `torch.nn.functional.linear` on a CPU hands oneDNN a plain (out, in) weight, which it
    reorders into its own layout on every call: for the few hundred rows of a small batch
    that reorder costs about as much as the product. Packing once (what torch.compile's
    freezing does) removes it. The packed tensor serves no-grad bf16 passes of at most
    PACKED_MAX_ROWS rows on the CPU; everything else (gradients, larger passes) uses the
    plain bf16 weight, which stays the layer's `weight`.
    """

    blocked_weight: Tensor
    """The weight reordered into oneDNN's blocked layout (an opaque mkldnn tensor)."""

    @classmethod
    def of(cls, layer: nn.Linear) -> nn.Linear:
        """`layer` (already holding bf16 weights) with its weight prepacked as well; `layer`
        itself where this PyTorch cannot pack (torch_private.pack_linear_weight)."""
        blocked = torch_private.pack_linear_weight(layer.weight.detach())
        if blocked is None:
            return layer
        packed = shallow_copy(layer, as_class=cls)
        packed.blocked_weight = blocked
        return packed

    def takes(self, x: Tensor) -> bool:
        """Whether `x` goes through the packed weight."""
        return _packed_pass(x)

    def forward(self, x: Tensor) -> Tensor:
        if not self.takes(x):
            return super().forward(x)
        y = torch_private.packed_linear(
            x.reshape(-1, x.shape[-1]).to(torch.bfloat16), self.blocked_weight, self.bias
        )
        return y.view(*x.shape[:-1], y.shape[-1])


def _packed_pass(x: Tensor) -> bool:
    """Whether a product on `x` takes packed weights: a no-grad bf16 CPU pass of at most
    PACKED_MAX_ROWS rows."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and (x.dtype == torch.bfloat16 or _autocast_bf16())
        and x.numel() // x.shape[-1] <= PACKED_MAX_ROWS
    )


def _autocast_bf16() -> bool:
    """Whether CPU autocast to bf16 is on."""
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def can_prepack(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether `fast_view(prepack=True)` packs weights here: bf16 on a CPU whose oneDNN has
    fast bf16 kernels."""
    return (
        dtype == torch.bfloat16
        and device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch_private.has_weight_reorder()
        # the same check runtime.cpu_has_fast_bf16 asks first
        and torch_private.onednn_bf16()
    )


def _low_precision(layer: nn.Linear, dtype: torch.dtype, prepack: bool = False) -> nn.Linear:
    """A Linear holding dtype copies of `layer`'s weight and bias (frozen); with `prepack`,
    a PackedLinear (the caller checked `can_prepack`)."""
    copy = shallow_copy(layer)
    for name in ("weight", "bias"):
        p = getattr(layer, name)
        if p is not None:
            copy._parameters[name] = nn.Parameter(p.detach().to(dtype), requires_grad=False)
    return PackedLinear.of(copy) if prepack and type(layer) is nn.Linear else copy  # type: ignore[return-value]


def fast_view(
    model: nn.Module,
    dtype: torch.dtype = torch.float32,
    blocks: Iterable[int] | None = None,
    cast_trainable: bool = False,
    skip_padding: bool = False,
    prepack: bool = False,
) -> nn.Module:
    """A classifier object sharing `model`'s parameters, set up for speed.

    Every block's MLP becomes a FastMLP (gated ones a FastGLU). When `dtype` is not fp32, the Linear layers of
    `blocks` (default: all) hold dtype copies of their weights, made here once: under autocast
    a fp32 weight is cast on every call, and casting once gives the same numbers without
    re-reading every weight per batch. Only frozen weights are copied unless `cast_trainable`
    (for inference, where nothing trains: the copies would go stale if the model trained on).
    The final block of a single-position pool keeps fp32 weights: it runs in fp32
    (pooled_block). LayerNorms stay fp32, as autocast computes them in fp32 anyway.
    `skip_padding`: passes skip the padding where the model allows it (packed_blocks).
    `prepack`: bf16 Linear layers on a CPU also hold their weights in oneDNN's layout
    (PackedLinear; inference only, where nothing trains).
    """
    n = len(model.gpt.h)
    cast = set(range(n) if blocks is None else blocks) if dtype != torch.float32 else set()
    if model.single_position:
        cast.discard(n - 1)
    prepack = prepack and can_prepack(dtype, next(model.parameters()).device)
    view = shallow_copy(model)
    view.skip_padding = skip_padding
    view.gpt = shallow_copy(model.gpt)
    new_blocks = []
    for i, block in enumerate(model.gpt.h):
        block = shallow_copy(block)
        block.attn = shallow_copy(block.attn)
        # The fused kernel is GELU's; SwiGLU keeps its own forward, in a copy all the same
        # (the cast below replaces layers of the view's MLP, never the model's).
        block.mlp = FastMLP.of(block.mlp) if type(block.mlp) is MLP else shallow_copy(block.mlp)
        if i in cast:
            for parent in (block.attn, block.mlp):
                for attr, layer in list(parent.named_children()):
                    setattr(parent, attr, _cast_layer(layer, dtype, cast_trainable, prepack))
        if type(block.mlp) is SwiGLU:  # after the cast: it packs the cast c_fc's halves
            block.mlp = FastGLU.of(block.mlp)
        new_blocks.append(block)
    view.gpt.h = nn.ModuleList(new_blocks)
    return view  # type: ignore[return-value]


def _cast_layer(
    layer: nn.Module, dtype: torch.dtype, cast_trainable: bool, prepack: bool = False
) -> nn.Module:
    if type(layer) is nn.Linear and (cast_trainable or not layer.weight.requires_grad):
        return _low_precision(layer, dtype, prepack)
    if isinstance(layer, LoRALinear) and (cast_trainable or not layer.base.weight.requires_grad):
        # The frozen base in low precision; the adapters stay as they are (autocast casts them).
        wrapped = shallow_copy(layer)
        wrapped.base = _low_precision(layer.base, dtype)
        return wrapped
    return layer
