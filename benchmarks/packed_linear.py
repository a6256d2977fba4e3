"""bf16 products with the weight packed once in oneDNN's layout, against `F.linear`.

`F.linear` on a CPU gives oneDNN the weight as a plain (out, in) matrix, which it reorders
into its blocked layout on every call; `fastpath.PackedLinear` reorders once
(`torch.ops.mkldnn._reorder_linear_weight`) and calls the same primitive
(`torch.ops.mkldnn._linear_pointwise`). This times both for GPT-2 small's and SmolLM2-135M's
matmul shapes at the row counts of padding-free passes (a batch of 8 SMS messages is ~256
rows), and checks the two give the same values. Random inputs, a few seconds.

    python benchmarks/packed_linear.py
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import common
from gptclassify import fastpath

SHAPES = {
    "GPT-2 c_attn": (768, 2304),
    "GPT-2 attn c_proj": (768, 768),
    "GPT-2 c_fc": (768, 3072),
    "GPT-2 mlp c_proj": (3072, 768),
    "SmolLM2 gate/up": (576, 1536),
    "SmolLM2 down": (1536, 576),
}
ROWS = (64, 128, 256, 320, 384, 448, 512, 1024, 2048)


def _time(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=common.default_threads())
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    same = True
    with torch.inference_mode():
        for name, (k, n) in SHAPES.items():
            w = (torch.randn(n, k) * 0.02).bfloat16()
            b = (torch.randn(n) * 0.02).bfloat16()
            packed = torch.ops.mkldnn._reorder_linear_weight(w)
            row = [f"{name} {k} -> {n}"]
            for m in ROWS:
                x = torch.randn(m, k).bfloat16()
                plain_s = _time(lambda x=x, w=w, b=b: F.linear(x, w, b), args.repeats)
                packed_s = _time(
                    lambda x=x, p=packed, b=b: torch.ops.mkldnn._linear_pointwise(
                        x, p, b, "none", [], ""
                    ),
                    args.repeats,
                )
                if m <= fastpath.PACKED_MAX_ROWS:
                    y = torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], "")
                    same &= bool(torch.equal(y, F.linear(x, w, b)))
                row.append(f"{plain_s / packed_s:.2f}x")
            rows.append(row)
    info = common.machine_info()
    print("bf16 products, packed weight vs F.linear (time of F.linear / time packed)")
    print(f"CPU: {info['cpu_line']}; {args.threads} thread(s), torch {info['torch']}\n")
    print(common.format_table(["shape (in -> out)", *(f"{m} rows" for m in ROWS)], rows))
    print(f"\npacked == F.linear bit for bit at <= {fastpath.PACKED_MAX_ROWS} rows: {same}")


if __name__ == "__main__":
    main()
