"""The surface head alone against the TF-IDF baseline, on the development corpus's validation
parts (no network, no test part read): what `--lexical auto` can fall back to on each set,
and which features and C it picks there.

    python benchmarks/surface_validation.py [SET ...]     # default: every built single-label set

Prints a table (validation accuracy and macro F1 of the baseline and of the head, the head's
features and C, fit time) and writes surface_validation.json beside this file's output folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import common

DATASETS = Path(__file__).resolve().parent / "datasets"


def read(folder: Path, part: str) -> tuple[list[str], list[str]]:
    with open(folder / f"{part}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def macro_f1(pred: np.ndarray, y: np.ndarray, k: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, labels=list(range(k)), average="macro", zero_division=0))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sets", nargs="*")
    p.add_argument("--out", default=str(common.DEFAULT_OUT / "surface_validation"))
    args = p.parse_args(argv)
    from gptclassify import surface
    from gptclassify.baseline.tfidf import Baseline

    manifest = json.loads((DATASETS / "manifest.json").read_text())["sets"]
    names = args.sets or [
        n
        for n, info in manifest.items()
        if info.get("task") != "multi-label" and (DATASETS / n / "train.csv").is_file()
    ]
    info = common.machine_info()
    print(
        f"# {info.get('cpu_line', info.get('cpu'))}; load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    rows, out = [], {}
    for name in names:
        folder = DATASETS / name
        tr, ytr = read(folder, "train")
        va, yva = read(folder, "validation")
        labels = sorted(set(ytr))
        index = {n: i for i, n in enumerate(labels)}
        y_tr = np.array([index[v] for v in ytr])
        y_va = np.array([index[v] for v in yva])
        t0 = time.perf_counter()
        base = Baseline.fit(tr, ytr, labels)
        b = base.predict_proba(va).argmax(1)
        base_s = time.perf_counter() - t0
        zero = {"validation": np.zeros((len(va), len(labels)), np.float32)}
        choice = surface.choose(
            {"train": tr, "validation": va}, {"train": y_tr, "validation": y_va}, zero, len(labels)
        )
        head = choice.head
        h = head.raw_logits(va).argmax(1)
        out[name] = {
            "baseline": {
                "accuracy": float((b == y_va).mean()),
                "macro_f1": macro_f1(b, y_va, len(labels)),
            },
            "head": {
                "accuracy": float((h == y_va).mean()),
                "macro_f1": macro_f1(h, y_va, len(labels)),
            },
            "features": head.features,
            "C": head.C,
            "fits": choice.tried,
            "fit_s": choice.fit_time_s,
            "baseline_s": base_s,
        }
        r = out[name]
        rows.append(
            [
                name,
                len(tr),
                f"{r['baseline']['accuracy'] * 100:.2f}",
                f"{r['baseline']['macro_f1']:.4f}",
                f"{r['head']['accuracy'] * 100:.2f}",
                f"{r['head']['macro_f1']:.4f}",
                f"{head.features}, C={head.C:g}",
                f"{choice.fit_time_s:.0f}",
            ]
        )
        print(" | ".join(str(c) for c in rows[-1]), flush=True)
    headers = [
        "set",
        "train",
        "TF-IDF val %",
        "val macro F1",
        "head alone val %",
        "val macro F1",
        "head chose",
        "fit s (10 fits)",
    ]
    print(common.format_table(headers, rows))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "surface_validation.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
