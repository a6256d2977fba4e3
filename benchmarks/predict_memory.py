"""Peak memory of `gptclassify predict` on big files: it reads and writes in chunks.

Makes a CSV of N real SMS texts (the shipped collection, repeated), classifies it with
`python -m gptclassify predict RUN --input in.csv --output out.csv` in a fresh child process,
and reports the child's peak RSS and wall time for each N. The model is a tiny one (context
64, width 64, 2 blocks, random weights) so that 200,000 rows take about a minute: the model's
own memory is the same at every N, so the growth from one N to the next is what the file
handling costs.

    python benchmarks/predict_memory.py                 # 20,000 and 200,000 rows
    python benchmarks/predict_memory.py --rows 1000 20000 200000 --out benchmarks/out/memory
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import common


def make_model(folder: Path) -> Path:
    import torch

    from gptclassify.classifier import GPTClassifier
    from gptclassify.config import GPTConfig
    from gptclassify.data.encode import InputPolicy
    from gptclassify.model import GPTModel
    from gptclassify.predict import Classifier

    if (folder / "config.json").is_file():
        return folder
    torch.manual_seed(0)
    config = GPTConfig(context_length=64, emb_dim=64, n_heads=4, n_layers=2)
    model = GPTClassifier(GPTModel(config), 2)
    Classifier(model, ["ham", "spam"], InputPolicy(64, None), precision="fp32").save(folder)
    return folder


def make_input(path: Path, rows: int) -> Path:
    if path.is_file():
        return path
    lines = common.DEFAULT_SMS_SOURCE.read_text(encoding="utf-8").splitlines()
    texts = [line.partition("\t")[2] for line in lines if line]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([i, texts[i % len(texts)]])
    tmp.rename(path)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "predict_memory")
    p.add_argument("--threads", type=int, default=common.default_threads())
    args = p.parse_args()
    common.setup_offline_env()
    args.out.mkdir(parents=True, exist_ok=True)
    model = make_model(args.out / "tiny-model")
    env = common.child_env(args.threads)
    results = []
    for n in args.rows:
        source = make_input(args.out / f"in-{n}.csv", n)
        output = args.out / f"out-{n}.csv"
        cmd = common.gptclassify("predict", str(model), "--input", str(source))
        cmd += ["--output", str(output), "--quiet", "--precision", "fp32"]
        result = common.run_child(cmd, env, args.out / f"predict-{n}.log")
        common.check_child(result, f"predict on {n} rows")
        with open(output, encoding="utf-8") as f:
            written = sum(1 for _ in csv.reader(f)) - 1
        assert written == n, f"{written} rows written for {n}"
        results.append(
            [
                f"{n:,}",
                f"{source.stat().st_size / 2**20:,.1f}",
                f"{result.wall_s:.1f}",
                f"{result.maxrss_mb:,.0f}",
            ]
        )
    info = common.machine_info()
    print(
        f"\npredict peak memory: tiny model, CSV in and out, chunks of 10,000 rows, "
        f"{info['cpu']}, {args.threads} thread(s), torch {info['torch']}\n"
    )
    print(common.format_table(["rows", "input MB", "wall s", "peak RSS MB"], results))


if __name__ == "__main__":
    main()
