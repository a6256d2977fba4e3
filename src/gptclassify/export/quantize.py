"""int8: ONNX Runtime's dynamic quantization of the linear layers, and how much it changes.

`quantize_dynamic` stores each MatMul's constant weight as int8 (per output channel) and
quantizes that MatMul's input to uint8 on the fly, per batch; ONNX Runtime then runs the
products on int8 units (VNNI / AMX where the CPU has them). Embeddings, LayerNorms, softmax
and the attention products between activations stay fp32. What this costs is measured, not
assumed: label agreement with the fp32 graph, and the accuracy of both, on labelled texts.

Some linear layers stay fp32 (`KEEP_FP32`): every block's MLP output projection, whose input
(after GELU or SwiGLU) has the largest outliers, which one scale per batch maps onto 256
levels worst, and with 8 blocks or more, every linear layer of the first block and of the last two. Measured on
SmolLM2-135M fine-tuned on SMS spam (RESULTS.md): quantizing every linear layer changed 4 of
300 test labels (98.67% agreement), keeping these fp32 changed none, at about 1.2x the
all-int8 graph's time (still about 1.6x faster than fp32). Layers are recognised by their
weights (each MatMul's constant matched to the PyTorch module it came from), not by the
exporter's node names.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic

from gptclassify.errors import GPTClassifyError

MIN_AGREEMENT = 0.99
"""Label agreement with fp32 below which the export warns: int8 should change the label of
at most one text in a hundred, or its speed is paid for in answers."""


KEEP_FP32 = (
    "mlp.c_proj of every block; with 8 blocks or more, also every linear layer of the first "
    "block and of the last two"
)


def fp32_layers(model: Any) -> set[str]:
    """The Linear modules of a GPTClassifier that int8 leaves in fp32 (see KEEP_FP32)."""
    n = len(model.gpt.h)
    keep: set[str] = set()
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parts = name.split(".")
        if "h" not in parts:
            continue
        block = int(parts[parts.index("h") + 1])
        ends = n >= 8 and (block == 0 or block >= n - 2)
        if name.endswith("mlp.c_proj") or ends:
            keep.add(name)
    return keep


def matmuls_of(graph: Path, model: Any, modules: set[str]) -> list[str]:
    """The graph's MatMul nodes whose constant weight is one of `modules`' (as x @ W.T)."""
    import onnx  # lazy: onnx
    from onnx import numpy_helper  # lazy: onnx

    wanted: dict[bytes, str] = {}
    for name, module in model.named_modules():
        if name in modules:
            w = module.weight.detach().float().t().contiguous().numpy()
            wanted[hashlib.sha256(w.tobytes()).digest()] = name
    proto = onnx.load(str(graph))
    inits = {i.name: i for i in proto.graph.initializer}
    nodes = []
    for node in proto.graph.node:
        if node.op_type != "MatMul" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        b = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32, copy=False)
        if hashlib.sha256(np.ascontiguousarray(b).tobytes()).digest() in wanted:
            nodes.append(node.name)
    return nodes


def quantize_int8(fp32: Path, int8: Path, keep: list[str] = ()) -> None:
    """Write the int8 version of the fp32 graph `fp32` to `int8`, the MatMul nodes named in
    `keep` left in fp32."""
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
                nodes_to_exclude=list(keep),
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
