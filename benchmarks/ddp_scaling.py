"""Data-parallel scaling: training samples per second on 1 and 2 (or N) ranks with torchrun.

Every run trains the same job: a GPT-2-shaped model (width 768, 12 heads; 4 blocks by
default, random weights), every layer trainable and the frozen-prefix cache off (so each
step is a full forward and backward plus DDP's gradient all-reduce), on the first
--texts SMS texts of the shipped collection, one epoch, global batch 16. Throughput is
metrics.json's examples_seen / training_time_s (the loop alone, without start-up).

On CPU (gloo) the machine's cores are shared out: 1 rank gets all --threads, N ranks get
threads / N each, so the comparison is the same hardware used two ways. On CUDA (NCCL)
each rank gets a GPU. Efficiency = throughput(N) / (N x throughput(1)) on GPUs, and
throughput(N) / throughput(1) on CPU (where N ranks share the same cores).

    python benchmarks/ddp_scaling.py                    # CPU, 1 and 2 ranks
    python benchmarks/ddp_scaling.py --device cuda --ranks 1 2 4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--threads", type=int, default=common.default_threads())
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--texts", type=int, default=256)
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "ddp_scaling")
    args = p.parse_args()
    common.setup_offline_env()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "model.json"
    model.write_text(
        json.dumps({"emb_dim": 768, "n_heads": 12, "n_layers": args.layers, "context_length": 128})
    )
    data = args.out / "texts.csv"
    lines = common.DEFAULT_SMS_SOURCE.read_text(encoding="utf-8").splitlines()[: args.texts]
    import csv

    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "text"])
        writer.writerows(line.split("\t", 1) for line in lines)

    rows, base = [], None
    for n in args.ranks:
        threads = args.threads if args.device == "cuda" else max(1, args.threads // n)
        env = common.child_env(threads)
        run = args.out / f"run-{n}"
        cmd = common.gptclassify(
            "train", "--train", str(data), "--model", str(model),
            "--weights", "random", "--trainable", "all", "--cache", "off", "--epochs", "1",
            "--batch-size", "16", "--eval-freq", "0", "--device", args.device,
            "--out", str(run), "--overwrite", "--quiet",
            ranks=n,
        )  # fmt: skip
        result = common.run_child(cmd, env, args.out / f"run-{n}.log")
        common.check_child(result, f"{n} rank(s)")
        metrics = json.loads((run / "metrics.json").read_text())
        rate = metrics["examples_seen"] / metrics["training_time_s"]
        base = base or rate
        efficiency = rate / base if args.device == "cpu" else rate / (n * base)
        rows.append(
            [n, threads, metrics["backend"] or "-", metrics["examples_seen"],
             f"{metrics['training_time_s']:.1f}", f"{rate:.1f}", f"{efficiency:.2f}",
             f"{result.wall_s:.1f}"]
        )  # fmt: skip
    info = common.machine_info()
    print(
        f"\nDDP scaling: {args.layers}-block GPT-2-width model, all layers trainable, cache off, "
        f"{args.texts} texts, 1 epoch, global batch 16, {args.device}, {info['cpu']}, "
        f"torch {info['torch']}\n"
    )
    print(
        common.format_table(
            ["ranks", "threads/rank", "backend", "examples", "loop s", "samples/s",
             "efficiency", "wall s"],
            rows,
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
