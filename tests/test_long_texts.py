"""Texts longer than the model reads: windows (`--long-texts chunk`, `--stride`,
`--aggregate`) through the Python API, predict / evaluate and the server.

The spam test trains a tiny model (context 128) in the test on short texts: spam is a prize
message after 0-90 tokens of neutral chatter, ham is the chatter alone. A spam message after
3,000 tokens of chatter is then past what truncation reads (it keeps the start); chunking
with `max` finds the window that holds it, `mean` dilutes it over ~50 windows. The test
checks the model on the windows themselves first, so the outcome is the model's, not luck.
"""

from __future__ import annotations

import csv
import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from gptclassify.cli import cli
from gptclassify.data.encode import encode
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier
from gptclassify.predict.long_texts import LongTexts, windows

SPAM = "WINNER! You won a cash prize, call now to claim it"
CHATTER = [
    "we met at the station and walked home.",
    "the weather was fine and the tea was hot.",
    "see you at lunch tomorrow, bring the notes.",
    "mum says hi and the cat is asleep again.",
]


def chatter(rng: random.Random, sentences: int) -> str:
    return " ".join(rng.choice(CHATTER) for _ in range(sentences))


@pytest.fixture(scope="module")
def spam_model(tmp_path_factory, tiny_json):
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("long")
    with open(folder / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(160):
            w.writerow([chatter(rng, rng.randint(1, 9)), "ham"])
            w.writerow([(chatter(rng, rng.randint(0, 8)) + " " + SPAM).strip(), "spam"])
    cfg = TrainConfig(
        data=DataConfig(train=str(folder / "train.csv")),
        model=str(tiny_json),
        weights="random",
        trainable="all",
        lr=2e-3,
        epochs=3,
        eval_freq=0,
        precision="fp32",
        out=str(folder / "run"),
    )
    train(cfg, quiet=True)
    return folder / "run"


def long_spam() -> str:
    text = chatter(random.Random(1), 320) + " " + SPAM
    return text


def test_windows_cover_every_token_and_a_short_text_is_itself(tiny_run):
    clf = Classifier.load(tiny_run.path, precision="fp32")
    policy = clf.policy
    short = policy.tokenizer.encode_batch(["hello there"])[0]
    raw = list(range(1000, 1300))  # 300 tokens, window 128
    win = windows([short, raw], policy, stride=50)
    assert win.encoded.ids[0] == encode(["hello there"], policy).ids[0]
    rows = win.encoded.ids[1:]
    assert all(len(r) == policy.max_length for r in rows)
    starts = [r[0] - 1000 for r in rows]
    assert starts == [0, 50, 100, 150, 172]  # the last window ends at the text's end
    assert set().union(*map(set, rows)) == set(raw)
    assert win.counts.tolist() == [1, 5] and win.chunked == 1
    with pytest.raises(GPTClassifyError, match="--stride 500 is larger than a window"):
        windows([raw], policy, stride=500)
    with pytest.raises(GPTClassifyError, match="--aggregate: 'median'"):
        LongTexts("chunk", aggregate="median")


def test_chunking_texts_that_fit_changes_nothing_bit_for_bit(tiny_run):
    texts = ["Free entry! Text WIN to 80082", "ok see you at 6", "Call me when you land"]
    plain = Classifier.load(tiny_run.path, precision="fp32")
    chunked = Classifier.load(tiny_run.path, precision="fp32", long_texts="chunk", aggregate="max")
    assert np.array_equal(plain.predict_proba(texts), chunked.predict_proba(texts))
    assert np.array_equal(plain.logits(texts), chunked.logits(texts))


def test_spam_after_3000_tokens_is_found_by_chunk_max_and_missed_by_truncate(spam_model):
    text = long_spam()
    plain = Classifier.load(spam_model, precision="fp32")
    n_tokens = len(plain.policy.tokenizer.encode(text))
    assert n_tokens > 3000 and plain.policy.max_length == 128
    # The model itself: the window holding the message is spam, chatter alone is ham.
    tail = plain.policy.tokenizer.decode(plain.policy.tokenizer.encode(text)[-100:])
    head = plain.policy.tokenizer.decode(plain.policy.tokenizer.encode(text)[:120])
    p_tail, p_head = plain.predict_proba([tail, head])[:, 1]
    assert p_tail > 0.5 and p_head < 0.5
    # Truncation reads the first 128 tokens: chatter.
    assert plain.predict([text]) == ["ham"]
    by_max = Classifier.load(spam_model, precision="fp32", long_texts="chunk", aggregate="max")
    by_mean = Classifier.load(spam_model, precision="fp32", long_texts="chunk", aggregate="mean")
    assert by_max.predict([text]) == ["spam"]
    assert by_mean.predict([text]) == ["ham"]  # one spam window among ~50 is diluted
    logits, cut, count = by_max.classify_texts([text, "hi"])
    assert count.tolist()[1] == 1 and count[0] > 40 and not cut.any()
    # With two classes, max gives the positive (second) class its largest window probability.
    win = by_max.windows(by_max.policy.tokenizer.encode_batch([text]))
    p_spam = by_max.probabilities(by_max.runtime.logits(win.encoded, 32))[:, 1].max()
    np.testing.assert_allclose(by_max.predict_proba([text])[0], [1 - p_spam, p_spam], rtol=1e-6)


def test_predict_evaluate_and_server_report_chunked_texts(spam_model, tmp_path):
    from fastapi.testclient import TestClient

    from gptclassify.serve import ServeSettings, create_app

    text = long_spam()
    data = tmp_path / "eval.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerows([["text", "label"], [text, "spam"], ["the tea was hot.", "ham"]])
    runner = CliRunner()
    out = tmp_path / "pred.csv"
    args = ["--long-texts", "chunk", "--aggregate", "max", "--precision", "fp32"]
    result = runner.invoke(
        cli, ["predict", str(spam_model), "--input", str(data), "--output", str(out), *args]
    )
    assert result.exit_code == 0, result.output
    assert "1 text(s) were longer than the model reads and were classified in windows" in (
        result.output
    )
    with open(out, newline="") as f:
        got = list(csv.DictReader(f))
    assert [r["label"] for r in got] == ["spam", "ham"]
    assert int(got[0]["windows"]) > 40 and got[1]["windows"] == "1"
    result = runner.invoke(cli, ["evaluate", str(spam_model), "--data", str(data), "--json", *args])
    report = json.loads(result.stdout)
    assert report["chunked"] == 1 and report["accuracy"] == 1.0
    result = runner.invoke(
        cli, ["evaluate", str(spam_model), "--data", str(data), "--json", "--precision", "fp32"]
    )
    assert json.loads(result.stdout)["truncated"] == 1
    assert json.loads(result.stdout)["accuracy"] == 0.5
    clf = Classifier.load(spam_model, precision="fp32", long_texts="chunk", aggregate="max")
    with TestClient(create_app(clf, ServeSettings(max_chars=50_000))) as client:
        tei = client.post("/predict", json={"inputs": text}).json()
        vllm = client.post("/classify", json={"input": [text, "hi"]}).json()
    assert tei[0]["label"] == "spam"
    assert tei[0]["score"] == pytest.approx(clf.predict_proba([text])[0][1])
    assert vllm["data"][0]["label"] == "spam"
    assert vllm["data"][0]["probs"] == pytest.approx(clf.predict_proba([text])[0].tolist())
