"""Texts are classified exactly as written: quoting, value types, stdin lines, doubtful labels,
truncation, and prediction files of any size read and written in chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gptclassify.cli import cli
from gptclassify.data import read_labelled, read_table
from gptclassify.data.delimited import format_record, records
from gptclassify.errors import GPTClassifyError

TRICKY = [
    '"He said "hi" and left',  # opens like a quoted field but is not one
    'She said "no"',
    '"quoted start" then more',
    'ends with a quote"',
    "plain, with a comma",
    "multi\nline",
    'two ""doubled"" quotes',
    "lone \r carriage return",
]


def test_a_field_that_is_not_properly_quoted_is_kept_verbatim(tmp_path):
    csv = tmp_path / "quotes.csv"
    csv.write_text(
        "text,label\n"
        '"He said "hi" and left,ham\n'
        '"He said ""hi"" and left",spam\n'
        '"unterminated,ham\n'
        "next,spam\n",
        encoding="utf-8",
    )
    data = read_labelled(csv)
    assert data.texts == [
        '"He said "hi" and left',
        'He said "hi" and left',
        '"unterminated',
        "next",
    ]
    assert data.labels == ["ham", "spam", "ham", "spam"]
    # Prediction reads the same texts.
    frame, column = read_table(csv)
    assert frame[column].tolist() == data.texts
    tsv = tmp_path / "quotes.tsv"
    tsv.write_text('text\tlabel\n"He said "hi" and left\tham\nok\tspam\n', encoding="utf-8")
    assert read_labelled(tsv).texts == ['"He said "hi" and left', "ok"]


@pytest.mark.parametrize("sep", [",", "\t"])
def test_what_we_write_reads_back_exactly(sep):
    lines = "".join(format_record([t, str(i)], sep) for i, t in enumerate(TRICKY)).split("\n")
    got = [fields for _, fields in records(lines, sep)]
    assert got == [[t, str(i)] for i, t in enumerate(TRICKY)]


def test_non_text_values_in_a_text_column_are_refused_the_same_way_everywhere(tmp_path, tiny_run):
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text(
        '{"text": "fine", "label": "ham"}\n{"text": 42, "label": "spam"}\n', encoding="utf-8"
    )
    message = "mixed.jsonl: line 2: column 'text' holds int 42, not text"
    with pytest.raises(GPTClassifyError, match=message):
        read_labelled(jsonl)
    res = CliRunner().invoke(cli, ["predict", str(tiny_run.path), "--input", str(jsonl)])
    assert res.exit_code == 1 and message in res.output and "Traceback" not in res.output
    parquet = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"text": [b"raw bytes"], "label": ["ham"]}), parquet)
    with pytest.raises(
        GPTClassifyError, match="bytes.parquet: data row 1: column 'text' holds bytes"
    ):
        read_labelled(parquet)
    # Missing values are empty texts: skipped in training, an error row in prediction.
    gaps = tmp_path / "gaps.jsonl"
    gaps.write_text('{"text": null, "label": "ham"}\n{"text": "ok", "label": "spam"}\n')
    assert read_labelled(gaps).skipped_empty == 1
    res = CliRunner().invoke(cli, ["predict", str(tiny_run.path), "--input", str(gaps)])
    assert res.exit_code == 0 and "error: empty text" in res.output


def test_stdin_lines_map_one_to_one_to_output_rows(tiny_run, tmp_path):
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(
        cli,
        ["predict", str(tiny_run.path), "--output", str(out)],
        input="WINNER claim your prize\r\n\r\nsee you at 6\r\n",
    )
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["text"].tolist() == ["WINNER claim your prize", "", "see you at 6"]
    assert frame["error"].tolist() == ["", "empty text", ""]
    assert frame["label"].tolist()[1] == "" and frame["label"].tolist()[0] in ("ham", "spam")
    assert "1 row(s) could not be classified" in res.output


def test_doubtful_labels_are_reported_with_counts_and_strict_refuses_them(tmp_path):
    path = tmp_path / "labels.csv"
    rows = (
        ["text,label"] + [f"t{i},spam" for i in range(4)] + ["a,Spam", "b,Spam", "c,nan", "d,ham"]
    )
    path.write_text("\n".join(rows) + "\n")
    data = read_labelled(path)
    assert sorted(set(data.labels)) == ["Spam", "ham", "nan", "spam"]  # as written, reported:
    assert any("label 'nan' (1 row(s)) looks like a missing value" in w for w in data.warnings)
    assert any(
        "labels 'Spam' (2), 'spam' (4) differ only in case or spaces: read as 2 different classes"
        in w
        for w in data.warnings
    )
    with pytest.raises(GPTClassifyError, match="looks like a missing value.*drop --strict"):
        read_labelled(path, strict=True)
    res = CliRunner().invoke(
        cli, ["data", "split", str(path), "--strict", "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 1 and "looks like a missing value" in res.output


def test_predict_says_which_texts_were_truncated(tiny_run, tmp_path):
    long = "win cash now " * 200  # far more tokens than the tiny model's context
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(
        cli, ["predict", str(tiny_run.path), long, "short one", "--output", str(out)]
    )
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["truncated"] for r in rows] == [True, False]
    max_length = tiny_run.policy.max_length
    assert (
        f"1 text(s) were longer than the model reads and were cut to {max_length} tokens"
        in res.output
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [("out.txt", "use a .csv, .tsv, .jsonl or .parquet"), ("folder.csv", "is a folder")],
)
def test_the_output_is_checked_before_any_work(tmp_path, name, message):
    (tmp_path / "folder.csv").mkdir()
    res = CliRunner().invoke(
        cli, ["predict", str(tmp_path / "no-model"), "hello", "--output", str(tmp_path / name)]
    )
    assert res.exit_code == 1 and message in res.output
    assert "no-model" not in res.output  # refused before the model was even looked for


def _table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = ["win", "cash", "prize", "see", "you", "later", "lunch", "call", "now", "ok"]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 12))) for _ in range(n)]
    texts[5] = ""  # an empty one keeps its row
    return pd.DataFrame({"id": np.arange(n), "text": texts, "note": ['x, "y"'] * n})


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_files_are_predicted_in_chunks_with_the_same_result(tiny_run, tmp_path, monkeypatch, fmt):
    import gptclassify.predict.files as predict_files  # where `predict` reads its chunk size

    frame = _table(53)
    source = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        source.write_text(frame.to_csv(index=False))
    elif fmt == "jsonl":
        frame.to_json(source, orient="records", lines=True)
    else:
        frame.to_parquet(source, index=False)
    outputs = {}
    for rows in (10_000, 7):
        monkeypatch.setattr(predict_files, "CHUNK_ROWS", rows)
        out = tmp_path / f"out-{rows}.{fmt}"
        args = ["predict", str(tiny_run.path), "--input", str(source), "--output", str(out)]
        res = CliRunner().invoke(cli, [*args, "--precision", "fp32"])
        assert res.exit_code == 0, res.output
        assert "53 texts" not in res.output and "... and 33 more" in res.output
        outputs[rows] = (
            pd.read_parquet(out)
            if fmt == "parquet"
            else pd.read_json(out, lines=True)
            if fmt == "jsonl"
            else pd.read_csv(out, keep_default_na=False)
        )
        assert not list(tmp_path.glob(".out-*"))  # no temporary file left
    small, whole = outputs[7], outputs[10_000]
    assert list(small.columns) == [
        "id",
        "text",
        "note",
        "label",
        "prob_ham",
        "prob_spam",
        "truncated",
        "error",
    ]
    assert small["id"].tolist() == list(range(53))
    assert (
        small["text"].tolist() == frame["text"].tolist()
        and small["note"].tolist() == frame["note"].tolist()
    )
    # Other batches around a text change float rounding only (fp32): same labels, ~same probs.
    for column in ("label", "error", "truncated"):
        assert small[column].astype(object).fillna("-").tolist() == (
            whole[column].astype(object).fillna("-").tolist()
        ), column
    assert small["error"].tolist()[5] == "empty text"
    assert np.allclose(
        small["prob_spam"].replace("", np.nan).astype(float),
        whole["prob_spam"].replace("", np.nan).astype(float),
        atol=1e-5,
        equal_nan=True,
    )


def test_a_failed_prediction_leaves_no_output_file(tiny_run, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n' * 3 + '{"text": 7}\n')
    out = tmp_path / "out.csv"
    (tmp_path / ".out.csv.1234abcd.tmp").write_text("left by a run that was killed")
    res = CliRunner().invoke(
        cli, ["predict", str(tiny_run.path), "--input", str(bad), "--output", str(out)]
    )
    assert res.exit_code == 1
    assert list(Path(tmp_path).iterdir()) == [bad]
