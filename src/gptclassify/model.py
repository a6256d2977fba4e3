"""GPT-2 from scratch: decoder-only, pre-LayerNorm, learned positions, tied output head.

Text generation lives in generation.py.

Parameter names follow OpenAI's GPT-2 (`wte`, `wpe`, `h.{i}.attn.c_attn`, ...) so loading
pretrained weights is a name-for-name copy (see weights.py). The model has no I/O and makes
no device choice: it runs wherever its parameters and inputs are.

The forward pass is split into `embed` -> `run_blocks(start, end)` -> `ln_f` -> `lm_head` so a
classifier can read hidden states at any position and run any slice of the blocks (for
example: compute a frozen prefix once and train only the last blocks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptclassify.config import GPTConfig

LAYER_NORM_EPS = 1e-5


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.c_attn = nn.Linear(config.emb_dim, 3 * config.emb_dim, bias=config.qkv_bias)
        self.c_proj = nn.Linear(config.emb_dim, config.emb_dim)
        self.dropout = config.drop_rate
        self.resid_dropout = nn.Dropout(config.drop_rate)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = True) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hd)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hd)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            # An explicit mask already carries causality (see attention_bias).
            is_causal=is_causal and attn_mask is None,
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.emb_dim, 4 * config.emb_dim)
        # OpenAI's GPT-2 uses the tanh approximation of GELU ("gelu_new" in transformers).
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.emb_dim, config.emb_dim)
        self.dropout = nn.Dropout(config.drop_rate)

    def forward(self, x: Tensor) -> Tensor:
        if _can_fuse_linear_gelu(x, self.c_fc):
            # oneDNN computes the GELU in the matmul's epilogue: one pass over the (T, 4C)
            # activations instead of three. Inference only (it has no backward).
            h = torch.ops.mkldnn._linear_pointwise(
                x.to(torch.bfloat16),
                self.c_fc.weight.to(torch.bfloat16),
                self.c_fc.bias.to(torch.bfloat16),
                "gelu",
                [],
                "tanh",
            )
            return self.dropout(self.c_proj(h))
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


def _can_fuse_linear_gelu(x: Tensor, layer: nn.Module) -> bool:
    """True for no-grad CPU passes under bf16 autocast with a plain Linear (see MLP.forward)."""
    return (
        not torch.is_grad_enabled()
        and x.device.type == "cpu"
        and type(layer) is nn.Linear
        and layer.bias is not None
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.emb_dim, eps=LAYER_NORM_EPS)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.emb_dim, eps=LAYER_NORM_EPS)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = True) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask=attn_mask, is_causal=is_causal)
        return x + self.mlp(self.ln_2(x))


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


class GPTModel(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.emb_dim)
        self.wpe = nn.Embedding(config.context_length, config.emb_dim)
        self.drop = nn.Dropout(config.drop_rate)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.emb_dim, eps=LAYER_NORM_EPS)
        self.lm_head = nn.Linear(config.emb_dim, config.vocab_size, bias=False)
        # Tied input/output embedding, as in OpenAI's GPT-2.
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2 paper: scale residual projections by 1/sqrt(2 * n_layers) at init.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameter count; the tied head is counted once."""
        params = {id(p): p for p in self.parameters() if p.requires_grad or not trainable_only}
        return sum(p.numel() for p in params.values())

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token + position embeddings: (B, T) ids -> (B, T, emb_dim) hidden states."""
        T = input_ids.shape[1]
        if T > self.config.context_length:
            raise ValueError(
                f"sequence length {T} exceeds the model context ({self.config.context_length})"
            )
        pos = torch.arange(T, device=input_ids.device)  # (T,)
        return self.drop(self.wte(input_ids) + self.wpe(pos))  # (B, T, C)

    def run_blocks(
        self,
        x: Tensor,
        start: int = 0,
        end: int | None = None,
        attention_mask: Tensor | None = None,
        causal: bool = True,
    ) -> Tensor:
        """Run blocks `start..end-1` (Python slice semantics) on hidden states x (B, T, C)."""
        attn_mask = attention_bias(attention_mask, x.shape[1], causal)
        for block in self.h[start:end]:
            x = block(x, attn_mask=attn_mask, is_causal=causal)
        return x

    def hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, causal: bool = True
    ) -> Tensor:
        """Final (post ln_f) hidden states (B, T, C) for every position."""
        x = self.run_blocks(self.embed(input_ids), attention_mask=attention_mask, causal=causal)
        return self.ln_f(x)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Next-token logits (B, T, vocab_size). `attention_mask` (B, T): 1 real, 0 padding."""
        return self.lm_head(self.hidden_states(input_ids, attention_mask))
