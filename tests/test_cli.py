"""The command line as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import torch
from click.testing import CliRunner

from gptclassify import tokenizer
from gptclassify.cli import cli
from gptclassify.models import PRESETS


def test_help_lists_commands():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    listed = {
        line.split()[0] for line in res.output.split("Commands:")[1].splitlines() if line.strip()
    }
    assert (
        listed
        == set(cli.commands)
        >= {
            "baseline",
            "data",
            "evaluate",
            "experiments",
            "generate",
            "predict",
            "train",
        }
    )


def test_every_config_field_is_a_documented_flag():
    """train/baseline/experiments/tune --help list every field of their config, with its help."""
    import click

    from gptclassify.args import BaselineConfig, ExperimentsConfig, TrainConfig, TuneConfig, options

    for command, cls in (
        ("train", TrainConfig),
        ("baseline", BaselineConfig),
        ("experiments", ExperimentsConfig),
        ("tune", TuneConfig),
    ):
        res = CliRunner().invoke(cli, [command, "--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        params = {p.name: p for p in cli.commands[command].params}
        help_text = " ".join(res.output.split())
        for o in options(cls):
            assert o.flag in res.output, (command, o.flag)
            assert " ".join(o.help.split())[:40] in help_text, (command, o.name)
            param = params[o.name]
            if o.hint is bool:
                # Off by default: a plain switch. On by default: --x / --no-x.
                assert param.is_flag and param.default is o.default
                assert (f"--no-{o.flag[2:]}" in param.secondary_opts) == bool(o.default)
            elif o.choices is not None:
                assert isinstance(param.type, click.Choice)
                assert list(param.type.choices) == [str(c) for c in o.choices]
            else:
                assert param.default == o.default, (command, o.name)


def test_python_dash_m_works():
    res = subprocess.run(
        [sys.executable, "-m", "gptclassify", "--version"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "gptclassify" in res.stdout


def test_generate_greedy_prints_transformers_continuation(tiny_hf_dir):
    import transformers

    prompt = "Every effort moves you"
    hf = transformers.GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    ids = torch.tensor([tokenizer.encode(prompt)])
    ref = hf.generate(
        ids, max_new_tokens=12, do_sample=False, pad_token_id=50256, eos_token_id=50256
    )
    new = [t for t in ref[0, ids.shape[1] :].tolist()]
    if 50256 in new:
        new = new[: new.index(50256)]
    expected = tokenizer.decode(ids[0].tolist() + new)
    args = [
        "generate",
        "--model",
        str(tiny_hf_dir),
        "--prompt",
        prompt,
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
        "--device",
        "cpu",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert first.output == expected + "\n"
    second = CliRunner().invoke(cli, args)
    assert second.output == first.output


def test_generate_sampling_depends_on_seed(tiny_hf_dir):
    base = [
        "generate",
        "--model",
        str(tiny_hf_dir),
        "--prompt",
        "Hello",
        "--max-new-tokens",
        "15",
        "--temperature",
        "1.0",
        "--device",
        "cpu",
    ]
    a = CliRunner().invoke(cli, [*base, "--seed", "1"]).output
    b = CliRunner().invoke(cli, [*base, "--seed", "1"]).output
    c = CliRunner().invoke(cli, [*base, "--seed", "2"]).output
    assert a == b and a != c


def test_missing_model_dir_is_a_one_line_error(tmp_path):
    res = CliRunner().invoke(
        cli, ["generate", "--model", str(tmp_path / "absent"), "--prompt", "hi"]
    )
    assert res.exit_code == 1
    assert res.output.strip().splitlines() == [
        f"Error: model directory not found: {tmp_path / 'absent'} (expected a folder with "
        "config.json and model.safetensors, a GGUF file, a Hub id (owner/name), or a preset: "
        + ", ".join(PRESETS)
        + ")"
    ]


def test_package_train_is_the_function_even_after_module_imports():
    code = (
        "import gptclassify.training, gptclassify.training.run, gptclassify.predict\n"
        "from gptclassify import train, Classifier, TrainConfig\n"
        "assert callable(train) and train.__module__ == 'gptclassify.training.run', train\n"
        "assert Classifier.__name__ == 'Classifier'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
