"""A decoder (any implemented family) as a classifier: a new head, a pooling position, and
which parameters train.

The classifier reads one vector per sequence from the final hidden states (after `ln_f`) and
maps it through `head = Linear(emb_dim, num_classes)`. Pooling is where that vector comes from:

- `last-real`: the last real (non-padding) token. With right padding and the causal mask it
  cannot see padding at all, so a text gets the same logits alone or in any batch. In the
  book's bonus experiments this beats the padded last position (98.33% vs 95.00% test).
- `last`: the last position of the padded sequence (the book's choice: with padding, short
  texts are classified from a padding token).
- `first`: the first token (under the causal mask it sees only itself; 75.00% test in the
  book's experiments).
- `mean`: the mean over real tokens.

`forward(input_ids, attention_mask)` goes from token ids to logits. `forward_from(hidden,
lengths, start)` starts from the hidden states entering block `start`, so a frozen prefix
of the network can be computed once and cached (training/prefix_cache.py); `FromBlock`
wraps that as a module.

The classifier holds its own body object (`GPTBody.sharing`): it shares the GPT model's
parameters (training updates them, `set_trainable` sets their `requires_grad`) but never
changes that model's structure (its language-model head stays; LoRA adapters go into the
classifier's own copies of the blocks).
"""

from __future__ import annotations

import math
import re
from typing import Literal

import torch
from torch import Tensor, nn

from gptclassify import lora
from gptclassify.config import LORA_TARGETS, POOLS
from gptclassify.errors import GPTClassifyError, option
from gptclassify.fastpath import packed_blocks, pooled_block
from gptclassify.lexical import LexicalHead
from gptclassify.model import GPTBody

Pool = Literal["last-real", "last", "first", "mean"]
HEAD_SEED = 123


