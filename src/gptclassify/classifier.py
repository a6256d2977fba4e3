"""GPT-2 as a classifier: a new head, a pooling position, and which parameters train.

The classifier reads one vector per sequence from the final hidden states (after `ln_f`) and
maps it through `head = Linear(emb_dim, num_classes)`. Pooling is where that vector comes from:

- `last-real`: the last real (non-padding) token. With right padding and the causal mask it
  cannot see padding at all, so a text gets the same logits alone or in any batch.
- `last`: the last position of the padded sequence (the book's choice; with padding this is a
  padding token, see SPEC section 6).
- `first`: the first token (under the causal mask it sees only itself; SPEC row 2).
- `mean`: the mean over real tokens (SPEC row 19).

The forward pass can start from hidden states that enter block `start` instead of token ids,
so a frozen prefix of the network can be computed once and cached (see training.py).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptclassify.config import LORA_TARGETS
from gptclassify.errors import GPTClassifyError
from gptclassify.model import Block, GPTModel

Pool = Literal["last-real", "last", "first", "mean"]
POOLS: tuple[str, ...] = ("last-real", "last", "first", "mean")
HEAD_SEED = 123


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update: W x + (alpha / r) * B A x.

    Scaling is alpha / rank (Hu et al. 2021); using alpha alone, a slip seen in circulating
    code, makes the effective learning rate depend on the rank. B starts at zero so the
    adapted model starts exactly at the pretrained one.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises weights

    def delta_weight(self) -> Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling  # (out, in)

    def forward(self, x: Tensor) -> Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    def merged(self) -> nn.Linear:
        """A plain nn.Linear with the update folded into its weight."""
        out = nn.Linear(
            self.base.in_features, self.base.out_features, bias=self.base.bias is not None
        )
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.delta_weight().to(self.base.weight.dtype))
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out.to(self.base.weight.device)


class GPTClassifier(nn.Module):
    def __init__(
        self,
        gpt: GPTModel,
        num_classes: int,
        pool: Pool = "last-real",
        causal: bool = True,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise GPTClassifyError(f"--pool: {pool!r} is not one of {', '.join(POOLS)}")
        if num_classes < 2:
            raise GPTClassifyError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.gpt = gpt
        # The language-model head is tied to wte and unused here; dropping it keeps the
        # checkpoint free of shared tensors.
        self.gpt.lm_head = None
        self.pool = pool
        self.causal = causal
        emb_dim = gpt.config.emb_dim
        # Seeded so the head's initial weights do not depend on what ran before.
        gen = torch.Generator().manual_seed(HEAD_SEED)
        head = nn.Linear(emb_dim, num_classes)
        bound = 1 / math.sqrt(emb_dim)
        with torch.no_grad():
            head.weight.copy_(torch.empty_like(head.weight).uniform_(-bound, bound, generator=gen))
            head.bias.copy_(torch.empty_like(head.bias).uniform_(-bound, bound, generator=gen))
        self.head = head.to(gpt.wte.weight.device)

    @property
    def n_layers(self) -> int:
        return self.gpt.config.n_layers

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def single_position(self) -> bool:
        """Whether the pool reads one position, so the final block runs there only, in fp32
        (pooled_block)."""
        return self.pool != "mean"

    # ---- forward ----------------------------------------------------------------------

    def prefix(self, input_ids: Tensor, lengths: Tensor, end: int) -> Tensor:
        """Hidden states entering block `end` (B, T, C): embeddings plus blocks [0, end)."""
        mask = self._padding_mask(lengths, input_ids.shape[1])
        x = self.gpt.embed(input_ids)
        return self.gpt.run_blocks(x, 0, end, attention_mask=mask, causal=self.causal)

    def forward(
        self,
        inputs: Tensor,
        lengths: Tensor,
        start: int = 0,
    ) -> Tensor:
        """Class logits (B, num_classes).

        inputs: token ids (B, T) when start == 0, else hidden states (B, T, C) entering block
        `start`. lengths (B,): number of real tokens per row (the rest is right padding).
        """
        x = self.gpt.embed(inputs) if start == 0 else inputs
        T = x.shape[1]
        mask = self._padding_mask(lengths, T)
        n = self.n_layers
        # Only the pooled position of the final block is ever read, so for single-position
        # pools the final block runs its attention query, projection and MLP at that position
        # alone (the same function, about a sixth of the block's work).
        single = self.single_position and start < n
        x = self.gpt.run_blocks(
            x, start, n - 1 if single else n, attention_mask=mask, causal=self.causal
        )
        if single:
            pos = self.positions(lengths, T)
            pooled = pooled_block(self.gpt.h[n - 1], x, pos, lengths, self.causal)  # (B, C)
            return self.head(self.gpt.ln_f(pooled))
        h = self.gpt.ln_f(x)  # (B, T, C)
        return self.head(self.pool_states(h, lengths))

    def positions(self, lengths: Tensor, seq_len: int) -> Tensor:
        """The index read by single-position pools, per row (B,)."""
        if self.pool == "last-real":
            return lengths - 1
        if self.pool == "last":
            return torch.full_like(lengths, seq_len - 1)
        return torch.zeros_like(lengths)  # first

    def pool_states(self, h: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, C) final hidden states -> (B, C) pooled vectors."""
        if self.pool == "mean":
            real = torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]  # (B, T)
            summed = (h * real[..., None].to(h.dtype)).sum(dim=1)  # (B, C)
            return summed / lengths[:, None].to(h.dtype)
        rows = torch.arange(h.shape[0], device=h.device)
        return h[rows, self.positions(lengths, h.shape[1])]  # (B, C)

    def _padding_mask(self, lengths: Tensor, seq_len: int) -> Tensor | None:
        # Under the causal mask, right padding is invisible to real tokens, so no mask is
        # needed and SDPA keeps its fused causal kernel. Without it, padding keys are hidden.
        if self.causal:
            return None
        return (torch.arange(seq_len, device=lengths.device)[None, :] < lengths[:, None]).long()

    # ---- which parameters train -------------------------------------------------------

    def set_trainable(self, trainable: str) -> int:
        """Freeze everything, then unfreeze per `trainable`; returns the first trainable block.

        head: the head only. last-block / last-2-blocks / last-N-blocks: those blocks, ln_f
        and the head. all: everything. lora: adapters (added by add_lora) and the head.
        The return value is the index of the first block with trainable parameters
        (n_layers when none), i.e. how much of the network is a frozen prefix.
        """
        n_train = trainable_blocks(trainable, self.n_layers)
        for p in self.parameters():
            p.requires_grad_(False)
        for p in self.head.parameters():
            p.requires_grad_(True)
        if trainable == "lora":
            for name, p in self.named_parameters():
                if "lora_" in name:
                    p.requires_grad_(True)
            return 0 if any("lora_" in n for n, _ in self.named_parameters()) else self.n_layers
        if trainable == "all":
            for p in self.parameters():
                p.requires_grad_(True)
            return 0
        if n_train > 0:
            for block in self.gpt.h[self.n_layers - n_train :]:
                for p in block.parameters():
                    p.requires_grad_(True)
            for p in self.gpt.ln_f.parameters():
                p.requires_grad_(True)
        return self.n_layers - n_train

    def add_lora(self, rank: int, alpha: float, targets: tuple[str, ...] = LORA_TARGETS) -> int:
        """Wrap the chosen linear layers of every block in LoRALinear; returns how many."""
        count = 0
        for block in self.gpt.h:
            for target in targets:
                parent_name, attr = target.split(".")
                parent = getattr(block, parent_name)
                layer = getattr(parent, attr)
                if isinstance(layer, nn.Linear):
                    setattr(parent, attr, LoRALinear(layer, rank, alpha))
                    count += 1
        return count

    def merge_lora(self) -> None:
        """Fold every adapter into its base weight (exact up to float rounding)."""
        for block in self.gpt.h:
            for target in LORA_TARGETS:
                parent_name, attr = target.split(".")
                parent = getattr(block, parent_name)
                layer = getattr(parent, attr)
                if isinstance(layer, LoRALinear):
                    setattr(parent, attr, layer.merged())


