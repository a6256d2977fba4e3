"""Every family through the whole package: train from a Hugging Face folder, the model folder,
predict, explain, serve, LoRA adapters on a folder base, export to Hugging Face (transformers'
pipeline gives our probabilities) and to ONNX (ONNX Runtime gives our logits)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import write_three_classes
from families import write_hf_family
from gptclassify.cli import cli
from gptclassify.predict import Classifier

TEXTS = ["goal match team", "pizza pasta oven spicy", "python server cloud code laptop", "ok"]


def invoke(args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("topics")
    write_three_classes(root / "topics.csv", n_per_class=40)
    invoke(["data", "split", root / "topics.csv", "--out", root / "prepared", "--stratify"])
    return root / "prepared"


BOS = ("llama", "gemma3")
MODEL_TYPE = {"gemma3": "gemma3_text"}
CLASSES = {
    "llama": "LlamaForSequenceClassification",
    "qwen3": "Qwen3ForSequenceClassification",
    "gemma3": "Gemma3TextForSequenceClassification",
}


@pytest.fixture(scope="module", params=["llama", "qwen3", "gemma3"])
def trained(request, prepared, tmp_path_factory):
    """A family's folder (Llama and Gemma 3 with a BOS token, Qwen3 without) and a run
    trained on it (Gemma 3's sliding window, 5, is shorter than most texts)."""
    root = tmp_path_factory.mktemp(request.param)
    base = write_hf_family(root / "base", request.param, bos=request.param in BOS)
    run = root / "run"
    invoke(
        [
            "train",
            "--recipe",
            "book",  # exactly these options (the fitted recipe is the default on a folder)
            "--data",
            prepared,
            "--model",
            base,
            "--trainable",
            "last-2-blocks",
            "--lr",
            "3e-3",
            "--epochs",
            "2",
            "--precision",
            "fp32",
            "--out",
            run,
            "--quiet",
        ]
    )
    return request.param, base, run


def test_the_run_folder_records_the_family_and_its_tokenizer(trained):
    family, base, run = trained
    config = json.loads((run / "config.json").read_text())
    assert config["format_version"] == 3
    assert config["model"]["family"] == MODEL_TYPE.get(family, family)
    tok = config["tokenizer"]
    assert tok["library"] == "tokenizers" and (run / "tokenizer.json").is_file()
    assert tok["prefix"] == ([1] if family in BOS else [])
    # The folder is self-contained: the base can go away.
    clf = Classifier.load(run, precision="fp32")
    assert list(clf.predict(TEXTS)) == list(Classifier.load(run, precision="fp32").predict(TEXTS))
    explanation = clf.explain(TEXTS[1])
    assert "".join(t.text for t in explanation.tokens).endswith(TEXTS[1])


def test_hugging_face_export_gives_our_probabilities_in_a_pipeline(trained, tmp_path):
    import transformers

    family, _, run = trained
    invoke(["export", run, "--format", "hf", "--out", tmp_path / "hf"])
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == [CLASSES[family]]
    pipe = transformers.pipeline("text-classification", model=str(tmp_path / "hf"), device="cpu")
    theirs = pipe(TEXTS, top_k=None)
    ours = Classifier.load(run, precision="fp32").predict_proba(TEXTS)
    labels = Classifier.load(run, precision="fp32").labels
    for row, probs in zip(theirs, ours, strict=True):
        got = {d["label"]: d["score"] for d in row}
        assert [got[name] for name in labels] == pytest.approx(list(probs), abs=1e-5)


def test_onnx_export_runs_without_torch_and_equals_ours(trained, tmp_path):
    _, _, run = trained
    invoke(["export", run, "--format", "onnx", "--out", tmp_path / "onnx"])
    assert (tmp_path / "onnx" / "tokenizer.json").is_file()
    onnx = Classifier.load(tmp_path / "onnx")
    assert onnx.runtime.name == "onnx"
    ours = Classifier.load(run, precision="fp32")
    np.testing.assert_allclose(onnx.logits(TEXTS), ours.logits(TEXTS), atol=1e-4)


def test_served_answers_are_the_classifiers(trained):
    from fastapi.testclient import TestClient

    from gptclassify.serve import create_app

    _, _, run = trained
    clf = Classifier.load(run, precision="fp32")
    with TestClient(create_app(clf)) as client:
        answer = client.post("/predict", json={"inputs": [[t] for t in TEXTS]}).json()
    expected = clf.predict_proba(TEXTS)
    for row, probs in zip(answer, expected, strict=True):
        got = {d["label"]: d["score"] for d in row}
        assert [got[name] for name in clf.labels] == pytest.approx(list(probs), abs=1e-5)


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])
def test_lora_adapters_on_a_folder_base(prepared, tmp_path, family):
    base = write_hf_family(tmp_path / "base", family)
    run = tmp_path / "lora"
    invoke(
        [
            "train",
            "--recipe",
            "book",  # exactly these options (the fitted recipe is the default on a folder)
            "--data",
            prepared,
            "--model",
            base,
            "--trainable",
            "lora",
            "--lora-targets",
            "q_proj,v_proj,down_proj",
            "--lora-rank",
            "4",
            "--epochs",
            "1",
            "--precision",
            "fp32",
            "--out",
            run,
            "--quiet",
        ]
    )
    config = json.loads((run / "config.json").read_text())
    lora = config["lora"]
    assert lora["adapters_only"] and lora["targets"] == ["attn.c_attn", "mlp.c_proj"]
    with pytest.raises(Exception, match="outside the model folder"):
        Classifier.load(run)
    clf = Classifier.load(run, base_model=base, precision="fp32")
    merged = Classifier.load(run, base_model=base, precision="fp32")
    merged.model.merge_lora()
    np.testing.assert_allclose(clf.logits(TEXTS), merged.logits(TEXTS), atol=1e-5)


def test_long_texts_in_windows_are_each_read_under_the_sliding_window(trained):
    """--long-texts chunk: each window is one ordinary pass (Gemma 3's window of 5 inside
    it); the text's probabilities are the mean of the windows' own, one window at a time."""
    import torch

    family, _, run = trained
    if family != "gemma3":
        pytest.skip("the sliding window is Gemma 3's")
    clf = Classifier.load(run, precision="fp32", long_texts="chunk")
    text = " ".join(TEXTS * 12)
    win = clf.windows(clf.policy.tokenizer.encode_batch([text]))
    assert win.counts[0] > 2
    model = clf.model.eval()
    probs = []
    for ids, n in zip(win.encoded.ids, win.encoded.lengths, strict=True):
        assert n > 5  # longer than the window
        with torch.no_grad():
            logits = model(torch.tensor([list(ids[:n])]))
        probs.append(clf.probabilities(logits.double().numpy())[0])  # at its temperature
    np.testing.assert_allclose(clf.predict_proba([text])[0], np.mean(probs, axis=0), atol=1e-5)
