"""The decoder from scratch: GPT-2 and the Llama, Mistral, Qwen2, Qwen3 and Gemma 3 families.

One readable model with per-family switches (config.py's table): LayerNorm or RMSNorm (or
Gemma's (1 + weight) RMSNorm, with norms after attention and MLP too), learned or rotary
positions, GELU, SwiGLU or GeGLU MLP, grouped-query attention, q/k norms, biases, scaled
embeddings, sliding-window layers, tied or untied head. Text generation lives in
generation.py.

Parameter names are GPT-2's for every family (`wte`, `wpe`, `h.{i}.attn.c_attn`, ...) so the
classifier, LoRA, the fast path and the model folder see one layout. For Llama-style models
`attn.c_attn` is the fused [q; k; v] projection (q_proj, k_proj, v_proj stacked), `attn.c_proj`
is o_proj, `mlp.c_fc` the fused [gate; up] projection and `mlp.c_proj` down_proj;
models/ maps these to each family's Hugging Face and GGUF names. The model has no I/O and
makes no device choice: it runs wherever its parameters and inputs are.

The forward pass is split into `embed` -> `run_blocks(start, end)` -> `ln_f` -> `lm_head` so a
classifier can read hidden states at any position and run any slice of the blocks (for
example: compute a frozen prefix once and train only the last blocks). This is the plain
model: device-specific kernels (fused matmul + GELU, low-precision weight copies) live in
fastpath.py and are swapped in by the callers that want them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptclassify.config import GPTConfig

Rotary = dict[GPTConfig, tuple[Tensor, Tensor]]
"""One pass's rotary tables: cos and sin, 2 x (T, head_dim), per rotary setting (Gemma 3's
sliding and global layers have their own; GPT-2 has none). `GPTBody.rotary` makes them once
per pass for every block, as transformers' and litgpt's models do."""


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019), computed in fp32 whatever the input's
    dtype and cast back before the weight, as the Llama reference does.

    With `offset` (Gemma) the scale is (1 + weight), weights start at 0, and the product is
    taken in fp32 before the cast back, as transformers' Gemma3RMSNorm does.
    """

    def __init__(self, dim: int, eps: float, offset: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim) if offset else torch.ones(dim))
        self.eps = eps
        self.offset = offset

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        if not _needs_graph(x, self.weight):
            return self._inplace(x)
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return (x * (1.0 + self.weight.float())).to(dtype)
        return self.weight * x.to(dtype)

    def _inplace(self, x: Tensor) -> Tensor:
        """The same operations on the same values (bit for bit), working in place on the fp32
        copy where there is one: no autograd graph to keep, and two to three fewer passes
        over the activations (RESULTS.md, issue 33, round 4 session 5)."""
        dtype = x.dtype
        xf = x.float()
        scale = xf.square().mean(-1, keepdim=True).add_(self.eps).rsqrt_()
        xf = xf * scale if xf is x else xf.mul_(scale)
        if self.offset:
            return xf.mul_(1.0 + self.weight.float()).to(dtype)
        return self.weight * xf.to(dtype)


def _needs_graph(*tensors: Tensor) -> bool:
    """Whether autograd (or a tracer, which records every operation) watches this pass."""
    if _tracing() or torch.jit.is_scripting():
        return True
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def norm_layer(config: GPTConfig, dim: int | None = None) -> nn.Module:
    dim = dim or config.emb_dim
    if config.norm == "rmsnorm":
        return RMSNorm(dim, config.norm_eps, config.norm_offset)
    return nn.LayerNorm(dim, eps=config.norm_eps)


def rope_inv_freq(config: GPTConfig) -> Tensor:
    """Rotary inverse frequencies (head_dim / 2,), fp32, on the CPU (Su et al. 2021), with
    Llama 3.1's "llama3" rescaling of the long wavelengths when `rope_factor` is set.

    Computed in the same operations, order and device as the Hugging Face reference, so the
    angles are bit-identical to it.
    """
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device="cpu").float() / dim
    inv_freq = 1.0 / (config.rope_theta**exponents)
    if config.rope_linear:  # "linear" scaling: every position divided by the factor
        return inv_freq / config.rope_linear
    if not config.rope_factor:
        return inv_freq
    factor, low, high = (
        config.rope_factor,
        config.rope_low_freq_factor,
        config.rope_high_freq_factor,
    )
    old = config.rope_original_context
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) * ~(wavelen > old / low)
    return torch.where(medium, smoothed, scaled)


