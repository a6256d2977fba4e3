"""The generic loader, splitter and prepared folders, on fixture files the tests write."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from gptclassify.cli import cli
from gptclassify.data import (
    LabelledTexts,
    Splits,
    load_prepared,
    load_split_files,
    read_labelled,
    split_labelled,
    write_splits,
)
from gptclassify.data import prepared as data_mod
from gptclassify.data.tables import sort_labels
from gptclassify.errors import GPTClassifyError

TRICKY = [
    "Hello, world",
    "line one\nline two",
    'He said "hi"',
    "  padded  ",
    "NA",
    "null",
    "carriage\rreturn",
    "crlf\r\nhere",
    "tab\there",
    "naïve café – ünïcödé ✓",
    '"',
]


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def labelled(n_per_class: dict[str, int], source: str = "mem") -> LabelledTexts:
    texts, labels = [], []
    for label, n in n_per_class.items():
        texts += [f"{label} text {i}" for i in range(n)]
        labels += [label] * n
    return LabelledTexts(texts, labels, source)


def rows(part: LabelledTexts) -> list[tuple[str, str]]:
    return list(zip(part.texts, part.labels, strict=True))


# ---- reading each format ---------------------------------------------------------------


def test_csv_with_bom_quotes_embedded_newlines_and_found_columns(tmp_path):
    path = write(
        tmp_path / "sms.csv",
        "\ufeffMessage,id,Category\n"
        '"Hello, world",1,spam\n'
        '"line one\nline two",2,ham\n'
        '"He said ""hi""",3,ham\n'
        "  padded  ,4, spam \n",
    )
    data = read_labelled(path)
    assert data.texts == ["Hello, world", "line one\nline two", 'He said "hi"', "  padded  "]
    assert data.labels == ["spam", "ham", "ham", "spam"]  # labels are stripped, texts not
    assert (data.text_column, data.label_column) == ("Message", "Category")
    # ... and a label that was written with spaces is reported, with counts.
    assert data.skipped_empty == 0 and data.warnings == [
        f"{path} (column 'Category'): labels ' spam ' (1), 'spam' (1) differ only in case or "
        "spaces: read as one class 'spam'"
    ]


def test_tsv(tmp_path):
    path = write(
        tmp_path / "reviews.tsv",
        'sentence\tsentiment\n"a, b"\tpos\n"quoted ""x"" \t with tab"\tneg\nplain\tneutral\n',
    )
    data = read_labelled(path)
    assert data.texts == ["a, b", 'quoted "x" \t with tab', "plain"]
    assert sort_labels(data.labels) == ["neg", "neutral", "pos"]


def test_tsv_whose_quotes_would_merge_lines_is_read_line_by_line(tmp_path):
    # The SMS Spam Collection trap: quote-aware parsing would swallow the next lines.
    path = write(
        tmp_path / "trap.tsv",
        'text\tlabel\n"Opening quote only\tham\nsecond\tspam\nthird"\tham\nfourth\tspam\n',
    )
    data = read_labelled(path)
    assert data.texts == ['"Opening quote only', "second", 'third"', "fourth"]
    assert data.labels == ["ham", "spam", "ham", "spam"]
    assert any("quoting off" in w for w in data.warnings)


def test_jsonl_integer_labels_five_classes_numeric_order(tmp_path):
    records = [
        {"review": f"text {i}", "target": label} for i, label in enumerate([3, 10, 0, 2, 1, 10, 0])
    ]
    records.insert(2, {"review": "λ unicode ✓", "target": 2, "extra": [1, 2]})
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path = write(
        tmp_path / "reviews.jsonl", "\n".join(lines[:4]) + "\n\n" + "\n".join(lines[4:]) + "\n"
    )
    data = read_labelled(path)
    assert len(data) == 8
    assert data.labels[:3] == ["3", "10", "2"]
    assert data.texts[2] == "λ unicode ✓"
    # Numeric classes sort as numbers (string order would put "10" before "2").
    assert sort_labels(data.labels) == ["0", "1", "2", "3", "10"]
    splits = split_labelled(data, (0.5, 0.25))
    assert splits.label_names == ["0", "1", "2", "3", "10"]
    assert splits.label_ids(LabelledTexts(["x", "y"], ["10", "2"], "t")) == [4, 2]


