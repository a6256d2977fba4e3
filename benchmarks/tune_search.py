"""A small `gptclassify tune` search on the SMS spam split, with and without trials sharing
the frozen-prefix cache: wall time, trials, best trial, and what sharing the cache saved.

    python benchmarks/tune_search.py [--trials 8] [--out benchmarks/out/tune_search]

The model is a small random-init GPT-2 shape (6 blocks of width 128; the last block and the
head train, so blocks 0-4 are a frozen prefix every trial shares). Both searches use the
same TPE seed, so they sample the same trials; the difference in wall time is the caches
the second search builds again for every trial.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from common import machine_info, setup_offline_env

MODEL = {"emb_dim": 128, "n_heads": 4, "n_layers": 6, "context_length": 256}
SPACE = ["lr=loguniform(1e-4,3e-3)", "weight_decay=uniform(0,0.2)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/out/tune_search")
    args = parser.parse_args()
    setup_offline_env()
    from gptclassify.args import TrainConfig
    from gptclassify.tune import build_space, search

    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out / "model.json").write_text(json.dumps(MODEL))
    base = TrainConfig(
        model=str(out / "model.json"),
        weights="random",
        trainable="last-block",
        epochs=args.epochs,
        eval_freq=0,
    )
    rows = {}
    for share in (True, False):
        name = "shared cache" if share else "cache per trial"
        t0 = time.perf_counter()
        result = search(
            base,
            build_space(SPACE),
            out=out / ("shared" if share else "per-trial"),
            trials=args.trials,
            seed=0,
            share_cache=share,
            echo=print,
        )
        wall = time.perf_counter() - t0
        states = [r.state for r in result.rows]
        rows[name] = {
            "wall_s": wall,
            "complete": states.count("COMPLETE"),
            "pruned": states.count("PRUNED"),
            "best_trial": result.best.number if result.best else None,
            "best_val_accuracy": result.best.value if result.best else None,
            "best_test_accuracy": result.best.test_accuracy if result.best else None,
            **result.prefix_cache,
        }
        print(f"{name}: {json.dumps(rows[name])}")
    info = machine_info()
    print(f"\n{info['cpu_line']}, {info['torch_threads']} thread(s), torch {info['torch']}")
    print(
        "variant          wall s  complete  pruned  best  val acc  test acc  caches built  "
        "reused  build s  saved s  lookup s"
    )
    for name, r in rows.items():
        print(
            f"{name:<15} {r['wall_s']:7.1f}  {r['complete']:8d}  {r['pruned']:6d}  "
            f"{r['best_trial']!s:>4}  {r['best_val_accuracy'] * 100:7.2f}  "
            f"{r['best_test_accuracy'] * 100:8.2f}  {r['misses']:12.0f}  {r['hits']:6.0f}  "
            f"{r['built_s']:7.1f}  {r['saved_s']:7.1f}  {r['lookup_s']:8.1f}"
        )
    a, b = rows["shared cache"], rows["cache per trial"]
    print(
        f"\nsharing the cache: {b['wall_s'] - a['wall_s']:.1f} s less wall time "
        f"({(1 - a['wall_s'] / b['wall_s']) * 100:.0f}%); cache building "
        f"{b['built_s']:.1f} s -> {a['built_s']:.1f} s"
    )
    (out / "results.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
