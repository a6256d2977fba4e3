"""`--lexical`: the surface-feature head (TF-IDF word and character n-grams, surface.py).

Checked against scikit-learn itself (its vectorizers and logistic regression on the same
texts), against the TF-IDF baseline (the head alone is never below it on validation: its
configuration is one of the head's candidates), then end to end: a run reports exactly what
its saved folder predicts, the server, an ONNX export and explanations compute the same
logits, and the Hugging Face export and a bad C are refused in one line.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gptclassify import surface
from gptclassify.errors import GPTClassifyError

WORDS = {
    0: "invoice payment refund account billing charge",
    1: "goal match striker league season coach",
    2: "recipe oven flour butter sugar bake",
}


def _texts(n: int, seed: int = 0, noise: float = 0.5) -> tuple[list[str], np.ndarray]:
    """Three topics told apart by their words, with shared filler and some label noise."""
    rng = np.random.default_rng(seed)
    filler = "the a of and to in is it for on with today really".split()
    texts, labels = [], []
    for i in range(n):
        y = i % 3
        own = WORDS[y].split()
        other = WORDS[(y + 1) % 3].split()
        words = list(rng.choice(filler, 6)) + list(rng.choice(own, 2))
        if rng.random() < noise:
            words += list(rng.choice(other, 1))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize())
        labels.append(y)
    return texts, np.array(labels)


def _split(n_train=90, n_val=45):
    tr, ytr = _texts(n_train, 1)
    va, yva = _texts(n_val, 2)
    return {"train": tr, "validation": va}, {"train": ytr, "validation": yva}


def sklearn_features(head, texts: dict[str, list[str]]):
    """scikit-learn's own vectorizers for a head's feature blocks, fitted on texts['train']:
    the (train, validation) matrices the head's regression should have been fitted on."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer

    vecs = [
        TfidfVectorizer(
            analyzer=b["analyzer"],
            ngram_range=tuple(b["ngram_range"]),
            sublinear_tf=True,
            min_df=b["min_df"],
            max_features=b["max_features"],
            **({"token_pattern": b["token_pattern"]} if b["token_pattern"] else {}),
        )
        for b in head.blocks
    ]
    x = sparse.hstack([v.fit_transform(texts["train"]) for v in vecs]).tocsr()
    xv = sparse.hstack([v.transform(texts["validation"]) for v in vecs]).tocsr()
    return x, xv


def test_the_head_computes_scikit_learns_regression():
    from sklearn.linear_model import LogisticRegression

    texts, labels = _split()
    random_net = {"validation": np.zeros((len(labels["validation"]), 3), np.float32)}
    choice = surface.choose(texts, labels, random_net, 3, mode="on", C=3.0)
    head = choice.head
    assert head is not None and head.C == 3.0
    x, xv = sklearn_features(head, texts)
    lr = LogisticRegression(C=3.0, max_iter=2000).fit(x, labels["train"])
    np.testing.assert_allclose(
        head.raw_logits(texts["validation"]), lr.decision_function(xv), atol=1e-4
    )


def test_binary_logits_give_scikit_learns_probabilities():
    texts, labels = _split()
    keep = {k: labels[k] < 2 for k in labels}
    t2 = {k: [t for t, m in zip(texts[k], keep[k], strict=True) if m] for k in texts}
    y2 = {k: labels[k][keep[k]] for k in labels}
    net = {"validation": np.zeros((len(y2["validation"]), 2), np.float32)}
    head = surface.choose(t2, y2, net, 2, mode="on", C=10.0).head
    from scipy.special import softmax

    from gptclassify.baseline.tfidf import Baseline

    # The word block alone with C=10 is the baseline's model: same probabilities.
    if head.features == "word":
        base = Baseline.fit(t2["train"], [str(v) for v in y2["train"]], ["0", "1"])
        np.testing.assert_allclose(
            softmax(head.raw_logits(t2["validation"]), axis=1),
            base.predict_proba(t2["validation"]),
            atol=1e-5,
        )
    assert head.raw_logits(t2["validation"]).shape == (len(y2["validation"]), 2)


