"""LoRA runs: adapters saved alone on a checked pretrained base, or merged; same logits."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import write_three_classes
from gptclassify.args import DataConfig, TrainConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.lora import has_lora
from gptclassify.predict import Classifier
from gptclassify.training import train

TEXTS = ["goal team match", "pizza oven dinner", "python server code", "coach stadium"]


def lora_run(base, data, out, **kw):
    cfg = TrainConfig(
        data=DataConfig(train=str(data)),
        model=str(base),
        trainable="lora",
        lora_rank=4,
        lora_alpha=8,
        lr=5e-3,
        epochs=2,
        eval_freq=0,
        out=str(out),
        precision="fp32",
        **kw,
    )
    return train(cfg, quiet=True)


@pytest.fixture(scope="module")
def topics(tmp_path_factory):
    path = tmp_path_factory.mktemp("lora") / "topics.csv"
    write_three_classes(path, n_per_class=40)
    return path


def test_adapters_only_folder_and_merge_give_the_same_logits(tiny_hf_dir, topics, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_hf_dir, base)
    plain = lora_run(base, topics, tmp_path / "adapters")
    merged = lora_run(base, topics, tmp_path / "merged", merge_lora=True)

    config = json.loads((tmp_path / "adapters" / "config.json").read_text())
    assert config["lora"]["adapters_only"] and not config["lora"]["merged"]
    assert config["lora"]["base"] == str(base.resolve())
    names = set(load_file(tmp_path / "adapters" / "model.safetensors"))
    assert names and all("lora_" in n or n.startswith("head.") for n in names)
    adapters = load_file(tmp_path / "adapters" / "model.safetensors")
    assert max(t.abs().max().item() for n, t in adapters.items() if "lora_B" in n) > 0  # trained
    merged_names = set(load_file(tmp_path / "merged" / "model.safetensors"))
    assert "gpt.h.0.attn.c_attn.weight" in merged_names
    assert not any("lora_" in n for n in merged_names)

    # The base lies outside the model folder: it is not followed unless named again.
    with pytest.raises(GPTClassifyError, match="LoRA base .* is outside the model folder"):
        Classifier.load(tmp_path / "adapters")
    a = Classifier.load(tmp_path / "adapters", precision="fp32", base_model=base)
    b = Classifier.load(tmp_path / "merged", precision="fp32")
    assert np.allclose(a.logits(TEXTS), b.logits(TEXTS), atol=1e-4)
    assert np.allclose(a.logits(TEXTS), plain.logits(TEXTS), atol=1e-5)
    assert np.allclose(b.logits(TEXTS), merged.logits(TEXTS), atol=1e-5)
    before = a.logits(TEXTS)
    a.model.merge_lora()
    assert np.allclose(a.logits(TEXTS), before, atol=1e-4)
    # ...and the merge took effect: the passes run the merged model, and a later change to
    # `a.model` changes the predictions (a runner kept from load time would not see either)
    assert has_lora(a.runtime.runner.gpt) is False
    with torch.no_grad():
        a.model.head.weight.zero_()
        a.model.head.bias.copy_(torch.arange(a.model.num_classes) - 1.5)
    assert np.allclose(a.logits(TEXTS), a.model.head.bias.detach().numpy(), atol=1e-6)


def test_adapters_refuse_a_different_base(tiny_hf_dir, topics, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_hf_dir, base)
    lora_run(base, topics, tmp_path / "run")
    tensors = load_file(base / "model.safetensors")
    name = next(n for n in tensors if n.endswith("ln_f.bias"))
    tensors[name] = tensors[name] + 1
    save_file(tensors, base / "model.safetensors")
    with pytest.raises(
        GPTClassifyError, match="is not the one these LoRA adapters were trained on"
    ):
        Classifier.load(tmp_path / "run", base_model=base)


def test_lora_on_a_random_base_saves_the_whole_model(tiny_json, topics, tmp_path):
    clf = lora_run(tiny_json, topics, tmp_path / "run", weights="random")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["lora"]["adapters_only"] is False
    names = set(load_file(tmp_path / "run" / "model.safetensors"))
    assert "gpt.h.0.attn.c_attn.base.weight" in names and "gpt.h.0.attn.c_attn.lora_A" in names
    again = Classifier.load(tmp_path / "run", precision="fp32")
    assert np.allclose(again.logits(TEXTS), clf.logits(TEXTS), atol=1e-5)


def test_lora_targets_choose_the_adapted_layers():
    import torch

    from gptclassify.args import lora_target_list
    from gptclassify.classifier import GPTClassifier
    from gptclassify.config import GPTConfig
    from gptclassify.lora import LoRALinear
    from gptclassify.model import GPTModel

    assert lora_target_list("all") == ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    targets = lora_target_list("mlp.c_fc, attn.c_attn")
    model = GPTClassifier(
        GPTModel(GPTConfig(context_length=16, emb_dim=16, n_heads=2, n_layers=2)), 2
    )
    assert model.add_lora(4, 4, targets) == 2 * 2
    block = model.gpt.h[1]
    assert isinstance(block.attn.c_attn, LoRALinear) and isinstance(block.mlp.c_fc, LoRALinear)
    assert isinstance(block.attn.c_proj, torch.nn.Linear) and not isinstance(
        block.mlp.c_proj, LoRALinear
    )
    with pytest.raises(GPTClassifyError, match="--lora-targets: mlp.fc not one of all"):
        lora_target_list("mlp.fc")
    with pytest.raises(GPTClassifyError, match="--lora-targets"):
        TrainConfig(trainable="lora", lora_targets="attn.q")
