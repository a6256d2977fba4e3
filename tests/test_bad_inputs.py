"""The bad-input corpus (tests/bad_inputs/, see its README.md) through every entry point.

Each bad input must end with exit status 1 (or an error in its row, where that is the
contract), exactly one line on stderr naming the file and what is wrong, nothing written,
and no traceback. Commands run in-process through click's CliRunner: an exception that
escaped a command would be the result's `exception` instead of the SystemExit of a clean
exit, so `refused` catches tracebacks without parsing them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError

CORPUS = Path(__file__).parent / "bad_inputs"

TABLES = {
    "latin1.csv": "line 3 is not valid UTF-8 (byte 0xe9",
    "utf16.csv": "line 1 is not valid UTF-8",
    "utf16_nobom.csv": "line 1 is not valid UTF-8 text (a NUL byte at column 2, as in UTF-16)",
    "bad_utf8.jsonl": "line 2 is not valid UTF-8 (byte 0xff",
    "too_many_fields.csv": "line 3 has 3 fields, the header has 2",
    "header_only.csv": "no data rows",
    "empty.csv": "file is empty",
    "blank.jsonl": "file is empty",
    "invalid_json.jsonl": "line 2: invalid JSON",
    "not_object.jsonl": "line 2: expected one JSON object per line",
    "duplicate_key.jsonl": "line 2: key 'text' appears twice",
    "lone_surrogate.jsonl": "line 2: holds '\\udcff'",
    "number_text.jsonl": "line 2: column 'text' holds int 42",
    "number_text.parquet": "data row 1: column 'text' holds int",
    "duplicate_header.csv": "column 'text' more than once (columns 1, 3)",
    "duplicate_columns.parquet": "column 'text' appears more than once",
    "no_text_column.csv": "no text column found",
    "not_parquet.parquet": "cannot read as Parquet",
    "truncated.parquet": "cannot read as Parquet",
    "unknown_extension.txt": "cannot tell the format",
}
"""Files no reader accepts -> what the one line says after the file's name."""

TAKEN = {
    "input_label_taken.csv": ("'label'", "'input_label'"),
    "input_label_taken.parquet": ("'label'", "'input_label'"),
    "input_prob_taken.jsonl": ("'prob_1'", "'input_prob_1'"),
    "input_error_taken.tsv": ("'error'", "'input_error'"),
}
"""Inputs whose column named like a prediction column cannot be kept as input_<name>."""


