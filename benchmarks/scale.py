"""How training cost grows with the training set: 1x, 10x, 100x the SMS spam training split.

Each size is one `python -m gptclassify train` child (GPT-2 small shape, random weights,
1 epoch, the defaults otherwise: last block trainable, frozen-prefix cache, bf16 where the
CPU has it), timed from spawn to exit with its own peak RSS (`os.wait4`). The table gives
wall time, the run's own phases from its train.log and metrics.json (tokenizing, building the
frozen-prefix cache, the training loop), training tokens per second, where the cache lived
(memory, a memory-mapped file, or not used) and its size.

    python benchmarks/scale.py                        # 1x and 10x (+ 10x with the cache on disk)
    python benchmarks/scale.py --scales 1 10 100      # the 100x run too (~15+ min on 2 cores)

**The larger training sets** are the 1,045 training texts of the seed-123 SMS split, repeated
(N-1 more copies) with small seeded edits so that every text stays distinct: each copy of a
text gets one to three edits drawn from (swap two neighbouring words, drop a word, repeat a
word, flip the case of a word's first letter, replace a letter inside a word by a random
letter); an edit that happens to give a text already present is redrawn, and after ten
tries the copy number is appended (` (k)`). Labels are kept. (The split itself holds a few
repeated messages, as the SMS collection does; they stay as they are.) Validation (149) and test (300)
stay the original texts at every size: what grows is the training set, as in the issue.
The edits keep the texts' lengths (and so their token counts) close to the originals', so
tokens grow with the scale almost exactly.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import shutil
import string
import time
from pathlib import Path
from typing import Any

import common

EDITS = ("swap", "drop", "repeat", "case", "letter")


def edit_text(text: str, rng: random.Random) -> str:
    """One small edit (see the module docstring); the text stays readable and about as long."""
    words = text.split(" ")
    kind = rng.choice(EDITS)
    if kind == "swap" and len(words) >= 2:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == "drop" and len(words) >= 3:
        del words[rng.randrange(len(words))]
    elif kind == "repeat":
        i = rng.randrange(len(words))
        words.insert(i, words[i])
    elif kind == "case":
        i = rng.randrange(len(words))
        w = words[i]
        if w:
            words[i] = w[0].swapcase() + w[1:]
    else:
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) >= 2:
            j = rng.randrange(len(w))
            words[i] = w[:j] + rng.choice(string.ascii_lowercase) + w[j + 1 :]
    return " ".join(words)


def scaled_texts(
    texts: list[str], labels: list[str], scale: int, seed: int
) -> tuple[list[str], list[str]]:
    """`scale` copies of the texts, the first as is, the others with small distinct edits."""
    rng = random.Random(seed)
    seen = set(texts)
    out_texts, out_labels = list(texts), list(labels)
    for k in range(1, scale):
        for text, label in zip(texts, labels, strict=True):
            for _ in range(10):
                edited = text
                for _ in range(rng.randint(1, 3)):
                    edited = edit_text(edited, rng)
                if edited not in seen and edited.strip():
                    break
            else:
                edited = f"{text} ({k})"
            seen.add(edited)
            out_texts.append(edited)
            out_labels.append(label)
    return out_texts, out_labels


def write_csv(path: Path, texts: list[str], labels: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))


def prepare(out: Path, scales: list[int], seed: int) -> dict[int, Path]:
    """<out>/data/{validation,test}.csv and one train-<N>x.csv per scale."""
    from gptclassify.data.sms_spam import prepare_sms_spam

    splits = prepare_sms_spam(source=str(common.DEFAULT_SMS_SOURCE), seed=seed)
    data = out / "data"
    write_csv(data / "validation.csv", splits.validation.texts, splits.validation.labels)
    write_csv(data / "test.csv", splits.test.texts, splits.test.labels)
    files = {}
    for scale in scales:
        path = data / f"train-{scale}x.csv"
        if not path.is_file():
            texts, labels = scaled_texts(splits.train.texts, splits.train.labels, scale, seed)
            n = len(splits.train.texts)  # the split itself repeats a few messages, kept so
            assert len(set(texts)) == len(set(texts[:n])) + len(texts) - n, "copies not distinct"
            write_csv(path, texts, labels)
        files[scale] = path
    return files


LOG_PATTERNS = {
    "tokenize_s": r"Tokenized [\d,]+ texts, [\d,]+ tokens, in ([\d.]+) s",
    "tokenize_s_per_m": r"\(([\d.]+) s per million tokens\)",
    "cache_build_s": r"Cached the frozen blocks \d+-\d+ for all texts in ([\d.]+) s",
}


def read_log(log: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, pattern in LOG_PATTERNS.items():
        m = re.search(pattern, log)
        found[key] = float(m.group(1)) if m else None
    m = re.search(r"Frozen-prefix cache: (in memory|[\d.]+ GB in a memory-mapped|not used)", log)
    where = m.group(1) if m else "-"
    found["cache"] = (
        "memory" if where == "in memory" else "off" if where in ("not used", "-") else "disk"
    )
    size = re.search(r"Frozen-prefix cache: (?:in memory, )?([\d.]+) GB", log)
    found["cache_gb"] = float(size.group(1)) if size else None
    return found


def train_tokens(path: Path) -> int:
    """Real tokens of the training texts (context 1,024: no SMS text is cut)."""
    from gptclassify.data.encode import tokenize
    from gptclassify.data.tables import read_labelled

    return tokenize(read_labelled(path).texts).tokens


def run_scale(args: argparse.Namespace, scale: int, train: Path, extra: list[str]) -> dict:
    label = f"{scale}x" + (" " + " ".join(extra) if extra else "")
    run_dir = args.out / "runs" / label.replace(" ", "").replace("--", "-")
    shutil.rmtree(run_dir, ignore_errors=True)
    data = args.out / "data"
    cmd = common.gptclassify(
        "train",
        "--model",
        str(args.weights),
        "--train",
        str(train),
        "--validation",
        str(data / "validation.csv"),
        "--test",
        str(data / "test.csv"),
        "--epochs",
        "1",
        "--seed",
        str(args.seed),
        "--out",
        str(run_dir),
        "--quiet",
        *extra,
    )
    print(f"[{label}] {' '.join(cmd[1:])}", flush=True)
    child = common.run_child(cmd, common.child_env(args.threads), args.out / f"{run_dir.name}.log")
    common.check_child(child, f"train at {label}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    found = read_log((run_dir / "train.log").read_text())
    tokens = train_tokens(train)
    texts = sum(1 for _ in open(train, encoding="utf-8")) - 1  # no newlines inside SMS texts
    loop_s = metrics["training_time_s"]
    work_s = loop_s + (found["cache_build_s"] or 0.0)
    row = {
        "scale": label,
        "train_texts": texts,
        "train_tokens": tokens,
        "wall_s": child.wall_s,
        "tokenize_s_per_m": found["tokenize_s_per_m"],
        "cache": found["cache"],
        "cache_gb": found["cache_gb"],
        "cache_build_s": found["cache_build_s"],
        "loop_s": loop_s,
        "loop_tokens_per_s": tokens / loop_s,
        "train_tokens_per_s": tokens / work_s,
        "us_per_token": work_s / tokens * 1e6,
        "peak_rss_mb": child.maxrss_mb,
        "test_accuracy": metrics["test"]["accuracy"],
        "cmd": cmd,
    }
    if not args.keep_runs:
        (run_dir / "model.safetensors").unlink(missing_ok=True)
    print(f"[{label}] {child.wall_s:.1f} s, peak RSS {child.maxrss_mb:,.0f} MB", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    p.add_argument(
        "--disk-at",
        type=int,
        nargs="*",
        default=[10],
        help="Scales run once more with --cache-gb 0 (the cache in a memory-mapped file), to "
        "compare with the same size in memory",
    )
    p.add_argument("--threads", type=int, default=common.default_threads())
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "scale")
    p.add_argument("--keep-runs", action="store_true", help="keep each run's model.safetensors")
    args = p.parse_args()
    common.setup_offline_env()
    args.out.mkdir(parents=True, exist_ok=True)
    args.weights = common.ensure_gpt2_weights(common.DEFAULT_OUT / "gpt2-small-random-seed123")
    info = common.machine_info()
    t0 = time.perf_counter()
    files = prepare(args.out, sorted(set(args.scales) | set(args.disk_at or [])), args.seed)
    rows = []
    for scale in args.scales:
        rows.append(run_scale(args, scale, files[scale], []))
        if scale in (args.disk_at or []):
            rows.append(run_scale(args, scale, files[scale], ["--cache-gb", "0"]))
    for scale in sorted(set(args.disk_at or []) - set(args.scales)):
        rows.append(run_scale(args, scale, files[scale], ["--cache-gb", "0"]))
    headers = {
        "scale": "scale",
        "train_texts": "train texts",
        "train_tokens": "train tokens",
        "wall_s": "wall s",
        "tokenize_s_per_m": "tokenize s/M tok",
        "cache": "cache",
        "cache_gb": "cache GB",
        "cache_build_s": "cache build s",
        "loop_s": "epoch loop s",
        "loop_tokens_per_s": "loop tok/s",
        "train_tokens_per_s": "train tok/s",
        "us_per_token": "us/train tok",
        "peak_rss_mb": "peak RSS MB",
        "test_accuracy": "test acc",
    }
    print(
        f"\nTraining cost by size: GPT-2 small shape (random weights, seed {args.seed}), 1 epoch, "
        f"{args.threads} thread(s), torch {info['torch']}\nCPU: {info['cpu_line']}\n"
    )
    print(common.format_table(list(headers.values()), [[r[k] for k in headers] for r in rows]))
    base = next((r for r in rows if r["scale"] == "1x"), None)
    if base:
        for r in rows:
            if r is not base:
                print(
                    f"{r['scale']}: {r['us_per_token'] / base['us_per_token']:.2f}x 1x's cost per "
                    f"training token (cache build + loop; target <= 1.2x at 100x)"
                )
    print(
        "\ntrain tok/s = training tokens / (cache build + epoch loop); the cache build also "
        "covers the 449 validation and test texts, a fixed cost"
    )
    print(f"(benchmark total {time.perf_counter() - t0:.0f} s)")
    common.write_json(args.out / "scale.json", {"machine": info, "rows": rows})


if __name__ == "__main__":
    main()
