"""Peak memory of classifying long texts: the PyTorch runtime against the ONNX Runtime runtime.

A random GPT-2 small classifier (seed 123, context 1,024) is saved and exported to ONNX (fp32,
and int8 when a variant runs it); long texts are made from the shipped SMS collection, messages joined
one after another until each text reaches a length drawn between 1,000 and 5,500 tokens
(seeded), so every text is cut to the model's 1,024. Each variant classifies them all with
`Classifier.load(folder, ...).predict_proba(texts, batch_size)` in a fresh child process
(wall time from spawn to exit; peak RSS is the child's own VmHWM, read in the child: the
`os.wait4` figure of the other scripts also counts the parent's memory at the fork, which
here holds the exported models), and the labels are compared with the PyTorch runtime's. `onnx-... no budget` runs the ONNX runtime with its token budget lifted
(`max_tokens` = 10^9): the batching before issue 26, one pass of `batch_size` x 1,024 tokens.

    python benchmarks/long_text_memory.py                    # 32 texts, batch 32
    python benchmarks/long_text_memory.py --texts 205 --variants torch-auto onnx-fp32 onnx-int8
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import common

VARIANTS = {
    # name: (folder kind, precision, ONNX max_tokens or None for the runtime's default)
    "torch-auto": ("torch", "auto", None),
    "torch-fp32": ("torch", "fp32", None),
    "onnx-fp32": ("onnx", "auto", None),
    "onnx-fp32 no budget": ("onnx", "auto", 10**9),
    "onnx-int8": ("int8", "auto", None),
    "onnx-int8 no budget": ("int8", "auto", 10**9),
}


def worker(args: argparse.Namespace) -> None:
    """One variant, in its own process: load, classify, write the labels."""
    import numpy as np

    from gptclassify.predict import Classifier

    texts = json.loads(Path(args.texts_file).read_text(encoding="utf-8"))
    clf = Classifier.load(args.folder, precision=args.precision)
    if args.max_tokens:
        clf.runtime.max_tokens = args.max_tokens
    t0 = time.perf_counter()
    probs = clf.predict_proba(texts, batch_size=args.batch_size)
    seconds = time.perf_counter() - t0
    status = Path("/proc/self/status").read_text().splitlines()
    hwm_kb = int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    result = {"seconds": seconds, "labels": np.argmax(probs, 1).tolist(), "peak_mb": hwm_kb / 1024}
    Path(args.result).write_text(json.dumps(result))


def make_folders(out: Path, int8: bool) -> dict[str, Path]:
    folders = {"torch": out / "model", "onnx": out / "onnx-fp32", "int8": out / "onnx-int8"}
    if not (folders["torch"] / "config.json").is_file():
        import torch

        from gptclassify.classifier import GPTClassifier
        from gptclassify.config import GPTConfig
        from gptclassify.data.encode import InputPolicy
        from gptclassify.model import GPTModel
        from gptclassify.predict import Classifier

        torch.manual_seed(123)
        model = GPTClassifier(GPTModel(GPTConfig()), 2)  # GPT-2 small shape, random weights
        Classifier(model, ["ham", "spam"], InputPolicy(1024, None), precision="fp32").save(
            folders["torch"]
        )
    from gptclassify.export import export

    if not (folders["onnx"] / "config.json").is_file():
        print("exporting ONNX fp32 ...", flush=True)
        export(folders["torch"], "onnx", folders["onnx"])
    if int8 and not (folders["int8"] / "config.json").is_file():
        print("exporting ONNX int8 ...", flush=True)
        export(folders["torch"], "onnx", folders["int8"], quantize="int8")
    return folders


def make_texts(path: Path, n: int, seed: int) -> list[str]:
    from gptclassify import tokenizer

    lines = common.DEFAULT_SMS_SOURCE.read_text(encoding="utf-8").splitlines()
    messages = [line.partition("\t")[2] for line in lines if line]
    rng = random.Random(seed)
    texts, i = [], 0
    for _ in range(n):
        target, parts, tokens = rng.randint(1000, 5500), [], 0
        while tokens < target:
            parts.append(messages[i % len(messages)])
            tokens += len(tokenizer.encode(parts[-1])) + 1
            i += 1
        texts.append(" ".join(parts))
    path.write_text(json.dumps(texts), encoding="utf-8")
    return texts


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--texts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=["torch-auto", "onnx-fp32", "onnx-fp32 no budget", "onnx-int8"],
    )
    p.add_argument("--threads", type=int, default=common.default_threads())
    p.add_argument("--seed", type=int, default=123)
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "long_text_memory")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    p.add_argument("--max-tokens", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--texts-file", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    common.setup_offline_env()
    args.out.mkdir(parents=True, exist_ok=True)
    folders = make_folders(args.out, any(VARIANTS[v][0] == "int8" for v in args.variants))
    texts_file = args.out / f"texts-{args.texts}-seed{args.seed}.json"
    texts = make_texts(texts_file, args.texts, args.seed)
    env = common.child_env(args.threads)
    rows, labels = [], {}
    for name in args.variants:
        kind, precision, max_tokens = VARIANTS[name]
        result = args.out / f"{name.replace(' ', '-')}.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        cmd += ["--folder", str(folders[kind]), "--precision", precision]
        cmd += ["--texts-file", str(texts_file), "--result", str(result)]
        cmd += ["--batch-size", str(args.batch_size)]
        cmd += ["--max-tokens", str(max_tokens)] if max_tokens else []
        print(f"[{name}] ...", flush=True)
        child = common.run_child(cmd, env, args.out / f"{name.replace(' ', '-')}.log")
        common.check_child(child, name)
        found = json.loads(result.read_text())
        labels[name] = found["labels"]
        rows.append([name, child.wall_s, found["seconds"], found["peak_mb"]])
        print(f"[{name}] {child.wall_s:.1f} s, peak RSS {found['peak_mb']:,.0f} MB", flush=True)
    base = labels[args.variants[0]]
    for row in rows:
        same = sum(a == b for a, b in zip(labels[row[0]], base, strict=True))
        row.append(100.0 * same / len(base))
    info = common.machine_info()
    print(
        f"\nLong texts: {len(texts)} texts of 1,000-5,500 tokens (cut to 1,024), GPT-2 small "
        f"(random weights), batch {args.batch_size}, {args.threads} thread(s), torch "
        f"{info['torch']}, onnxruntime {info.get('onnxruntime', '-')}\nCPU: {info['cpu_line']}\n"
    )
    headers = ["variant", "wall s", "classify s", "peak RSS MB", f"labels = {args.variants[0]} %"]
    print(common.format_table(headers, rows))
    rss = {row[0]: row[3] for row in rows}
    for name in ("onnx-fp32", "onnx-int8"):
        if name in rss and "torch-auto" in rss:
            ratio = rss[name] / rss["torch-auto"]
            print(
                f"{name} / torch-auto peak RSS: {ratio:.2f}x (target <= 1.5x: "
                f"{'met' if ratio <= 1.5 else 'NOT met'})"
            )
    common.write_json(args.out / "long_text_memory.json", {"machine": info, "rows": rows})


if __name__ == "__main__":
    main()
