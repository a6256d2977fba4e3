"""The PyTorch runtime of a Classifier: the model, its device and precision, and the passes.

Inference never changes the model: in bf16 the weights are cast once into a separate view of
the model (fastpath.fast_view). The view is made again when the model has changed since (a
merged adapter, new weights), so `Classifier.model` stays the model that predicts. Any number
of threads can run passes on one runtime at the same time.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from gptclassify import torch_private
from gptclassify.classifier import GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.data.batches import TokenSource
from gptclassify.data.encode import Encoded
from gptclassify.fastpath import CPU_ROW_TILE, ROW_ALIGN, fast_view
from gptclassify.runtime import autocast, resolve_device, resolve_precision


class TorchRuntime:
    """Runs a GPTClassifier: batches of similar length, results back in input order."""

    name = "torch"

    def __init__(
        self,
        model: GPTClassifier,
        device: str | torch.device = "auto",
        precision: str = "auto",
    ) -> None:
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)  # type: ignore[arg-type]
        self.model = model.to(self.device).eval()
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int], ...] = ()
        self._runner: GPTClassifier | None = None
        _ = self.runner  # made now: loading pays for the weight casts, not a first request

    @property
    def runner(self) -> GPTClassifier:
        """What the passes run: the model with its weights in the compute precision, made
        when first needed and again whenever the model changed (see `_stamp`). Passes compute
        the real tokens only, where the model allows (padding_free)."""
        with self._lock:
            stamp = _stamp(self.model)
            if self._runner is None or stamp != self._stamp:
                view = fast_view(
                    self.model, self.dtype, cast_trainable=True, skip_padding=True, prepack=True
                )
                self._runner, self._stamp = view.eval(), stamp
            return self._runner

    @property
    def gpt_config(self) -> GPTConfig:
        return self.model.gpt.config

    @property
    def pool(self) -> str:
        return self.model.pool

    @property
    def causal(self) -> bool:
        return self.model.causal

    @property
    def padding_free(self) -> bool:
        """Whether a pass's cost follows its real tokens rather than its padded ones."""
        return self.model.padding_free

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def describe(self) -> str:
        return f"torch {torch.__version__}, {self.device}, {str(self.dtype).removeprefix('torch.')}"

    def warm_up(self, max_tokens: int = CPU_ROW_TILE) -> None:
        """On a CPU, one pass per matmul shape a padding-free pass uses (multiples of
        ROW_ALIGN rows up to a tile), so that no later pass waits while oneDNN builds a kernel
        for a new shape: what a server wants before its first request. GPUs have no such
        cost to pay ahead."""
        if not self.padding_free or self.device.type != "cpu":
            return
        top = min(max_tokens, CPU_ROW_TILE, 2 * self.gpt_config.context_length)
        for width in range(ROW_ALIGN, top + 1, ROW_ALIGN):
            # two texts of different lengths (padding to skip), width - 1 tokens in all
            self.logits(Encoded.filler([width // 2, width - 1 - width // 2]), batch_size=2)

    @torch.inference_mode()
    def logits(self, encoded: Encoded, batch_size: int) -> np.ndarray:
        """Class logits (N, num_classes) in input order; longest texts first, in chunks of
        `batch_size`, each padded to its own longest text."""
        source = TokenSource(encoded, self.device)
        out = np.zeros((len(source), self.num_classes), dtype=np.float32)
        order = torch.argsort(source.lengths, descending=True, stable=True)
        runner = self.runner  # one model for the whole call, even if it changes meanwhile
        with autocast(self.device, self.dtype):
            for idx in order.split(batch_size):
                logits = runner(*source.batch(idx).args)
                out[idx.numpy()] = logits.float().cpu().numpy()
        return out


def _stamp(model: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    """Which parameters the model holds and how often each was changed in place: a merged
    adapter or a replaced layer brings new parameter objects, an in-place edit (an optimizer
    step, `copy_`) bumps a tensor's version counter. The bf16 view copies weights, so either
    makes it stale. Cheap next to a pass (one tuple over the parameters)."""
    return tuple((id(p), torch_private.version(p)) for p in model.parameters())