def invoke(*args: object, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def refused(result: Result, *fragments: str) -> str:
    """Exit 1 through click (no exception escaped), one line on stderr holding every
    fragment, no traceback; returns the line."""
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def tiny(run: Path) -> list[object]:
    """train's options for a tiny random model (no download before the data is read)."""
    return ["--model", run.parent / "tiny.json", "--weights", "random", "--quiet"]


@pytest.fixture(scope="module")
def clf(small_run):
    from gptclassify.predict import Classifier

    return Classifier.load(small_run, precision="fp32")


# ---- tables: every reader -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TABLES))
def test_no_reader_takes_a_bad_table(name, small_run, clf, tmp_path):
    from gptclassify.data import read_labelled
    from gptclassify.predict import predict_file

    path, what = CORPUS / name, TABLES[name]
    out = tmp_path / "out"
    refused(invoke("train", "--train", path, "--out", out, *tiny(small_run)), name, what)
    refused(invoke("data", "split", path, "--out", tmp_path / "data"), name, what)
    refused(invoke("baseline", "--train", path, "--out", tmp_path / "base"), name, what)
    refused(
        invoke("predict", small_run, "--input", path, "--output", tmp_path / "p.csv"), name, what
    )
    refused(invoke("evaluate", small_run, "--data", path), name, what)
    refused(invoke("export", small_run, "--format", "onnx", "--data", path, "--out", out), name)
    assert list(tmp_path.iterdir()) == []  # no OUT.partial, no half a file, no data folder
    for call in (lambda: read_labelled(path), lambda: predict_file(clf, path)):
        with pytest.raises(GPTClassifyError) as caught:
            call()
        assert name in str(caught.value) and what in str(caught.value)


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_predict_never_drops_or_overwrites_an_input_column(name, small_run, tmp_path):
    for output in ("p.csv", "p.jsonl", "p.parquet"):
        line = refused(
            invoke("predict", small_run, "--input", CORPUS / name, "--output", tmp_path / output),
            name,
            *TAKEN[name],
        )
        assert "rename one of them" in line
    assert list(tmp_path.iterdir()) == []


def test_whitespace_texts_are_error_rows_in_predict_and_skipped_rows_in_training(
    small_run, tmp_path
):
    path = CORPUS / "whitespace_texts.csv"
    result = invoke("predict", small_run, "--input", path, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output  # the contract: one error row per text
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["error"] for r in rows] == ["empty text"] * 3
    assert [r["label"] for r in rows] == [None] * 3
    assert "3 row(s) could not be classified" in result.stderr
    train = invoke("train", "--train", path, "--out", tmp_path / "o", *tiny(small_run))
    refused(train, "no rows with both")


@pytest.mark.parametrize(
    "files, fragments",
    [
        (["labels_01_and_1.csv"], ["'1' and '01'", "one number written differently"]),
        (["labels_half.csv"], ["'0.5' and '0.50'", "one number written differently"]),
        (
            ["train_01.csv", "validation_hamspam.csv"],
            ["never seen in training", "'ham'", "'spam'", "validation_hamspam.csv", "train_01.csv"],
        ),
    ],
)
def test_training_refuses_ambiguous_or_unseen_classes(files, fragments, small_run, tmp_path):
    args = ["--train", CORPUS / files[0]]
    if len(files) > 1:
        args += ["--validation", CORPUS / files[1]]
    refused(invoke("train", *args, "--out", tmp_path / "o", *tiny(small_run)), *fragments)
    refused(invoke("baseline", *args, "--out", tmp_path / "b"), *fragments)
    assert list(tmp_path.iterdir()) == []


# ---- texts on stdin and as arguments ----------------------------------------------------------


def test_non_utf8_on_stdin_and_in_arguments(small_run):
    raw = (CORPUS / "latin1_text.txt").read_bytes()
    refused(invoke("predict", small_run, input=raw), "stdin: line 2 is not valid UTF-8 (byte 0xe9")
    # What Python makes of the bytes "caf\xe9" in argv (surrogateescape).
    refused(
        invoke("predict", small_run, "ok", "caf\udce9"),
        "text argument 2 is not valid UTF-8 (byte 0xe9",
    )
    line = refused(invoke("predict", small_run, "--input", "caf\udce9.csv"), "file not found")
    assert "\\udce9" in line  # printed as an escape, not a crash of the error message


def test_non_utf8_argv_in_a_real_process(small_run):
    """The real thing: bytes in argv and on stdin of a fresh interpreter (locale C)."""
    env = {**os.environ, "LC_ALL": "C", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "gptclassify", "predict", str(small_run)]
    for extra, stdin in (([b"caf\xe9"], b""), ([], b"ok\ncaf\xe9\n")):
        done = subprocess.run(command + extra, input=stdin, capture_output=True, env=env)
        assert done.returncode == 1, done.stderr
        assert b"Traceback" not in done.stderr + done.stdout
        assert b"not valid UTF-8 (byte 0xe9" in done.stderr


# ---- flags ----------------------------------------------------------------------------------------

TRAIN = ["train", "--train", "{corpus}/train_01.csv", "--validation", "{corpus}/train_01.csv"]
TRAIN += ["--out", "{tmp}/o"]
TRAIN += ["--model", "{run}/../tiny.json", "--weights", "random"]
FLAGS = [
    (["predict", "{run}", "x", "--threshold", "2"], "--threshold"),
    (["predict", "{run}", "x", "--top-k", "0"], "--top-k"),
    (["predict", "{run}", "x", "--output", "{tmp}/p.txt"], "--output"),
    (["predict", "{run}", "x", "--output", "{tmp}"], "--output"),
    (["predict", "{run}", "x", "--safe-csv"], "--safe-csv"),
    (["predict", "{run}", "x", "--safe-csv", "--output", "{tmp}/p.jsonl"], "--safe-csv"),
    (["predict", "{run}", "x", "--input", "{corpus}/header_only.csv"], "give texts"),
    (["predict", "{run}", "x", "--batch-size", "0"], "--batch-size"),
    (["predict", "{run}", "x", "--runtime", "onnx"], "holds PyTorch weights"),
    (["predict", "{run}", "x", "--precision", "int8"], "--precision int8"),
    (["predict", "{run}", "--input", "{corpus}/latin1.csv", "--text-column", "body"], "'body'"),
    (["evaluate", "{run}", "--data", "{tmp}/missing.csv"], "file not found"),
    (["evaluate", "{run}", "--data", "{tmp}"], "no test.csv"),
    (["evaluate", "{run}/nope"], "not a folder"),
    ([*TRAIN, "--batch-size", "0"], "--batch-size"),
    ([*TRAIN, "--batch-size", "64"], "--batch-size"),
    ([*TRAIN, "--lr", "nan"], "--lr"),
    ([*TRAIN, "--epochs", "-1"], "--epochs"),
    ([*TRAIN, "--pad-to", "sometimes"], "--pad-to"),
    ([*TRAIN, "--label-column", "nope"], "'nope'"),
    (["data", "split", "{corpus}/train_01.csv", "--split", "0.9", "0.2"], "--split"),
    (["export", "{run}", "--format", "pdf", "--out", "{tmp}/e"], "--format"),
    (["export", "{run}", "--format", "hf", "--out", "{run}"], "{run}"),
    (["serve", "{run}", "--max-queue", "2"], "--max-queue"),
]


@pytest.mark.parametrize("args, fragment", FLAGS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in FLAGS])
def test_bad_flags(args, fragment, small_run, tmp_path, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("started a server"))
    names = {"run": small_run, "tmp": tmp_path, "corpus": CORPUS}
    args = [a.format(**names) for a in args]
    result = invoke(*args)
    assert isinstance(result.exception, SystemExit) and result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
    assert fragment.format(**names) in result.stderr
    assert not {"p.txt", "e", "o", "o.partial"} & {p.name for p in tmp_path.iterdir()}


