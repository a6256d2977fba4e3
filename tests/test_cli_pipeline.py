"""The whole command-line pipeline in a temp dir: data -> train -> evaluate -> predict."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner

from conftest import WORDS, write_three_classes
from gptclassify.cli import cli


def invoke(args):
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_data_train_evaluate_predict_with_string_labels(tmp_path, tiny_json):
    write_three_classes(tmp_path / "topics.csv")
    invoke(
        [
            "data",
            "split",
            str(tmp_path / "topics.csv"),
            "--out",
            str(tmp_path / "prepared"),
            "--stratify",
        ]
    )
    meta = json.loads((tmp_path / "prepared" / "dataset.json").read_text())
    assert meta["label_names"] == ["food", "sport", "tech"]

    run = tmp_path / "run"
    out = invoke(
        [
            "train",
            "--data",
            str(tmp_path / "prepared"),
            "--model",
            str(tiny_json),
            "--weights",
            "random",
            "--trainable",
            "all",
            "--lr",
            "2e-3",
            "--epochs",
            "3",
            "--eval-freq",
            "10",
            "--out",
            str(run),
            "--quiet",
        ]
    )
    assert "Accuracy: train" in out and str(run) in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == {"food", "sport", "tech"}
    assert metrics["test"]["accuracy"] > 0.6  # three classes: chance is 1/3

    report = json.loads(invoke(["evaluate", str(run), "--json"]))
    assert report["examples"] == metrics["test"]["examples"]
    assert len(report["confusion_matrix"]) == 3 and "roc_auc" not in report
    assert (run / "confusion.png").is_file()
    table = invoke(["evaluate", str(run)])
    assert "macro F1" in table and "Confusion matrix" in table

    with open(tmp_path / "new.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        writer.writerows([[1, "goal team match score"], [2, ""], [3, "pizza pasta oven dinner"]])
    invoke(
        [
            "predict",
            str(run),
            "--input",
            str(tmp_path / "new.csv"),
            "--output",
            str(tmp_path / "pred.jsonl"),
            "--top-k",
            "2",
        ]
    )
    rows = [json.loads(line) for line in (tmp_path / "pred.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"]  # input columns and order kept
    assert rows[0]["label"] in WORDS and rows[2]["label"] in WORDS
    assert rows[1]["label"] is None and rows[1]["error"] == "empty text"
    assert set(rows[0]) >= {"prob_food", "prob_sport", "prob_tech", "top_k"}
    assert abs(sum(rows[0][f"prob_{c}"] for c in WORDS) - 1) < 1e-6
    assert rows[0]["top_k"][0] == rows[0]["label"]

    printed = invoke(["predict", str(run), "laptop server code"])
    assert "laptop server code" in printed


def test_train_flag_errors_are_one_line(tmp_path):
    for args, message in [
        (["--pad-to", "wide"], "--pad-to: 'wide' is not one of"),
        (["--pad-to", "none"], "--pad-to none needs --batch-size 1"),
        (["--batch-size", "0"], "--batch-size must be a positive integer"),
        (
            ["--model", str(tmp_path / "c.json")],
            "a config JSON has no weights; add --weights random",
        ),
    ]:
        (tmp_path / "c.json").write_text("{}")
        res = CliRunner().invoke(cli, ["train", *args, "--out", str(tmp_path / "r")])
        assert res.exit_code != 0
        lines = res.output.strip().splitlines()
        assert lines[-1].startswith("Error:") and message in lines[-1], res.output
        assert "Traceback" not in res.output


def test_failed_train_leaves_no_new_run_folder_and_an_existing_one_as_it_was(tmp_path):
    missing = tmp_path / "no-such-model"
    args = ["train", "--model", str(missing)]  # the shipped SMS data: read, then the model fails
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "new")])
    assert res.exit_code == 1
    assert res.output.count("model directory not found") == 1, res.output  # said once
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()
    (tmp_path / "old").mkdir()
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "old")])
    assert res.exit_code == 1 and res.output.count("model directory not found") == 1
    # Nothing is written under --out until a run is complete (a run that fails after its
    # first checkpoint keeps its log in OUT.partial: tests/test_resume.py).
    assert list((tmp_path / "old").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_predict_threshold_needs_two_classes_and_evaluate_needs_labels(tiny_run, tmp_path):
    res = CliRunner().invoke(cli, ["predict", str(tiny_run.path), "hello", "--threshold", "0.3"])
    assert res.exit_code == 0
    (tmp_path / "x.csv").write_text("text,label\nhello,maybe\n")
    res = CliRunner().invoke(
        cli, ["evaluate", str(tiny_run.path), "--data", str(tmp_path / "x.csv")]
    )
    assert res.exit_code == 1
    assert "label(s) 'maybe' are not classes of this model (ham, spam)" in res.output
