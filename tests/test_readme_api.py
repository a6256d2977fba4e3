"""The README's Python and step-by-step examples, run as written (with a tiny random model
where the README trains the real default model, and small data where it reads the SMS
split; GPTCLASSIFY_README_REAL=1 runs the pipeline block verbatim on the real model)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from conftest import REPO_ROOT
from gptclassify import Classifier
from gptclassify.cli import cli
from test_python_api import MICRO, topics

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def block_after(heading: str, language: str) -> str:
    """The first fenced block of `language` after `heading`."""
    start = README.index(heading)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(README, start)
    assert match is not None, heading
    return match.group(1)


def test_the_notebook_style_sklearn_example_runs(tmp_path, monkeypatch, capsys):
    code = block_after("### Use it like scikit-learn", "python")
    line = "clf = GPTTextClassifier(epochs=2)"  # the default model: SmolLM2, from the package index
    assert line in code
    (tmp_path / "micro.json").write_text(__import__("json").dumps(MICRO))
    code = code.replace(
        line, 'clf = GPTTextClassifier(model="micro.json", weights="random", lr=1e-2, epochs=1)'
    )
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "sms-spam"
    folder.mkdir(parents=True)
    for name, seed in (("train", 0), ("test", 1)):
        df = topics(n_per_class=24, seed=seed)
        df = pd.DataFrame({"text": df["Sentence"], "label": (df["Category"] == "sport") * 1})
        df.to_csv(folder / f"{name}.csv", index=False)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    printed = capsys.readouterr().out.splitlines()
    scores = [float(x) for x in re.findall(r"[\d.]+", printed[0])]
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
    accuracy = float(printed[1])
    test = namespace["test"]
    assert accuracy == (test["predicted"] == test["label"]).mean()
    assert test["predicted"].isin([0, 1]).all()  # y's own values
    loaded = namespace["clf"]
    assert loaded.classes_.tolist() == [0, 1]
    assert loaded.predict(test["text"]).tolist() == test["predicted"].tolist()
    # The saved folder is a normal model folder.
    assert Classifier.load(Path("models/spam-sklearn")).labels == ["0", "1"]


def run_step_by_step_block(tmp_path, monkeypatch, train_flags: list[str]) -> None:
    """The README's pipeline block, line by line, in tmp_path; `train_flags` are added to its
    `gptclassify train` line (nothing: verbatim)."""
    block = block_after("## The pipeline, step by step", "bash")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    trained = False
    for raw in block.splitlines():
        line = raw.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        if words[0] in ("echo", "printf"):  # shell writes a file: `echo '...' > FILE`
            assert words[-2] == ">"
            text = words[1] + ("\n" if words[0] == "echo" else "")
            if words[0] == "printf":
                text = text.encode().decode("unicode_escape")
            Path(words[-1]).write_text(text)
            continue
        assert words[0] == "gptclassify", line
        if words[1] == "train":
            assert "--model" not in words, "the README's pipeline trains the real default model"
            words += train_flags
            trained = True
        result = runner.invoke(cli, words[1:])
        assert result.exit_code == 0, (line, result.output)
    assert trained
    out = pd.read_csv(tmp_path / "predictions.csv")
    assert out["text"].tolist() == ["WINNER! Claim your prize now", "see you at 6?"]


def test_the_step_by_step_block_runs_offline(tmp_path, monkeypatch):
    """Every line as written, except that `train` gets the README's own tiny random model
    (its smoke-test line) so the suite stays fast; test_the_step_by_step_block_on_the_real_model
    runs it verbatim."""
    Path(tmp_path / "tiny.json").write_text(
        '{"emb_dim": 64, "n_heads": 4, "n_layers": 2, "context_length": 128}'
    )
    assert "--out runs/tiny --model tiny.json --weights random" in " ".join(README.split())
    tiny = ["--model", "tiny.json", "--weights", "random", "--trainable", "all"]
    run_step_by_step_block(tmp_path, monkeypatch, [*tiny, "--lr", "1e-3", "--epochs", "2"])


@pytest.mark.skipif(
    not os.environ.get("GPTCLASSIFY_README_REAL"),
    reason="minutes on a 2-core CPU: set GPTCLASSIFY_README_REAL=1 to train the real default "
    "model as the README does",
)
def test_the_step_by_step_block_on_the_real_model(tmp_path, monkeypatch):
    """Verbatim, offline: the default model comes from the package's cache, filled here
    from the fetched copy (tests/smollm2.py), so `train` never reaches the index."""
    from smollm2 import smollm2_gguf

    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf").symlink_to(smollm2_gguf())
    monkeypatch.setenv("GPTCLASSIFY_CACHE", str(cache))
    (tmp_path / "work").mkdir()
    run_step_by_step_block(tmp_path / "work", monkeypatch, [])
    out = pd.read_csv(tmp_path / "work" / "predictions.csv")
    assert out["label"].tolist() == ["spam", "ham"]
    assert set(out["label"]) <= {"ham", "spam"}
