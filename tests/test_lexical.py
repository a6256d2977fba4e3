"""`--lexical`: a bag-of-tokens logistic regression whose logits add to the network's.

Checked against scikit-learn itself (its tf-idf transformer and logistic regression on the
same token ids), then end to end: a run trained on the frozen-prefix cache (whose logits
never pass through `forward`) reports exactly what the saved folder predicts, the folder
computes network + bag-of-tokens, an ONNX export computes the same, and the Hugging Face
export, multi-label data and a bad C are refused in one line.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from gptclassify import lexical
from gptclassify.errors import GPTClassifyError


def _corpus(n: int, classes: int, seed: int = 0) -> tuple[list[list[int]], np.ndarray]:
    rng = np.random.default_rng(seed)
    ids, labels = [], []
    for i in range(n):
        y = i % classes
        length = int(rng.integers(3, 12))
        # Each class favours its own ids; the ranges overlap, so the problem is not trivial.
        row = rng.integers(10 * y, 10 * y + 25, size=length).tolist()
        ids.append(row)
        labels.append(y)
    return ids, np.array(labels)


def _sklearn_margin(ids, labels, vocab, C, test_ids, class_weight=None):
    """scikit-learn's own pipeline: counts -> TfidfTransformer(norm=None) -> / length -> LR."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.linear_model import LogisticRegression

    def counts(rows):
        m = sparse.lil_matrix((len(rows), vocab))
        for i, row in enumerate(rows):
            for t in row:
                m[i, t] += 1
        return m.tocsr()

    tf = TfidfTransformer(norm=None, smooth_idf=True).fit(counts(ids))

    def feats(rows):
        x = tf.transform(counts(rows))
        return sparse.diags(1.0 / np.array([len(r) for r in rows])) @ x

    lr = LogisticRegression(C=C, max_iter=5000, class_weight=class_weight).fit(feats(ids), labels)
    return lr.decision_function(feats(test_ids))


@pytest.mark.parametrize("classes", [2, 3])
def test_the_head_computes_scikit_learns_logistic_regression(classes):
    ids, labels = _corpus(120, classes)
    test_ids, _ = _corpus(40, classes, seed=1)
    vocab = 64
    fitted = lexical.fit(ids, labels, classes, vocab, C=5.0)
    ours = fitted.head.logits(test_ids)
    ref = _sklearn_margin(ids, labels, vocab, 5.0, test_ids)
    if classes == 2:
        np.testing.assert_allclose(ours[:, 1] - ours[:, 0], ref, atol=1e-4)
    else:  # multinomial: logits up to one constant per row
        np.testing.assert_allclose(
            ours - ours.mean(axis=1, keepdims=True),
            ref - ref.mean(axis=1, keepdims=True),
            atol=1e-4,
        )
    assert fitted.features == len({t for row in ids for t in row})


def test_class_weights_reach_the_regression():
    ids, labels = _corpus(120, 2)
    test_ids, _ = _corpus(40, 2, seed=1)
    weight = {0: 1.0, 1: 6.0}
    ours = lexical.fit(ids, labels, 2, 64, C=5.0, class_weight=weight).head.logits(test_ids)
    ref = _sklearn_margin(ids, labels, 64, 5.0, test_ids, class_weight=weight)
    np.testing.assert_allclose(ours[:, 1] - ours[:, 0], ref, atol=1e-4)
    plain = lexical.fit(ids, labels, 2, 64, C=5.0).head.logits(test_ids)
    assert ((ours[:, 1] - ours[:, 0]) > (plain[:, 1] - plain[:, 0])).mean() > 0.9


def test_padded_batches_give_each_texts_own_logits():
    ids, labels = _corpus(60, 2)
    head = lexical.fit(ids, labels, 2, 64).head
    rows = ids[:5]
    width = max(map(len, rows))
    padded = torch.tensor([r + [63] * (width - len(r)) for r in rows])
    lengths = torch.tensor([len(r) for r in rows])
    together = head(padded, lengths).numpy()
    alone = np.concatenate([head(torch.tensor([r]), torch.tensor([len(r)])).numpy() for r in rows])
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(together, head.logits(rows), atol=1e-6)