def test_json_array_file(tmp_path):
    path = write(
        tmp_path / "rows.json", json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}])
    )
    data = read_labelled(path)
    assert rows(data) == [("a", "1"), ("b", "0")]
    # Editors on Windows add a byte-order mark; json.loads alone would reject it.
    bom = write(
        tmp_path / "bom.jsonl", '\ufeff{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'
    )
    assert rows(read_labelled(bom)) == [("a", "x"), ("b", "y")]


def test_parquet_five_classes_and_float_labels_with_gaps(tmp_path):
    frame = pd.DataFrame(
        {
            "Content": [f"message {i}" for i in range(10)],
            "class": [4, 0, 1, 2, 3, 4, 0, 1, 2, 3],
        }
    )
    path = tmp_path / "five.parquet"
    frame.to_parquet(path)
    data = read_labelled(path)
    assert data.texts == frame["Content"].tolist()
    assert data.labels == [str(v) for v in frame["class"]]
    assert sort_labels(data.labels) == ["0", "1", "2", "3", "4"]

    gaps = pd.DataFrame({"text": ["a", "b", "c", None], "label": [1.0, None, 0.0, 1.0]})
    gaps.to_parquet(tmp_path / "gaps.pq")
    data = read_labelled(tmp_path / "gaps.pq")
    assert rows(data) == [("a", "1"), ("c", "0")]
    assert (data.skipped_empty, data.skipped_unlabelled) == (1, 1)


def test_explicit_columns_and_format_override(tmp_path):
    path = write(tmp_path / "export.txt", "body,text,kind\nreal text,not this,x\nmore,nope,y\n")
    with pytest.raises(
        GPTClassifyError, match=r"export.txt: cannot tell the format .*'.txt'.*--format"
    ):
        read_labelled(path)
    data = read_labelled(path, text_column="BODY", label_column="kind", fmt="csv")
    assert rows(data) == [("real text", "x"), ("more", "y")]
    with pytest.raises(
        GPTClassifyError, match=r"no label column 'kinds' \(columns: 'body', 'text', 'kind'\)"
    ):
        read_labelled(path, text_column="body", label_column="kinds", fmt="csv")
    with pytest.raises(GPTClassifyError, match="cannot be both"):
        read_labelled(path, text_column="kind", label_column="kind", fmt="csv")
    with pytest.raises(GPTClassifyError, match="--format xml: unknown format"):
        read_labelled(path, fmt="xml")


# ---- bad input -------------------------------------------------------------------------


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(GPTClassifyError, match=r"nope.csv: file not found"):
        read_labelled(tmp_path / "nope.csv")
    with pytest.raises(GPTClassifyError, match=r"empty.csv: file is empty"):
        read_labelled(write(tmp_path / "empty.csv", b""))
    with pytest.raises(GPTClassifyError, match=r"blank.jsonl: file is empty"):
        read_labelled(write(tmp_path / "blank.jsonl", "\n  \n"))
    with pytest.raises(GPTClassifyError, match=r"header.csv: no data rows"):
        read_labelled(write(tmp_path / "header.csv", "text,label\n"))


def test_no_usable_column_lists_what_it_saw(tmp_path):
    path = write(tmp_path / "odd.csv", "body,kind\nhello,a\n")
    with pytest.raises(GPTClassifyError) as info:
        read_labelled(path)
    message = str(info.value)
    assert "odd.csv: no text column found" in message
    assert "columns: 'body', 'kind'" in message and "--text-column" in message
    path = write(tmp_path / "nolabel.csv", "text,kind\nhello,a\n")
    with pytest.raises(GPTClassifyError, match="no label column found"):
        read_labelled(path)


