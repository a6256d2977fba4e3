"""Quality on real pretrained weights: SmolLM2-135M (GGUF) fine-tuned on SMS spam, against
transformers' own classifier trained with the same recipe, and the TF-IDF baseline.

One command trains and scores, in one run on one machine, every variant on every split over
several training seeds:

- ours: `gptclassify train --model FILE.gguf` with the book recipe (last block + final norm +
  head, 5 epochs, AdamW 5e-5 / 0.1, batch 8) and the variants given with --variant;
- peer: transformers' `LlamaForSequenceClassification` loaded from the same GGUF file
  (transformers' own GGUF reader), trained with the same recipe in a plain PyTorch loop in
  fp32. Its accuracy comes from training it for real: the frozen blocks' outputs are
  computed once by transformers' model and the last decoder layer, final norm and `score`
  (transformers' modules) train on them, which is the same computation as the plain loop
  (the frozen blocks get no gradient) at a fraction of its cost. Its time is the plain book
  loop's, priced from measured steps of the full model (forward through every block, as the
  book's loop does every step) as train_speed.py prices its reference;
- baseline: `gptclassify baseline` (TF-IDF + logistic regression) on the same split.

Splits: the book's exact split (`data sms-spam --book-split`) and ours (70/10/20 of the
correct 5,574-row parse), or any prepared folders given with --data.

Multi-label sets (the corpus's goemotions; a --data folder whose dataset.json says so) run
with `--data FOLDER --task multi-label`, the baseline with one regression
per label; their rows are marked * and their % columns are the subset accuracy (the whole
label set right) beside macro F1, both at per-label thresholds tuned on validation. The peer
is single-label and skips them.

    python benchmarks/quality.py --gguf PATH            # default: every split, 3 seeds
    python benchmarks/quality.py --gguf PATH --seeds 1 --variant book --no-peer  # quick

Writes quality.md (the table), quality.png (a bar chart) and quality.json under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

VARIANTS: dict[str, list[str]] = {
    # What `train` ships by default on a user's data (the fitted recipe, issue 32).
    "default": [],
    # The book's recipe, our defaults otherwise (last-real pooling, bf16 where fast).
    "book": ["--recipe", "book"],
    "last-2-blocks": ["--trainable", "last-2-blocks"],
    "last-2-blocks lr 2e-4": ["--trainable", "last-2-blocks", "--lr", "2e-4"],
    "last-4-blocks lr 2e-4": ["--trainable", "last-4-blocks", "--lr", "2e-4"],
    "last-4-blocks lr 1e-4": ["--trainable", "last-4-blocks", "--lr", "1e-4"],
    "last-4-blocks lr 3e-4": ["--trainable", "last-4-blocks", "--lr", "3e-4"],
    "last-6-blocks lr 2e-4": ["--trainable", "last-6-blocks", "--lr", "2e-4"],
    "last-4-blocks lr 2e-4 8 ep": ["--trainable", "last-4-blocks", "--lr", "2e-4", "--epochs", "8"],
    "last-4-blocks lr 2e-4 mean pool": [
        "--trainable",
        "last-4-blocks",
        "--lr",
        "2e-4",
        "--pool",
        "mean",
    ],
    "last-block lr 5e-4 10 ep": ["--lr", "5e-4", "--epochs", "10"],
    "last-8-blocks lr 1e-4": ["--trainable", "last-8-blocks", "--lr", "1e-4"],
    "all lr 2e-5": ["--trainable", "all", "--lr", "2e-5"],
    "all lr 2e-5 2 ep": ["--trainable", "all", "--lr", "2e-5", "--epochs", "2"],
    "recipe auto 3m": ["--recipe", "auto", "--budget", "3m"],
    "recipe auto 10m": ["--recipe", "auto", "--budget", "10m"],
    "default without the surface head": ["--lexical", "off"],
    # The fitted recipe with more epochs than its floor gives a large set (goemotions: 3).
    "default 6 ep": ["--epochs", "6"],
    # A bag-of-tokens logistic regression fitted after the network, its logits added.
    "book lexical": ["--lexical", "on"],
    "last-4-blocks lr 2e-4 lexical": [
        "--trainable",
        "last-4-blocks",
        "--lr",
        "2e-4",
        "--lexical",
        "on",
    ],
    "lora all r16": [
        "--trainable",
        "lora",
        "--lora-rank",
        "16",
        "--lora-alpha",
        "16",
        "--lr",
        "5e-4",
    ],
}


# ---- the peer: transformers' classifier from the same GGUF file ---------------------------


def peer_worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import transformers

    from gptclassify.data import load_prepared
    from gptclassify.metrics import classification_report, softmax

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    gguf = Path(args.gguf)
    splits = load_prepared(args.data)
    names = list(splits.label_names)
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        gguf.parent, gguf_file=gguf.name, num_labels=len(names), dtype=torch.float32
    )
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.config.pad_token_id = pad
    model.eval()
    parts = {k: p for k, p in splits.parts() if len(p.texts)}
    index = {n: i for i, n in enumerate(names)}
    ids = {k: [tok(t)["input_ids"] for t in p.texts] for k, p in parts.items()}
    labels = {k: torch.tensor([index[y] for y in p.labels]) for k, p in parts.items()}
    longest = max(len(s) for s in ids["train"])  # the book pads to the longest training text

    def batch_of(seqs):
        seqs = [s[:longest] for s in seqs]
        width = max(len(s) for s in seqs)
        x = torch.full((len(seqs), width), pad, dtype=torch.long)
        for r, s in enumerate(seqs):
            x[r, : len(s)] = torch.tensor(s)
        lengths = torch.tensor([len(s) for s in seqs])
        return x, lengths

    inner = model.model
    last = inner.layers[-1]
    # Freeze all, then the book's trainable part: last block, final norm, head.
    for p in model.parameters():
        p.requires_grad_(False)
    for module in (last, inner.norm, model.score):
        for p in module.parameters():
            p.requires_grad_(True)

    # 1) Price the plain book loop from measured steps of the full model.
    x, _ = batch_of(ids["train"][:8])
    x = torch.nn.functional.pad(x, (0, longest - x.shape[1]), value=pad)
    y = labels["train"][:8]
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=0.1
    )
    model.train()
    step_times = []
    for i in range(args.price_steps + 1):
        t = time.perf_counter()
        opt.zero_grad()
        loss = F.cross_entropy(model(input_ids=x).logits, y)
        loss.backward()
        opt.step()
        if i:  # the first step warms up
            step_times.append(time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        t = time.perf_counter()
        for _ in range(2):
            model(input_ids=x)
        eval_batch = (time.perf_counter() - t) / 2
    step = statistics.median(step_times)
    n_train = len(ids["train"]) // 8  # drop_last
    steps = n_train * args.epochs
    # The book's evaluation: 5+5 batches every 50 steps, 5+5 per epoch, full sets at the end.
    eval_batches = (steps // 50) * 10 + args.epochs * 10
    eval_batches += sum(-(-len(v) // 8) for v in ids.values())
    priced = steps * step + eval_batches * eval_batch

    # 2) Train for real, on the frozen blocks' outputs computed once by transformers.
    # Reload so the pricing steps above leave no trace in the trained weights.
    torch.manual_seed(args.seed)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        gguf.parent, gguf_file=gguf.name, num_labels=len(names), dtype=torch.float32
    ).eval()
    model.config.pad_token_id = pad
    inner = model.model
    last = inner.layers[-1]
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for m in (last, inner.norm, model.score) for p in m.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    cache: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for k, seqs in ids.items():
            cache[k] = []
            for start in range(0, len(seqs), 16):
                xb, lens = batch_of(seqs[start : start + 16])
                out = inner(input_ids=xb, output_hidden_states=True)
                h = out.hidden_states[-2]  # entering the last layer
                cache[k].extend(h[r, : lens[r]].clone() for r in range(len(lens)))

    def head_logits(hs: list[torch.Tensor]) -> torch.Tensor:
        lens = torch.tensor([len(h) for h in hs])
        width = int(lens.max())
        h = torch.zeros(len(hs), width, hs[0].shape[-1])
        for r, v in enumerate(hs):
            h[r, : len(v)] = v
        pos = torch.arange(width)[None, :].expand(len(hs), -1)
        rope = inner.rotary_emb(h, pos)
        out = last(h, attention_mask=None, position_ids=pos, position_embeddings=rope)
        out = out[0] if isinstance(out, tuple) else out
        pooled = inner.norm(out)[torch.arange(len(hs)), lens - 1]
        return model.score(pooled)

    opt = torch.optim.AdamW(trainable, lr=5e-5, weight_decay=0.1)
    gen = torch.Generator().manual_seed(args.seed)
    t_train = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(cache["train"]), generator=gen)
        for b in range(len(order) // 8):
            idx = order[b * 8 : (b + 1) * 8]
            opt.zero_grad()
            loss = F.cross_entropy(
                head_logits([cache["train"][i] for i in idx]), labels["train"][idx]
            )
            loss.backward()
            opt.step()
    train_time = time.perf_counter() - t_train
    model.eval()
    reports = {}
    with torch.no_grad():
        for k, hs in cache.items():
            logits = torch.cat([head_logits(hs[i : i + 32]) for i in range(0, len(hs), 32)])
            reports[k] = classification_report(softmax(logits.numpy()), labels[k].numpy(), names)
    result = {
        "splits": reports,
        "priced_book_loop_s": priced,
        "measured_step_s": step,
        "eval_batch_s": eval_batch,
        "steps": steps,
        "cached_train_s": train_time,
        "wall_s": time.perf_counter() - t0,
        "pad_length": longest,
    }
    Path(args.result).write_text(json.dumps(result, indent=2, default=float))
    del np


# ---- runs ----------------------------------------------------------------------------------


def gptclassify(*argv: str) -> list[str]:
    return [sys.executable, "-m", "gptclassify", *argv]


DATASETS = Path(__file__).resolve().parent / "datasets"


def _manifest_sets() -> dict[str, Any]:
    manifest = json.loads((DATASETS / "manifest.json").read_text())
    sets = manifest.get("sets", manifest)
    return sets if isinstance(sets, dict) else {}


def is_multi_label(folder: Path) -> bool:
    """A corpus set the manifest calls multi-label, or a folder whose dataset.json does."""
    info = _manifest_sets().get(folder.name)
    if isinstance(info, dict) and folder.parent.resolve() == DATASETS.resolve():
        return info.get("task") == "multi-label"
    meta = folder / "dataset.json"
    return meta.is_file() and json.loads(meta.read_text()).get("task") == "multi-label"


def data_flags(folder: Path) -> list[str]:
    """How gptclassify reads a set: a prepared folder, with --task multi-label for a
    multi-label corpus set (its CSVs hold labels joined by ';' and no dataset.json)."""
    flags = ["--data", str(folder)]
    if is_multi_label(folder) and not (folder / "dataset.json").is_file():
        flags += ["--task", "multi-label"]
    return flags


def corpus_sets(names: list[str]) -> dict[str, Path]:
    sets = _manifest_sets()
    found = {}
    for name in names or sorted(sets):
        folder = DATASETS / name
        if not (folder / "train.csv").is_file():
            if names:
                raise SystemExit(f"{folder}: not built (benchmarks/datasets/README.md)")
            continue
        found[name] = folder
    return found


def prepare_splits(args, out: Path, env) -> dict[str, Path]:
    if args.corpus is not None:
        return corpus_sets(args.corpus)
    if args.data:
        return {Path(d).name: Path(d) for d in args.data}
    splits = {}
    for name, extra in (("book", ["--book-split"]), ("ours", [])):
        folder = out / "data" / name
        if not (folder / "train.csv").is_file():
            res = common.run_child(
                gptclassify("data", "sms-spam", "--out", str(folder), *extra),
                env,
                out / "logs" / f"data-{name}.log",
            )
            common.check_child(res, f"data sms-spam ({name})")
        splits[name] = folder
    return splits


def run_ours(args, name: str, flags: list[str], data: Path, seed: int, out: Path, env):
    run = out / "runs" / f"{data.name}-{name.replace(' ', '_')}-s{seed}"
    if (run / "metrics.json").is_file() and not args.fresh:
        return _ours_result(run, None)
    for stale in (run, Path(f"{run}.partial")):  # a finished run without metrics, or a killed one
        if stale.exists():
            subprocess.run(["rm", "-rf", str(stale)], check=True)
    if name != "default" and not name.startswith("default ") and "--recipe" not in flags:
        flags = ["--recipe", "book", *flags]  # a manual variant: exactly the options given
    cmd = gptclassify(
        "train",
        "--model",
        str(args.gguf),
        *data_flags(data),
        "--seed",
        str(seed),
        "--out",
        str(run),
        *flags,
    )
    with busy(args.busy):
        res = common.run_child(cmd, env, out / "logs" / f"{run.name}.log")
    common.check_child(res, f"ours {name} on {data.name}, seed {seed}")
    return _ours_result(run, res)


class busy:
    """N CPU-bound processes beside a measured run (--busy): the machine a CI runner or a
    shared laptop is."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> busy:
        for _ in range(self.n):
            self.procs.append(
                subprocess.Popen([sys.executable, "-c", "while True: pass"])  # bounded: killed
            )
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def _splits(metrics: dict[str, Any]) -> dict[str, Any]:
    """metrics.json keeps each split's report at the top level."""
    return {k: metrics[k] for k in ("train", "validation", "test") if k in metrics}


