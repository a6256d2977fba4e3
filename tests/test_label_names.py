"""`--label-names`, `data split`'s column and duplicate report and `--dedupe`, explain's
lists, and terminal tables with many classes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gptclassify import Classifier, TrainConfig, train
from gptclassify.cli import cli
from gptclassify.data.split import parse_label_names, split_labelled
from gptclassify.data.tables import LabelledTexts
from gptclassify.errors import GPTClassifyError
from test_python_api import MICRO, topics


def write_numbered(path, n=40, duplicates=0):
    """Labels 0/1; the first `duplicates` texts appear twice (once with extra spaces)."""
    df = topics(n_per_class=n // 2)
    df = pd.DataFrame({"message": df["Sentence"], "category": (df["Category"] == "sport") * 1})
    extra = df.iloc[:duplicates].copy()
    extra["message"] = "  " + extra["message"].str.replace(" ", "   ") + " "
    pd.concat([df, extra]).to_csv(path, index=False)
    return df


def test_data_split_reports_columns_duplicates_and_names_classes(tmp_path):
    src = tmp_path / "posts.csv"
    write_numbered(src, n=60, duplicates=30)
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "data",
            "split",
            str(src),
            "--out",
            str(tmp_path / "d"),
            "--label-names",
            "0=food,1=sport",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "Columns: text 'message', label 'category'" in res.output
    meta = json.loads((tmp_path / "d" / "dataset.json").read_text())
    shared = meta["duplicates_across_splits"]
    assert sum(shared.values()) > 0  # 30 texts twice: some land in two splits
    assert (
        "Duplicates across splits: " + ", ".join(f"{n} {k}" for k, n in shared.items())
        in res.output
    )
    assert "also occur in an earlier split" in res.output and "--dedupe" in res.output
    train_csv = pd.read_csv(tmp_path / "d" / "train.csv")
    assert set(train_csv["label"]) == {"food", "sport"}
    assert meta["renamed_labels"] == {"0": "food", "1": "sport"}
    assert meta["label_names"] == ["food", "sport"]  # the class order
    # --dedupe: each text once (whitespace-normalised), no duplicates left.
    res = runner.invoke(cli, ["data", "split", str(src), "--out", str(tmp_path / "e"), "--dedupe"])
    assert res.exit_code == 0, res.output
    assert (
        "removed 30 repeated text(s)" in res.output
        and "Duplicates across splits: none" in res.output
    )
    rows = sum(
        len(pd.read_csv(tmp_path / "e" / f"{p}.csv")) for p in ("train", "validation", "test")
    )
    assert rows == 60


def test_dedupe_keeps_first_rows_and_counts_conflicts():
    data = LabelledTexts(
        ["a b", "a  b ", "c", "d", "c", "e", "f", "g", "h", "i", "j"],
        ["x", "y", "x", "y", "x", "y", "x", "y", "x", "y", "x"],
        "mem",
    )
    splits = split_labelled(data, (0.5, 0.2), dedupe=True)
    texts = sorted(t for _, p in splits.parts() for t in p.texts)
    assert texts == ["a b", "c", "d", "e", "f", "g", "h", "i", "j"]
    assert any("1 text(s) occur with different labels" in w for w in splits.warnings)
    assert splits.duplicates() == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0=ham,1", "'1' is not LABEL=NAME"),
        ("0=ham,0=spam", "named twice"),
        ("0=x,1=x", "given to two labels"),
        ("0=,1=spam", "empty label or name"),
    ],
)
def test_label_names_spec_errors(spec, message):
    with pytest.raises(GPTClassifyError, match=message):
        parse_label_names(spec)


def test_label_names_must_cover_the_classes(tmp_path):
    src = tmp_path / "p.csv"
    write_numbered(src)
    res = CliRunner().invoke(cli, ["data", "split", str(src), "--label-names", "0=food"])
    assert res.exit_code == 1 and "no name for class(es) '1'" in res.output
    res = CliRunner().invoke(cli, ["data", "split", str(src), "--label-names", "0=a,1=b,2=c"])
    assert res.exit_code == 1 and "'2' is not a class of the data" in res.output


def test_train_label_names_reach_config_predictions_and_hf(tmp_path):
    micro = tmp_path / "micro.json"
    micro.write_text(json.dumps(MICRO))
    df = topics()
    df["Category"] = (df["Category"] == "sport").astype(int)  # 0/1 labels
    clf = train(
        TrainConfig(
            data=df,
            label_names="0=food,1=sport",
            model=str(micro),
            weights="random",
            lr=1e-2,
            epochs=1,
            out=str(tmp_path / "run"),
        ),
        quiet=True,
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["labels"] == ["food", "sport"]  # class 0 is food, as named
    assert set(Classifier.load(tmp_path / "run").predict(df["Sentence"])) <= {"food", "sport"}
    res = CliRunner().invoke(cli, ["predict", str(tmp_path / "run"), "pizza oven"])
    assert res.exit_code == 0 and "p(food)" in res.output
    from gptclassify.export import export

    export(clf.path, "hf", tmp_path / "hf")
    hf = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf["id2label"] == {"0": "food", "1": "sport"}


def test_many_class_tables_fit_a_terminal(capsys):
    from gptclassify.cli.predict import _print_predictions, _print_report
    from gptclassify.data.prepared import summary_table
    from gptclassify.data.split import Splits

    labels = [f"category-number-{i}" for i in range(12)]
    k = len(labels)
    confusion = (np.eye(k, dtype=int) * 5 + 1).tolist()
    per_class = {n: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 6} for n in labels}
    report = {
        "source": "x.csv",
        "examples": 72,
        "accuracy": 0.5,
        "macro_f1": 0.5,
        "per_class": per_class,
        "confusion_matrix": confusion,
        "truncated": 2,
    }
    _print_report(report, labels)
    frame = pd.DataFrame(
        {"text": ["hello"], "label": [labels[3]], "error": [np.nan]}
        | {f"prob_{n}": [1 / k] for n in labels}
    )
    _print_predictions(frame, 1, "text", labels, None, None)
    part = LabelledTexts(labels * 3, labels * 3, "m")
    splits = Splits(part, part, part, labels)
    from rich.console import Console

    Console().print(summary_table(splits))
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "0 category-number-0" in out and "Columns: the class numbers of the rows" in out
    assert "12 classes: every class's probability is in --output FILE" in out
    assert "Note: 2 text(s) were longer than the model reads and were cut" in out
    assert "category-number-11" in out  # the summary names every class in full


def test_explain_lists_negative_scores_against_not_toward(capsys):
    from types import SimpleNamespace

    from gptclassify.cli.serve import _print_explanation

    tokens = [
        SimpleNamespace(text=t, attribution=a, probs=None)
        for t, a in [("win", 0.4), ("cash", 0.1), ("hi", -0.3), ("mum", -0.05)]
    ]
    e = SimpleNamespace(
        method="gradient-x-input",
        steps=0,
        target="spam",
        tokens=tokens,
        completeness_gap=None,
        label="spam",
        probs=[0.2, 0.8],
        labels=["ham", "spam"],
        truncated_tokens=0,
    )
    _print_explanation(e)
    lines = capsys.readouterr().out.splitlines()
    toward = next(line for line in lines if line.startswith("Strongest toward it"))
    against = next(line for line in lines if line.startswith("Strongest against it"))
    assert "win +0.400" in toward and "cash +0.100" in toward and "-" not in toward.split(":")[1]
    assert "hi -0.300" in against and "mum -0.050" in against