class GPTClassifier(nn.Module):
    skip_padding = False
    """Whether passes skip the padding (fastpath.packed_blocks) where that computes the same
    function (`padding_free`). Set on the inference runtime's view
    (fastpath.fast_view(skip_padding=True))."""

    def __init__(
        self,
        gpt: GPTBody,
        num_classes: int,
        pool: Pool = "last-real",
        causal: bool = True,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise GPTClassifyError(f"{option('pool')}: {pool!r} is not one of {', '.join(POOLS)}")
        if num_classes < 2:
            raise GPTClassifyError(f"a classifier needs at least 2 classes, got {num_classes}")
        # A body of our own: the language-model head (tied to wte) is not part of it, so the
        # saved model holds no shared tensors, and `gpt` itself is left as it was.
        self.gpt = GPTBody.sharing(gpt)
        self.pool = pool
        self.causal = causal
        emb_dim = gpt.config.emb_dim
        # Seeded so the head's initial weights do not depend on what ran before.
        gen = torch.Generator().manual_seed(HEAD_SEED)
        # A bias where the final norm has one (GPT-2's LayerNorm), so a Hugging Face export,
        # whose `score` layer has none, can fold it there exactly (export/hf.py); RMSNorm
        # families' heads have none, as transformers' XForSequenceClassification.
        bias = gpt.config.norm == "layernorm"
        head = nn.Linear(emb_dim, num_classes, bias=bias, device=gpt.wte.weight.device)
        bound = 1 / math.sqrt(emb_dim)
        with torch.no_grad():
            weight = torch.empty(head.weight.shape).uniform_(-bound, bound, generator=gen)
            if head.weight.device.type != "meta":
                head.weight.copy_(weight)
            if bias:
                values = torch.empty(head.bias.shape).uniform_(-bound, bound, generator=gen)
                if head.weight.device.type != "meta":
                    head.bias.copy_(values)
        self.head = head
        self.lexical: LexicalHead | None = None
        """A bag-of-tokens logistic regression added to the logits (`--lexical`,
        lexical.py): fitted after training, never trained with the network, and read by
        `forward` only (the frozen-prefix path `forward_from` has no token ids)."""

    @property
    def n_layers(self) -> int:
        return self.gpt.config.n_layers

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    @property
    def single_position(self) -> bool:
        """Whether the pool reads one position, so the final block runs there only, in fp32
        (fastpath.pooled_block)."""
        return self.pool != "mean"

    @property
    def padding_free(self) -> bool:
        """Whether a pass can skip the padding without changing any logit: under the causal
        mask real tokens never see it, so every pool but `last` (which reads a padding
        position) gets the same result."""
        return self.causal and self.pool != "last"

    # ---- forward ----------------------------------------------------------------------

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Class logits (B, num_classes) from right-padded token ids (B, T).

        attention_mask (B, T): 1 for real tokens, 0 for padding (None: no padding). Padding
        must be on the right.
        """
        B, T = input_ids.shape
        if attention_mask is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=input_ids.device)
        else:
            lengths = attention_mask.sum(dim=-1).to(torch.long)  # (B,)
        logits = self.forward_from(self.gpt.embed(input_ids), lengths, start=0)
        if self.lexical is not None:
            logits = logits.float() + self.lexical(input_ids, lengths)
        return logits

    def forward_from(self, hidden: Tensor, lengths: Tensor, start: int) -> Tensor:
        """Class logits (B, num_classes) from hidden states (B, T, C) entering block `start`.

        lengths (B,): number of real tokens per row (the rest is right padding).
        """
        T = hidden.shape[1]
        mask = self._padding_mask(lengths, T)
        n = self.n_layers
        # Only the pooled position of the final block is ever read, so for single-position
        # pools the final block runs its attention query, projection and MLP at that position
        # alone (the same function, about a sixth of the block's work).
        single = self.single_position and start < n
        end = n - 1 if single else n
        blocks = self.gpt.h[start:end]
        rotary = self.gpt.rotary(T, hidden.device)  # once for every block of the pass
        if (
            self.skip_padding
            and self.padding_free
            and len(blocks)
            and int(lengths.sum()) < lengths.numel() * T
        ):
            x = packed_blocks(blocks, hidden, lengths, rotary)
        else:
            x = self.gpt.run_blocks(
                hidden, start, end, attention_mask=mask, causal=self.causal, rotary=rotary
            )
        if single:
            pos = self.positions(lengths, T)
            last = self.gpt.h[n - 1]
            pooled = pooled_block(last, x, pos, lengths, self.causal, rotary)  # (B, C)
            return self.head(self.gpt.ln_f(pooled))
        h = self.gpt.ln_f(x)  # (B, T, C)
        return self.head(self.pool_states(h, lengths))

    def prefix(self, input_ids: Tensor, lengths: Tensor, end: int) -> Tensor:
        """Hidden states entering block `end` (B, T, C): embeddings plus blocks [0, end)."""
        mask = self._padding_mask(lengths, input_ids.shape[1])
        x = self.gpt.embed(input_ids)
        return self.gpt.run_blocks(x, 0, end, attention_mask=mask, causal=self.causal)

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
            return 0 if lora.has_lora(self) else self.n_layers
        for block in self.gpt.h[self.n_layers - n_train :]:
            for p in block.parameters():
                p.requires_grad_(True)
        if n_train > 0:
            for p in self.gpt.ln_f.parameters():
                p.requires_grad_(True)
        if trainable == "all":
            for p in self.parameters():
                p.requires_grad_(True)
            return 0
        return self.n_layers - n_train

    def add_lora(self, rank: int, alpha: float, targets: tuple[str, ...] = LORA_TARGETS) -> int:
        """Wrap the chosen linear layers of every block in LoRALinear; returns how many."""
        return lora.add_lora(self, rank, alpha, targets)

    def merge_lora(self) -> None:
        """Fold every adapter into its base weight (exact up to float rounding)."""
        lora.merge_lora(self)


class FromBlock(nn.Module):
    """The classifier from block `start` on, as a module: forward(hidden, lengths) -> logits.

    What training on the frozen-prefix cache calls (and what a DistributedDataParallel
    wrapper, which hooks only `forward`, wraps).
    """

    def __init__(self, classifier: GPTClassifier, start: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.start = start

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        return self.classifier.forward_from(hidden, lengths, self.start)


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
                f"{option('trainable', trainable)}: the model has {n_layers} blocks, choose 1..{n_layers}"
            )
        return n
    raise GPTClassifyError(
        f"{option('trainable')}: {trainable!r} is not one of head, last-block, last-N-blocks (e.g. "
        "last-2-blocks), all, lora"
    )


__all__ = [
    "POOLS",
    "FromBlock",
    "GPTClassifier",
    "Pool",
    "trainable_blocks",
]
