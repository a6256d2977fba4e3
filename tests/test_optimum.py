"""An ONNX export as Optimum's users load it: `ORTModelForSequenceClassification
.from_pretrained(folder)` and transformers' `pipeline("text-classification")` with the
folder's own tokenizer, nothing else given and nothing downloaded, equal to gptclassify.

optimum-onnx requires transformers < 4.58 (and the tokenizers and huggingface_hub of that
line), which conflict with the suite's transformers 5; they are installed with pip into a
folder of their own (cached between runs; GPTCLASSIFY_OPTIMUM_ENV names another one) that a
child process puts before this environment's site-packages, which gives it everything else
(torch, onnxruntime, numpy). Skipped, saying why, when pip cannot build it (offline).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from platformdirs import user_cache_dir

from conftest import write_three_classes
from families import write_hf_family
from gptclassify.export import export
from gptclassify.predict import Classifier

pytest.importorskip("onnxruntime")

OPTIMUM = (
    "optimum-onnx==0.1.0",
    "optimum~=2.1.0",
    "transformers>=4.36,<4.58",
    "tokenizers>=0.22,<=0.23.0",
    "huggingface_hub>=0.34,<1.0",
)
TEXTS = ["the goal in the final match", "a spicy pizza from the oven", "python code", "ok"]

LOAD = """
import json, sys
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoConfig, AutoTokenizer, pipeline

folder, texts = sys.argv[1], json.loads(sys.argv[2])
model = ORTModelForSequenceClassification.from_pretrained(folder)
tokenizer = AutoTokenizer.from_pretrained(folder)
classify = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None)
config = AutoConfig.from_pretrained(folder)
print(json.dumps({
    "probs": classify(texts),
    "raw": classify(texts, function_to_apply="none"),
    "ids": [tokenizer(t)["input_ids"] for t in texts],
    "config": {"model_type": config.model_type, "id2label": config.id2label,
               "pad_token_id": config.pad_token_id},
}))
"""


@pytest.fixture(scope="session")
def optimum_env() -> Path:
    folder = Path(
        os.environ.get("GPTCLASSIFY_OPTIMUM_ENV")
        or Path(user_cache_dir("gptclassify-tests")) / "optimum-onnx-0.1"
    )
    done = folder / "installed.json"
    if not (done.is_file() and json.loads(done.read_text()) == list(OPTIMUM)):
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade"]
        result = subprocess.run(
            [*pip, "--target", str(folder), *OPTIMUM], capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
            pytest.skip(f"cannot install optimum-onnx's environment ({last})")
        done.write_text(json.dumps(list(OPTIMUM)))
    return folder


def optimum(folder: Path, env_dir: Path, texts: list[str]) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": str(env_dir),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(folder), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_equal(folder: Path, env_dir: Path) -> None:
    ours = Classifier.load(folder)
    got = optimum(folder, env_dir, TEXTS)
    assert got["config"]["id2label"] == {str(i): n for i, n in enumerate(ours.labels)}
    assert got["config"]["pad_token_id"] == ours.policy.tokenizer.pad_id
    # the same token ids as gptclassify reads (the folder's tokenizer, nothing downloaded)
    assert got["ids"] == [ours.policy.apply(ours.policy.tokenizer.encode(t)) for t in TEXTS]
    logits = ours.logits(TEXTS)
    for i, row in enumerate(got["raw"]):
        theirs = {p["label"]: p["score"] for p in row}
        assert np.allclose([theirs[n] for n in ours.labels], logits[i], atol=1e-4, rtol=0)
    probs = ours.predict_proba(TEXTS) if ours.temperature == 1.0 else None
    for i, row in enumerate(got["probs"]):
        scores = [p["score"] for p in row]
        assert scores == sorted(scores, reverse=True)  # likeliest first, every label
        theirs = {p["label"]: p["score"] for p in row}
        want = probs[i] if probs is not None else np.exp(logits[i]) / np.exp(logits[i]).sum()
        assert np.allclose([theirs[n] for n in ours.labels], want, atol=1e-5, rtol=0)
        if probs is not None:
            assert row[0]["label"] == str(ours.predict([TEXTS[i]])[0])


def test_optimum_loads_gpt2_onnx_folders_fp32_and_int8(tiny_run, tmp_path, optimum_env):
    for quantize in (None, "int8"):
        out = tmp_path / f"onnx-{quantize}"
        export(tiny_run.path, "onnx", out, quantize=quantize)
        config = json.loads((out / "config.json").read_text())
        assert config["model_type"] == "gpt2" and config["format"] == "gptclassify-classifier"
        # GPT-2's tokenizer travels as tokenizer.json (built from the table we ship)
        assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}
        check_equal(out, optimum_env)


def test_optimum_loads_a_tokenizer_json_family_onnx_folder(tmp_path, optimum_env):
    from click.testing import CliRunner

    from gptclassify.cli import cli

    base = write_hf_family(tmp_path / "base", "llama", bos=True)
    write_three_classes(tmp_path / "topics.csv", n_per_class=15)
    run = tmp_path / "run"
    args = ["train", "--train", tmp_path / "topics.csv", "--model", base, "--epochs", "1"]
    # the surface head (--lexical) runs beside the graph in gptclassify, not in Optimum
    args += ["--trainable", "last-2-blocks", "--lexical", "off", "--lr", "3e-3"]
    args += ["--precision", "fp32"]
    args += ["--out", run, "--quiet"]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    export(run, "onnx", tmp_path / "onnx")
    config = json.loads((tmp_path / "onnx" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["label2id"]
    check_equal(tmp_path / "onnx", optimum_env)
