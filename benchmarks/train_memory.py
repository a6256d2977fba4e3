"""Peak memory of training on long texts, with and without the token budget per pass.

A training batch with more padded tokens than `data.batches.TRAIN_TOKENS_PER_PASS` runs as
several forward/backward passes of one optimizer step (the same gradient). This trains the
same short job twice in fresh processes, once with the budget and once with it lifted, and
prints each one's peak RSS and wall time: a SmolLM2-width model (random weights, 4 of 6
blocks trainable), 16 texts of about --words random words each, batch 8, one epoch.

    python benchmarks/train_memory.py --words 6000
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import common

WORDS = "alpha beta gamma delta market price stock league goal team code server bug".split()
UNLIMITED = 10**9


def worker(budget: int, folder: Path) -> None:
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import loop, train

    loop.TRAIN_TOKENS_PER_PASS = budget
    start = time.perf_counter()
    train(
        TrainConfig(
            data=DataConfig(train=str(folder / "long.csv")),
            model=str(folder / "model.json"),
            weights="random",
            trainable="last-4-blocks",
            epochs=1,
            batch_size=8,
            eval_freq=0,
            baseline=False,
            lexical="off",
            out=str(folder / f"run-{budget}"),
        ),
        quiet=True,
    )
    with open("/proc/self/status", encoding="ascii") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
    print(json.dumps({"peak_mb": peak_kb / 1024, "wall_s": time.perf_counter() - start}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--words", type=int, default=6000, help="Words per text (about as many tokens).")
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "train_memory")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        worker(args.worker, args.out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with open(args.out / "long.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(16):
            writer.writerow([" ".join(rng.choice(WORDS) for _ in range(args.words)), "ab"[i % 2]])
    shape = {"emb_dim": 576, "n_heads": 9, "n_layers": 6, "context_length": 8192}
    (args.out / "model.json").write_text(json.dumps(shape), encoding="utf-8")
    from gptclassify.data.batches import TRAIN_TOKENS_PER_PASS

    rows = []
    for budget in (UNLIMITED, TRAIN_TOKENS_PER_PASS):
        for old in args.out.glob(f"run-{budget}*"):
            subprocess.run(["rm", "-rf", str(old)], check=True)
        done = subprocess.run(
            [sys.executable, __file__, "--worker", str(budget), "--out", str(args.out)],
            env=common.child_env(common.default_threads()),
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        name = "one pass per batch" if budget == UNLIMITED else f"{budget:,} tokens a pass"
        rows.append([name, f"{result['peak_mb']:,.0f}", f"{result['wall_s']:.1f}"])
    info = common.machine_info()
    print(
        f"16 texts of {args.words:,} words, batch 8, 4 trainable blocks of 6 (SmolLM2 width); "
        f"{info['cpu_line']}"
    )
    print(common.format_table(["training", "peak RSS MB", "wall s"], rows))


if __name__ == "__main__":
    main()