def test_the_head_alone_never_validates_below_the_baseline():
    from gptclassify.baseline.tfidf import Baseline

    for seed in range(4):
        tr, ytr = _texts(60, 10 + seed, noise=0.9)
        va, yva = _texts(60, 20 + seed, noise=0.9)
        texts, labels = {"train": tr, "validation": va}, {"train": ytr, "validation": yva}
        net = {"validation": np.zeros((60, 3), np.float32)}
        choice = surface.choose(texts, labels, net, 3)
        names = ["0", "1", "2"]
        base = Baseline.fit(tr, [str(v) for v in ytr], names)
        base_acc = (base.predict_proba(va).argmax(1) == yva).mean()
        assert choice.scores["head"]["accuracy"] >= base_acc - 1e-12
        assert choice.scores["shipped"]["accuracy"] >= base_acc - 1e-12


def test_auto_ships_what_validates_best():
    texts, labels = _split()
    y = labels["validation"]
    perfect = {"validation": np.eye(3, dtype=np.float32)[y] * 20}
    c = surface.choose(texts, labels, perfect, 3)
    assert c.head is None and c.shipped == "network"  # nothing to raise: the network alone
    uniform = {"validation": np.zeros((len(y), 3), np.float32)}
    c = surface.choose(texts, labels, uniform, 3)
    assert c.head is not None and c.scores["shipped"]["accuracy"] >= c.scores["head"]["accuracy"]
    # A network that is wrong everywhere: the head alone ships (the network is not run).
    wrong = {"validation": np.eye(3, dtype=np.float32)[(y + 1) % 3] * 50}
    c = surface.choose(texts, labels, wrong, 3)
    assert c.shipped == "head alone" and c.head.network_weight == 0.0
    # `on` always adds the head to the network.
    c = surface.choose(texts, labels, perfect, 3, mode="on")
    assert c.head is not None and c.head.network_weight == 1.0 and c.head.weight > 0


def test_save_and_load_round_trip_and_tampering(tmp_path):
    texts, labels = _split()
    net = {"validation": np.zeros((len(labels["validation"]), 3), np.float32)}
    head = surface.choose(texts, labels, net, 3, mode="on").head
    record = head.save(tmp_path)
    surface.check_record(record, "config.json")
    again = surface.SurfaceHead.load(tmp_path, json.loads(json.dumps(record)))
    np.testing.assert_array_equal(
        again.logits(texts["validation"]), head.logits(texts["validation"])
    )
    (tmp_path / surface.TENSOR_FILE).write_bytes(
        b"x" + (tmp_path / surface.TENSOR_FILE).read_bytes()
    )
    with pytest.raises(GPTClassifyError, match="checksum does not match"):
        surface.SurfaceHead.load(tmp_path, record)
    with pytest.raises(GPTClassifyError, match="network_weight"):
        surface.check_record({**record, "network_weight": 0.5}, "config.json")


def test_bad_settings_are_one_line():
    from gptclassify.args import TrainConfig

    with pytest.raises(GPTClassifyError, match="lexical_c must be > 0"):
        TrainConfig(lexical_c=0.0)


# ---- end to end --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def surface_run(tmp_path_factory, tiny_json):
    """A tiny random network that learns little (its head only), so the head weighs in."""
    from conftest import write_three_classes
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    folder = tmp_path_factory.mktemp("surface")
    write_three_classes(folder / "topics.csv", n_per_class=60)
    write_three_classes(folder / "test.csv", n_per_class=20, seed=1)
    out = folder / "run"
    cfg = TrainConfig(
        data=DataConfig(train=str(folder / "topics.csv"), test=str(folder / "test.csv")),
        model=str(tiny_json),
        weights="random",
        trainable="head",
        lr=1e-4,
        epochs=1,
        eval_freq=0,
        precision="fp32",
        lexical="on",
        out=str(out),
    )
    train(cfg, quiet=True)
    return out


def _split_of(run, split):
    with open(run / "data" / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], np.array([r["label"] for r in rows])