def test_empty_text_rows_are_skipped_and_counted_or_fatal_with_strict(tmp_path):
    path = write(
        tmp_path / "gaps.csv",
        'text,label\nfirst,a\n"",b\n"   ",a\nlast,b\n"\n\t",a\nno label,\n',
    )
    data = read_labelled(path)
    assert rows(data) == [("first", "a"), ("last", "b")]
    assert (data.skipped_empty, data.skipped_unlabelled) == (3, 1)
    assert any(
        "skipped 3 row(s) with empty text (data row 2, data row 3, data row 5)" in w
        for w in data.warnings
    )
    assert any("skipped 1 row(s) with an empty label (data row 6)" in w for w in data.warnings)
    with pytest.raises(
        GPTClassifyError, match=r"gaps.csv: data row 2 has empty text \(column 'text'\)"
    ):
        read_labelled(path, strict=True)
    only_empty = write(tmp_path / "allempty.csv", 'text,label\n" ",a\n')
    with pytest.raises(GPTClassifyError, match="no rows with both a text and a label"):
        read_labelled(only_empty)


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "latin1.csv", b"text,label\nfine,a\ncaf\xe9 au lait,b\n")
    with pytest.raises(
        GPTClassifyError, match=r"latin1.csv: line 3 is not valid UTF-8 \(byte 0xe9 at column 4\)"
    ):
        read_labelled(path)
    path = write(
        tmp_path / "bad.jsonl", b'{"text": "ok", "label": 1}\n{"text": "\xff", "label": 0}\n'
    )
    with pytest.raises(GPTClassifyError, match="line 2 is not valid UTF-8"):
        read_labelled(path)


