"""Issue 22's two quality rows: a multi-label model, and long texts read in windows.

Multi-label data: no multi-label text data set is reachable offline (only package registries
are), so one is built from the SMS Spam Collection shipped with gptclassify, documented here
and in the README. Labels per message (any subset, the empty one included):

- `spam`: the collection's own human label;
- `money`: a currency sign or amount, or cash / prize / won / win / reward / award / free;
- `phone`: a number of 5+ digits (a phone or short code) or "call" / "text" + a number;
- `url`: www. / http / .com / .co.uk;
- `question`: a question mark.

`spam` is annotated by people; the other four are rules of the text, so a model can learn
them exactly; the row measures the pipeline (sigmoid/BCE, thresholds, stratified split) on a
realistic label co-occurrence structure, not a hard task. The TF-IDF + one-vs-rest logistic
regression baseline on the same split is printed beside it.

Long texts: the padded-spam construction of the issue. A model is trained on the book's
balanced SMS split (short messages); then every test message is padded with 3,000 tokens of
neutral text (ham messages from the training split joined) placed BEFORE it, and classified
with `--long-texts truncate` (reads the first `max_length` tokens: neutral text only), `chunk
--aggregate max` and `chunk --aggregate mean`. Spam recall and ham specificity per mode.

Both models are random-init tiny decoders (nothing here downloads weights), trained on this
CPU:

    python benchmarks/multi_label_long_texts.py --out /tmp/ml-bench
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path

import numpy as np

import common

MONEY = re.compile(r"[£$€]|\b\d+p\b|\b(cash|prize|won|win|reward|award|free)\b", re.I)
PHONE = re.compile(r"\d{5,}|\b(call|text|txt)\s+\d", re.I)
URL = re.compile(r"www\.|https?:|\.com\b|\.co\.uk\b", re.I)


def sms_label_sets() -> list[tuple[str, list[str]]]:
    from gptclassify.data.sms_spam import read_sms_spam

    data = read_sms_spam(common.DEFAULT_SMS_SOURCE)
    out = []
    for text, label in zip(data.texts, data.labels, strict=True):
        labels = []
        if label == "spam":
            labels.append("spam")
        if MONEY.search(text):
            labels.append("money")
        if PHONE.search(text):
            labels.append("phone")
        if URL.search(text):
            labels.append("url")
        if "?" in text:
            labels.append("question")
        out.append((text, labels))
    return out


def tiny_config(path: Path, context: int) -> Path:
    path.write_text(
        json.dumps({"emb_dim": 128, "n_heads": 4, "n_layers": 2, "context_length": context})
    )
    return path


def multi_label(out: Path, epochs: int) -> dict:
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.data.prepared import load_prepared
    from gptclassify.metrics import multilabel_report
    from gptclassify.training import train

    rows = sms_label_sets()
    jsonl = out / "sms-multilabel.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for text, labels in rows:
            f.write(json.dumps({"text": text, "labels": labels}, ensure_ascii=False) + "\n")
    from click.testing import CliRunner

    from gptclassify.cli import cli

    result = CliRunner().invoke(cli, ["data", "split", str(jsonl), "--out", str(out / "ml-data")])
    assert result.exit_code == 0, result.output
    t0 = time.perf_counter()
    clf = train(
        TrainConfig(
            data=DataConfig(data=str(out / "ml-data")),
            model=str(tiny_config(out / "tiny128.json", 128)),
            weights="random",
            trainable="all",
            lr=1e-3,
            epochs=epochs,
            eval_freq=0,
            out=str(out / "ml-run"),
        ),
        quiet=True,
    )
    wall = time.perf_counter() - t0
    test = clf.metrics["test"]
    # Baseline: TF-IDF + one-vs-rest logistic regression, threshold 0.5.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    splits = load_prepared(out / "ml-data")
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vec.fit_transform(splits.train.texts)
    base = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=1000))
    base.fit(x_train, splits.label_ids(splits.train))
    probs = base.predict_proba(vec.transform(splits.test.texts))
    base_report = multilabel_report(probs, splits.label_ids(splits.test), splits.label_names)
    counts = {n: sum(n in labels for _, labels in rows) for n in splits.label_names}
    return {
        "rows": len(rows),
        "label_counts": counts,
        "empty_sets": sum(not labels for _, labels in rows),
        "test": {
            k: test[k]
            for k in (
                "micro_f1",
                "macro_f1",
                "weighted_f1",
                "subset_accuracy",
                "hamming_loss",
                "label_ranking_average_precision",
            )
        },
        "per_label_f1": {k: v["f1"] for k, v in test["per_label"].items()},
        "thresholds": test["thresholds"],
        "baseline_test": {
            k: base_report[k] for k in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss")
        },
        "train_wall_s": wall,
    }


def long_texts(out: Path, epochs: int, pad_tokens: int, window: int = 256) -> dict:
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.predict import Classifier
    from gptclassify.training import train

    train(
        TrainConfig(
            data=DataConfig(sms_source=str(common.DEFAULT_SMS_SOURCE)),
            model=str(tiny_config(out / f"tiny{window}.json", window)),
            weights="random",
            trainable="all",
            lr=1e-3,
            epochs=epochs,
            eval_freq=0,
            out=str(out / f"spam-run-{window}"),
        ),
        quiet=True,
    )
    run = out / f"spam-run-{window}"
    from gptclassify.data.prepared import load_prepared

    splits = load_prepared(run / "data")
    plain = Classifier.load(run, precision="fp32")
    tok = plain.policy.tokenizer
    neutral_pool = [
        t for t, y in zip(splits.train.texts, splits.train.labels, strict=True) if y == "ham"
    ]
    rng = random.Random(0)

    def padding() -> str:
        parts, n = [], 0
        while n < pad_tokens:
            t = rng.choice(neutral_pool)
            parts.append(t)
            n += len(tok.encode(t)) + 1
        return " ".join(parts)

    texts = [padding() + " " + t for t in splits.test.texts]
    y = np.array([label == "spam" for label in splits.test.labels])
    result = {
        "texts": len(texts),
        "spam": int(y.sum()),
        "max_length": plain.policy.max_length,
        "mean_tokens": float(np.mean([len(tok.encode(t)) for t in texts])),
    }
    modes = {
        "short (unpadded), truncate": (plain, splits.test.texts),
        "padded, truncate": (plain, texts),
        "padded, chunk max": (
            Classifier.load(run, precision="fp32", long_texts="chunk", aggregate="max"),
            texts,
        ),
        "padded, chunk mean": (
            Classifier.load(run, precision="fp32", long_texts="chunk", aggregate="mean"),
            texts,
        ),
    }
    for name, (clf, xs) in modes.items():
        t0 = time.perf_counter()
        logits, cut, count = clf.classify_texts(xs, 32)
        seconds = time.perf_counter() - t0
        pred = clf.probabilities(logits).argmax(axis=1) == clf.labels.index("spam")
        result[name] = {
            "spam_recall": float(pred[y].mean()),
            "ham_specificity": float((~pred[~y]).mean()),
            "accuracy": float((pred == y).mean()),
            "truncated": int(cut.sum()),
            "chunked": int((count > 1).sum()),
            "windows": int(count.sum()),
            "seconds": seconds,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/ml-bench"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pad-tokens", type=int, default=3000)
    parser.add_argument(
        "--window",
        type=int,
        nargs="+",
        default=[256, 64],
        help="Context (window) lengths of the long-text models, one model each.",
    )
    parser.add_argument("--only", choices=["multi-label", "long-texts"], default=None)
    args = parser.parse_args()
    common.setup_offline_env()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": common.machine_info()}
    if args.only in (None, "multi-label"):
        report["multi_label"] = multi_label(args.out, args.epochs)
    if args.only in (None, "long-texts"):
        report["long_texts"] = {
            f"window {w}": long_texts(args.out, args.epochs, args.pad_tokens, w)
            for w in args.window
        }
    print(json.dumps(report, indent=2))
    common.write_json(args.out / "report.json", report)


if __name__ == "__main__":
    main()