# ---- model folders: bad config.json --------------------------------------------------------------


def config_cases() -> list[tuple[str, object, str]]:
    patches = json.loads((CORPUS / "configs" / "patches.json").read_text())
    cases: list[tuple[str, object, str]] = [
        ("not_json", (CORPUS / "configs" / "not_json.json").read_text(), "not valid JSON"),
        ("array", (CORPUS / "configs" / "array.json").read_text(), "config.json"),
    ]
    cases += [(name, p, p["names"]) for name, p in patches.items() if not name.startswith("_")]
    return cases


@pytest.mark.parametrize("name, change, fragment", config_cases(), ids=lambda c: str(c)[:20])
def test_bad_config_json_through_every_loader(name, change, fragment, small_run, tmp_path):
    import uvicorn

    from gptclassify.predict import Classifier

    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    if isinstance(change, str):
        (folder / "config.json").write_text(change)
    else:
        config = json.loads((folder / "config.json").read_text())
        config.update(change.get("set", {}))
        for key in change.get("delete", []):
            del config[key]
        (folder / "config.json").write_text(json.dumps(config))
    where = "config.json"
    refused(invoke("predict", folder, "hello"), where, fragment)
    refused(invoke("evaluate", folder), where, fragment)
    refused(invoke("export", folder, "--format", "hf", "--out", tmp_path / "hf"), where, fragment)
    seen = []
    uvicorn_run, uvicorn.run = uvicorn.run, lambda *a, **k: seen.append(a)
    try:
        refused(invoke("serve", folder), where, fragment)
    finally:
        uvicorn.run = uvicorn_run
    assert not seen and not (tmp_path / "hf").exists()
    with pytest.raises(GPTClassifyError) as caught:
        Classifier.load(folder)
    assert where in str(caught.value) and fragment in str(caught.value)


# ---- model and run folders: links out of them ----------------------------------------------------

LOADING = {"predict", "evaluate", "export", "serve", "api"}
LINKS = {
    "model.safetensors": LOADING,  # a copy of the real weights: the checksum alone would pass
    "config.json": LOADING,
    "metrics.json": LOADING - {"export"},  # export never reads it
    "data": {"evaluate", "export", "api"},  # the whole data/ folder elsewhere
    "data/test.csv": {"evaluate", "export", "api"},
}
"""File moved out of a run folder and linked back -> the entry points that read it."""


@pytest.mark.parametrize("name", sorted(LINKS))
def test_no_link_out_of_a_run_folder_is_followed(name, small_run, tmp_path, monkeypatch):
    import uvicorn

    from gptclassify.predict import Classifier

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("started a server"))
    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    outside = tmp_path / "elsewhere" / Path(name).name
    outside.parent.mkdir()
    (folder / name).rename(outside)  # the same content, moved out and linked back
    (folder / name).symlink_to(outside)
    shown = str(folder / name.split("/")[0])
    calls = {
        "predict": ("predict", folder, "hello"),
        "evaluate": ("evaluate", folder),
        "export": ("export", folder, "--format", "onnx", "--out", tmp_path / "hf"),
        "serve": ("serve", folder),
    }
    for what in sorted(LINKS[name] - {"api"}):
        refused(invoke(*calls[what]), shown, "symbolic link")
    with pytest.raises(GPTClassifyError, match="symbolic link"):
        Classifier.load(folder).evaluate(folder)
    assert not (tmp_path / "hf").exists()


