"""What an export starts from: a classifier folder with PyTorch weights, loaded in fp32 with
any LoRA adapters merged, the checksums that identify it, and texts to check the export on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptclassify.artifact import (
    CONFIG,
    TOKENIZER_FILE,
    ClassifierConfig,
    ExportSource,
    read_classifier_config,
)
from gptclassify.classifier import GPTClassifier
from gptclassify.data.encode import InputPolicy, encode, pad_batch
from gptclassify.data.tables import read_labelled
from gptclassify.errors import GPTClassifyError
from gptclassify.files import inside, sha256_file
from gptclassify.lora import has_lora
from gptclassify.model_io import folder_tokenizer, load_classifier
from gptclassify.tokenizer import Tokenizer
from gptclassify.weights import pretrained_dir, weights_file

CHECK_TEXTS = 300
"""Texts of the check split an export is compared on (the SMS test split has 300)."""


@dataclass
class CheckTexts:
    """Texts an export is checked on, with their class ids when known."""

    texts: list[str]
    labels: np.ndarray | None
    source: str


@dataclass
class Source:
    path: Path
    config: ClassifierConfig
    model: GPTClassifier
    """fp32, eval mode, adapters merged into plain layers."""
    record: ExportSource
    tokenizer: Tokenizer

    @property
    def policy(self) -> InputPolicy:
        c = self.config
        return InputPolicy(c.max_length, c.pad_length, c.truncate, self.tokenizer)


def load_source(run_dir: str | Path) -> Source:
    path = Path(run_dir)
    config = read_classifier_config(path)
    if not config.has_torch_weights:
        origin = f" ({config.exported_from.path})" if config.exported_from else ""
        raise GPTClassifyError(
            f"{path} is already an ONNX export; export from the training run it came from{origin}"
        )
    model, config = load_classifier(path, config)
    sums = {CONFIG: sha256_file(inside(path, CONFIG)), config.weights_file: config.weights_sha256}
    lora = config.provenance.lora
    if lora is not None and lora.adapters_only and lora.base:
        # load_classifier checked the base against this checksum before applying the adapters.
        sums["lora_base"] = lora.base_sha256 or sha256_file(weights_file(pretrained_dir(lora.base)))
    if config.trained_only and config.provenance.base_sha256:
        sums["base"] = config.provenance.base_sha256  # checked by load_classifier
    if has_lora(model):
        model.merge_lora()
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    tokenizer = folder_tokenizer(path, config)
    if config.tokenizer.get("sha256"):
        sums[TOKENIZER_FILE] = config.tokenizer["sha256"]
    return Source(path, config, model, ExportSource(str(path.resolve()), sums), tokenizer)


def check_texts(source: Source, data: str | Path | None) -> CheckTexts | None:
    """The texts an export is checked on: `data` (a labelled file, or a folder with test.csv),
    else the run's own test split (data/test.csv), else None."""
    if data is None:
        default = inside(source.path, "data", "test.csv")
        if not default.is_file():
            return None
        path = default
    else:
        path = Path(data)
        if path.is_dir():
            candidates = (inside(path, "test.csv"), inside(path, "data", "test.csv"))
            found = [p for p in candidates if p.is_file()]
            if not found:
                raise GPTClassifyError(f"--data {path}: no test.csv in this folder")
            path = found[0]
    table = read_labelled(path)
    texts, labels = table.texts[:CHECK_TEXTS], table.labels[:CHECK_TEXTS]
    names = list(source.config.labels)
    ids = None
    if all(label in names for label in labels):
        ids = np.array([names.index(label) for label in labels], dtype=np.int64)
    return CheckTexts(texts, ids, str(path))


def synthetic_texts(n: int = 48, seed: int = 0) -> list[str]:
    """Texts of many lengths, for checks when no labelled split is at hand."""
    rng = np.random.default_rng(seed)
    words = "win cash prize call now free see you at home later ok the meeting".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(1, 40)))) for _ in range(n)]


def padded_batches(
    texts: list[str], policy: InputPolicy, batch_size: int = 8
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Batches in input order (so rows of very different lengths share a batch), each padded
    on the right to its longest row: the case a wrong export gets wrong."""
    encoded = encode(texts, policy)
    out = []
    for start in range(0, len(texts), batch_size):
        rows = list(range(start, min(start + batch_size, len(texts))))
        out.append(pad_batch([encoded.ids[i] for i in rows], encoded.lengths[rows], encoded.pad_id))
    return out
