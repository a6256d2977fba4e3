"""The bag-of-tokens table (lexical.py) that `--lexical` fitted before the surface head
(surface.py, tests/test_surface.py) replaced it: folders that hold one still load and run.

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
def table_folder(tmp_path_factory, tiny_run):
    """A layout-5 folder: a model whose weights hold a bag-of-tokens table (what `--lexical`
    wrote before the surface head replaced it), built from the tiny run."""
    from gptclassify import Classifier

    clf = Classifier.load(tiny_run.path, precision="fp32")
    texts, y = _texts(tiny_run.path, "train")
    names = clf.labels
    ids = [clf.policy.tokenizer.encode(t) for t in texts]
    labels = np.array([names.index(v) for v in y])
    fitted = lexical.fit(ids, labels, len(names), clf.gpt_config.vocab_size)
    clf.model.lexical = fitted.head
    clf.lexical = {"kind": lexical.DESCRIPTION, "C": lexical.DEFAULT_C, "chosen_by": "on"}
    return clf.save(tmp_path_factory.mktemp("table") / "model")


def _texts(run, split):
    with open(run / "data" / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["label"] for r in rows])


def test_a_table_folder_still_loads_and_adds_its_table(table_folder, tiny_run):
    from gptclassify import Classifier

    config = json.loads((table_folder / "config.json").read_text())
    assert config["format_version"] == 5 and config["lexical"]["C"] == lexical.DEFAULT_C
    clf = Classifier.load(table_folder, precision="fp32")
    plain = Classifier.load(tiny_run.path, precision="fp32")
    texts, _ = _texts(tiny_run.path, "test")
    ids = [clf.policy.tokenizer.encode(t) for t in texts]
    bag = clf.model.lexical.logits([clf.policy.apply(r)[: len(r)] for r in ids])
    np.testing.assert_allclose(clf.logits(texts), plain.logits(texts) + bag, atol=1e-4)


def test_an_older_reader_refuses_a_table_folder(table_folder, tmp_path, monkeypatch):
    import shutil

    from gptclassify import artifact

    folder = tmp_path / "copy"
    shutil.copytree(table_folder, folder)
    monkeypatch.setattr(artifact, "CLASSIFIER_VERSION", artifact.LEXICAL_LAYOUT_VERSION - 1)
    with pytest.raises(GPTClassifyError, match="format version 5 is newer"):
        artifact.read_classifier_config(folder)


def test_a_folder_without_the_term_keeps_its_older_layout(tiny_run):
    config = json.loads((tiny_run.path / "config.json").read_text())
    assert "lexical" not in config and config["format_version"] < 5
