"""What the probe of issue 21 found, each pinned: input columns that share a name with a
prediction column, `--safe-csv`, labels that are one number written two ways, classes only
in validation or test, and whitespace-only texts in the CLI, the Python API and the server.
(The refusals themselves are walked through every entry point in test_bad_inputs.py.)"""

from __future__ import annotations

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError


def invoke(*args: object, input: str | None = None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def clf(small_run):
    from gptclassify.predict import Classifier

    return Classifier.load(small_run, precision="fp32")


# ---- predict keeps every input column ----------------------------------------------------------

CLASHING = {
    "text": ["win cash now", "see you at lunch"],
    "label": ["1", "0"],  # the file's own labels, e.g. a labelled test set
    "prob_1": ["0.9", "0.1"],
    "error": ["none", "typo"],
    "truncated": ["x", "y"],
    "top_k": ["a", "b"],
    "prob_other": ["p", "q"],  # no class is called "other": not a prediction column
    "input_x": ["kept", "as is"],
}


def write_input(path, columns: dict[str, list[str]]) -> None:
    if path.suffix == ".parquet":
        pq.write_table(pa.table(columns), path)
    elif path.suffix == ".jsonl":
        rows = [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(list(columns))
            writer.writerows(zip(*columns.values(), strict=True))


def read_output(path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert all(len(row) == len(rows[0]) for row in rows), rows  # as many fields as the header
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
@pytest.mark.parametrize("out_suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_input_columns_named_like_outputs_are_kept_as_input_name(
    suffix, out_suffix, small_run, clf, tmp_path
):
    source, out = tmp_path / f"in{suffix}", tmp_path / f"out{out_suffix}"
    write_input(source, CLASHING)
    result = invoke("predict", small_run, "--input", source, "--output", out, "--top-k", "1")
    assert result.exit_code == 0, result.output
    rows = read_output(out) if out_suffix != ".tsv" else None
    if out_suffix == ".tsv":
        lines = [line.split("\t") for line in out.read_text().splitlines()]
        rows = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    kept = {"label", "prob_1", "error", "truncated", "top_k"}
    expected = ["text", *(f"input_{c}" if c in kept else c for c in list(CLASHING)[1:])]
    expected += ["label", "prob_0", "prob_1", "top_k", "truncated", "error"]
    assert list(rows[0]) == expected
    for i, row in enumerate(rows):  # every input value, where its column went
        for column, values in CLASHING.items():
            assert str(row[f"input_{column}" if column in kept else column]) == values[i]
    labels = list(clf.predict(CLASHING["text"]))
    assert [str(row["label"]) for row in rows] == labels  # and the predictions are ours
    note = [line for line in result.stderr.splitlines() if line.startswith("Note:")]
    assert note == [
        "Note: input column(s) named like an output column were kept under another name: "
        "'label' as 'input_label', 'prob_1' as 'input_prob_1', 'error' as 'input_error', "
        "'truncated' as 'input_truncated', 'top_k' as 'input_top_k'"
    ]


def test_top_k_column_is_only_renamed_when_top_k_is_asked_for(small_run, tmp_path):
    source, out = tmp_path / "in.csv", tmp_path / "out.jsonl"
    write_input(source, {"text": ["hello"], "top_k": ["mine"]})
    result = invoke("predict", small_run, "--input", source, "--output", out)
    assert result.exit_code == 0 and "Note" not in result.output
    assert read_output(out)[0]["top_k"] == "mine"


def test_a_text_column_named_label_is_shown_and_kept(small_run, clf, tmp_path):
    source = tmp_path / "in.csv"
    write_input(source, {"label": ["WIN a free prize now"], "id": ["7"]})
    result = invoke("predict", small_run, "--input", source, "--text-column", "label")
    assert result.exit_code == 0, result.output
    assert "WIN a free prize now" in result.stdout  # the preview shows the text, not the label
    assert "'label' as 'input_label'" in result.stderr


def test_predict_file_from_python_reports_what_it_renamed(clf, tmp_path):
    from gptclassify.predict import predict_file

    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_input(source, {"text": ["hello", "win cash"], "label": ["0", "1"]})
    done = predict_file(clf, source, out)
    assert done.renamed == {"label": "input_label"} and done.text_column == "text"
    assert [r["input_label"] for r in read_output(out)] == ["0", "1"]


# ---- --safe-csv ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell, safe",
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\tindented", "'\tindented"),
        ("\r=1", "'\r=1"),
        ("-1.5", "-1.5"),  # a number is not a formula
        ("+44", "+44"),
        ("1e-3", "1e-3"),
        ("hello =1", "hello =1"),  # only the first character counts
        ("'=1", "'=1"),
        ("", ""),
        ("-", "'-"),
    ],
)
def test_safe_csv_cell_rule(cell, safe):
    from gptclassify.predict.files import safe_csv_cell

    assert safe_csv_cell(cell) == safe


def test_safe_csv_changes_csv_cells_only_never_what_is_classified(small_run, tmp_path):
    source = tmp_path / "in.csv"
    texts = ["=1+1 free cash", "-5 points", "@home later", "-3", "plain text"]
    write_input(source, {"text": texts, "=note": ["+x", "-1", "ok", "@a", "b"]})
    plain, safe = tmp_path / "plain.csv", tmp_path / "safe.csv"
    assert invoke("predict", small_run, "--input", source, "--output", plain).exit_code == 0
    result = invoke("predict", small_run, "--input", source, "--output", safe, "--safe-csv")
    assert result.exit_code == 0, result.output
    plain_rows, safe_rows = read_output(plain), read_output(safe)
    assert list(safe_rows[0])[:2] == ["text", "'=note"]  # the header row is cells too
    assert [r["text"] for r in safe_rows] == ["'=1+1 free cash", "'-5 points", "'@home later"] + [
        "-3",
        "plain text",
    ]
    assert [r["'=note"] for r in safe_rows] == ["'+x", "-1", "ok", "'@a", "b"]
    for a, b in zip(plain_rows, safe_rows, strict=True):  # the same texts were classified
        assert (a["label"], a["prob_0"], a["prob_1"]) == (b["label"], b["prob_0"], b["prob_1"])
    assert [r["text"] for r in plain_rows] == texts  # and without the flag, nothing changes
    stdin = invoke(
        "predict", small_run, "--output", tmp_path / "s.tsv", "--safe-csv", input="=A1\n"
    )
    assert stdin.exit_code == 0 and "'=A1" in (tmp_path / "s.tsv").read_text()


# ---- labels ---------------------------------------------------------------------------------------


def test_labels_written_as_whole_decimals_are_one_class_across_files_and_formats(tmp_path):
    from gptclassify.data import load_split_files, read_labelled

    train = tmp_path / "train.csv"
    write_input(train, {"text": ["a", "b", "c", "d"], "label": ["0", "1", "1.0", "0.0"]})
    assert read_labelled(train).labels == ["0", "1", "1", "0"]
    validation = tmp_path / "validation.jsonl"
    validation.write_text('{"text": "e", "label": 1.0}\n{"text": "f", "label": "0"}\n')
    test = tmp_path / "test.parquet"
    pq.write_table(pa.table({"text": ["g", "h"], "label": pa.array([0.0, 1.0])}), test)
    splits = load_split_files(train, validation, test)
    assert splits.label_names == ["0", "1"]
    assert splits.test.labels == ["0", "1"] and splits.validation.labels == ["1", "0"]


def test_training_refuses_a_class_only_in_test(small_run, tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    write_input(train, {"text": ["a", "b", "c", "d"], "label": ["0", "1", "0", "1"]})
    write_input(test, {"text": ["e", "f"], "label": ["1", "2"]})
    tiny = ["--model", small_run.parent / "tiny.json", "--weights", "random"]
    result = invoke(
        "train",
        "--train",
        train,
        "--validation",
        train,
        "--test",
        test,
        *tiny,
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 1
    assert f"'2' in {test} (test)" in result.stderr and "never seen in training" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


# ---- whitespace-only texts: the same in the CLI, the API and the server ---------------------------

BLANKS = ["", " ", "\t\n", "\u3000", "\u00a0 "]


def test_whitespace_only_texts_are_empty_everywhere(small_run, clf, tmp_path):
    from fastapi.testclient import TestClient

    from gptclassify.serve import create_app

    # CLI: an error row each (its contract: output rows line up with input rows), as training
    # skips them; the API and the server refuse them, naming the text.
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_input(source, {"text": ["hello", *BLANKS]})
    assert invoke("predict", small_run, "--input", source, "--output", out).exit_code == 0
    assert [r["error"] for r in read_output(out)] == [None] + ["empty text"] * len(BLANKS)
    for text in BLANKS:
        with pytest.raises(GPTClassifyError, match=r"text 2 is empty \(or only whitespace\)"):
            clf.predict(["hello", text])
        with pytest.raises(GPTClassifyError, match="empty"):
            clf.explain(text)
    with TestClient(create_app(clf)) as client:
        for text in BLANKS:
            response = client.post("/predict", json={"inputs": [["hello"], [text]]})
            assert response.status_code == 422, response.text
            assert "text 2 is empty (or only whitespace)" in response.json()["error"]


def test_whitespace_only_lines_on_stdin_are_error_rows(small_run, tmp_path):
    out = tmp_path / "p.jsonl"
    result = invoke("predict", small_run, "--output", out, input="hello\n \n\t\n\u3000\n")
    assert result.exit_code == 0, result.output
    rows = read_output(out)
    assert [r["error"] for r in rows] == [None, "empty text", "empty text", "empty text"]
    assert rows[0]["label"] is not None and [r["label"] for r in rows[1:]] == [None] * 3


def test_texts_that_are_not_unicode_are_refused_by_the_api(clf):
    with pytest.raises(GPTClassifyError, match=r"text 1 holds '\\udce9', half of a surrogate"):
        clf.predict(["caf\udce9"])
    with pytest.raises(GPTClassifyError, match="surrogate"):
        clf.explain("caf\udce9")