@pytest.fixture(scope="module")
def lexical_run(tmp_path_factory, sms_file, tiny_json):
    """A tiny model whose last block trains on the frozen-prefix cache, with --lexical."""
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    out = tmp_path_factory.mktemp("lexical") / "run"
    cfg = TrainConfig(
        data=DataConfig(sms_source=str(sms_file)),
        model=str(tiny_json),
        weights="random",
        trainable="last-block",
        lr=1e-3,
        epochs=1,
        eval_freq=0,
        precision="fp32",
        baseline=False,
        lexical="on",
        out=str(out),
    )
    train(cfg, quiet=True)
    return out


def _texts(run, split):
    with open(run / "data" / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["label"] for r in rows])


def test_a_lexical_run_reports_what_its_folder_predicts(lexical_run):
    from gptclassify import Classifier

    config = json.loads((lexical_run / "config.json").read_text())
    assert config["format_version"] == 5 and config["lexical"]["C"] == lexical.DEFAULT_C
    metrics = json.loads((lexical_run / "metrics.json").read_text())
    clf = Classifier.load(lexical_run, precision="fp32")
    assert clf.lexical == config["lexical"]
    for split in ("validation", "test"):
        texts, y = _texts(lexical_run, split)
        assert np.mean(clf.predict(texts) == y) == pytest.approx(metrics[split]["accuracy"])

    # The folder's logits are the network's plus the bag-of-tokens model's.
    texts, y = _texts(lexical_run, "test")
    full = clf.logits(texts)
    ids = clf.policy.tokenizer.encode_batch(texts)
    bag = clf.model.lexical.logits([clf.policy.apply(r)[: len(r)] for r in ids])
    head = clf.model.lexical
    clf.model.lexical = None
    network = Classifier(clf.model, clf.labels, clf.policy, precision="fp32").logits(texts)
    clf.model.lexical = head
    np.testing.assert_allclose(full, network + bag, atol=1e-4)
    assert np.abs(bag).max() > 0.5  # it does move the logits
    # ... and they decide differently on some texts (the term matters, not a no-op).
    assert (full.argmax(1) != network.argmax(1)).any()


def test_onnx_export_keeps_the_term_and_hf_export_refuses(lexical_run, tmp_path):
    from gptclassify import Classifier
    from gptclassify.export import export

    texts, _ = _texts(lexical_run, "test")
    export(lexical_run, "onnx", tmp_path / "onnx")
    onnx = Classifier.load(tmp_path / "onnx")
    assert onnx.lexical is not None
    torch_logits = Classifier.load(lexical_run, precision="fp32").logits(texts[:64])
    np.testing.assert_allclose(onnx.logits(texts[:64]), torch_logits, atol=1e-4)
    with pytest.raises(GPTClassifyError, match="bag-of-tokens logistic regression.*--lexical"):
        export(lexical_run, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_an_older_reader_refuses_a_lexical_folder(lexical_run, tmp_path, monkeypatch):
    import shutil

    from gptclassify import artifact

    folder = tmp_path / "copy"
    shutil.copytree(lexical_run, folder)
    monkeypatch.setattr(artifact, "CLASSIFIER_VERSION", artifact.LEXICAL_LAYOUT_VERSION - 1)
    with pytest.raises(GPTClassifyError, match="format version 5 is newer"):
        artifact.read_classifier_config(folder)


def test_a_folder_without_the_term_keeps_its_older_layout(tiny_run):
    config = json.loads((tiny_run.path / "config.json").read_text())
    assert "lexical" not in config and config["format_version"] < 5


def test_bad_settings_are_one_line():
    from gptclassify.args import TrainConfig

    with pytest.raises(GPTClassifyError, match="--lexical-c must be > 0"):
        TrainConfig(lexical_c=0.0)


def test_multi_label_data_are_refused(tmp_path, tiny_json):
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    rows = [("free prize now", "spam|promo"), ("lunch at noon", "ham")] * 12
    for name in ("train", "test"):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "labels"])
            w.writerows(rows)
    cfg = TrainConfig(
        data=DataConfig(
            train=str(tmp_path / "train.csv"), test=str(tmp_path / "test.csv"), label_sep="|"
        ),
        model=str(tiny_json),
        weights="random",
        lexical="on",
        out=str(tmp_path / "run"),
    )
    with pytest.raises(GPTClassifyError, match="--lexical fits a single-label"):
        train(cfg, quiet=True)
    assert not (tmp_path / "run").exists()


