"""The Python API as data scientists call it: every container of texts, numpy results,
errors= row by row, bad argument types, Classifier.config, save's folder rules, training
from memory, TrainConfig's flat names."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
import torch

import datasets
from conftest import TINY, WORDS
from gptclassify import Classifier, DataConfig, TrainConfig, train
from gptclassify.artifact import ClassifierConfig, Provenance
from gptclassify.classifier import GPTClassifier
from gptclassify.data.encode import InputPolicy
from gptclassify.errors import GPTClassifyError
from gptclassify.model import GPTModel

TEXTS = ["WINNER!! claim your prize now", "see you at 6?", "ok", "call 0906 to win cash today"]


@pytest.fixture(scope="module")
def clf() -> Classifier:
    torch.manual_seed(0)
    model = GPTClassifier(GPTModel(TINY), 3)
    with torch.no_grad():
        model.head.bias.normal_(0, 1.0)
    policy = InputPolicy(TINY.context_length, None)
    return Classifier(
        model, ["a", "b", "c"], policy, precision="fp32", provenance=Provenance(weights="random")
    )


def containers(texts: list[str]) -> dict[str, object]:
    return {
        "list": list(texts),
        "tuple": tuple(texts),
        "Series": pd.Series(texts, index=[10 + i for i in range(len(texts))]),
        "ndarray": np.array(texts),
        "ndarray object": np.array(texts, dtype=object),
        "ndarray column": np.array(texts).reshape(-1, 1),
        "DataFrame": pd.DataFrame({"id": range(len(texts)), "message": texts}),
        "DataFrame of one column": pd.DataFrame({"whatever": texts}),
        "Dataset": datasets.Dataset.from_dict({"text": texts, "n": list(range(len(texts)))}),
    }


def test_every_container_gives_the_same_numpy_results(clf):
    want = clf.predict_proba(TEXTS)
    assert isinstance(want, np.ndarray) and want.shape == (4, 3)
    np.testing.assert_allclose(want.sum(axis=1), 1.0, atol=1e-6)
    labels = clf.predict(TEXTS)
    assert isinstance(labels, np.ndarray) and labels.shape == (4,)
    # Labels are the argmax of the probabilities, in classes_ (= labels) column order.
    assert labels.tolist() == [clf.labels[i] for i in want.argmax(axis=1)]
    assert clf.classes_.tolist() == ["a", "b", "c"]
    for name, texts in containers(TEXTS).items():
        np.testing.assert_array_equal(clf.predict_proba(texts), want, err_msg=name)
        assert clf.predict(texts).tolist() == labels.tolist(), name
        assert clf.logits(texts).shape == (4, 3), name


def test_errors_nan_gives_invalid_rows_nan_and_classifies_the_rest(clf):
    mixed = ["WINNER!! claim your prize now", "", None, "ok", b"bytes", float("nan"), 42]
    probs = clf.predict_proba(mixed, errors="nan")
    bad = [1, 2, 4, 5, 6]
    assert np.isnan(probs[bad]).all()
    good = clf.predict_proba([mixed[0], mixed[3]])
    np.testing.assert_array_equal(probs[[0, 3]], good)
    labels = clf.predict(pd.Series(mixed), errors="nan")
    assert (
        pd.isna(labels[bad]).all()
        and labels[[0, 3]].tolist() == clf.predict([mixed[0], mixed[3]]).tolist()
    )
    assert np.isnan(clf.predict_proba([""], errors="nan")).all()


def test_errors_raise_names_the_text(clf):
    with pytest.raises(GPTClassifyError, match="text 2 is empty"):
        clf.predict_proba(["fine", "", "also fine"])
    with pytest.raises(GPTClassifyError, match=r"text 1 is missing"):
        clf.predict([None])
    with pytest.raises(TypeError, match=r"text 1 is a bytes, not a str; decode it"):
        clf.predict([b"x"])
    with pytest.raises(TypeError, match=r"text 2 is a int"):
        clf.predict(["x", 3])
    with pytest.raises(GPTClassifyError, match="errors='ignore'"):
        clf.predict(["x"], errors="ignore")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("one string", "got one str; wrap it in a list"),
        (None, "got None"),
        (42, "got int"),
        ({"text": ["a"]}, "pandas.DataFrame"),
        (np.array([["a", "b"], ["c", "d"]]), r"shape \(2, 2\)"),
        (pd.DataFrame({"x": ["a"], "y": ["b"]}), "no text column found"),
    ],
)
def test_bad_argument_types_are_one_clear_error(clf, bad, message):
    with pytest.raises((TypeError, GPTClassifyError), match=message):
        clf.predict(bad)


def test_load_and_save_refuse_non_paths(clf):
    with pytest.raises(TypeError, match="Classifier.load: expected a model folder .* got NoneType"):
        Classifier.load(None)
    with pytest.raises(TypeError, match="Classifier.save: expected a folder"):
        clf.save(None)


def test_config_is_a_property(clf):
    assert isinstance(clf.config, ClassifierConfig)
    assert clf.config.labels == ("a", "b", "c")
    assert clf.describe()["labels"] == ["a", "b", "c"]


def test_save_follows_the_folder_rules(clf, tmp_path):
    # Never into a folder of someone else's files, even when it has a config.json.
    own = tmp_path / "mine"
    own.mkdir()
    (own / "config.json").write_text('{"my": "settings"}')
    with pytest.raises(GPTClassifyError, match="not a gptclassify model folder.*never replaced"):
        clf.save(own)
    assert json.loads((own / "config.json").read_text()) == {"my": "settings"}
    assert sorted(p.name for p in own.iterdir()) == ["config.json"]
    # A file is not a folder.
    (tmp_path / "file").write_text("x")
    with pytest.raises(GPTClassifyError, match="not a folder"):
        clf.save(tmp_path / "file")
    # A new folder is written whole; an existing model folder needs overwrite=True.
    out = clf.save(tmp_path / "model")
    first = (out / "model.safetensors").read_bytes()
    with pytest.raises(GPTClassifyError, match="overwrite=True"):
        clf.save(out)
    clf.save(out, overwrite=True)
    assert (out / "model.safetensors").read_bytes() == first
    assert not list(tmp_path.glob(".model*"))  # no temporary folder left
    again = Classifier.load(out, precision="fp32")
    np.testing.assert_array_equal(again.predict_proba(TEXTS), clf.predict_proba(TEXTS))
    # An empty folder is fine.
    (tmp_path / "empty").mkdir()
    clf.save(tmp_path / "empty")
    assert (tmp_path / "empty" / "config.json").is_file()


# ---- training from memory --------------------------------------------------------------


def topics(n_per_class: int = 30, seed: int = 0, classes: int = 2) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for label, words in list(WORDS.items())[:classes]:
        for _ in range(n_per_class):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))
            rows.append({"Sentence": text, "Category": label})
    rng.shuffle(rows)
    return pd.DataFrame(rows)


MICRO = {"emb_dim": 16, "n_heads": 2, "n_layers": 1, "context_length": 32}


@pytest.fixture(scope="module")
def micro_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro") / "micro.json"
    path.write_text(json.dumps(MICRO))
    return str(path)


def quick(micro_json: str, **more) -> dict:
    return {"model": micro_json, "weights": "random", "lr": 1e-2, "epochs": 1, **more}


def test_train_from_a_dataframe_writes_its_exact_texts(micro_json, tmp_path):
    df = topics()
    out = tmp_path / "run"
    clf = train(
        TrainConfig(data=DataConfig(data=df), out=str(out), **quick(micro_json)), quiet=True
    )
    assert clf.labels == ["food", "sport"]
    saved = pd.concat(
        pd.read_csv(out / "data" / f"{part}.csv", keep_default_na=False)
        for part in ("train", "validation", "test")
    )
    assert sorted(saved["text"]) == sorted(df["Sentence"])  # every text, exactly
    assert len(saved) == len(df)
    record = json.loads((out / "config.json").read_text())["train_config"]["data"]
    assert record["data"] == "in-memory: DataFrame (60 rows)"
    # The run's folder is a normal run folder: evaluate reads its own test split.
    n_test = len(pd.read_csv(out / "data" / "test.csv"))
    assert Classifier.load(out).evaluate(out)["examples"] == n_test > 0


def test_train_from_memory_in_every_shape_gives_the_same_rows(micro_json, tmp_path):
    df = topics()
    ds = datasets.Dataset.from_pandas(df, preserve_index=False)
    texts, labels = df["Sentence"].tolist(), df["Category"].tolist()
    fingerprints = set()
    for name, cfg in {
        "flat train=DataFrame": TrainConfig(train=df, **quick(micro_json)),
        "flat train=Dataset": TrainConfig(train=ds, **quick(micro_json)),
        "train=(texts, labels)": TrainConfig(train=(texts, labels), **quick(micro_json)),
        "Series pair": TrainConfig(
            train=(df["Sentence"], df["Category"].to_numpy()), **quick(micro_json)
        ),
    }.items():
        cfg.out = str(tmp_path / name.replace(" ", "_"))
        clf = train(cfg, quiet=True)
        fingerprints.add(
            json.loads((clf.path / "checkpoints" / "run.json").read_text())["data_sha256"]
        )
    assert len(fingerprints) == 1


def test_train_from_memory_resumes_from_its_own_data_folder(micro_json, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig.from_data(
        train=topics(), out=str(out), final_checkpoints="keep", **quick(micro_json)
    )
    first = train(cfg, quiet=True)
    longer = train(resume=out, overrides={"epochs": 2}, quiet=True)
    assert first.labels == longer.labels
    history = pd.read_csv(out / "history.csv")
    assert set(history["epoch"]) == {1, 2}  # the second epoch ran, on the same data


def test_a_failing_in_memory_run_leaves_nothing(micro_json, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = pd.DataFrame({"text": ["a", "b"], "label": [[1], [2]]})  # a label pandas cannot hash
    with pytest.raises(Exception):  # noqa: B017 (any error: the point is what is left)
        train(TrainConfig(data=bad, **quick(micro_json)), quiet=True)
    assert list(tmp_path.iterdir()) == []  # no runs/, no runs/<stamp>.partial
    # A failure of our own (one class only) at an explicit --out: nothing either.
    one = pd.DataFrame({"text": ["a", "b", "c"] * 5, "label": ["x"] * 15})
    with pytest.raises(GPTClassifyError, match="only one class"):
        train(TrainConfig(data=one, out="sub/run", **quick(micro_json)), quiet=True)
    assert list(tmp_path.iterdir()) == []
    # and the same --out works at once afterwards
    train(TrainConfig(data=topics(), out="sub/run", **quick(micro_json)), quiet=True)
    assert (tmp_path / "sub" / "run" / "model.safetensors").is_file()


def test_evaluate_takes_tables_in_memory(clf):
    texts = ["WINNER!! claim your prize now", "see you at 6?", "ok"]
    labels = ["a", "b", "c"]
    by_pair = clf.evaluate((texts, labels))
    by_frame = clf.evaluate(pd.DataFrame({"text": texts, "label": labels}))
    by_dataset = clf.evaluate(datasets.Dataset.from_dict({"sms": texts, "class": labels}))
    by_kw = clf.evaluate(pd.Series(texts), labels=np.array(labels))
    want = np.mean(clf.predict(texts) == np.array(labels, dtype=object))
    for report in (by_pair, by_frame, by_dataset, by_kw):
        assert report["accuracy"] == pytest.approx(want)
        assert report["examples"] == 3
    with pytest.raises(GPTClassifyError, match="'z' are not classes"):
        clf.evaluate((texts, ["a", "b", "z"]))


def test_trainconfig_takes_every_option_by_its_flat_name(tmp_path):
    cfg = TrainConfig(
        train="f.csv", validation="v.csv", text_column="body", lr=1e-4, pool="last", out="o"
    )
    assert cfg.data.train == "f.csv" and cfg.data.validation == "v.csv"
    assert cfg.data.text_column == "body" and cfg.train.lr == 1e-4 and cfg.inputs.pool == "last"
    assert TrainConfig(data="some/folder").data.data == "some/folder"
    assert TrainConfig(sms_download=True).data.sms_download is True
    # Groups and flat names together, flat wins; the group object is not changed.
    data = DataConfig(text_column="a")
    cfg = TrainConfig(data=data, text_column="b")
    assert cfg.data.text_column == "b" and data.text_column == "a"
    # Round trip through the recorded dict.
    assert TrainConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrr'"):
        TrainConfig(lrr=1)
