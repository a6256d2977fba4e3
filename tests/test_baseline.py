"""The TF-IDF + logistic regression baseline: accuracy on the real SMS data, metrics layout,
a pickle-free model folder that round-trips exactly."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import WORDS
from gptclassify.args import DataConfig
from gptclassify.baseline import Baseline, BaselineConfig, train_baseline
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError

# The top-level keys of a GPT run's metrics.json (train._train); the baseline writes the same.
GPT_METRIC_KEYS = {
    "train",
    "validation",
    "test",
    "best_epoch",
    "stopped_early",
    "epochs_run",
    "examples_seen",
    "training_time_s",
    "total_time_s",
    "trainable_params",
    "total_params",
    "frozen_prefix_cache",
    "device",
    "precision",
    "peak_memory_mb",
    "truncated",
    "calibration",
    "world_size",
    "backend",
    "baseline",
    "format_version",
}
REPORT_KEYS = {
    "examples",
    "accuracy",
    "loss",
    "macro_f1",
    "per_class",
    "confusion_matrix",
    "ece",
    "roc_auc",
    "pr_auc",  # two classes
}


def test_beats_majority_on_real_sms_and_writes_gpt_metrics_layout(sms_file, tmp_path, tiny_run):
    out = tmp_path / "run"
    fitted = train_baseline(BaselineConfig(data=DataConfig(sms_source=str(sms_file)), out=str(out)))
    metrics = json.loads((out / "metrics.json").read_text())
    gpt = json.loads((tiny_run.path / "metrics.json").read_text())
    assert set(metrics) == set(gpt) == GPT_METRIC_KEYS
    for split in ("train", "validation", "test"):
        assert set(metrics[split]) == REPORT_KEYS
    test = metrics["test"]
    assert test["examples"] == 300  # the default balanced split: 1045 / 149 / 300
    majority = max(sum(row) for row in test["confusion_matrix"]) / test["examples"]
    assert majority < 0.55
    assert test["accuracy"] > 0.95 and test["accuracy"] > majority + 0.4
    assert test["macro_f1"] > 0.95 and test["roc_auc"] > 0.98
    assert metrics["trainable_params"] == fitted.coef.size + fitted.intercept.size
    assert metrics["trainable_params"] == len(fitted.vectorizer.vocabulary_) + 1  # binary: 1 row
    assert fitted.path == out and fitted.metrics == metrics
    # Model files are JSON and safetensors only.
    assert sorted(p.name for p in out.iterdir()) == [
        "baseline.safetensors",
        "config.json",
        "metrics.json",
        "vocabulary.json",
    ]


def test_cli_book_split_is_near_the_spec_figure(sms_file, tmp_path):
    out = tmp_path / "book"
    res = CliRunner().invoke(
        cli,
        ["baseline", "--sms-source", str(sms_file), "--book-split", "--out", str(out)],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "Accuracy: train" in res.output and str(out) in res.output
    test = json.loads((out / "metrics.json").read_text())["test"]
    # scikit-learn's defaults score 97.0% test on the book's split (measured when the
    # baseline was added); one message is 0.33 points.
    assert test["examples"] == 300
    assert abs(test["accuracy"] * 100 - 97.0) <= 1.0


def _topics(n_per_class: int = 20, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in WORDS.items():
        for _ in range(n_per_class):
            texts.append(" ".join(rng.choice(words, size=rng.integers(3, 8))))
            labels.append(label)
    return texts, labels


SPAMMY = [
    "win a free prize now, call 0800",
    "urgent! claim your cash reward",
    "free entry: text WIN",
] * 4 + ["see you at home later", "are you coming to dinner?", "ok, on my way"] * 4
SPAMMY_LABELS = ["spam"] * 12 + ["ham"] * 12


def forbid_unpickling(monkeypatch) -> None:
    """Any use of pickle from here on fails the test: baseline folders load without it."""

    def refuse(*args, **kwargs):
        raise AssertionError("Baseline.load must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


@pytest.mark.parametrize("classes", [2, 3])
def test_save_load_round_trip_is_exact_and_unpickles_nothing(tmp_path, monkeypatch, classes):
    if classes == 2:
        texts, labels, names = SPAMMY, SPAMMY_LABELS, ["ham", "spam"]
    else:
        texts, labels = _topics()
        names = sorted(WORDS)
    fitted = Baseline.fit(texts, labels, names, BaselineConfig(c=5.0))
    fitted.save(tmp_path)
    probe = texts[:5] + ["a text with words never seen", "free pizza recipe, call now"]
    before = fitted.predict_proba(probe)

    forbid_unpickling(monkeypatch)
    loaded = Baseline.load(tmp_path)
    after = loaded.predict_proba(probe)
    np.testing.assert_array_equal(after, before)
    assert after.shape == (len(probe), classes)
    np.testing.assert_allclose(after.sum(axis=1), 1.0)
    assert loaded.labels == names
    assert loaded.predict(texts[:1]) == [labels[0]]
    assert loaded.num_params == fitted.num_params


@pytest.mark.parametrize("classes", [2, 3])
def test_probabilities_equal_scikit_learns(classes):
    """The numpy probabilities (sigmoid for two classes, softmax beyond) are sklearn's."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    if classes == 2:
        texts, labels, names = SPAMMY, SPAMMY_LABELS, ["ham", "spam"]
    else:
        texts, labels = _topics()
        names = sorted(WORDS)
    ours = Baseline.fit(texts, labels, names, BaselineConfig())
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vectorizer.fit_transform(texts)
    model = LogisticRegression(C=10.0, max_iter=1000).fit(x, [names.index(y) for y in labels])
    probe = texts[:6] + ["free dinner tonight"]
    np.testing.assert_allclose(
        ours.predict_proba(probe), model.predict_proba(vectorizer.transform(probe)), atol=1e-10
    )


def test_load_refuses_changed_files_and_other_folders(tmp_path):
    folder = tmp_path / "model"
    Baseline.fit(SPAMMY, SPAMMY_LABELS, ["ham", "spam"]).save(folder)
    weights = folder / "baseline.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(GPTClassifyError, match=r"baseline\.safetensors: checksum does not match"):
        Baseline.load(folder)

    gpt_run = tmp_path / "gpt"
    gpt_run.mkdir()
    (gpt_run / "config.json").write_text(json.dumps({"format": "gptclassify-classifier"}))
    with pytest.raises(GPTClassifyError, match="not a baseline run folder"):
        Baseline.load(gpt_run)
    with pytest.raises(GPTClassifyError, match="no config.json"):
        Baseline.load(tmp_path / "missing")


def test_fit_needs_every_class_in_training():
    with pytest.raises(GPTClassifyError, match="class 'other' has no training examples"):
        Baseline.fit(SPAMMY, SPAMMY_LABELS, ["ham", "other", "spam"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ngram_min": 3, "ngram_max": 2}, r"^ngram_max \(2\) must be >= ngram_min \(3\)"),
        ({"c": 0.0}, "^c must be > 0"),
        ({"min_df": 0}, "^min_df must be a positive integer"),
        ({"analyzer": "char"}, "^analyzer: 'char' is not one of word, char_wb"),
    ],
)
def test_config_errors_name_the_flag(options, message):
    with pytest.raises(GPTClassifyError, match=message):
        BaselineConfig(**options)