def test_malformed_files_name_the_place(tmp_path):
    path = write(tmp_path / "ragged.csv", "text,label\na,b\nc,d,e,f\n")
    with pytest.raises(GPTClassifyError, match=r"ragged.csv: cannot parse as CSV \(.*line 3"):
        read_labelled(path)
    path = write(tmp_path / "broken.jsonl", '{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(GPTClassifyError, match=r"broken.jsonl: line 2: invalid JSON"):
        read_labelled(path)
    path = write(tmp_path / "list.jsonl", '{"text": "a", "label": 1}\n[1, 2]\n')
    with pytest.raises(GPTClassifyError, match="line 2: expected one JSON object per line"):
        read_labelled(path)
    path = write(tmp_path / "fake.parquet", "text,label\na,b\n")
    with pytest.raises(GPTClassifyError, match="fake.parquet: cannot read as Parquet"):
        read_labelled(path)


def test_single_class_is_an_error():
    with pytest.raises(GPTClassifyError, match=r"mem: only one class \('ham'\)"):
        split_labelled(labelled({"ham": 20}))


@pytest.mark.parametrize(
    "fractions",
    [(0.9, 0.1), (0.8, 0.3), (0.0, 0.1), (0.7, 0.0), (-0.1, 0.5), (1.2, 0.1), (0.7,)],
)
def test_fractions_must_be_positive_and_sum_below_one(fractions):
    with pytest.raises(GPTClassifyError, match="--split"):
        split_labelled(labelled({"a": 50, "b": 50}), fractions)


def test_too_few_rows_for_a_split():
    with pytest.raises(
        GPTClassifyError, match=r"3 rows are too few .* validation part would be empty"
    ):
        split_labelled(labelled({"a": 2, "b": 1}))


# ---- splitting -------------------------------------------------------------------------


def test_split_sizes_partition_and_determinism():
    data = labelled({"a": 60, "b": 40})
    splits = split_labelled(data, seed=1)
    assert [len(p) for _, p in splits.parts()] == [70, 10, 20]
    together = rows(splits.train) + rows(splits.validation) + rows(splits.test)
    assert sorted(together) == sorted(rows(data))
    assert rows(split_labelled(data, seed=1).train) == rows(splits.train)
    assert rows(split_labelled(data, seed=2).train) != rows(splits.train)
    assert splits.warnings == []
    assert [
        len(p) for _, p in split_labelled(labelled({"a": 500, "b": 500}), (0.8, 0.15)).parts()
    ] == [800, 150, 50]


def test_balance_undersamples_every_class_to_the_rarest():
    data = labelled({"c": 50, "a": 30, "b": 10})
    splits = split_labelled(data, balance=True, seed=3)
    used = Counter(label for _, p in splits.parts() for label in p.labels)
    assert used == {"a": 10, "b": 10, "c": 10}
    assert splits.label_names == ["a", "b", "c"]
    again = split_labelled(data, balance=True, seed=4)
    assert set(rows(again.train) + rows(again.validation) + rows(again.test)) != set(
        rows(splits.train) + rows(splits.validation) + rows(splits.test)
    )


def test_rare_class_warns_and_stratify_fixes_it():
    data = labelled({"common": 57, "rare": 3})
    for seed in range(100):
        plain = split_labelled(data, seed=seed)
        if plain.warnings:
            break
    else:
        pytest.fail("no seed left the rare class out of a split")
    counts = plain.counts()
    assert min(counts[name]["rare"] for name in counts) == 0
    warning = plain.warnings[0]
    assert "class 'rare' is too rare to appear in every part" in warning
    assert "use --stratify" in warning and "train " in warning
    fixed = split_labelled(data, seed=seed, stratify=True)
    assert fixed.warnings == []
    assert all(fixed.counts()[name]["rare"] >= 1 for name in ("train", "validation", "test"))
    assert sum(len(p) for _, p in fixed.parts()) == 60
    # Too rare even for stratification: still a warning, with other advice.
    tiny = split_labelled(labelled({"common": 58, "rare": 2}), stratify=True)
    assert any("add more examples" in w for w in tiny.warnings)


def test_stratify_keeps_class_shares():
    splits = split_labelled(labelled({"a": 80, "b": 20}), stratify=True, seed=5)
    assert splits.counts() == {
        "train": {"a": 56, "b": 14},
        "validation": {"a": 8, "b": 2},
        "test": {"a": 16, "b": 4},
    }
    # Parts stay shuffled: not all of one class first.
    assert splits.train.labels != sorted(splits.train.labels)


def test_loader_warnings_reach_the_splits(tmp_path):
    path = write(
        tmp_path / "w.csv",
        "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(20)) + '" ",1\n',
    )
    splits = split_labelled(read_labelled(path))
    assert any("skipped 1 row(s)" in w for w in splits.warnings)


# ---- prepared folders ------------------------------------------------------------------


def tricky_splits() -> Splits:
    texts = TRICKY * 3
    labels = [str(i % 3 * 5) for i in range(len(texts))]  # "0", "5", "10"
    return split_labelled(LabelledTexts(texts, labels, "tricky"), (0.5, 0.2), seed=9)


def test_write_and_load_round_trip_exactly(tmp_path):
    splits = tricky_splits()
    out = write_splits(splits, tmp_path / "prepared", {"note": "round trip"})
    assert out == tmp_path / "prepared"
    loaded = load_prepared(out)
    assert loaded.label_names == ["0", "5", "10"] == splits.label_names
    for (name, a), (_, b) in zip(loaded.parts(), splits.parts(), strict=True):
        assert rows(a) == rows(b), name
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["note"] == "round trip" and meta["seed"] == 9
    assert meta["rows"] == {name: len(p) for name, p in splits.parts()}
    assert meta["class_counts"] == splits.counts()
    assert loaded.meta["label_names"] == ["0", "5", "10"]
    # Plain pandas reads the same texts too (the file is ordinary RFC 4180 CSV).
    frame = pd.read_csv(out / "train.csv", dtype=str, na_filter=False)
    assert frame["text"].tolist() == splits.train.texts


def test_write_is_atomic_and_replaces_only_its_own_folder(tmp_path, monkeypatch):
    splits = tricky_splits()
    out = tmp_path / "prepared"
    real = data_mod._write_csv

    def failing(part, path):
        if path.name == "validation.csv":
            raise OSError(28, "No space left on device")
        real(part, path)

    monkeypatch.setattr(data_mod, "_write_csv", failing)
    with pytest.raises(GPTClassifyError, match="prepared: cannot write there .*No space left"):
        write_splits(splits, out, {})
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary left behind

    monkeypatch.setattr(data_mod, "_write_csv", real)
    write_splits(splits, out, {"version": 1})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(data_mod, "_write_csv", failing)
    with pytest.raises(GPTClassifyError):
        write_splits(split_labelled(labelled({"x": 30, "y": 30})), out, {"version": 2})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]

    # A successful rewrite replaces everything, including a test.csv it no longer has.
    monkeypatch.setattr(data_mod, "_write_csv", real)
    no_test = Splits(splits.train, splits.validation, None, splits.label_names)
    write_splits(no_test, out, {})
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "train.csv", "validation.csv"]
    assert load_prepared(out).test is None


