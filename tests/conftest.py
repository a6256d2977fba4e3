"""Shared fixtures: tiny model configs, the SMS file shipped in the package, HF stand-ins.

The suite is hermetic: it needs nothing beside the repository (the GPT-2 tokenizer files and
the SMS Spam Collection ship inside the package) and never reaches the network.
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path

import pytest
import torch

from gptclassify.config import GPTConfig
from gptclassify.data.sms_spam import shipped_copy

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"

# Tests must never reach the real Hub; anything that tries fails fast.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# The suite runs in two pytest-xdist workers (pyproject's addopts): each computes on one
# thread (and so do the commands it starts, through OMP_NUM_THREADS), so two workers on a
# 2-core machine share it without oversubscription (spinning OpenMP threads that wait on a
# descheduled one made tiny-model steps 5x slower).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

TINY = GPTConfig(vocab_size=50257, context_length=64, emb_dim=32, n_heads=4, n_layers=2)


@pytest.fixture
def tiny_config() -> GPTConfig:
    return TINY


@pytest.fixture(scope="session")
def sms_file() -> Path:
    """The real SMS Spam Collection (the copy shipped in the package)."""
    return shipped_copy()


def hf_gpt2_config(n_embd: int = 32, n_layer: int = 2, n_head: int = 4, n_positions: int = 64):
    import transformers

    return transformers.GPT2Config(
        n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=n_positions, vocab_size=50257
    )


def write_hf_model(directory: Path, seed: int = 0, lm_head: bool = True, **config) -> Path:
    """Random GPT-2 weights saved exactly as transformers saves them (safetensors)."""
    import transformers

    torch.manual_seed(seed)
    cfg = hf_gpt2_config(**config)
    cls = transformers.GPT2LMHeadModel if lm_head else transformers.GPT2Model
    model = cls(cfg)
    # Larger weights than GPT-2's init so logits differ clearly between tokens and generation
    # does not collapse to one repeated token: parity then checks something.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" not in name:
                p.normal_(0.0, 0.15)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    return write_hf_model(tmp_path_factory.mktemp("tiny_hf"))


TINY_JSON = {"emb_dim": 64, "n_heads": 4, "n_layers": 2, "context_length": 128}


@pytest.fixture(scope="session")
def tiny_json(tmp_path_factory) -> Path:
    import json

    path = tmp_path_factory.mktemp("cfg") / "tiny.json"
    path.write_text(json.dumps(TINY_JSON))
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, sms_file, tiny_json):
    """A tiny random-init GPT trained on the real SMS split once per test session."""
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = TrainConfig(
        data=DataConfig(sms_source=str(sms_file)),
        model=str(tiny_json),
        weights="random",
        trainable="all",
        lr=1e-3,
        epochs=2,
        eval_freq=40,
        out=str(out),
    )
    return train(cfg, quiet=True)


WORDS = {
    "sport": ["goal", "match", "team", "score", "league", "coach", "stadium", "player"],
    "food": ["pizza", "pasta", "salad", "recipe", "oven", "spicy", "dinner", "bakery"],
    "tech": ["laptop", "software", "server", "python", "keyboard", "cloud", "chip", "code"],
}


def write_three_classes(path, n_per_class=60, seed=0):
    rng = random.Random(seed)
    rows = []
    for label, words in WORDS.items():
        for _ in range(n_per_class):
            rows.append(
                {
                    "Sentence": " ".join(rng.choice(words) for _ in range(rng.randint(3, 9))),
                    "Category": label,
                }
            )
    rng.shuffle(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["Sentence", "Category"])
        writer.writeheader()
        writer.writerows(rows)


SMALL_ROWS = [
    ("see you at lunch later", "0"),
    ("call mom back tonight", "0"),
    ("are we still on for dinner", "0"),
    ("the meeting moved to three", "0"),
    ("ok thanks see you soon", "0"),
    ("running late, sorry", "0"),
    ("WIN a free prize now, text WIN", "1"),
    ("claim your cash reward today", "1"),
    ("urgent: your account won 1000 pounds", "1"),
    ("free entry, reply YES to win", "1"),
    ("you have been selected for a prize", "1"),
    ("call 0906 now to claim", "1"),
]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A run folder from the CLI in a second or two: a 1-block, 16-wide random model trained
    for one epoch on 12 rows, with its test split in data/ (for commands that must reach a
    model, not learn anything: the bad-input corpus)."""
    import json

    from click.testing import CliRunner

    from gptclassify.cli import cli

    folder = tmp_path_factory.mktemp("small_run")
    model = folder / "tiny.json"
    model.write_text(json.dumps({"emb_dim": 16, "n_heads": 2, "n_layers": 1, "context_length": 32}))
    for name in ("train", "test"):
        with open(folder / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(SMALL_ROWS)
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--train", str(folder / "train.csv"),
            "--validation", str(folder / "train.csv"),
            "--test", str(folder / "test.csv"),
            "--model", str(model),
            "--weights", "random",
            "--epochs", "1",
            "--batch-size", "4",
            "--no-baseline",
            "--quiet",
            "--out", str(folder / "run"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder / "run"