def test_a_run_reports_what_its_folder_predicts(surface_run):
    from gptclassify import Classifier

    config = json.loads((surface_run / "config.json").read_text())
    assert config["format_version"] == 6 and config["surface"]["chosen_by"] == "on"
    assert "lexical" not in config
    metrics = json.loads((surface_run / "metrics.json").read_text())
    clf = Classifier.load(surface_run, precision="fp32")
    assert clf.surface is not None
    for split in ("validation", "test"):
        texts, y = _split_of(surface_run, split)
        acc = (clf.predict(texts) == y).mean()
        assert acc == pytest.approx(metrics[split]["accuracy"], abs=1e-12)
    texts, _ = _split_of(surface_run, "test")
    # The folder computes network + weight x head: without the head it decides otherwise.
    full = clf.logits(texts)
    head, clf.surface = clf.surface, None
    network = clf.logits(texts)
    clf.surface = head
    np.testing.assert_allclose(full, network + head.logits(texts), atol=1e-4)
    # The pre-encoded path (the server's batches) gives the same logits.
    np.testing.assert_allclose(clf.logits_encoded(clf.encode(texts)), full, atol=1e-5)


def test_onnx_export_keeps_the_head_and_hf_export_refuses(surface_run, tmp_path):
    from gptclassify import Classifier
    from gptclassify.export import export

    texts, _ = _split_of(surface_run, "test")
    export(surface_run, "onnx", tmp_path / "onnx")
    onnx = Classifier.load(tmp_path / "onnx")
    assert onnx.surface is not None
    torch_logits = Classifier.load(surface_run, precision="fp32").logits(texts[:32])
    np.testing.assert_allclose(onnx.logits(texts[:32]), torch_logits, atol=1e-4)
    with pytest.raises(GPTClassifyError, match="logistic regression.*--lexical"):
        export(surface_run, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_an_older_reader_refuses_a_surface_folder(surface_run, tmp_path, monkeypatch):
    import shutil

    from gptclassify import artifact

    folder = tmp_path / "copy"
    shutil.copytree(surface_run, folder)
    monkeypatch.setattr(artifact, "CLASSIFIER_VERSION", artifact.SURFACE_LAYOUT_VERSION - 1)
    with pytest.raises(GPTClassifyError, match="format version 6 is newer"):
        artifact.read_classifier_config(folder)


def test_explanations_include_the_head(surface_run):
    from gptclassify import Classifier

    clf = Classifier.load(surface_run, precision="fp32")
    texts, _ = _split_of(surface_run, "test")
    probs = clf.predict_proba([texts[0]])[0]
    explained = clf.explain(texts[0], steps=8)
    np.testing.assert_allclose(explained.probs, probs, atol=1e-5)
    np.testing.assert_allclose(explained.tokens[-1].probs, probs, atol=1e-5)
    target = clf.labels.index(explained.target)
    assert explained.score == pytest.approx(float(np.log(probs[target])), abs=1e-4)


def test_the_server_answers_with_the_head(surface_run):
    from fastapi.testclient import TestClient

    from gptclassify import Classifier
    from gptclassify.serve import create_app

    clf = Classifier.load(surface_run, precision="fp32")
    texts, _ = _split_of(surface_run, "test")
    expected = clf.logits(texts[:6])
    with TestClient(create_app(clf)) as client:
        body = client.post(
            "/predict", json={"inputs": [[t] for t in texts[:6]], "raw_scores": True}
        ).json()
    got = np.array(
        [[{p["label"]: p["score"] for p in row}[name] for name in clf.labels] for row in body]
    )
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_auto_leaves_the_head_out_of_a_network_it_cannot_improve(tmp_path, tiny_json):
    from conftest import write_three_classes
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    write_three_classes(tmp_path / "topics.csv", n_per_class=60)
    cfg = TrainConfig(
        data=DataConfig(train=str(tmp_path / "topics.csv")),
        model=str(tiny_json),
        weights="random",
        trainable="all",
        lr=2e-3,
        epochs=4,
        eval_freq=0,
        precision="fp32",
        baseline=False,
        lexical="auto",
        out=str(tmp_path / "strong"),
    )
    train(cfg, quiet=True)
    config = json.loads((tmp_path / "strong" / "config.json").read_text())
    metrics = json.loads((tmp_path / "strong" / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == 1.0
    assert "surface" not in config and config["format_version"] < 5