def _ours_result(run: Path, res) -> dict[str, Any]:
    metrics = json.loads((run / "metrics.json").read_text())
    saved = run / "bench.json"
    if res is not None:
        saved.write_text(
            json.dumps({"wall_s": res.wall_s, "cpu_s": res.cpu_s, "peak_rss_mb": res.maxrss_mb})
        )
    timing = json.loads(saved.read_text()) if saved.is_file() else {}
    recipe = run / "recipe.json"
    return {
        "splits": _splits(metrics),
        "chosen": json.loads(recipe.read_text())["chosen"] if recipe.is_file() else None,
        "wall_s": timing.get("wall_s"),
        "cpu_s": timing.get("cpu_s"),
        "peak_rss_mb": timing.get("peak_rss_mb"),
        "train_s": metrics.get("training_time_s"),
        "baseline": metrics.get("baseline"),
    }


def run_peer(args, data: Path, seed: int, out: Path, env) -> dict[str, Any]:
    result = out / "runs" / f"{data.name}-peer-s{seed}.json"
    if result.is_file() and not args.fresh:
        return json.loads(result.read_text())
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "peer",
        "--gguf",
        str(args.gguf),
        "--data-dir",
        str(data),
        "--seed",
        str(seed),
        "--result",
        str(result),
        "--threads",
        str(args.threads),
        "--epochs",
        str(args.epochs),
        "--price-steps",
        str(args.price_steps),
    ]
    res = common.run_child(cmd, env, out / "logs" / f"{data.name}-peer-s{seed}.log")
    common.check_child(res, f"peer on {data.name}, seed {seed}")
    data_out = json.loads(result.read_text())
    data_out["peak_rss_mb"] = res.maxrss_mb
    result.write_text(json.dumps(data_out, indent=2))
    return data_out