def trainable_blocks(trainable: str, n_layers: int) -> int:
    """How many final blocks a `--trainable` value unfreezes (all -> n_layers)."""
    if trainable in ("head", "lora"):
        return 0
    if trainable == "all":
        return n_layers
    if trainable == "last-block":
        return 1
    m = re.fullmatch(r"last-(\d+)-blocks", trainable)
    if m:
        n = int(m.group(1))
        if not 1 <= n <= n_layers:
            raise GPTClassifyError(
                f"--trainable {trainable}: the model has {n_layers} blocks, choose 1..{n_layers}"
            )
        return n
    raise GPTClassifyError(
        f"--trainable: {trainable!r} is not one of head, last-block, last-N-blocks (e.g. "
        "last-2-blocks), all, lora"
    )


def effective_weight(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
    """(weight, bias) that a Linear or LoRALinear applies, differentiable in its parameters."""
    if isinstance(layer, LoRALinear):
        return layer.base.weight + layer.delta_weight(), layer.base.bias
    return layer.weight, layer.bias


def pooled_block(block: Block, x: Tensor, pos: Tensor, lengths: Tensor, causal: bool) -> Tensor:
    """`block(x)` evaluated at one position per row: (B, T, C) -> (B, C). Same function, less work.

    Only the pooled query matters, and a score is q . (Wk h_j + bk): the key projection can be
    applied to the query instead (u = Wk^T q; the bk term is the same for every key, so softmax
    ignores it), and the value projection after the attention-weighted sum (y = Wv sum_j a_j h_j
    + bv, as the weights sum to 1). No (T x C) @ (C x C) matmul is left: per text the block
    costs a few C x C products plus O(n_heads * T * C). Masking matches GPTModel: causal sees
    keys <= pos (padding included, as the fused causal kernel does); non-causal sees real keys
    plus the position itself.

    It runs in fp32 even under bf16 autocast: its matmuls have B rows, so autocast's per-step
    casts of the weights (and of their gradients) would cost more than the arithmetic.
    """
    B, T, C = x.shape
    nh = block.attn.n_heads
    hd = C // nh
    rows = torch.arange(B, device=x.device)
    keys = torch.arange(T, device=x.device)[None, :]  # (1, T)
    if causal:
        allowed = keys <= pos[:, None]  # (B, T)
    else:
        allowed = (keys < lengths[:, None]) | (keys == pos[:, None])  # (B, T)
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        h = block.ln_1(x)  # (B, T, C)
        weight, bias = effective_weight(block.attn.c_attn)
        # split, not slicing: its backward is one concatenation instead of three zero-filled
        # full-size gradient buffers.
        w_q, w_k, w_v = weight.split(C)  # 3 x (C, C)
        b_q, _, b_v = bias.split(C) if bias is not None else (None, None, None)
        q = F.linear(h[rows, pos], w_q, b_q).view(B, nh, hd)  # (B, nh, hd)
        u = torch.einsum("bhd,hdc->bhc", q, w_k.view(nh, hd, C))  # (B, nh, C)
        scores = torch.einsum("bhc,btc->bht", u, h) / math.sqrt(hd)  # (B, nh, T)
        attn = torch.softmax(scores.masked_fill(~allowed[:, None, :], float("-inf")), dim=-1)
        attn = F.dropout(attn, block.attn.dropout, block.training)
        z = torch.einsum("bht,btc->bhc", attn, h)  # (B, nh, C)
        y = torch.einsum("bhc,hdc->bhd", z, w_v.view(nh, hd, C)).reshape(B, C)  # (B, C)
        if b_v is not None:
            y = y + b_v
        out = x[rows, pos] + block.attn.resid_dropout(block.attn.c_proj(y))  # (B, C)
        return out + block.mlp(block.ln_2(out))


__all__ = [
    "LORA_TARGETS",
    "POOLS",
    "GPTClassifier",
    "LoRALinear",
    "Pool",
    "pooled_block",
    "trainable_blocks",
]
