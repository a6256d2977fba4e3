"""VALIDATION scores of gptclassify's TF-IDF baseline on every set of the development corpus.

    python benchmarks/datasets/baseline_validation.py [--only NAME ...] [--out DIR]

Runs `gptclassify baseline --train <set>/train.csv --validation <set>/validation.csv` with
its defaults, in a child process per set, and reads the validation accuracy and macro F1
from the run's metrics.json. The test part is never given to the baseline, so no test score
is computed (the corpus's discipline: test parts are read once, for the reported table).

The baseline is single-label only. For a multi-label set the row is a reference computed
here instead, with the baseline's features (word 1-2-grams, sublinear tf, C = 10) and one
logistic regression per label (scikit-learn's OneVsRestClassifier), each label decided at
probability 0.5: subset accuracy and macro F1 over labels.

Writes baseline_validation.json beside this file and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fetch import MULTI_SEP, SPLITS, load_manifest, read_split  # noqa: E402


def single_label(name: str, out: Path) -> dict:
    run = out / name
    cmd = [sys.executable, "-m", "gptclassify", "baseline", "--out", str(run)]
    cmd += ["--train", str(HERE / name / "train.csv")]
    cmd += ["--validation", str(HERE / name / "validation.csv")]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RuntimeError(f"{name}: baseline failed: {tail[-1] if tail else proc.returncode}")
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    if "test" in metrics and metrics["test"]:
        raise RuntimeError(f"{name}: the run computed test scores; it must not")
    val = metrics["validation"]
    return {
        "accuracy": val["accuracy"],
        "macro_f1": val["macro_f1"],
        "seconds": round(time.perf_counter() - t0, 1),
        "how": "gptclassify baseline (defaults)",
    }


def multi_label(name: str) -> dict:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    t0 = time.perf_counter()
    train = read_split(HERE / name / "train.csv")
    val = read_split(HERE / name / "validation.csv")
    binarizer = MultiLabelBinarizer()
    y_train = binarizer.fit_transform([lab.split(MULTI_SEP) for _, lab in train])
    y_val = binarizer.transform([lab.split(MULTI_SEP) for _, lab in val])
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vec.fit_transform([t for t, _ in train])
    clf = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=1000))
    clf.fit(x_train, y_train)
    pred = (clf.predict_proba(vec.transform([t for t, _ in val])) >= 0.5).astype(int)
    return {
        "accuracy": float(np.mean(np.all(pred == y_val, axis=1))),
        "macro_f1": float(f1_score(y_val, pred, average="macro", zero_division=0)),
        "seconds": round(time.perf_counter() - t0, 1),
        "how": "reference: same TF-IDF, one-vs-rest LR, threshold 0.5 (subset accuracy)",
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+")
    ap.add_argument("--out", type=Path, help="run folders (default: a temporary folder)")
    args = ap.parse_args()
    manifest = load_manifest()
    names = args.only or list(manifest["sets"])
    result_path = HERE / "baseline_validation.json"
    results = json.loads(result_path.read_text("utf-8")) if result_path.is_file() else {}
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        for name in names:
            entry = manifest["sets"][name]
            if not all((HERE / name / f"{p}.csv").is_file() for p in SPLITS):
                print(f"{name}: no split files (run fetch.py first); skipped", file=sys.stderr)
                continue
            if entry["task"] == "multi-label":
                row = multi_label(name)
            else:
                row = single_label(name, out)
            row["train_texts"] = entry["sizes"]["train"]
            row["median_tokens_train"] = entry.get("median_tokens_train")
            results[name] = row
            print(
                f"{name}: validation accuracy {row['accuracy']:.4f}, macro F1 "
                f"{row['macro_f1']:.4f} ({row['seconds']} s)",
                file=sys.stderr,
            )
    result_path.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print("| set | training texts | median tokens | validation accuracy | validation macro F1 |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        star = " *" if r["how"].startswith("reference") else ""
        print(
            f"| `{name}`{star} | {r['train_texts']:,} | {r['median_tokens_train']} "
            f"| {100 * r['accuracy']:.1f}% | {100 * r['macro_f1']:.1f}% |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
