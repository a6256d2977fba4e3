"""An error's advice names options the way the caller gave them: flags on the command line
(`--overwrite`), keywords from Python (`overwrite=True`). The same failure, both ways."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gptclassify.args import TrainConfig
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError, advice, current_interface, interface, option


def _cli_error(*args: str) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    line = res.output.strip()
    assert "\n" not in line
    return line


def _run_folder(path):
    """A finished run as RunFolder sees one: files and a checkpoints/ folder."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "metrics.json").write_text("{}")
    return path


def test_option_words_follow_the_interface():
    assert current_interface() == "python"  # a library call, by default
    assert option("overwrite", True) == "overwrite=True"
    assert option("model", "smollm2-135m-instruct-q4") == "model='smollm2-135m-instruct-q4'"
    assert option("batch_size", 8) == "batch_size=8"
    assert option("epochs") == "epochs"
    with interface("cli"):
        assert option("overwrite", True) == "--overwrite"
        assert option("model", "smollm2-135m-instruct-q4") == "--model smollm2-135m-instruct-q4"
        assert option("batch_size", 8) == "--batch-size 8"
        assert option("epochs") == "--epochs"
        assert advice("--base-model PATH", "base_model=PATH") == "--base-model PATH"
    assert advice("--base-model PATH", "base_model=PATH") == "base_model=PATH"


def test_a_folder_holding_a_run(tmp_path):
    out = _run_folder(tmp_path / "spam")
    line = _cli_error("train", "--out", out, "--quiet")
    assert f"--out {out}: already holds a run; pass --overwrite to replace it" in line
    assert f"or --resume {out} to continue it" in line
    with pytest.raises(GPTClassifyError) as err:
        from gptclassify import train

        train(TrainConfig(out=str(out)), quiet=True)
    message = str(err.value)
    assert f"out={str(out)!r}: already holds a run; pass overwrite=True to replace it" in message
    assert f"or resume={str(out)!r} to continue it" in message
    assert "--" not in message
    assert (out / "metrics.json").is_file()  # refused: nothing changed


def test_an_unfinished_run(tmp_path):
    out = tmp_path / "spam"
    (tmp_path / "spam.partial").mkdir()
    line = _cli_error("train", "--out", out, "--quiet")
    assert f"continue it with --resume {out}, or start over with --overwrite" in line
    from gptclassify import train

    with pytest.raises(GPTClassifyError) as err:
        train(TrainConfig(out=str(out)), quiet=True)
    assert f"continue it with resume={str(out)!r}, or start over with overwrite=True" in str(
        err.value
    )


def test_option_values_checked_by_the_config(tmp_path):
    (tmp_path / "shape.json").write_text("{}")
    line = _cli_error("train", "--epochs", "0")
    assert "--epochs must be a positive integer, got 0" in line
    with pytest.raises(GPTClassifyError, match="^epochs must be a positive integer, got 0$"):
        TrainConfig(epochs=0)
    line = _cli_error("train", "--model", tmp_path / "shape.json")
    assert "a config JSON has no weights; add --weights random" in line
    with pytest.raises(
        GPTClassifyError, match="a config JSON has no weights; add weights='random'"
    ):
        TrainConfig(model=str(tmp_path / "shape.json"))


def test_the_interface_is_the_callers_again_after_a_command(tmp_path):
    _cli_error("train", "--epochs", "0")
    assert current_interface() == "python"
    with pytest.raises(GPTClassifyError, match="^epochs must"):
        TrainConfig(epochs=0)
