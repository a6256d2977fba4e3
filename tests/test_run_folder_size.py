"""Run folders that store only what training changed (--save trained), naming the frozen base
by path and sha256, against the self-contained folder (--save full); checkpoints removed once
a run is published unless --final-checkpoints keep. A tiny GPT-2-shaped Hugging Face folder
(its 50,257 x 32 embedding table is most of its 6.6 MB) stands in for SmolLM2."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from conftest import write_hf_model, write_three_classes
from gptclassify.args import DataConfig, TrainConfig
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier
from gptclassify.training import train

TEXTS = ["goal team match", "pizza oven dinner", "python server code", "coach stadium"]


def _run(base, data, out, **kw):
    cfg = TrainConfig(
        data=DataConfig(train=str(data)),
        model=str(base),
        trainable="last-block",
        lr=5e-3,
        epochs=1,
        batch_size=8,
        eval_freq=0,
        precision="fp32",
        out=str(out),
        **kw,
    )
    return train(cfg, quiet=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One base, two runs of the same training: trained-only (checkpoints removed, the
    default) and self-contained (checkpoints kept)."""
    root = tmp_path_factory.mktemp("folders")
    base = write_hf_model(root / "base")
    data = root / "topics.csv"
    write_three_classes(data, n_per_class=16)
    trained = _run(base, data, root / "trained", save="trained")
    full = _run(base, data, root / "full", save="full", final_checkpoints="keep")
    return {"root": root, "base": base, "trained": trained, "full": full}


def _size(folder):
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_a_trained_only_folder_is_small_and_gives_the_full_folders_logits(runs):
    trained, full, base = runs["trained"].path, runs["full"].path, runs["base"]
    config = json.loads((trained / "config.json").read_text())
    assert config["weights_stored"] == "trained"
    assert config["base"] == str(base.resolve())
    assert config["format_version"] == 7  # an older reader refuses it instead of failing later
    assert "weights_stored" not in json.loads((full / "config.json").read_text())

    stored = load_file(trained / "model.safetensors")
    whole = load_file(full / "model.safetensors")
    assert "gpt.wte.weight" not in stored and "gpt.h.0.attn.c_attn.weight" not in stored
    assert "gpt.h.1.attn.c_attn.weight" in stored and "head.weight" in stored
    for name, tensor in stored.items():  # the same training: the same trained tensors
        assert (tensor == whole[name]).all(), name
    small, large = (
        (trained / "model.safetensors").stat().st_size,
        (full / "model.safetensors").stat().st_size,
    )
    assert small * 20 < large, (small, large)
    assert _size(trained) * 10 < _size(full)  # the checkpoints went too

    a = Classifier.load(trained, precision="fp32")
    b = Classifier.load(full, precision="fp32")
    assert np.array_equal(a.logits(TEXTS), b.logits(TEXTS))
    assert np.array_equal(a.logits(TEXTS), runs["trained"].logits(TEXTS))
    # Saved again, it stays trained-only, and loads to the same logits.
    again = a.save(runs["root"] / "again")
    assert set(load_file(again / "model.safetensors")) == set(stored)
    assert np.array_equal(Classifier.load(again, precision="fp32").logits(TEXTS), a.logits(TEXTS))


def test_predict_and_export_work_from_a_trained_only_folder(runs, tmp_path):
    trained, full = runs["trained"].path, runs["full"].path
    res = CliRunner().invoke(cli, ["predict", str(trained), *TEXTS, "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    ref = CliRunner().invoke(cli, ["predict", str(full), *TEXTS, "--precision", "fp32"])
    assert res.output == ref.output

    from gptclassify.export import export

    export(trained, "hf", tmp_path / "hf-trained")
    export(full, "hf", tmp_path / "hf-full")
    a = load_file(tmp_path / "hf-trained" / "model.safetensors")
    b = load_file(tmp_path / "hf-full" / "model.safetensors")
    assert set(a) == set(b) and all((a[k] == b[k]).all() for k in a)  # materialised whole


def test_a_changed_or_missing_base_is_refused_in_one_line(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["trained"].path, run)
    base = tmp_path / "base"
    shutil.copytree(runs["base"], base)
    record = json.loads((run / "config.json").read_text())
    record["base"] = str(base)
    (run / "config.json").write_text(json.dumps(record))
    reference = Classifier.load(run, precision="fp32").logits(TEXTS)

    moved = tmp_path / "moved"
    base.rename(moved)
    with pytest.raises(GPTClassifyError) as err:
        Classifier.load(run)
    message = str(err.value)
    assert message.startswith(f"{base}: the base model of {run} is missing")
    assert "base_model=PATH" in message and "save='full'" in message and "\n" not in message
    res = CliRunner().invoke(cli, ["predict", str(run), "some text"])
    assert res.exit_code == 1 and "--base-model PATH" in res.output
    assert "--save full" in res.output and "Traceback" not in res.output
    named = Classifier.load(run, precision="fp32", base_model=moved)
    assert np.array_equal(named.logits(TEXTS), reference)

    tensors = load_file(moved / "model.safetensors")
    name = next(n for n in tensors if n.endswith("wte.weight"))
    tensors[name] = tensors[name] * 1.01
    save_file(tensors, moved / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(GPTClassifyError) as err:
        Classifier.load(run, base_model=moved)
    message = str(err.value)
    assert message.startswith(f"{moved / 'model.safetensors'}: not the base model {run}")
    assert "sha256 differs" in message and "\n" not in message


def test_checkpoints_go_when_the_run_is_published_unless_kept(runs):
    trained, full = runs["trained"].path, runs["full"].path
    assert [p.name for p in (trained / "checkpoints").iterdir()] == ["run.json"]
    assert any(p.name.startswith("step-") for p in (full / "checkpoints").iterdir())
    with pytest.raises(GPTClassifyError, match="checkpoints were removed when it was published"):
        train(resume=trained, overrides={"epochs": 2}, quiet=True)
    assert [p.name for p in (trained / "checkpoints").iterdir()] == ["run.json"]


def test_which_folder_auto_writes():
    from gptclassify.model_io import stored_as

    assert stored_as("auto", "smollm2-135m-instruct-q4", "pretrained", None) == "trained"
    assert stored_as("auto", "gpt2", "pretrained", None) == "trained"
    assert stored_as("auto", "/models/base", "pretrained", None) == "full"
    assert stored_as("auto", "gpt2", "random", None) == "full"
    assert stored_as("trained", "/models/base", "pretrained", None) == "trained"
    assert stored_as("full", "smollm2-135m-instruct-q4", "pretrained", None) == "full"
    with pytest.raises(GPTClassifyError, match="save='trained': random weights have no base"):
        TrainConfig(weights="random", save="trained")