def run_baseline(args, data: Path, out: Path, env) -> dict[str, Any]:
    folder = out / "runs" / f"{data.name}-tfidf"
    if not (folder / "metrics.json").is_file():
        res = common.run_child(
            gptclassify("baseline", *data_flags(data), "--out", str(folder)),
            env,
            out / "logs" / f"{data.name}-tfidf.log",
        )
        common.check_child(res, f"baseline on {data.name}")
    return {"splits": _splits(json.loads((folder / "metrics.json").read_text()))}


# ---- report --------------------------------------------------------------------------------


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    acc = [r["splits"]["test"]["accuracy"] * 100 for r in results if "test" in r["splits"]]
    acc = acc or [float("nan")]

    def mean(key):
        values = [r["splits"].get("test", {}).get(key) for r in results]
        values = [v for v in values if v is not None]
        return statistics.fmean(values) if values else None

    def mean_of(key):
        values = [r.get(key) for r in results if r.get(key) is not None]
        return statistics.fmean(values) if values else None

    return {
        "n": len(acc),
        "mean": statistics.fmean(acc),
        "sd": statistics.stdev(acc) if len(acc) > 1 else 0.0,
        "min": min(acc),
        "max": max(acc),
        "val": statistics.fmean(r["splits"]["validation"]["accuracy"] * 100 for r in results),
        "val_macro_f1": statistics.fmean(r["splits"]["validation"]["macro_f1"] for r in results),
        "cpu_s": mean_of("cpu_s"),
        "chosen": sorted({r["chosen"] for r in results if r.get("chosen")}),
        "macro_f1": mean("macro_f1"),
        "roc_auc": mean("roc_auc"),
        "ece": mean("ece"),
        "wall_s": mean_of("wall_s"),
        "priced_s": mean_of("priced_book_loop_s"),
        "peak_rss_mb": mean_of("peak_rss_mb"),
    }


