"""gptclassify: fine-tune a pretrained decoder (GPT-2, Llama, Qwen, Mistral, SmolLM2, Gemma 3;
our own PyTorch implementations) into a text classifier.

The public API is re-exported here. Imports are resolved on first use so that
`gptclassify --help` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Classifier": "gptclassify.predict",
    "DataConfig": "gptclassify.args",
    "TrainConfig": "gptclassify.args",
    "train": "gptclassify.training",
    "GPTClassifier": "gptclassify.classifier",
    "GPTConfig": "gptclassify.config",
    "PRESETS": "gptclassify.models",
    "GPTClassifyError": "gptclassify.errors",
    "GPTModel": "gptclassify.model",
    "generate": "gptclassify.generation",
    "generate_text": "gptclassify.generation",
    "load_pretrained": "gptclassify.weights",
}

__all__ = [
    "Classifier",
    "DataConfig",
    "GPTClassifier",
    "GPTClassifyError",
    "GPTConfig",
    "GPTModel",
    "PRESETS",
    "TrainConfig",
    "__version__",
    "generate",
    "generate_text",
    "load_pretrained",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gptclassify' has no attribute {name!r}")


if TYPE_CHECKING:  # let type checkers and IDEs see the real objects
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.classifier import GPTClassifier
    from gptclassify.config import GPTConfig
    from gptclassify.errors import GPTClassifyError
    from gptclassify.generation import generate, generate_text
    from gptclassify.model import GPTModel
    from gptclassify.models import PRESETS
    from gptclassify.predict import Classifier
    from gptclassify.training import train
    from gptclassify.weights import load_pretrained