def test_evaluate_never_writes_its_figure_through_a_link(small_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (folder / "confusion.png").symlink_to(victim)
    result = invoke("evaluate", folder)
    assert result.exit_code == 0, result.output  # the metrics are the point; the figure is extra
    assert "Accuracy" in result.stdout
    note = result.stderr.strip().splitlines()
    assert len(note) == 1 and note[0].startswith("Note: confusion.png not written")
    assert "symbolic link" in note[0]
    assert victim.read_text() == "keep me" and (folder / "confusion.png").is_symlink()


def test_links_that_stay_inside_and_a_linked_run_folder_still_work(small_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    (folder / "weights").mkdir()
    (folder / "model.safetensors").rename(folder / "weights" / "model.safetensors")
    (folder / "model.safetensors").symlink_to(Path("weights") / "model.safetensors")
    (tmp_path / "alias").symlink_to(folder)  # the user's own link to the folder itself
    result = invoke("predict", tmp_path / "alias", "hello")
    assert result.exit_code == 0, result.output


def test_resume_refuses_a_run_with_a_link_out(small_run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    secret = tmp_path / "secret.log"
    secret.write_text("not the run's\n")
    (folder / "train.log").unlink()
    (folder / "train.log").symlink_to(secret)  # a resumed run would append to it
    refused(invoke("train", "--resume", folder, "--epochs", "2"), "train.log", "symbolic link")
    assert secret.read_text() == "not the run's\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "secret.log"]


# ---- the server ---------------------------------------------------------------------------------

REQUESTS = [
    ("/predict", b'{"inputs": "   "}', 422, "text 1 is empty (or only whitespace)"),
    ("/predict", b'{"inputs": [["ok"], ["\\t\\n"]]}', 422, "text 2 is empty (or only whitespace)"),
    ("/classify", b'{"input": ["ok", "\\u3000"]}', 422, "text 2 is empty (or only whitespace)"),
    ("/explain", b'{"inputs": "  "}', 422, "empty (or only whitespace)"),
    ("/predict", b'{"inputs": "caf\\udce9"}', 422, "text 1 holds '\\udce9', half of a surrogate"),
    ("/classify", b'{"input": ["ok", "\\udce9"]}', 422, "text 2 holds '\\udce9'"),
    ("/explain", b'{"inputs": "caf\\udce9"}', 422, "holds '\\udce9'"),
    ("/predict", b'{"inputs": "caf\xe9"}', 400, "error parsing the body"),
    ("/predict", b"", 422, "body"),
    ("/predict", b"[]", 422, "body"),
]


@pytest.mark.parametrize("route, body, status, fragment", REQUESTS)
def test_bad_requests_get_one_clear_error(route, body, status, fragment, clf):
    from fastapi.testclient import TestClient

    from gptclassify.serve import create_app

    with TestClient(create_app(clf)) as client:
        response = client.post(route, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if route == "/classify":  # vLLM's and OpenAI's shape there: {"error": {"message", ...}}
        error = error["message"]
    assert fragment in error and "Traceback" not in error and 'File "' not in error


# ---- files nobody may read ---------------------------------------------------------------------

UNREADABLE = """
import json, sys
from click.testing import CliRunner
from gptclassify.cli import cli
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(cli, args)
    out.append([r.exit_code, type(r.exception).__name__, r.stdout, r.stderr])
print(json.dumps(out))
"""


def run_without_root_powers(args: list[list[str]]) -> list[list]:
    """Run CLI commands in a process for which permissions hold: as root (CI), drop the
    capabilities that let root read and write anything (util-linux's setpriv)."""
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be tested")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [*prefix, sys.executable, "-c", UNREADABLE, json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_unreadable_inputs_and_a_read_only_run_folder(small_run, tmp_path):
    secret = tmp_path / "secret.csv"
    shutil.copy(CORPUS / "train_01.csv", secret)
    secret.chmod(0o000)
    folder = tmp_path / "run"
    shutil.copytree(small_run, folder)
    (folder / "confusion.png").unlink(missing_ok=True)
    out = tmp_path / "out"
    results = {}
    try:
        folder.chmod(0o555)
        (folder / "data").chmod(0o555)
        done = run_without_root_powers(
            [
                ["train", "--train", str(secret), "--out", str(out), *map(str, tiny(small_run))],
                ["predict", str(small_run), "--input", str(secret)],
                ["evaluate", str(small_run), "--data", str(secret)],
                ["data", "split", str(secret), "--out", str(tmp_path / "d")],
                ["evaluate", str(folder)],
            ]
        )
        results = dict(
            zip(["train", "predict", "evaluate", "split", "read-only"], done, strict=True)
        )
    finally:
        folder.chmod(0o755)
        (folder / "data").chmod(0o755)
        secret.chmod(0o644)
    for what in ("train", "predict", "evaluate", "split"):
        code, exception, stdout, stderr = results[what]
        assert (code, exception) == (1, "SystemExit"), (what, stderr)
        assert stderr.strip() == f"Error: {secret}: cannot read (Permission denied)", what
    assert not out.exists() and not Path(f"{out}.partial").exists()  # the retry is not blocked
    code, exception, stdout, stderr = results["read-only"]
    assert (code, exception) == (0, "NoneType"), stderr
    assert "Accuracy" in stdout  # the metrics, which are the point
    assert stderr.strip() == (
        f"Note: confusion.png not written: {folder / 'confusion.png'}: Permission denied"
    )
    assert not (folder / "confusion.png").exists()


def test_train_reads_the_data_before_it_resolves_the_model(tmp_path):
    # A Hub id would be downloaded first (here, offline, refused): a missing data file is
    # reported before that, so a typo costs seconds, not a download.
    line = refused(
        invoke(
            "train",
            "--train",
            tmp_path / "missing.csv",
            "--model",
            "someone/not-a-model",
            "--out",
            tmp_path / "run",
            "--quiet",
        ),
        "missing.csv",
    )
    assert "not-a-model" not in line
    assert list(tmp_path.iterdir()) == []


# ---- labels: merged or coerced only with a word -------------------------------------------------


def test_one_number_written_two_ways_is_one_class_with_a_warning():
    from gptclassify.data import read_labelled

    read = read_labelled(CORPUS / "labels_1_and_1.0.csv")
    assert sorted(set(read.labels)) == ["0", "1"]  # the documented conversion
    assert any(
        "'1' (2), '1.0' (1) are one number written two ways: read as one class '1'" in w
        for w in read.warnings
    ), read.warnings
    with pytest.raises(GPTClassifyError, match="one number written two ways"):
        read_labelled(CORPUS / "labels_1_and_1.0.csv", strict=True)


def test_labels_that_are_objects_are_refused_and_booleans_read_as_json_writes_them(tmp_path):
    from gptclassify.data import read_labelled
    from gptclassify.data.inputs import labelled

    line = refused(
        invoke("data", "split", CORPUS / "object_label.jsonl", "--out", tmp_path / "d"),
        "object_label.jsonl: line 2: column 'label' holds dict {'class': 0}, not a label",
    )
    assert "Traceback" not in line and list(tmp_path.iterdir()) == []
    assert read_labelled(CORPUS / "bool_labels.jsonl").labels == ["true", "false"] * 2
    with pytest.raises(GPTClassifyError, match=r"row 2: the label holds list \['a'\]"):
        labelled(["x", "y"], ["b", ["a"]])


def test_label_lists_mixed_with_json_strings_and_case_variants_in_multi_label_data():
    from gptclassify.data.multilabel import read_examples

    with pytest.raises(GPTClassifyError) as caught:
        read_examples(CORPUS / "lists_and_json_strings.jsonl")
    assert "line 2: column 'labels' holds the text" in str(caught.value)
    assert "a JSON list written as a string" in str(caught.value)
    read = read_examples(CORPUS / "multilabel_case.jsonl")
    assert read.label_sets == [("billing", "urgent"), ("Billing",), ("bug",)]
    assert any("'Billing' (1), 'billing' (1) differ only in case" in w for w in read.warnings)


def test_model_config_switches_must_be_booleans(tmp_path):
    from gptclassify.config import GPTConfig

    path = CORPUS / "configs" / "qkv_bias_string.json"
    with pytest.raises(GPTClassifyError, match="qkv_bias must be true or false, got 'no'"):
        GPTConfig.from_json(path)
    data = ["--train", CORPUS / "train_01.csv", "--validation", CORPUS / "train_01.csv"]
    train = [*data, "--model", path, "--weights", "random"]
    refused(invoke("train", *train, "--out", tmp_path / "o", "--quiet"), "qkv_bias")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "X, y, message",
    [
        (
            ["a", "b", "c"],
            [1, "1", 0],
            r"y: labels of mixed kinds \(1 \(number\) and '1' \(str\)\)",
        ),
        (["a", "b", "c"], [1, float("nan"), 0], r"y: label 2 is missing \(None/NaN\)"),
        (["a", None, "c"], [1, 0, 1], r"text 2 is missing \(None/NaN\)"),
        (["a", float("nan"), "c"], [1, 0, 1], r"text 2 is missing \(None/NaN\)"),
        (["a", " \t", "c"], [1, 0, 1], r"fit: text 2 is empty \(or only whitespace\)"),
    ],
)
def test_the_estimators_fit_refuses_what_predict_refuses(X, y, message):
    from gptclassify.sklearn import GPTTextClassifier

    with pytest.raises(GPTClassifyError, match=message):
        GPTTextClassifier(model="no-such-model", weights="random").fit(X, y)


# ---- refused in one line, nothing written -------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seeds_numpy_cannot_take_are_one_line(seed, small_run, tmp_path):
    data = ["--train", CORPUS / "train_01.csv", "--validation", CORPUS / "train_01.csv"]
    fragment = f"--seed {seed}: a seed is a whole number from 0 to 4294967295"
    refused(
        invoke("train", *data, "--seed", seed, "--out", tmp_path / "o", *tiny(small_run)), fragment
    )
    refused(
        invoke("data", "split", CORPUS / "train_01.csv", "--seed", seed, "--out", tmp_path / "d"),
        fragment,
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("temperature", ["nan", "inf", "1e-320", "-1"])
def test_generate_refuses_temperatures_that_give_no_distribution(temperature):
    # Refused before any model is looked for (the model named here does not exist).
    result = invoke(
        "generate", "--model", "no-such-model", "--prompt", "hi", "--temperature", temperature
    )
    if temperature == "-1":  # click's own range check
        assert result.exit_code == 2 and "Traceback" not in result.output
        return
    refused(result, f"--temperature {float(temperature)}: 0 (greedy) or a number from 0.001")


# ---- misread no more ------------------------------------------------------------------------------


def test_cr_only_line_endings_are_lines():
    from gptclassify.data import read_labelled

    read = read_labelled(CORPUS / "cr_only.csv")
    assert read.texts[:2] == ["win a prize now", "see you at lunch"]
    assert read.labels == ["spam", "ham", "spam", "ham"]


def test_excel_text_formulas_are_read_as_excel_shows_them_and_said():
    from gptclassify.data import read_labelled

    read = read_labelled(CORPUS / "excel_text.csv")
    assert read.texts == ["00123", 'say "hi"', "=A1+1", "plain"]  # a real formula stays
    assert any("2 cell(s) written as Excel text formulas" in w for w in read.warnings)


def test_zero_width_only_texts_are_empty_like_whitespace_only_ones(clf):
    from gptclassify.data import read_labelled

    read = read_labelled(CORPUS / "zero_width.csv")
    assert read.texts == ["hello"] and read.skipped_empty == 2
    for text in ("\u200b", "\u2060\ufeff\u200d", " \u200b\n"):
        with pytest.raises(GPTClassifyError, match=r"text 2 is empty \(or only whitespace\)"):
            clf.predict(["hello", text])


def test_a_class_weights_file_naming_a_class_twice_is_refused():
    import torch

    from gptclassify.training.build import loss_weights

    path = CORPUS / "duplicate_class_weight.json"
    with pytest.raises(GPTClassifyError, match="key 'spam' appears twice in one object"):
        loss_weights(str(path), torch.tensor([0, 1]), ["ham", "spam"], False)


def test_stride_without_chunked_long_texts_is_refused(small_run):
    refused(
        invoke("predict", small_run, "hello", "--stride", "8"), "--stride 8", "--long-texts chunk"
    )


def test_a_busy_port_is_one_line_before_serving(small_run):
    import socket

    import uvicorn

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = []
        real, uvicorn.run = uvicorn.run, lambda *a, **k: started.append(a)
        try:
            result = invoke("serve", small_run, "--port", port)
        finally:
            uvicorn.run = real
    line = refused(result, f"--port {port}: cannot listen on 127.0.0.1:{port}", "already")
    assert not started and "Serving" not in result.output, line
