"""Why a text's bf16 answer depends on its neighbours: the two kernels, probed.

A row of a matmul should not depend on the other rows of the call, nor a text's attention
on the padding after it; in fp32 they do not (to rounding far below what a probability
shows). In bf16 on a CPU (oneDNN, AMX or AVX512-BF16) this script checks, bit for bit:

- `F.linear` on the first 64 rows of a matrix, alone and as part of calls of 64 to 512 rows
  (the packed pass's tiles: fastpath.ROW_ALIGN to fastpath.CPU_ROW_TILE), for GPT-2 small's
  three matmul shapes (c_attn 768 -> 2304, c_fc 768 -> 3072, c_proj 3072 -> 768); and the
  same with the weight packed once in oneDNN's layout (fastpath.PackedLinear, what the
  PyTorch runtime uses for calls of up to fastpath.PACKED_MAX_ROWS rows);
- causal `F.scaled_dot_product_attention` of a 40-token text at its own width and padded to
  wider passes (the packed pass attends over the batch's longest text), and in a batch of
  four at its own width.

It prints the largest difference from the alone-result per case (0.0: bit-identical).
Random inputs, seed 0; a few seconds. `--dtype float32` for the reference.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import common
from gptclassify import fastpath


def _fmt(d: float) -> str:
    return "0" if d == 0 else f"{d:.1e}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--threads", type=int, default=common.default_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    rows = (64, 128, 192, 256, 320, 384, 448, 512)
    table = []
    with torch.inference_mode():
        for k, n in ((768, 2304), (768, 3072), (3072, 768)):
            w = (torch.randn(n, k) * 0.02).to(dtype)
            b = (torch.randn(n) * 0.02).to(dtype)
            x = torch.randn(512, k).to(dtype)
            alone = F.linear(x[:64], w, b).float()
            diffs = [(F.linear(x[:m], w, b)[:64].float() - alone).abs().max().item() for m in rows]
            table.append([f"linear {k} -> {n}", *map(_fmt, diffs)])
            if fastpath.can_prepack(dtype, x.device):
                # the weight packed once, as the PyTorch runtime's bf16 layers hold it
                # (fastpath.PackedLinear; larger calls take the plain kernel above)
                packed = torch.ops.mkldnn._reorder_linear_weight(w)

                def mm(m: int, x=x, packed=packed, b=b) -> torch.Tensor:
                    return torch.ops.mkldnn._linear_pointwise(x[:m], packed, b, "none", [], "")

                alone_p = mm(64)[:64].float()
                diffs = [
                    (mm(m)[:64].float() - alone_p).abs().max().item()
                    if m <= fastpath.PACKED_MAX_ROWS
                    else float("nan")
                    for m in rows
                ]
                table.append([f"packed {k} -> {n}", *("-" if d != d else _fmt(d) for d in diffs)])
                same = (alone_p - alone).abs().max().item()
                table.append([f"  packed vs plain, 64 rows: {_fmt(same)}", *[""] * len(rows)])
        q, key, v = (torch.randn(1, 12, 512, 64).to(dtype) for _ in range(3))
        alone = F.scaled_dot_product_attention(
            q[:, :, :40], key[:, :, :40], v[:, :, :40], is_causal=True
        ).float()
        widths = (40, 64, 100, 200, 300, 512)
        attn = []
        for t in widths:
            y = F.scaled_dot_product_attention(
                q[:, :, :t], key[:, :, :t], v[:, :, :t], is_causal=True
            )
            attn.append(_fmt((y[:, :, :40].float() - alone).abs().max().item()))
        four = [torch.cat([z[:, :, :40]] * 4) for z in (q, key, v)]
        batched = F.scaled_dot_product_attention(*four, is_causal=True)[:1].float()
    info = common.machine_info()
    print(f"{args.dtype}, {info['cpu']}, {args.threads} thread(s), torch {info['torch']}\n")
    print("largest |difference| of the first 64 rows from the 64-row call, by rows per call:")
    print(common.format_table(["matmul", *map(str, rows)], table))
    print("\ncausal attention of a 40-token text, by the padded width of its pass:")
    print(common.format_table([str(t) for t in widths], [attn]))
    print(f"in a batch of four at its own width: {_fmt((batched - alone).abs().max().item())}")


if __name__ == "__main__":
    main()
