"""Multi-label data get the TF-IDF baseline and the surface head too (issue 32: never below
the baseline). The baseline is checked against scikit-learn's OneVsRestClassifier fitted
directly on the same features, and its pickle-free folder round-trips exactly; the head's
choice ships the head alone under a confidently wrong network and the network alone under a
right one, scored on validation macro F1 at tuned thresholds as metrics.py scores it; a tiny
run with a head predicts through `Classifier.load` exactly what its own evaluation reported,
and `gptclassify baseline` runs on a multi-label folder."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from gptclassify import surface
from gptclassify.args import BaselineConfig, DataConfig
from gptclassify.baseline import Baseline, train_baseline
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError
from gptclassify.metrics import multilabel_report, sigmoid, tune_thresholds
from gptclassify.training.results import baseline_beats, compare_with_baseline, fit_surface
from test_baseline import forbid_unpickling
from test_multilabel import WORDS, rows, write_sep
from test_surface import sklearn_features

NAMES = list(WORDS)


def matrix(data, names=NAMES) -> np.ndarray:
    return np.array([[float(n in labels) for n in names] for _, labels in data], np.float32)


def split(n_train: int = 60, n_val: int = 30):
    train, val = rows(n_train, 1), rows(n_val, 2)
    texts = {"train": [t for t, _ in train], "validation": [t for t, _ in val]}
    return texts, {"train": matrix(train), "validation": matrix(val)}


# ---- the baseline ---------------------------------------------------------------------------


def test_the_baseline_is_scikit_learns_one_vs_rest_regression(caplog):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    texts, y = split()
    names = [*NAMES, "never"]  # a label no training text has: a constant-score column
    y_train = np.hstack([y["train"], np.zeros((len(y["train"]), 1), np.float32)])
    with caplog.at_level(logging.WARNING, logger="gptclassify.baseline"):
        ours = Baseline.fit_label_sets(texts["train"], y_train, names)
    assert ours.multi_label and ours.coef.shape[0] == 4
    warned = [r.getMessage() for r in caplog.records if "'never'" in r.getMessage()]
    assert len(warned) == 1 and "constant score" in warned[0]
    assert ours.settings["logistic_regression"]["constant_labels"] == ["never"]

    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x = vectorizer.fit_transform(texts["train"])
    reference = OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=1000, random_state=123))
    with pytest.warns(UserWarning, match="present in all training examples"):
        reference.fit(x, y_train.astype(int))
    probe = texts["validation"] + ["a text with words never seen", "invoice router asap"]
    expected = reference.predict_proba(vectorizer.transform(probe))
    np.testing.assert_allclose(ours.predict_proba(probe), expected, atol=1e-6)
    assert (expected[:, 3] == 0).all()  # scikit-learn's constant predictor


def test_thresholds_are_tuned_as_the_networks_and_the_folder_round_trips(tmp_path, monkeypatch):
    texts, y = split()
    fitted = Baseline.fit_label_sets(texts["train"], y["train"], NAMES, BaselineConfig(c=5.0))
    assert fitted.thresholds is None  # 0.5 each until tuned
    thresholds = fitted.tune_thresholds(texts["validation"], y["validation"])
    assert thresholds == tune_thresholds(fitted.predict_proba(texts["validation"]), y["validation"])
    fitted.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["format_version"] == 2 and config["task"] == "multi-label"
    assert config["thresholds"] == thresholds

    forbid_unpickling(monkeypatch)
    loaded = Baseline.load(tmp_path)
    probe = texts["validation"] + ["nothing known here"]
    np.testing.assert_array_equal(loaded.predict_proba(probe), fitted.predict_proba(probe))
    assert loaded.multi_label and loaded.thresholds == thresholds and loaded.labels == NAMES
    assert loaded.predict(probe) == fitted.predict(probe)
    assert loaded.predict(["invoice asap thanks"]) == [("billing", "urgent")]

    config["task"] = "single-label"  # a multi-label folder read as single-label: refused
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(GPTClassifyError, match="task 'single-label' does not fit format_version 2"):
        Baseline.load(tmp_path)


def test_the_run_compares_with_the_baseline_at_its_tuned_thresholds():
    from gptclassify.data.tables import LabelledTexts

    texts, y = split()
    parts = {k: LabelledTexts(t, [""] * len(t), k) for k, t in texts.items()}
    scores = compare_with_baseline(parts, y, NAMES, multi_label=True)
    assert scores["task"] == "multi-label" and set(scores["validation"]) == {
        "accuracy",
        "macro_f1",
        "micro_f1",
    }
    fitted = Baseline.fit_label_sets(texts["train"], y["train"], NAMES)
    cut = fitted.tune_thresholds(texts["validation"], y["validation"])
    report = multilabel_report(
        fitted.predict_proba(texts["validation"]), y["validation"], NAMES, cut
    )
    assert scores["validation"]["macro_f1"] == report["macro_f1"]
    assert scores["validation"]["accuracy"] == report["subset_accuracy"]
    assert not baseline_beats(scores, {"validation": {"macro_f1": report["macro_f1"]}})  # tie
    assert baseline_beats(scores, {"validation": {"macro_f1": report["macro_f1"] - 0.01}})


# ---- the surface head -----------------------------------------------------------------------


def tuned_f1(logits: np.ndarray, y: np.ndarray) -> float:
    probs = sigmoid(logits)
    return multilabel_report(probs, y, NAMES, tune_thresholds(probs, y))["macro_f1"]


def test_the_head_ships_alone_under_a_confidently_wrong_network():
    texts, y = split()
    network = {k: (1 - 2 * v) * 1000.0 for k, v in y.items()}  # every label decided wrong
    before = {k: v.copy() for k, v in network.items()}
    fitted = fit_surface(texts, y, network, 3, mode="auto", multi_label=True)
    assert fitted.choice.shipped == "head alone" and fitted.choice.metric == "macro_f1"
    head = fitted.head
    assert head is not None and head.network_weight == 0 and head.multi_label
    scores = fitted.choice.scores
    assert scores["head"]["macro_f1"] == 1.0
    assert scores["network"]["macro_f1"] == pytest.approx(
        tuned_f1(network["validation"], y["validation"])
    )
    assert scores["network"]["macro_f1"] < 1.0
    for k in network:  # the network's logits are left alone; the result holds the shipped
        np.testing.assert_array_equal(network[k], before[k])
        np.testing.assert_allclose(fitted.logits[k], head.combine(network[k], texts[k]))
    assert tuned_f1(fitted.logits["validation"], y["validation"]) == 1.0


def test_the_network_ships_alone_when_it_is_right():
    texts, y = split()
    network = {k: (2 * v - 1) * 5.0 for k, v in y.items()}
    fitted = fit_surface(texts, y, network, 3, mode="auto", multi_label=True)
    assert fitted.choice.shipped == "network" and fitted.head is None
    for k in network:
        np.testing.assert_array_equal(fitted.logits[k], network[k])
    on = fit_surface(texts, y, network, 3, mode="on", C=10.0, multi_label=True)
    assert on.choice.shipped == "network + head" and on.head.network_weight == 1.0


def test_the_head_computes_one_scikit_learn_regression_per_label(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    texts, y = split()
    zero = {"validation": np.zeros_like(y["validation"])}
    head = surface.choose(texts, y, zero, 3, mode="on", C=3.0, multi_label=True).head
    assert head is not None and head.task == "multi-label"
    x, xv = sklearn_features(head, texts)
    ovr = OneVsRestClassifier(LogisticRegression(C=3.0, max_iter=2000)).fit(x, y["train"])
    logits = head.raw_logits(texts["validation"])
    np.testing.assert_allclose(logits, ovr.decision_function(xv), atol=1e-4)

    record = head.save(tmp_path)  # the same files, with the task said
    assert record["task"] == "multi-label"
    assert json.loads((tmp_path / surface.JSON_FILE).read_text())["task"] == "multi-label"
    surface.check_record(record, "config.json")
    again = surface.SurfaceHead.load(tmp_path, json.loads(json.dumps(record)))
    assert again.multi_label
    np.testing.assert_array_equal(
        again.logits(texts["validation"]), head.logits(texts["validation"])
    )
    single = {k: v for k, v in record.items() if k != "task"}  # config.json says single-label
    with pytest.raises(GPTClassifyError, match="task 'multi-label' is not config.json's"):
        surface.SurfaceHead.load(tmp_path, single)


# ---- end to end -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ml_surface_run(tmp_path_factory, tiny_json):
    """A tiny random network that learns little (its head only), with the head added."""
    from gptclassify.args import TrainConfig
    from gptclassify.training import train

    folder = tmp_path_factory.mktemp("mlsurface")
    write_sep(folder / "all.csv", rows(150, 0), sep="|")
    write_sep(folder / "test.csv", rows(40, 3), sep="|")
    cfg = TrainConfig(
        data=DataConfig(
            train=str(folder / "all.csv"), test=str(folder / "test.csv"), label_sep="|"
        ),
        model=str(tiny_json),
        weights="random",
        trainable="head",
        lr=1e-4,
        epochs=1,
        eval_freq=0,
        precision="fp32",
        lexical="on",
        out=str(folder / "run"),
    )
    train(cfg, quiet=True)
    return folder / "run"


def split_of(run, name):
    from gptclassify.data.prepared import load_prepared

    splits = load_prepared(run / "data")
    part = dict(splits.parts())[name]
    return part.texts, np.asarray(splits.label_ids(part))


def test_a_run_predicts_through_its_folder_what_its_evaluation_reported(ml_surface_run):
    from gptclassify import Classifier

    config = json.loads((ml_surface_run / "config.json").read_text())
    assert config["task"] == "multi-label" and config["surface"]["task"] == "multi-label"
    metrics = json.loads((ml_surface_run / "metrics.json").read_text())
    clf = Classifier.load(ml_surface_run, precision="fp32")
    assert clf.surface is not None and clf.surface.multi_label
    for name in ("validation", "test"):
        texts, y = split_of(ml_surface_run, name)
        probs = clf.predict_proba(texts)
        report = multilabel_report(probs, y, clf.labels, clf.thresholds)
        for key in ("macro_f1", "micro_f1", "subset_accuracy", "hamming_loss"):
            assert report[key] == pytest.approx(metrics[name][key], abs=1e-12), key
        predicted = clf.predict(texts)
        expected = [
            tuple(n for n, on in zip(clf.labels, row, strict=True) if on)
            for row in probs >= np.asarray(clf.thresholds)[None, :]
        ]
        assert [tuple(p) for p in predicted] == expected
    texts, _ = split_of(ml_surface_run, "test")
    # The folder computes network + weight x head before the sigmoid.
    full = clf.logits(texts)
    head, clf.surface = clf.surface, None
    network = clf.logits(texts)
    clf.surface = head
    np.testing.assert_allclose(full, network + head.logits(texts), atol=1e-4)
    np.testing.assert_allclose(clf.logits_encoded(clf.encode(texts)), full, atol=1e-5)
    # The baseline was scored on the same split and logged beside the model.
    assert metrics["baseline"]["task"] == "multi-label"
    log = (ml_surface_run / "train.log").read_text()
    assert "TF-IDF baseline (same split" in log and "compared on macro F1" in log
    assert "Surface head" in log and "macro F1 at tuned thresholds" in log


def test_onnx_server_and_explain_apply_the_head_to_label_sets(ml_surface_run, tmp_path):
    from fastapi.testclient import TestClient

    from gptclassify import Classifier
    from gptclassify.export import export
    from gptclassify.serve import create_app

    clf = Classifier.load(ml_surface_run, precision="fp32")
    texts, _ = split_of(ml_surface_run, "test")
    probs = clf.predict_proba(texts)
    export(ml_surface_run, "onnx", tmp_path / "onnx")
    onnx = Classifier.load(tmp_path / "onnx")
    assert onnx.surface is not None and onnx.surface.multi_label and onnx.multi_label
    np.testing.assert_allclose(onnx.predict_proba(texts), probs, atol=1e-5)
    with TestClient(create_app(clf)) as client:
        body = client.post(
            "/predict", json={"inputs": [[t] for t in texts[:4]], "raw_scores": True}
        ).json()
    got = np.array(
        [[{p["label"]: p["score"] for p in row}[name] for name in clf.labels] for row in body]
    )
    np.testing.assert_allclose(got, clf.logits(texts[:4]), atol=1e-4)
    explained = clf.explain(texts[0], steps=4)
    np.testing.assert_allclose(explained.probs, probs[0], atol=1e-5)


def test_the_baseline_cli_on_the_runs_multi_label_folder_matches_the_runs_baseline(
    ml_surface_run, tmp_path
):
    out = tmp_path / "baseline"
    res = CliRunner().invoke(
        cli, ["baseline", "--data", str(ml_surface_run / "data"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "Subset accuracy / micro F1 / macro F1 (thresholds tuned on validation)" in res.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["task"] == "multi-label"
    logged = json.loads((ml_surface_run / "metrics.json").read_text())["baseline"]
    for name in ("validation", "test"):
        assert metrics[name]["macro_f1"] == pytest.approx(logged[name]["macro_f1"], abs=1e-12)
        assert metrics[name]["subset_accuracy"] == pytest.approx(logged[name]["accuracy"])
    fitted = Baseline.load(out)
    assert fitted.thresholds == metrics["validation"]["thresholds"]
    # The same in Python, from the files (train/validation/test with a label separator).
    again = train_baseline(
        BaselineConfig(data=DataConfig(data=str(ml_surface_run / "data")), out=str(tmp_path / "b2"))
    )
    assert again.metrics["test"]["macro_f1"] == metrics["test"]["macro_f1"]


def test_the_fitted_recipe_adds_the_head_on_multi_label_data_too(tmp_path):
    from gptclassify.args import TrainConfig
    from gptclassify.tune.recipe import resolve_recipe

    write_sep(tmp_path / "all.csv", rows(80, 4), sep="|")
    mine = TrainConfig(
        data=DataConfig(train=str(tmp_path / "all.csv"), label_sep="|"),
        model="gpt2",
        weights="pretrained",
    )
    cfg, which, why = resolve_recipe(None, mine, set())
    assert which == "fitted" and "lexical auto" in why and cfg.eval.lexical == "auto"
