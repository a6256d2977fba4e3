"""int8: the linear layers as int8 products with a scale per token, and what that costs.

Every MatMul with a constant weight becomes: the weight stored as int8 with a scale per
output channel (symmetric), and its input quantized on the fly to uint8 with **a scale per
row** (per token: that row's largest magnitude over 127, zero point 128), then ONNX Runtime's
`MatMulIntegerToFloat` (its int8 units: VNNI / AMX where the CPU has them, the per-channel
scales applied in the product's epilogue) and one multiplication by the row scales.
Embeddings, LayerNorms, softmax and the attention products between activations stay fp32.

Why not `onnxruntime.quantization.quantize_dynamic`: it quantizes each product's input with
one scale for the whole batch, so one token with large activations (a model's outlier
dimensions, or another text in the batch) coarsens every other token's levels, and a text's
answer depends on its neighbours. On SmolLM2-135M fine-tuned on SMS spam the row scale
changed fewer labels than the batch scale, with or without layers kept in fp32, and ran
faster (RESULTS.md: issue 20's int8 sections, and "Figures that left the docstrings").

What this costs is measured, not assumed: the export compares labels with the fp32 graph
(and accuracy on labelled texts); below MIN_AGREEMENT it quantizes again with the layers
of `KEEP_FP32` left in fp32 and keeps whichever agrees more. Layers are recognised by their
weights (each MatMul's constant matched to the PyTorch module it came from), not by the
exporter's node names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptclassify.errors import GPTClassifyError

MIN_AGREEMENT = 0.99
"""Label agreement with fp32 below which the export quantizes again with KEEP_FP32's layers
in fp32, and warns if that is still below: int8 should change the label of at most one text
in a hundred, or its speed is paid for in answers."""


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


def quantize_int8(fp32: Path, int8: Path, keep: list[str] = ()) -> int:
    """Write the int8 version of the fp32 graph `fp32` to `int8` (see the module docstring),
    the MatMul nodes named in `keep` left in fp32. Returns how many products became int8."""
    import onnx  # lazy: onnx
    from onnx import TensorProto, helper, numpy_helper  # lazy: onnx

    try:
        model = onnx.load(str(fp32))
    except Exception as exc:  # onnx raises plain exceptions
        raise GPTClassifyError(f"{fp32}: cannot read the fp32 graph: {exc}") from None
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    skip = set(keep)
    shared = {
        "q_127": np.array(127.0, np.float32),
        "q_128": np.array(128.0, np.float32),
        "q_tiny": np.array(1e-12, np.float32),
        "q_one": np.array(1.0, np.float32),
        "q_zero_point": np.array(128, np.uint8),
        "q_last_axis": np.array([-1], np.int64),
    }
    added = [numpy_helper.from_array(v, name) for name, v in shared.items()]
    nodes = []
    done = 0
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" else None
        if (
            weight is None
            or node.name in skip
            or len(weight.dims) != 2
            or weight.data_type != TensorProto.FLOAT
        ):
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        col_scale = (np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0).astype(np.float32)
        w_int8 = np.clip(np.round(w / col_scale), -127, 127).astype(np.int8)
        p = f"q{done}_"
        done += 1
        added += [
            numpy_helper.from_array(w_int8, p + "weight"),
            numpy_helper.from_array(col_scale, p + "weight_scale"),
            numpy_helper.from_array(np.zeros(w.shape[1], np.int8), p + "weight_zero_point"),
        ]
        x, y = node.input[0], node.output[0]
        if opset >= 18:
            row_max = helper.make_node("ReduceMax", [p + "abs", "q_last_axis"], [p + "max"])
        else:
            row_max = helper.make_node("ReduceMax", [p + "abs"], [p + "max"], axes=[-1])
        nodes += [
            helper.make_node("Abs", [x], [p + "abs"]),
            row_max,
            helper.make_node("Max", [p + "max", "q_tiny"], [p + "max_"]),
            helper.make_node("Div", [p + "max_", "q_127"], [p + "row_scale"]),  # (..., 1)
            helper.make_node("Div", [x, p + "row_scale"], [p + "scaled"]),  # within +-127
            helper.make_node("Round", [p + "scaled"], [p + "rounded"]),
            helper.make_node("Add", [p + "rounded", "q_128"], [p + "shifted"]),  # 1..255
            helper.make_node("Cast", [p + "shifted"], [p + "x_uint8"], to=TensorProto.UINT8),
            helper.make_node(
                "MatMulIntegerToFloat",
                [
                    p + "x_uint8",
                    p + "weight",
                    "q_one",
                    p + "weight_scale",
                    "q_zero_point",
                    p + "weight_zero_point",
                ],
                [p + "product"],
                domain="com.microsoft",
            ),
            helper.make_node("Mul", [p + "product", p + "row_scale"], [y]),
        ]
    used = {name for n in nodes for name in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    try:
        onnx.save(model, str(int8))
    except ValueError:  # over protobuf's 2 GB: the tensors in a file beside the graph
        onnx.save(model, str(int8), save_as_external_data=True, location=int8.name + ".data")
    return done


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
