"""int8: ONNX Runtime's dynamic quantization of the linear layers, and how much it changes.

`quantize_dynamic` stores each MatMul's constant weight as int8 (per output channel) and
quantizes that MatMul's input to uint8 on the fly, per batch; ONNX Runtime then runs the
products on int8 units (VNNI / AMX where the CPU has them). Embeddings, LayerNorms, softmax
and the attention products between activations stay fp32. What this costs is measured, not
assumed: label agreement with the fp32 graph, and the accuracy of both, on labelled texts.
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from gptclassify.errors import GPTClassifyError

MIN_AGREEMENT = 0.99
"""Label agreement with fp32 below which the export warns: int8 should change the label of
at most one text in a hundred, or its speed is paid for in answers."""


def quantize_int8(fp32: Path, int8: Path) -> None:
    """Write the int8 version of the fp32 graph `fp32` to `int8`."""
    logger = logging.getLogger()
    level = logger.level
    # quantize_dynamic logs a generic advice to pre-process image models through the root
    # logger on every call; it does not apply here.
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_dynamic(
                str(fp32),
                str(int8),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                extra_options={"MatMulConstBOnly": True},
            )
    except Exception as exc:  # onnxruntime's quantizer raises plain exceptions
        raise GPTClassifyError(f"int8 quantization failed: {type(exc).__name__}: {exc}") from None
    finally:
        logger.setLevel(level)


def compare_labels(
    fp32_logits: np.ndarray, int8_logits: np.ndarray, labels: np.ndarray | None
) -> dict[str, Any]:
    """Agreement of the two graphs' labels; accuracies when the true labels are known."""
    a, b = fp32_logits.argmax(axis=1), int8_logits.argmax(axis=1)
    out: dict[str, Any] = {
        "texts": int(len(a)),
        "label_agreement": float((a == b).mean()),
        "max_abs_dlogit": float(np.abs(fp32_logits - int8_logits).max()),
    }
    if labels is not None:
        out["accuracy_fp32"] = float((a == labels).mean())
        out["accuracy_int8"] = float((b == labels).mean())
    return out