def report(
    args,
    table: dict[str, dict[str, dict[str, Any]]],
    out: Path,
    info,
    multi_label: dict[str, bool] | None = None,
) -> str:
    """The table; with --validation-only, no test column at all (choices are made there).
    multi_label: the sets whose rows are subset accuracy (marked *)."""
    test = not args.validation_only
    headers = ["data", "model", "seeds"]
    if test:
        headers += ["test % mean", "sd", "min", "max", "test macro F1"]
    headers += ["val %", "val macro F1", "wall (s)", "CPU (s)", "peak RSS (MB)", "chose"]
    rows = []
    multi = [split for split in table if (multi_label or {}).get(split)]
    for split, variants in table.items():
        for name, s in variants.items():
            time_s = s["priced_s"] if s.get("priced_s") else s.get("wall_s")
            time_cell = (
                f"{time_s:.0f}" + (" (priced)" if s.get("priced_s") else "") if time_s else "-"
            )
            row = [f"{split} *" if split in multi else split, name, s["n"]]
            if test:
                row += [
                    f"{s['mean']:.2f}",
                    f"{s['sd']:.2f}",
                    f"{s['min']:.2f}",
                    f"{s['max']:.2f}",
                    _f(s["macro_f1"]),
                ]
            row += [
                f"{s['val']:.2f}",
                _f(s.get("val_macro_f1")),
                time_cell,
                f"{s['cpu_s']:.0f}" if s.get("cpu_s") else "-",
                f"{s['peak_rss_mb']:.0f}" if s.get("peak_rss_mb") else "-",
                ", ".join(s.get("chosen") or []) or "-",
            ]
            rows.append(row)
    lines = [
        f"# Quality on real weights: {Path(args.gguf).name}",
        "",
        f"CPU: {info.get('cpu_line', info.get('cpu'))}; threads {args.threads}; "
        f"load average {info.get('loadavg', '-')}; busy processes beside each run "
        f"{args.busy}; torch {info.get('torch')}; {time.strftime('%Y-%m-%d')}",
        f"Command: python benchmarks/quality.py {' '.join(sys.argv[1:])}",
        "",
        common.format_table(headers, rows),
    ]
    if multi:
        lines += [
            "",
            "\\* multi-label: the % columns are the subset accuracy (the whole label set right); "
            "macro F1 and subset accuracy at per-label thresholds tuned on validation (the "
            "TF-IDF baseline: one regression per label, tuned the same way).",
        ]
    text = "\n".join(lines) + "\n"
    (out / "quality.md").write_text(text)
    if test:
        _chart(table, out / "quality.png", multi)
    return text


