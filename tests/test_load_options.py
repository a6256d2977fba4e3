"""How a model folder is loaded (args.LoadOptions): one dataclass behind Classifier.load and
the flags of predict, evaluate, serve and sagemaker serve, with the flags and keywords that
came before it unchanged."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

from gptclassify.args import LoadOptions
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier

FOLDER = Path(__file__).parent / "fixtures" / "v1" / "classifier"

# The flags as cli/options.py declared them by hand before LoadOptions: name, default,
# choices (None: free text or a number), metavar.
FLAGS = {
    "--device": ("auto", None, None),
    "--precision": ("auto", ["auto", "fp32", "bf16", "int8"], None),
    "--runtime": ("auto", ["auto", "torch", "onnx"], None),
    "--base-model": (None, None, "DIR_OR_PRESET"),
    "--long-texts": ("truncate", ["truncate", "chunk"], None),
    "--stride": (None, None, None),
    "--aggregate": ("mean", ["mean", "max"], None),
}


def _command(path: list[str]) -> click.Command:
    command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize("path", [["predict"], ["evaluate"], ["serve"], ["sagemaker", "serve"]])
def test_every_command_that_loads_a_folder_keeps_its_flags(path):
    params = {p.opts[0]: p for p in _command(path).params if isinstance(p, click.Option)}
    for flag, (default, choices, metavar) in FLAGS.items():
        p = params[flag]
        assert p.default == default, flag
        assert (list(p.type.choices) if isinstance(p.type, click.Choice) else None) == choices
        assert p.metavar == metavar, flag
    stride = params["--stride"].type
    assert isinstance(stride, click.IntRange) and stride.min == 1
    explain = {p.opts[0] for p in _command(["explain"]).params}
    assert {"--device", "--base-model"} <= explain and "--precision" not in explain


def test_the_cli_hands_its_flags_to_classifier_load_as_one_object(monkeypatch):
    seen: list[tuple] = []

    def fake_load(run_dir, options=None, **overrides):
        seen.append((run_dir, options, overrides))
        raise GPTClassifyError("stop here")

    monkeypatch.setattr(Classifier, "load", staticmethod(fake_load))
    args = ["--precision", "fp32", "--long-texts", "chunk", "--stride", "7"]
    res = CliRunner().invoke(cli, ["predict", "RUN", *args, "--aggregate", "max", "a text"])
    assert "stop here" in res.output
    res = CliRunner().invoke(cli, ["evaluate", "RUN", "--device", "cpu", "--runtime", "torch"])
    assert "stop here" in res.output
    assert seen == [
        (
            "RUN",
            LoadOptions(precision="fp32", long_texts="chunk", stride=7, aggregate="max"),
            {},
        ),
        ("RUN", LoadOptions(device="cpu", runtime="torch"), {}),
    ]


def test_keywords_and_an_options_object_load_the_same_and_keywords_win():
    by_keywords = Classifier.load(FOLDER, precision="fp32", long_texts="chunk", stride=8)
    by_object = Classifier.load(
        FOLDER, LoadOptions(precision="bf16", long_texts="chunk", stride=8), precision="fp32"
    )
    for clf in (by_keywords, by_object):
        assert clf.dtype == torch.float32
        assert (clf.long_texts.mode, clf.long_texts.stride) == ("chunk", 8)
    texts = ["win a prize now", "see you at lunch"]
    assert (by_keywords.predict_proba(texts) == by_object.predict_proba(texts)).all()


def test_wrong_options_are_refused_with_the_reason():
    with pytest.raises(TypeError, match="options must be a LoadOptions.*keywords"):
        Classifier.load(FOLDER, "cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument 'devise'"):
        Classifier.load(FOLDER, devise="cpu")
    with pytest.raises(GPTClassifyError, match="--stride 8: windows are for --long-texts chunk"):
        Classifier.load(FOLDER, LoadOptions(stride=8))