def rope_tables(inv_freq: Tensor, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of every position's angles: 2 x (T, head_dim), fp32."""
    pos = torch.arange(seq_len, device=device).float()  # (T,)
    freqs = pos[:, None] * inv_freq.to(device)[None, :]  # (T, hd/2)
    angles = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate (B, nh, T, hd) queries or keys by their positions (the "rotate half" layout)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


def _tracing() -> bool:
    """Whether this pass is being traced or exported (a graph must hold every branch that
    depends on the sequence length)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def window_mask(seq_len: int, window: int, causal: bool, device: torch.device) -> Tensor:
    """(T, T) bool, True = may attend: the keys within `window` positions of each query,
    itself included (before it under the causal mask; on both sides without it), as
    transformers' sliding-window masks."""
    pos = torch.arange(seq_len, device=device)
    dist = pos[:, None] - pos[None, :]  # (T, T) query - key
    if causal:
        return (dist >= 0) & (dist < window)
    return dist.abs() < window


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.n_kv_heads = config.kv_heads
        self.head_dim = config.head_dim
        self.window = config.sliding_window if config.sliding(layer) else 0
        """Keys each query sees, itself included (0: all of them)."""
        self.scale = config.attn_scalar**-0.5 if config.attn_scalar else None
        """The query scale (None: SDPA's 1 / sqrt(head_dim))."""
        self.c_attn = nn.Linear(config.emb_dim, config.qkv_dim, bias=config.qkv_bias)
        self.c_proj = nn.Linear(
            config.n_heads * config.head_dim, config.emb_dim, bias=config.out_bias
        )
        if config.qk_norm:
            self.q_norm = RMSNorm(config.head_dim, config.norm_eps, config.norm_offset)
            self.k_norm = RMSNorm(config.head_dim, config.norm_eps, config.norm_offset)
        else:
            # Identity marks "a query or key: rotate it" (values take no norm and no rotation).
            self.q_norm = self.k_norm = nn.Identity()
        # Rotary angles are computed per pass from the config (GPTBody.rotary; no buffer:
        # nothing to load, nothing on the meta device, and an exported graph computes them
        # for any length).
        self.rope_config = config if config.positions == "rope" else None
        if self.rope_config is not None and self.window:
            # Gemma 3's sliding layers have their own base and no scaling.
            self.rope_config = dataclasses.replace(
                config, rope_theta=config.rope_local_theta or config.rope_theta, rope_linear=0.0
            )
        self.dropout = config.drop_rate
        self.resid_dropout = nn.Dropout(config.drop_rate)

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = True,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        y = self.attend(self.c_attn(x), attn_mask, is_causal, rope)  # (B, T, nh * hd)
        return self.resid_dropout(self.c_proj(y))

    def split_heads(
        self, qkv: Tensor, rope: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values from the fused projection (B, T, qkv_dim), normed and
        rotated by `rope` (this attention's tables; made here when not given):
        (B, nh, T, hd), (B, n_kv, T, hd), (B, n_kv, T, hd)."""
        nh, nkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = qkv.split([nh * hd, nkv * hd, nkv * hd], dim=2)
        if rope is None:
            rope = self.rope(qkv.shape[1], qkv.device)  # one table for queries and keys
        return self.heads(q, self.q_norm, rope), self.heads(k, self.k_norm, rope), self.heads(v)

    def rope(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor] | None:
        """cos and sin of positions 0..seq_len-1 (None without rotary positions)."""
        if self.rope_config is None:
            return None
        return rope_tables(rope_inv_freq(self.rope_config), seq_len, device)

    def rope_of(
        self, rotary: Rotary | None, seq_len: int, device: torch.device
    ) -> tuple[Tensor, Tensor] | None:
        """This attention's tables from a pass's `rotary` (made here when not given)."""
        if self.rope_config is None:
            return None
        if rotary is not None and self.rope_config in rotary:
            return rotary[self.rope_config]
        return self.rope(seq_len, device)

    def heads(
        self,
        x: Tensor,
        norm: nn.Module | None = None,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """(B, T, n * hd) -> (B, n, T, hd): split into heads, then (for queries and keys)
        the per-head norm and the rotation by `rope` (this attention's `rope(T)`)."""
        B, T, width = x.shape
        x = x.view(B, T, width // self.head_dim, self.head_dim)
        if norm is None:
            return x.transpose(1, 2)  # values
        x = norm(x).transpose(1, 2)  # (B, n, T, hd)
        return apply_rope(x, *rope) if rope is not None else x

    def expand_kv(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Grouped-query attention: each key/value head repeated for the query heads that
        share it, (B, n_kv, T, hd) -> (B, nh, T, hd)."""
        if self.n_kv_heads == self.n_heads:
            return k, v
        group = self.n_heads // self.n_kv_heads
        return k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

    def attend(
        self,
        qkv: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = True,
        rope: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """Attention from the projected queries, keys and values: (B, T, qkv_dim) ->
        (B, T, nh * hd), before the output projection."""
        B, T, _ = qkv.shape
        q, k, v = self.split_heads(qkv, rope)
        k, v = self.expand_kv(k, v)  # (B, nh, T, hd) each
        # Tracing first: comparing a symbolic length would pin the exported graph's length.
        if self.window and (_tracing() or T > self.window):
            band = window_mask(T, self.window, is_causal, qkv.device)  # (T, T)
            attn_mask = band if attn_mask is None else attn_mask & band
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            # An explicit mask already carries causality (see attention_bias).
            is_causal=is_causal and attn_mask is None,
            scale=self.scale,
        )  # (B, nh, T, hd)
        return y.transpose(1, 2).contiguous().view(B, T, self.n_heads * self.head_dim)


class MLP(nn.Module):
    """GPT-2's MLP: c_proj(gelu(c_fc x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.emb_dim, config.hidden_dim, bias=config.mlp_bias)
        # OpenAI's GPT-2 uses the tanh approximation of GELU ("gelu_new" in transformers).
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(config.hidden_dim, config.emb_dim, bias=config.mlp_bias)
        self.dropout = nn.Dropout(config.drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class SwiGLU(nn.Module):
    """The gated MLP of Llama and Qwen (Shazeer 2020): c_proj(silu(gate x) * up x), with
    gate and up fused in one projection, c_fc = [gate; up]. GeGLU (Gemma) gates with GELU's
    tanh approximation instead of SiLU."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.emb_dim, 2 * config.hidden_dim, bias=config.mlp_bias)
        self.c_proj = nn.Linear(config.hidden_dim, config.emb_dim, bias=config.mlp_bias)
        self.dropout = nn.Dropout(config.drop_rate)
        self.gelu = config.mlp == "geglu"

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.c_fc(x).chunk(2, dim=-1)  # 2 x (..., hidden)
        act = F.gelu(gate, approximate="tanh") if self.gelu else F.silu(gate)
        return self.dropout(self.c_proj(act * up))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int = 0) -> None:
        super().__init__()
        self.ln_1 = norm_layer(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = norm_layer(config)
        self.mlp = MLP(config) if config.mlp == "gelu" else SwiGLU(config)
        # Gemma's norms on the branches' outputs (no parameters, and so no names, elsewhere).
        self.post_attn_norm = norm_layer(config) if config.post_norms else nn.Identity()
        self.post_mlp_norm = norm_layer(config) if config.post_norms else nn.Identity()

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        is_causal: bool = True,
        rotary: Rotary | None = None,
    ) -> Tensor:
        """(B, T, C) -> (B, T, C); `rotary`: the pass's tables (GPTBody.rotary)."""
        rope = self.attn.rope_of(rotary, x.shape[1], x.device)
        y = self.attn(self.ln_1(x), attn_mask=attn_mask, is_causal=is_causal, rope=rope)
        x = x + self.post_attn_norm(y)
        return x + self.post_mlp_norm(self.mlp(self.ln_2(x)))


def attention_bias(attention_mask: Tensor | None, seq_len: int, causal: bool) -> Tensor | None:
    """Boolean SDPA mask (True = may attend) from a (B, T) padding mask, or None.

    None means "no explicit mask": SDPA then uses its fused causal path when `causal` is set.
    With right padding and a causal mask the padding can never influence real tokens, so
    callers that pad on the right need no padding mask at all.
    """
    if attention_mask is None:
        return None
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
    allowed = keys.expand(-1, 1, seq_len, -1)  # (B, 1, T, T)
    if causal:
        tril = torch.ones(seq_len, seq_len, dtype=torch.bool, device=attention_mask.device).tril()
        allowed = allowed & tril
    # Every query may see itself, so padding queries (e.g. left padding) never get an empty
    # row: an all-False row would make SDPA return NaN and poison later blocks.
    eye = torch.eye(seq_len, dtype=torch.bool, device=attention_mask.device)
    return allowed | eye


class GPTBody(nn.Module):
    """The decoder without its language-model head: token ids -> final hidden states.

    A classifier runs a body; the language model (`GPTModel`) is a body plus the tied head.
    """

    def __init__(self, config: GPTConfig, init: bool = True) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.emb_dim)
        if config.positions == "learned":
            self.wpe = nn.Embedding(config.context_length, config.emb_dim)
        else:
            self.wpe = None  # rotary positions live in the attention
        self.drop = nn.Dropout(config.drop_rate)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.ln_f = norm_layer(config)
        if init:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation (normal 0.02, residual projections scaled down; norms 1),
        used for every family's random init."""
        self.apply(self._init_weights)
        # GPT-2 paper: scale residual projections by 1/sqrt(2 * n_layers) at init.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layers))

    @classmethod
    def sharing(cls, other: GPTBody) -> GPTBody:
        """A new body object holding `other`'s modules (and so its parameters).

        Replacing a module of the result (e.g. its list of blocks) leaves `other` as it was:
        a classifier built on a language model never changes that model's structure.
        """
        body = cls.__new__(cls)
        nn.Module.__init__(body)
        body.config = other.config
        for name in ("wte", "wpe", "drop", "h", "ln_f"):
            setattr(body, name, getattr(other, name))
        return body

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; a tied head is counted once."""
        params = {id(p): p for p in self.parameters() if p.requires_grad or not trainable_only}
        return sum(p.numel() for p in params.values())

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token (+ learned position) embeddings: (B, T) ids -> (B, T, emb_dim) hidden states."""
        T = input_ids.shape[1]
        if T > self.config.context_length:
            raise ValueError(
                f"sequence length {T} exceeds the model context ({self.config.context_length})"
            )
        x = self.wte(input_ids)  # (B, T, C)
        if self.config.embed_scale:
            # sqrt(C) rounded to the weights' dtype first, as Gemma's reference does.
            x = x * torch.tensor(self.config.emb_dim**0.5).to(x.dtype)
        if self.wpe is None:
            return self.drop(x)  # rotary positions live in the attention
        pos = torch.arange(T, device=input_ids.device)  # (T,)
        return self.drop(x + self.wpe(pos))  # (B, T, C)

    def rotary(self, seq_len: int, device: torch.device) -> Rotary:
        """The rotary tables of a pass over `seq_len` positions, one per rotary setting of
        the blocks (empty for learned positions): made once, read by every block."""
        tables: Rotary = {}
        for block in self.h:
            config = block.attn.rope_config
            if config is not None and config not in tables:
                tables[config] = block.attn.rope(seq_len, device)
        return tables

    def run_blocks(
        self,
        x: Tensor,
        start: int = 0,
        end: int | None = None,
        attention_mask: Tensor | None = None,
        causal: bool = True,
        rotary: Rotary | None = None,
    ) -> Tensor:
        """Run blocks `start..end-1` (Python slice semantics) on hidden states x (B, T, C);
        `rotary`: the pass's tables (made here when not given)."""
        attn_mask = attention_bias(attention_mask, x.shape[1], causal)
        if rotary is None:
            rotary = self.rotary(x.shape[1], x.device)
        for block in self.h[start:end]:
            x = block(x, attn_mask=attn_mask, is_causal=causal, rotary=rotary)
        return x

    def hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, causal: bool = True
    ) -> Tensor:
        """Final (post ln_f) hidden states (B, T, C) for every position."""
        x = self.run_blocks(self.embed(input_ids), attention_mask=attention_mask, causal=causal)
        return self.ln_f(x)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.hidden_states(input_ids, attention_mask)


class GPTModel(GPTBody):
    """The language model: a body plus the output head (tied to the token embedding where
    the family ties it, as OpenAI's GPT-2 does)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config, init=False)
        self.lm_head = nn.Linear(config.emb_dim, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        # After tying, so a seed gives the same weights as it always has (the head's draw,
        # the last one, is what the shared embedding keeps).
        self.reset_parameters()

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits (B, T, vocab_size). `attention_mask` (B, T): 1 real, 0 padding."""
        return self.lm_head(self.hidden_states(input_ids, attention_mask))


def shallow_copy(module: nn.Module, as_class: type[nn.Module] | None = None) -> nn.Module:
    """A new module object with the same parameters, buffers and submodules.

    Setting a submodule or parameter on the copy leaves the original untouched (the
    registries are copied; the tensors and child modules are shared). This is how LoRA and
    the fast path change a classifier's layers without changing the model it was built on.
    `as_class`: the copy is of this subclass (a fast path's variant of the same layer, sharing
    its state), built as such rather than re-classed after the fact.
    """
    cls = as_class or module.__class__
    copy = cls.__new__(cls)
    copy.__dict__ = dict(module.__dict__)
    for registry in ("_parameters", "_buffers", "_modules"):
        copy.__dict__[registry] = dict(module.__dict__[registry])
    return copy


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
)
_INIT_LOCK = threading.Lock()


@contextlib.contextmanager
def skip_meta_init() -> Iterator[None]:
    """Within this block, torch.nn.init leaves meta tensors alone.

    Modules built on the meta device (shapes only, for weights that are loaded next) still
    run their initialisers. On a meta tensor that computes nothing, but it goes through
    torch's Python reference kernels, whose first use imports torch._dynamo: about 0.9 s of
    `gptclassify predict`'s start-up, for nothing. Tensors on real devices (for example other
    threads' modules built meanwhile) are initialised as usual.
    """
    originals = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}

    def skipping_meta(init):
        @functools.wraps(init)
        def wrapper(tensor, *args, **kwargs):
            return tensor if tensor.is_meta else init(tensor, *args, **kwargs)

        return wrapper

    with _INIT_LOCK:
        for name, init in originals.items():
            setattr(nn.init, name, skipping_meta(init))
        try:
            yield
        finally:
            for name, init in originals.items():
                setattr(nn.init, name, init)