def _f(v):
    return f"{v:.4f}" if isinstance(v, float) else "-"


def _chart(table, path: Path, multi: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(table), figsize=(6 * len(table), 4), squeeze=False)
    for ax, (split, variants) in zip(axes[0], table.items(), strict=True):
        names = list(variants)
        means = [variants[n]["mean"] for n in names]
        sds = [variants[n]["sd"] for n in names]
        ax.barh(names, means, xerr=sds, color="#4c72b0")
        ax.set_xlim(max(min(means) - 3, 0), 100)
        what = "subset accuracy" if split in multi else "accuracy"
        ax.set_title(f"test {what} (%), {split} split")
        for i, m in enumerate(means):
            ax.text(m, i, f" {m:.2f}", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gguf", required=True, help="The SmolLM2 (or other) GGUF file.")
    p.add_argument("--data", nargs="*", help="Prepared folders (default: book and ours SMS).")
    p.add_argument(
        "--corpus",
        nargs="*",
        help="Sets of the development corpus (benchmarks/datasets; none named: every built "
        "set, multi-label ones included) instead of --data.",
    )
    p.add_argument(
        "--validation-only",
        action="store_true",
        help="Report validation scores only: what defaults are chosen on (benchmarks/README.md).",
    )
    p.add_argument(
        "--busy", type=int, default=0, help="CPU-bound processes running beside each of ours."
    )
    p.add_argument("--seeds", type=int, default=3, help="Training seeds: 123, 124, ...")
    p.add_argument(
        "--variant",
        action="append",
        choices=list(VARIANTS),
        help="Our variants (default: all). Repeat the flag.",
    )
    p.add_argument("--no-peer", action="store_true", help="Skip transformers' classifier.")
    p.add_argument("--peer-splits", default="book", help="Splits the peer runs on (comma).")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--price-steps", type=int, default=4)
    p.add_argument("--threads", type=int, default=common.default_threads())
    p.add_argument("--out", default=str(common.DEFAULT_OUT / "quality"))
    p.add_argument("--fresh", action="store_true", help="Rerun finished runs too.")
    p.add_argument("--worker", choices=["peer"], help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=123, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker == "peer":
        args.data = args.data_dir
        peer_worker(args)
        return
    common.setup_offline_env()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = common.child_env(args.threads)
    info = common.machine_info()
    info["loadavg"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"# {info.get('cpu_line', info.get('cpu'))}", flush=True)
    splits = prepare_splits(args, out, env)
    multi_label = {split: is_multi_label(folder) for split, folder in splits.items()}
    seeds = [123 + i for i in range(args.seeds)]
    variants = args.variant or list(VARIANTS)
    table: dict[str, dict[str, dict[str, Any]]] = {}
    raw: dict[str, Any] = {}
    for split, folder in splits.items():
        table[split] = {}
        for name in variants:
            results = []
            for seed in seeds:
                r = run_ours(args, name, VARIANTS[name], folder, seed, out, env)
                shown = "validation" if args.validation_only else "test"
                print(
                    f"{split} ours {name} seed {seed}: {shown} "
                    f"{r['splits'][shown]['accuracy'] * 100:.2f}% ({r['wall_s'] or 0:.0f} s)",
                    flush=True,
                )
                results.append(r)
            table[split][f"ours: {name}"] = summary(results)
            raw[f"{split}/ours/{name}"] = results
        if multi_label[split] and split in args.peer_splits.split(","):
            print(f"{split}: no transformers peer (its loop is single-label)", flush=True)
        elif not args.no_peer and split in args.peer_splits.split(","):
            results = []
            for seed in seeds:
                r = run_peer(args, folder, seed, out, env)
                print(
                    f"{split} peer seed {seed}: test "
                    f"{r['splits']['test']['accuracy'] * 100:.2f}% "
                    f"(book loop priced {r['priced_book_loop_s']:.0f} s)",
                    flush=True,
                )
                results.append(r)
            table[split]["transformers peer (book recipe)"] = summary(results)
            raw[f"{split}/peer"] = results
        base = run_baseline(args, folder, out, env)
        table[split]["TF-IDF + logistic regression"] = summary([base])
    (out / "quality.json").write_text(
        json.dumps({"table": table, "raw": raw, "machine": info}, indent=2, default=float)
    )
    print(report(args, table, out, info, multi_label))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
