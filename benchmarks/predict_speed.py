"""Inference speed: transformers' text-classification pipeline vs `gptclassify` Classifier.

Classifies the 1,494 balanced SMS messages (train + validation + test of the default split)
with the same random GPT-2 small weights and the same head:

- pipeline: `transformers.pipeline("text-classification", model=<folder>, batch_size=B)` on
  a `GPT2ForSequenceClassification` folder with a GPT-2 tokenizer (pad = eos; it pools at the
  last non-padding token, the same function as ours).
- ours: `gptclassify.predict.Classifier` around `GPTClassifier(load_pretrained(<folder>), 2)`
  with the pipeline model's `score` weights copied into its head (bias 0), in fp32 and bf16.

Each variant runs in a fresh child process (own peak RSS); the timed part is one call over
all messages, strings in, labels out (tokenization included), after a two-batch warm-up.
The script also measures this machine's matmul throughput (fp32 and bf16) to put the
achieved GFLOP/s in context. See benchmarks/README.md for the FLOP formula.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common

LABELS = ["ham", "spam"]


# ---- FLOPs ------------------------------------------------------------------------------------
# GPT-2 small: L = 12 blocks of width C = 768. Per block the four weight matrices hold
# 12 C^2 parameters (c_attn 3C^2, attn.c_proj C^2, mlp.c_fc 4C^2, mlp.c_proj 4C^2), so each
# token costs 24 C^2 FLOPs per block (2 per multiply-add). Causal attention over a sequence of
# T positions adds QK^T and AV: query i meets i keys, 2 * C * i FLOPs each, summed 2 C T(T+1)
# per block. Embedding lookups, LayerNorm, GELU, softmax and the 768x2 head are left out (<1%).


def block_flops(width: int, c: int) -> float:
    """One full block on one sequence padded to `width` positions."""
    return 24 * c * c * width + 2 * c * width * (width + 1)


def pooled_block_flops(width: int, real: int, c: int) -> float:
    """gptclassify's last block evaluated at the pooled position only (fastpath.pooled_block):
    keys and values for all `width` positions, then query, attention, projection and MLP for
    one position that sees `real` keys."""
    return 4 * c * c * width + 2 * c * c + 4 * c * real + 2 * c * c + 16 * c * c


def useful_flops(lengths: list[int], layers: int, c: int) -> float:
    """The model's forward pass on the real tokens only: what any implementation must compute
    (the same number for every variant, so useful GFLOP/s is proportional to messages/s)."""
    return sum(layers * block_flops(n, c) for n in lengths)


def executed_flops(batches: list[list[int]], layers: int, c: int, pooled_last: bool) -> float:
    """What an implementation ran: every row padded to its batch's longest message."""
    total = 0.0
    for rows in batches:
        width = max(rows)
        for n in rows:
            if pooled_last:
                total += (layers - 1) * block_flops(width, c) + pooled_block_flops(width, n, c)
            else:
                total += layers * block_flops(width, c)
    return total


# ---- workers (child processes) ----------------------------------------------------------------


