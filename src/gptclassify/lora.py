"""LoRA (Hu et al. 2021): trainable low-rank updates beside frozen linear layers.

`add_lora` wraps the chosen linear layers of every block of a classifier in `LoRALinear`.
It replaces the classifier's own copies of the blocks, so the GPT model the classifier was
built on keeps its plain layers. `merge_lora` folds the updates back into plain layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptclassify.config import LORA_TARGETS
from gptclassify.model import shallow_copy


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
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=device))
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


def effective_weight(layer: nn.Module) -> tuple[Tensor, Tensor | None]:
    """(weight, bias) that a Linear or LoRALinear applies, differentiable in its parameters."""
    if isinstance(layer, LoRALinear):
        return layer.base.weight + layer.delta_weight(), layer.base.bias
    return layer.weight, layer.bias


def add_lora(
    model: nn.Module, rank: int, alpha: float, targets: tuple[str, ...] = LORA_TARGETS
) -> int:
    """Wrap the `targets` linear layers of every block in LoRALinear; returns how many.

    The blocks are replaced by copies holding the adapters (their other layers, and all the
    weights, are shared), so the backbone the classifier was built on is left as it was.
    """
    count = 0
    blocks = []
    for block in model.gpt.h:
        block = shallow_copy(block)
        for target in targets:
            parent_name, attr = target.split(".")
            parent = shallow_copy(getattr(block, parent_name))
            setattr(block, parent_name, parent)
            layer = getattr(parent, attr)
            if isinstance(layer, nn.Linear):
                setattr(parent, attr, LoRALinear(layer, rank, alpha))
                count += 1
        blocks.append(block)
    model.gpt.h = nn.ModuleList(blocks)
    return count


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weight (exact up to float rounding)."""
    for block in model.gpt.h:
        for target in LORA_TARGETS:
            parent_name, attr = target.split(".")
            parent = getattr(block, parent_name)
            layer = getattr(parent, attr)
            if isinstance(layer, LoRALinear):
                setattr(parent, attr, layer.merged())


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def is_adapter_or_head(name: str) -> bool:
    """State-dict names an adapters-only model folder stores (the rest is the base model)."""
    return "lora_" in name or name.startswith("head.")
