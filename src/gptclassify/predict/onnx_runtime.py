"""The ONNX Runtime runtime of a Classifier: an exported graph, run on the CPU.

Imports numpy and onnxruntime only, never torch: a folder written by `gptclassify export
--format onnx` classifies on a machine with `pip install "gptclassify[onnx]"` and no PyTorch.
Batching: longest texts first, each pass padded on the right to its own longest text, results
put back in input order; a pass holds at most `batch_size` texts and `max_tokens` padded
tokens (data.encode.token_passes). The graph computes every padded token, so without the token
budget a batch of 32 long texts held 32 x 1,024 tokens' activations at once (issue 26: several
times the PyTorch runtime's peak memory, whose passes skip padding and tile their rows). ONNX Runtime sessions
may be run from several threads at once, so a Classifier around this runtime may be too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gptclassify.artifact import ClassifierConfig
from gptclassify.config import GPTConfig
from gptclassify.data.encode import Encoded, pad_batch, token_passes
from gptclassify.errors import GPTClassifyError
from gptclassify.files import inside, sha256_file

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "logits"

MAX_PASS_TOKENS = 4096
"""Padded tokens per pass (the PyTorch runtime's no-grad budget, data.batches.TOKENS_PER_BATCH):
enough rows for efficient matmuls; a pass of 1,024-token texts holds four of them."""


def default_threads() -> int:
    """The CPUs this process may run on (PyTorch's default too). ONNX Runtime's own default
    counts physical cores, which in a VM can come out lower than the CPUs it is given: on the
    project's 2-CPU machine it ran at 40-60% of the speed of 2 explicit threads."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def new_session(path: Path, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session with every graph optimisation ONNX Runtime has for this machine."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its notes about folded initializers are noise
    options.intra_op_num_threads = threads or default_threads()
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GPTClassifyError(f"{path}: ONNX Runtime cannot load this graph ({first})") from None


class OnnxRuntime:
    """Runs an exported classifier graph with ONNX Runtime on the CPU."""

    name = "onnx"
    device = "cpu"

    def __init__(
        self,
        directory: str | Path,
        config: ClassifierConfig,
        threads: int | None = None,
        verify: bool = True,
        digests: dict[str, str | None] | None = None,
        max_tokens: int = MAX_PASS_TOKENS,
    ) -> None:
        """digests: file name -> sha256 already computed by the caller (e.g. in a thread while
        onnxruntime was being imported); the rest are computed here. max_tokens: padded
        tokens per pass (see `logits`)."""
        info = config.onnx
        if info is None:
            raise GPTClassifyError(f"{directory}: config.json names no ONNX graph")
        directory = Path(directory)
        files = [(info.file, info.sha256)]
        if info.data_file:
            files.append((info.data_file, info.data_sha256 or ""))
        for name, expected in files:
            path = inside(directory, name)
            if not path.is_file():
                raise GPTClassifyError(f"{path}: file not found")
            digest = (digests or {}).get(name) if verify else None
            if verify and (digest or sha256_file(path)) != expected:
                raise GPTClassifyError(
                    f"{path}: sha256 does not match config.json (the file changed after it was "
                    "exported); refusing to load it"
                )
        self.config = config
        self.precision = info.precision
        self.max_tokens = max_tokens
        self.session = new_session(directory / info.file, threads)
        names = [i.name for i in self.session.get_inputs()]
        if sorted(names) != sorted(INPUTS):
            raise GPTClassifyError(
                f"{directory / info.file}: graph inputs are {names}, expected {list(INPUTS)}"
            )

    @property
    def gpt_config(self) -> GPTConfig:
        return self.config.model

    @property
    def pool(self) -> str:
        return self.config.pool

    @property
    def causal(self) -> bool:
        return self.config.causal

    @property
    def num_classes(self) -> int:
        return len(self.config.labels)

    @property
    def padding_free(self) -> bool:
        """A graph computes every padded token."""
        return False

    def describe(self) -> str:
        return f"onnxruntime {ort.__version__}, cpu, {self.precision}"

    def warm_up(self, max_tokens: int) -> None:
        """Nothing to do: ONNX Runtime prepares its kernels when the session is made."""

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Logits (B, num_classes) of one right-padded batch."""
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run([OUTPUT], feed)[0]

    def logits(self, encoded: Encoded, batch_size: int) -> np.ndarray:
        """Class logits (N, num_classes) in input order; longest texts first, in passes of at
        most `batch_size` texts and `self.max_tokens` padded tokens, each padded to its own
        longest text."""
        out = np.zeros((len(encoded), self.num_classes), dtype=np.float32)
        for idx in token_passes(encoded, batch_size, self.max_tokens):
            seqs = [encoded.ids[i] for i in idx]
            out[idx] = self.run(*pad_batch(seqs, encoded.lengths[idx], encoded.pad_id))
        return out