def test_write_refuses_folders_with_other_files(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(GPTClassifyError, match=r"mine: folder holds other files \(notes.txt\)"):
        write_splits(tricky_splits(), out, {})
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    with pytest.raises(GPTClassifyError, match="notes.txt: exists and is not a folder"):
        write_splits(tricky_splits(), out / "notes.txt", {})


def test_load_prepared_errors(tmp_path):
    with pytest.raises(GPTClassifyError, match="nowhere: data folder not found"):
        load_prepared(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GPTClassifyError, match="empty: no train.csv; prepare the folder with"):
        load_prepared(empty)
    out = write_splits(tricky_splits(), tmp_path / "p", {})
    meta = json.loads((out / "dataset.json").read_text())
    meta["label_names"] = ["0", "5"]
    (out / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(GPTClassifyError, match=r"label '10' is not in dataset.json's label_names"):
        load_prepared(out)
    (out / "dataset.json").write_text("{broken")
    with pytest.raises(GPTClassifyError, match="dataset.json: line 1: invalid JSON"):
        load_prepared(out)
    (out / "dataset.json").unlink()
    assert load_prepared(out).label_names == ["0", "5", "10"]  # from the labels


def test_label_ids_reject_unknown_labels():
    splits = split_labelled(labelled({"a": 10, "b": 10}))
    assert splits.label_ids(LabelledTexts(["x"], ["b"], "s")) == [1]
    with pytest.raises(
        GPTClassifyError, match=r"new.csv: label 'c' is not one of the classes 'a', 'b'"
    ):
        splits.label_ids(LabelledTexts(["x"], ["c"], "new.csv"))


# ---- raw files for training ------------------------------------------------------------


def test_load_split_files_holds_out_ten_percent_of_train(tmp_path):
    lines = "".join(f"text {i},{'pos' if i % 3 else 'neg'}\n" for i in range(50))
    train = write(tmp_path / "train.csv", "text,label\n" + lines)
    splits = load_split_files(train, seed=4)
    assert (len(splits.train), len(splits.validation), splits.test) == (45, 5, None)
    assert sorted(rows(splits.train) + rows(splits.validation)) == sorted(
        rows(read_labelled(train))
    )
    assert splits.train.texts == sorted(splits.train.texts, key=lambda t: int(t.split()[1]))
    assert splits.label_names == ["neg", "pos"]
    assert rows(load_split_files(train, seed=4).validation) == rows(splits.validation)
    assert rows(load_split_files(train, seed=5).validation) != rows(splits.validation)
    few = write(tmp_path / "few.csv", "text,label\na,x\nb,y\n")
    with pytest.raises(GPTClassifyError, match=r"few.csv: 2 rows are too few to hold out 10%"):
        load_split_files(few)


def test_load_split_files_mixed_formats_and_union_of_classes(tmp_path):
    train = write(tmp_path / "train.csv", "sms,class\nhi,ham\nwin cash,spam\nok,ham\n")
    validation = write(
        tmp_path / "val.jsonl", '{"sms": "yo", "class": "ham"}\n{"sms": "prize", "class": "spam"}\n'
    )
    test = tmp_path / "test.parquet"
    pd.DataFrame({"sms": ["hmm", "what"], "class": ["ham", "other"]}).to_parquet(test)
    splits = load_split_files(train, validation, test)
    assert splits.label_names == ["ham", "other", "spam"]
    assert rows(splits.test) == [("hmm", "ham"), ("what", "other")]
    rare = [w for w in splits.warnings if "class 'other'" in w]
    assert len(rare) == 1 and "missing from train, validation" in rare[0]
    # The parts were given: --stratify (which splits one file) cannot help.
    assert rare[0].endswith("add examples of it to the files that lack it")
    assert splits.meta["validation"] == str(validation)
    with pytest.raises(GPTClassifyError, match=r"no text column 'body'"):
        load_split_files(train, validation, text_column="body")


# ---- command line ----------------------------------------------------------------------


def test_cli_split_writes_folder_and_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lines = "".join(
        f'"review {i}, with comma",{["bad", "good", "meh"][i % 3]}\n' for i in range(90)
    )
    write(tmp_path / "reviews.csv", "Review,Sentiment\n" + lines + '"  ",good\n')
    res = CliRunner().invoke(cli, ["data", "split", "reviews.csv", "--stratify", "--seed", "3"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "data" / "reviews"
    splits = load_prepared(out)
    assert splits.label_names == ["bad", "good", "meh"]
    assert splits.counts()["validation"] == {"bad": 3, "good": 3, "meh": 3}
    assert "Warning: reviews.csv: skipped 1 row(s) with empty text" in res.output
    table = {
        line.split("│")[1].strip(): line.split("│")[-2].strip()
        for line in res.output.splitlines()
        if "│" in line
    }
    assert table == {"train": "63", "validation": "9", "test": "18", "all": "90"}
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["text_column"] == "Review" and meta["stratify"] is True and meta["seed"] == 3


def test_cli_split_options(tmp_path):
    src = write(
        tmp_path / "in.tsv", "body\tkind\n" + "".join(f"b{i}\t{i % 2}\n" for i in range(40))
    )
    out = tmp_path / "o"
    args = ["data", "split", str(src), "--text-column", "body", "--label-column", "kind"]
    res = CliRunner().invoke(cli, [*args, "--out", str(out), "--split", "0.5", "0.25", "--balance"])
    assert res.exit_code == 0, res.output
    assert [len(p) for _, p in load_prepared(out).parts()] == [20, 10, 10]
    renamed = write(tmp_path / "in.data", src.read_bytes())
    res = CliRunner().invoke(
        cli,
        [
            "data",
            "split",
            str(renamed),
            "--format",
            "tsv",
            "--text-column",
            "body",
            "--label-column",
            "kind",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output


def test_cli_split_errors_are_one_line_and_write_nothing(tmp_path):
    one_class = write(tmp_path / "one.csv", "text,label\na,x\nb,x\nc,x\n")
    gap = write(tmp_path / "gap.csv", "text,label\na,x\n,y\nc,x\n")
    cases = [
        ([str(tmp_path / "missing.csv")], "missing.csv: file not found"),
        ([str(write(tmp_path / "empty.csv", ""))], "empty.csv: file is empty"),
        ([str(write(tmp_path / "cols.csv", "a,b\n1,2\n"))], "no text column found"),
        ([str(one_class)], "only one class ('x')"),
        ([str(gap), "--strict"], "gap.csv: data row 2 has empty text"),
        ([str(write(tmp_path / "bin.csv", b"text,label\n\xff,1\n"))], "line 2 is not valid UTF-8"),
        ([str(one_class), "--split", "0.5", "0.5"], "sum below 1"),
        ([str(one_class), "--format", "xml"], "Invalid value for '--format'"),
    ]
    for extra, expected in cases:
        res = CliRunner().invoke(cli, ["data", "split", *extra, "--out", str(tmp_path / "out")])
        assert res.exit_code != 0, extra
        assert expected in res.output, res.output
        if res.exit_code == 1:
            assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