def test_explanations_include_the_term(lexical_run):
    from gptclassify import Classifier

    clf = Classifier.load(lexical_run, precision="fp32")
    texts, _ = _texts(lexical_run, "test")
    text = texts[0]
    probs = clf.predict_proba([text])[0]
    explained = clf.explain(text, steps=8)
    np.testing.assert_allclose(explained.probs, probs, atol=1e-5)
    # The last prefix is the whole text; the score is its log-probability, term included.
    np.testing.assert_allclose(explained.tokens[-1].probs, probs, atol=1e-5)
    target = clf.labels.index(explained.target)
    assert explained.score == pytest.approx(float(np.log(probs[target])), abs=1e-4)


def test_the_server_answers_with_the_term(lexical_run):
    from fastapi.testclient import TestClient

    from gptclassify import Classifier
    from gptclassify.serve import create_app

    clf = Classifier.load(lexical_run, precision="fp32")
    texts, _ = _texts(lexical_run, "test")
    expected = clf.logits(texts[:6])
    with TestClient(create_app(clf)) as client:
        body = client.post(
            "/predict", json={"inputs": [[t] for t in texts[:6]], "raw_scores": True}
        ).json()
    got = np.array(
        [[{p["label"]: p["score"] for p in row}[name] for name in clf.labels] for row in body]
    )
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _auto_run(tmp_path, tiny_json, name: str, **kw):
    """Three topics told apart by their words (conftest.write_three_classes), --lexical auto."""
    from conftest import write_three_classes
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    if not (tmp_path / "topics.csv").exists():
        write_three_classes(tmp_path / "topics.csv", n_per_class=60)
    cfg = TrainConfig(
        data=DataConfig(train=str(tmp_path / "topics.csv")),
        model=str(tiny_json),
        weights="random",
        eval_freq=0,
        precision="fp32",
        baseline=False,
        lexical="auto",
        out=str(tmp_path / name),
        **kw,
    )
    train(cfg, quiet=True)
    config = json.loads((tmp_path / name / "config.json").read_text())
    metrics = json.loads((tmp_path / name / "metrics.json").read_text())
    return config, metrics


def test_auto_keeps_the_term_only_where_it_raises_validation_accuracy(tmp_path, tiny_json):
    # A network that has learnt nothing (its head only, lr 1e-7): the words decide, kept.
    config, metrics = _auto_run(tmp_path, tiny_json, "weak", trainable="head", lr=1e-7, epochs=1)
    assert config["lexical"]["chosen_by"] == "auto"
    assert metrics["validation"]["accuracy"] == 1.0
    # A network that is right on every validation text already: nothing to raise, left out.
    config, metrics = _auto_run(tmp_path, tiny_json, "strong", trainable="all", lr=2e-3, epochs=4)
    assert metrics["validation"]["accuracy"] == 1.0
    assert "lexical" not in config and config["format_version"] < 5


def test_a_run_with_class_weights_passes_them_to_the_regression(tmp_path, tiny_json, monkeypatch):
    seen = {}
    real_fit = lexical.fit

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(lexical, "fit", spy)
    config, _ = _auto_run(
        tmp_path,
        tiny_json,
        "weighted",
        trainable="head",
        lr=1e-7,
        epochs=1,
        class_weights="balanced",
    )
    assert config["lexical"]["chosen_by"] == "auto"
    # balanced: class c weighs n / (k * n_c) on the run's own training split.
    _, y = _texts(tmp_path / "weighted", "train")
    names = config["labels"]
    expected = {i: len(y) / (len(names) * (y == name).sum()) for i, name in enumerate(names)}
    assert seen["class_weight"] == pytest.approx(expected)
