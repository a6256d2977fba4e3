"""The model-folder contract: config.json fields are validated, one clear line per problem."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from conftest import FIXTURES
from gptclassify.artifact import read_metrics
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier


def folder_with(tmp_path, **changes):
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "v1" / "classifier", folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            config[outer][inner] = value
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"temperature": 0}, "field 'temperature' must be a finite number > 0, got 0"),
        ({"temperature": -1.5}, "field 'temperature' must be a finite number > 0"),
        ({"temperature": "hot"}, "field 'temperature' must be a number"),
        ({"labels": ["ham", "ham"]}, "field 'labels' must not repeat a class"),
        ({"labels": ["ham", 1]}, "field 'labels' must be a list of non-empty strings"),
        ({"labels": ["spam"]}, "field 'labels' must name at least 2 classes"),
        ({"max_length": 0}, "field 'max_length' must be >= 1 and <= 32"),
        ({"max_length": 33}, "field 'max_length' must be >= 1 and <= 32"),
        ({"max_length": 12.5}, "field 'max_length' must be an integer"),
        ({"pad_length": 5, "max_length": 8}, "field 'pad_length' must be >= 8"),
        ({"pool": "middle"}, "field 'pool' must be one of last-real, last, first, mean"),
        ({"causal": "yes"}, "field 'causal' must be true or false"),
        ({"truncate": "both"}, "field 'truncate' must be one of end, start"),
        ({"weights_file": "../model.safetensors"}, "field 'weights_file' must be a plain file"),
        ({"weights_file": "/etc/passwd"}, "field 'weights_file' must be a plain file"),
        ({"weights_sha256": "abc"}, "field 'weights_sha256' must be a sha256 in hex"),
        ({"model.vocab_size": 50000}, "vocab_size 50000 is smaller than the GPT-2 tokenizer"),
        ({"model.n_heads": 3}, "must be divisible by n_heads"),
        ({"format_version": 99}, "format version 99 is newer than this gptclassify"),
        ({"format": "something-else"}, "format 'something-else' is not 'gptclassify-classifier'"),
        ({"tokenizer": {"library": "hf", "encoding": "gpt2", "pad_id": 0}}, "tokenizer"),
        (
            {"lora": {"rank": 0, "alpha": 8, "targets": ["attn.c_attn"]}},
            "field 'rank' must be >= 1",
        ),
    ],
)
def test_every_config_field_is_checked(tmp_path, changes, message):
    folder = folder_with(tmp_path, **changes)
    with pytest.raises(GPTClassifyError) as info:
        Classifier.load(folder)
    text = str(info.value)
    assert message in text
    assert str(folder / "config.json") in text and "\n" not in text


def test_a_nan_temperature_never_gives_nan_probabilities(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "v1" / "classifier", folder)
    text = (folder / "config.json").read_text().replace('"temperature": 1.0', '"temperature": NaN')
    (folder / "config.json").write_text(text)
    with pytest.raises(GPTClassifyError, match="temperature"):
        Classifier.load(folder)


def test_valid_variations_still_load(tmp_path):
    folder = folder_with(tmp_path, temperature=0.5, labels=["no", "yes"], max_length=16)
    clf = Classifier.load(folder, precision="fp32")
    assert clf.temperature == 0.5 and clf.labels == ["no", "yes"] and clf.policy.max_length == 16
    probs = clf.predict_proba(["hello there"])
    assert math.isclose(float(probs.sum()), 1.0, rel_tol=1e-6)


def test_metrics_are_informative_only(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / "v1" / "classifier", folder)
    assert read_metrics(folder).accuracy("test") > 0.5
    (folder / "metrics.json").write_text("{ not json")
    assert read_metrics(folder) is None
    assert Classifier.load(folder).metrics is None  # the model loads without them


def test_paths_in_a_model_folder_stay_inside_it(tmp_path, tiny_hf_dir):
    """weights_file (above), LoRA bases and Hugging Face shard names never lead outside."""
    from gptclassify.weights import load_hf_directory

    folder = tmp_path / "hf"
    shutil.copytree(tiny_hf_dir, folder)
    (folder / "model.safetensors").rename(tmp_path / "outside.safetensors")
    index = {"metadata": {}, "weight_map": {"wte.weight": "../outside.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(GPTClassifyError, match="shard '../outside.safetensors' is not a file name"):
        load_hf_directory(folder)

    lora = {
        "rank": 4,
        "alpha": 8,
        "targets": ["attn.c_attn"],
        "adapters_only": True,
        "base": "/etc",
        "base_sha256": "0" * 64,
    }
    adapters = folder_with(tmp_path, lora=lora)
    with pytest.raises(GPTClassifyError, match="LoRA base '/etc' is outside the model folder"):
        Classifier.load(adapters)
    lora["base"] = "../../elsewhere"
    with pytest.raises(GPTClassifyError, match="is outside the model folder"):
        Classifier.load(folder_with(tmp_path / "b", lora=lora))