def pipeline_worker(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    device = _device(args.device)
    t0 = time.perf_counter()
    clf = transformers.pipeline(
        "text-classification",
        model=str(args.hf_classifier),
        device=device,
        dtype=torch.float32,
    )
    load_s = time.perf_counter() - t0
    b = args.batch_size
    clf(texts[: 2 * b], batch_size=b)  # warm-up
    times, outputs = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        outputs = clf(texts, batch_size=b)
        times.append(time.perf_counter() - t)
    lengths = [len(ids) for ids in clf.tokenizer(texts)["input_ids"]]
    # The pipeline batches in input order and pads each batch to its longest message.
    batches = [lengths[i : i + b] for i in range(0, len(lengths), b)]
    return {
        "variant": "pipeline",
        "precision": "fp32",
        "attn_implementation": getattr(clf.model.config, "_attn_implementation", None),
        "load_s": load_s,
        "times_s": times,
        "labels": [o["label"] for o in outputs],
        "top_prob": [float(o["score"]) for o in outputs],
        "lengths": lengths,
        "batches": batches,
        "pooled_last_block": False,
        "peak_memory_mb": _peak_memory_mb(torch, device),
    }


def ours_worker(args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from gptclassify import tokenizer
    from gptclassify.classifier import GPTClassifier
    from gptclassify.data.encode import InputPolicy
    from gptclassify.predict import Classifier
    from gptclassify.weights import load_pretrained

    torch.set_num_threads(args.threads)
    device = _device(args.device)
    t0 = time.perf_counter()
    model = GPTClassifier(load_pretrained(args.weights), len(LABELS))
    # The pipeline model's head (Linear(768, 2) without bias), so both compute one function.
    score = load_file(Path(args.hf_classifier) / "model.safetensors")["score.weight"]
    with torch.no_grad():
        model.head.weight.copy_(score)
        model.head.bias.zero_()
    precision = args.worker.removeprefix("ours-")
    clf = Classifier(
        model,
        LABELS,
        InputPolicy(max_length=1024, pad_length=None),
        device=device,
        precision=precision,
    )
    load_s = time.perf_counter() - t0
    b = args.batch_size
    clf.predict_proba(texts[: 2 * b], batch_size=b)  # warm-up
    times, probs = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        probs = clf.predict_proba(texts, batch_size=b)
        times.append(time.perf_counter() - t)
    lengths = [len(ids) for ids in tokenizer.encode_batch(texts)]
    # Classifier.logits_encoded: longest first (stable), chunks of batch_size, each padded to
    # its own longest message.
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches = [[lengths[i] for i in order[j : j + b]] for j in range(0, len(order), b)]
    top = probs.argmax(axis=1)
    return {
        "variant": args.worker,
        "precision": str(clf.dtype)
        .removeprefix("torch.")
        .replace("bfloat16", "bf16")
        .replace("float32", "fp32"),
        "load_s": load_s,
        "times_s": times,
        "labels": [LABELS[i] for i in top],
        "top_prob": [float(p) for p in probs[np.arange(len(top)), top]],
        "lengths": lengths,
        "batches": batches,
        "pooled_last_block": clf.model.pool != "mean",
        "peak_memory_mb": _peak_memory_mb(torch, device),
    }


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _peak_memory_mb(torch, device) -> float:
    import resource

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


# ---- driver -------------------------------------------------------------------------------------


def ensure_hf_classifier(directory: Path, weights: Path, seed: int) -> Path:
    """GPT2ForSequenceClassification (seeded `score`) on `weights`, with a GPT-2 tokenizer."""
    marker = directory / common.WEIGHTS_MARKER
    if marker.is_file() and (directory / "tokenizer.json").is_file():
        try:
            if json.loads(marker.read_text())["seed"] == seed:
                return directory
        except (ValueError, KeyError):
            pass
    import torch
    import transformers

    print(f"Writing the pipeline's classifier folder to {directory} ...", flush=True)
    torch.manual_seed(seed)  # transformers initialises the new `score` from the global RNG
    model = transformers.GPT2ForSequenceClassification.from_pretrained(
        weights,
        num_labels=len(LABELS),
        pad_token_id=common.PAD_TOKEN_ID,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
        dtype=torch.float32,
    )
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    common.install_hf_tokenizer(tmp)
    (tmp / common.WEIGHTS_MARKER).write_text(
        json.dumps({"seed": seed, "base": str(weights)}) + "\n"
    )
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def matmul_peak(threads: int, device_name: str, repeats: int = 5) -> list[dict[str, Any]]:
    """Best-of-`repeats` GFLOP/s of one matmul, fp32 and bf16, square and GPT-2 MLP shaped."""
    import torch

    torch.set_num_threads(threads)
    device = _device(device_name)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rows = []
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        for m, k, n in ((4096, 4096, 4096), (8192, 768, 3072)):
            a = torch.randn(m, k).to(device, dtype)
            b = torch.randn(k, n).to(device, dtype)
            a @ b  # warm-up (oneDNN / cuBLAS pick and cache their kernel)
            sync()
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                a @ b
                sync()
                times.append(time.perf_counter() - t)
            flops = 2 * m * k * n
            rows.append(
                {
                    "dtype": name,
                    "shape": f"({m}x{k}) @ ({k}x{n})",
                    "best_gflops": flops / min(times) / 1e9,
                    "median_gflops": flops / statistics.median(times) / 1e9,
                }
            )
            del a, b
    return rows


def run_worker_child(
    args, name: str, weights: Path, hf_dir: Path, texts_path: Path, out: Path
) -> dict[str, Any]:
    result_path = out / f"predict-{name}.json"
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--weights",
        str(weights),
        "--hf-classifier",
        str(hf_dir),
        "--texts",
        str(texts_path),
        "--result",
        str(result_path),
        "--batch-size",
        str(args.batch_size),
        "--repeats",
        str(args.repeats),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
    ]
    print(f"[{name}] log: {out / f'predict-{name}.log'}", flush=True)
    child = common.run_child(cmd, common.child_env(args.threads), out / f"predict-{name}.log")
    common.check_child(child, f"the {name} run")
    result = json.loads(result_path.read_text())
    result.update(wall_s=child.wall_s, maxrss_mb=child.maxrss_mb)
    print(f"[{name}] best of {len(result['times_s'])}: {min(result['times_s']):.1f} s", flush=True)
    return result


def report(results: list[dict[str, Any]], peaks: list[dict[str, Any]], n_texts: int) -> str:
    c, layers = 768, 12
    gpt2_peak = {p["dtype"]: p["best_gflops"] for p in peaks if p["shape"].startswith("(8192")}
    base = next((r for r in results if r["variant"] == "pipeline"), None)
    headers = [
        "variant",
        "msgs/s",
        "best s",
        "vs pipeline",
        "tokens run",
        "useful GFLOP/s",
        "executed GFLOP/s",
        "% matmul peak",
        "agree %",
        "max |dp|",
        "peak RSS MB",
    ]
    rows = []
    for r in results:
        best = min(r["times_s"])
        useful = useful_flops(r["lengths"], layers, c)
        executed = executed_flops(r["batches"], layers, c, r["pooled_last_block"])
        tokens = sum(len(rows) * max(rows) for rows in r["batches"])
        gflops = executed / best / 1e9
        peak = gpt2_peak.get(r["precision"])
        agree = dp = None
        if base is not None and r is not base:
            same = [a == b for a, b in zip(r["labels"], base["labels"], strict=True)]
            agree = 100 * sum(same) / len(same)
            diffs = [
                abs(a - b)
                for a, b, s in zip(r["top_prob"], base["top_prob"], same, strict=True)
                if s
            ]
            dp = max(diffs) if diffs else None
        r.update(
            best_s=best,
            msgs_per_s=n_texts / best,
            useful_gflop=useful / 1e9,
            executed_gflop=executed / 1e9,
        )
        rows.append(
            [
                f"{r['variant']} ({r['precision']})"
                if r["variant"] == "pipeline"
                else r["variant"],
                n_texts / best,
                best,
                base["best_s"] / best if base is not None and "best_s" in base else None,
                tokens,
                useful / best / 1e9,
                gflops,
                100 * gflops / peak if peak else None,
                agree,
                None if dp is None else f"{dp:.1e}",
                r["maxrss_mb"],
            ]
        )
    real = sum(results[0]["lengths"]) if results else 0
    lines = [
        common.format_table(headers, rows),
        "",
        f"real tokens: {real:,}; useful work {useful_flops(results[0]['lengths'], layers, c) / 1e9:,.0f} "
        "GFLOP (full forward on real tokens); 'executed' counts what each variant ran (padding "
        "included; ours runs its last block at the pooled position only)",
    ]
    ours = [r for r in results if r["variant"] != "pipeline"]
    if base is not None and ours:
        fastest = max(ours, key=lambda r: r["msgs_per_s"])
        ratio = fastest["msgs_per_s"] / base["msgs_per_s"]
        lines.append(
            f"speed ratio {fastest['variant']}/pipeline: {ratio:.1f}x "
            f"(target >= 5x: {'met' if ratio >= 5 else 'NOT met'})"
        )
    if peaks:
        lines += [
            "",
            "matmul peak on this machine:",
            common.format_table(
                ["dtype", "shape", "best GFLOP/s", "median GFLOP/s"],
                [[p["dtype"], p["shape"], p["best_gflops"], p["median_gflops"]] for p in peaks],
            ),
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--sms-source",
        type=Path,
        default=common.DEFAULT_SMS_SOURCE,
        help="SMSSpamCollection file or zip.",
    )
    p.add_argument("--batch-size", type=int, default=8, help="Batch size of every variant.")
    p.add_argument(
        "--precision",
        nargs="+",
        choices=["fp32", "bf16", "auto"],
        default=["fp32", "bf16"],
        help="Precision(s) of ours; one child run each.",
    )
    p.add_argument("--skip-pipeline", action="store_true", help="Run only ours.")
    p.add_argument("--skip-peak", action="store_true", help="Do not measure the matmul peak.")
    p.add_argument(
        "--limit", type=int, default=None, help="Classify only the first N messages (quick checks)."
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="Timed passes per variant (the best is reported)."
    )
    p.add_argument(
        "--device", default="auto", help="auto (cuda if available, else cpu), cpu, cuda."
    )
    p.add_argument(
        "--threads",
        type=int,
        default=common.default_threads(),
        help="torch threads for every variant.",
    )
    p.add_argument("--seed", type=int, default=123, help="Seed of the random weights and head.")
    p.add_argument(
        "--out",
        type=Path,
        default=common.DEFAULT_OUT,
        help="Output folder (weights cache, logs, JSON).",
    )
    # Internal: the child processes.
    p.add_argument(
        "--worker",
        choices=["pipeline", "ours-fp32", "ours-bf16", "ours-auto"],
        help=argparse.SUPPRESS,
    )
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--hf-classifier", help=argparse.SUPPRESS)
    p.add_argument("--texts", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.repeats < 1 or args.threads < 1:
        p.error("--batch-size, --repeats and --threads must be >= 1")
    if args.limit is not None and args.limit < 1:
        p.error("--limit must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    common.setup_offline_env()
    args = parse_args(argv)
    if args.worker:
        texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
        work = pipeline_worker if args.worker == "pipeline" else ours_worker
        common.write_json(Path(args.result), work(args, texts))
        return

    from gptclassify.data.sms_spam import prepare_sms_spam

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    weights = common.ensure_gpt2_weights(out / f"gpt2-small-random-seed{args.seed}", args.seed)
    hf_dir = ensure_hf_classifier(
        out / f"gpt2-small-random-seed{args.seed}-hf-classifier", weights, args.seed
    )
    splits = prepare_sms_spam(source=str(args.sms_source), seed=args.seed)
    texts = [t for _, part in splits.parts() for t in part.texts][: args.limit]
    texts_path = out / "predict-texts.json"
    texts_path.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    print(
        f"{len(texts):,} messages, batch size {args.batch_size}, {args.threads} thread(s)",
        flush=True,
    )

    names = ([] if args.skip_pipeline else ["pipeline"]) + [f"ours-{p}" for p in args.precision]
    results = [run_worker_child(args, name, weights, hf_dir, texts_path, out) for name in names]
    peaks = []
    if not args.skip_peak:
        print("Measuring the matmul peak ...", flush=True)
        peaks = matmul_peak(args.threads, args.device)

    info = common.machine_info()
    table = report(results, peaks, len(texts))
    header = (
        f"Inference speed: GPT-2 small (random weights, seed {args.seed}), {len(texts):,} SMS "
        f"messages, batch {args.batch_size}, {info['cpu']}, {args.threads} thread(s), torch {info['torch']}"
    )
    text = f"{header}\n\n{table}"
    print("\n" + text)
    for r in results:  # keep the JSON small: per-message lists are only needed above
        for key in ("labels", "top_prob", "lengths", "batches"):
            r.pop(key, None)
    common.write_json(
        out / "predict_speed.json",
        {
            "args": vars(args),
            "machine": info,
            "results": results,
            "matmul_peak": peaks,
            "table": text,
        },
    )
    (out / "predict_speed.txt").write_text(text + "\n", encoding="utf-8")
    print(f"\nWrote {out / 'predict_speed.json'} and {out / 'predict_speed.txt'}")


if __name__ == "__main__":
    main()
