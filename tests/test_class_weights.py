"""`--class-weights balanced|none|FILE` on a 1:20 imbalanced split.

The data are built so the answer is known: every minority ("fraud") text is one of the
"A" texts; the majority ("ok") texts are A texts one time in five, "B" texts otherwise. So an
A text is fraud with probability 20 / (20 + 80) = 0.2: an unweighted model predicts "ok" for
every text (minority recall 0), while balanced weights (fraud weighs 420 / (2 * 20) = 10.5,
ok 420 / (2 * 400) = 0.525) make an A text fraud with weighted odds 210 : 42, so it is
predicted fraud (minority recall 1). The test set is drawn the same way.
"""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch

from gptclassify.errors import GPTClassifyError

A = ["please verify the transfer today", "send the code to this number"]
B = ["lunch at noon?", "the meeting moved to friday", "thanks for the photos"]


def write(path, n_ok: int, n_fraud: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = [[rng.choice(A), "fraud"] for _ in range(n_fraud)]
    rows += [[rng.choice(A if i % 5 == 0 else B), "ok"] for i in range(n_ok)]
    rng.shuffle(rows)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)


def run(tmp_path, tiny_json, name, weights):
    from gptclassify.args import DataConfig, TrainConfig
    from gptclassify.training import train

    cfg = TrainConfig(
        data=DataConfig(
            train=str(tmp_path / "train.csv"),
            validation=str(tmp_path / "val.csv"),
            test=str(tmp_path / "test.csv"),
        ),
        model=str(tiny_json),
        weights="random",
        trainable="all",
        lr=2e-3,
        epochs=2,
        eval_freq=0,
        precision="fp32",
        class_weights=weights,
        baseline=False,
        out=str(tmp_path / name),
    )
    train(cfg, quiet=True)
    return json.loads((tmp_path / name / "metrics.json").read_text())["test"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imbalance")
    write(folder / "train.csv", 400, 20, 0)  # 1:20
    write(folder / "val.csv", 100, 5, 1)
    write(folder / "test.csv", 200, 10, 2)
    return folder


def test_balanced_weights_raise_minority_recall_on_a_1_to_20_split(data, tiny_json):
    plain = run(data, tiny_json, "plain", "none")
    balanced = run(data, tiny_json, "balanced", "balanced")
    assert plain["per_class"]["fraud"]["recall"] == 0.0
    assert balanced["per_class"]["fraud"]["recall"] == 1.0
    # The imbalance metrics are in every report: macro F1, per-class recall, PR AUC.
    assert balanced["macro_f1"] > plain["macro_f1"]
    assert "pr_auc" in plain and "pr_auc" in balanced
    # A weights file does what its numbers say: fraud 10x also flips the A texts.
    (data / "w.json").write_text(json.dumps({"ok": 1, "fraud": 10}))
    from_file = run(data, tiny_json, "file", str(data / "w.json"))
    assert from_file["per_class"]["fraud"]["recall"] == 1.0


def test_balanced_is_n_over_k_n_c_and_bad_files_are_one_line_errors(tmp_path):
    from gptclassify.training.build import loss_weights

    labels = torch.tensor([0] * 400 + [1] * 20)
    w = loss_weights("balanced", labels, ["ok", "fraud"], multi_label=False)
    assert w.tolist() == pytest.approx([420 / (2 * 400), 420 / (2 * 20)])
    assert torch.equal(loss_weights("auto", labels, ["ok", "fraud"], False), w)
    assert loss_weights("none", labels, ["ok", "fraud"], False) is None
    multi = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert loss_weights("balanced", multi, ["a", "b"], True).tolist() == [1.0, 3.0]
    bad = tmp_path / "w.json"
    for content, message in (
        ({"ok": 1}, "class 'fraud' has no weight"),
        ({"ok": 1, "fraud": 2, "x": 1}, "'x' is not a class"),
        ({"ok": 1, "fraud": -2}, "weight of 'fraud' must be a number > 0"),
    ):
        bad.write_text(json.dumps(content))
        with pytest.raises(GPTClassifyError, match=message):
            loss_weights(str(bad), labels, ["ok", "fraud"], False)
    with pytest.raises(GPTClassifyError, match="class_weights='nope.json': not none, balanced"):
        loss_weights("nope.json", labels, ["ok", "fraud"], False)
