"""Training end to end on real data, the model folder, and the Classifier API."""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest
import torch

from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier, decide, top_k

SPAM = "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 to claim"
HAM = "Ok lar... I'll see you at home later, going to the shops now"


def test_tiny_model_learns_the_real_split(tiny_run):
    m = tiny_run.metrics
    # Balanced split: the majority class is ~50%. A broken loop (loss not falling, labels
    # shuffled) stays near that; a working one is far above.
    assert m["test"]["examples"] == 300
    assert m["test"]["accuracy"] > 0.85
    assert m["train"]["accuracy"] > 0.9
    assert m["best_epoch"] in (1, 2)
    assert m["examples_seen"] == 2 * (1045 // 8) * 8


def test_run_folder_contents(tiny_run):
    run = tiny_run.path
    for name in (
        "model.safetensors",
        "config.json",
        "metrics.json",
        "history.csv",
        "loss.png",
        "accuracy.png",
        "train.log",
    ):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["labels"] == ["ham", "spam"]
    assert config["pool"] == "last-real" and config["pad_length"] is None
    assert config["model"]["emb_dim"] == 64
    assert {"torch", "tiktoken", "gptclassify"} <= set(config["versions"])
    assert config["train_config"]["backbone"]["trainable"] == "all"
    # The recorded config is the run's whole TrainConfig: it rebuilds to the same options.
    from gptclassify.args import TrainConfig

    recorded = TrainConfig.from_dict(config["train_config"])
    assert recorded.trainable == "all" and recorded.epochs == 2 and recorded.lr == 1e-3
    assert recorded.out == str(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]["per_class"]) == {"ham", "spam"}
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 300
    assert metrics["trainable_params"] == metrics["total_params"] > 0
    history = (run / "history.csv").read_text().splitlines()
    assert history[0] == (
        "step,epoch,examples_seen,train_loss,val_loss,train_accuracy,val_accuracy,"
        "full_val_accuracy,full_val_loss"
    )
    assert len(history) > 4
    # The kept epoch is the one whose full-validation figures history.csv shows as best.
    epochs = [r for r in csv.DictReader(history) if r["full_val_accuracy"]]
    assert len(epochs) == metrics["epochs_run"]
    best = max(epochs, key=lambda r: (float(r["full_val_accuracy"]), -float(r["full_val_loss"])))
    assert int(best["epoch"]) == metrics["best_epoch"]
    log = (run / "train.log").read_text()
    assert "Train accuracy" in log and f"kept epoch {metrics['best_epoch']}" in log


def test_predict_api_and_probabilities(tiny_run):
    clf = tiny_run
    assert clf.predict([SPAM, HAM]).tolist() == ["spam", "ham"]
    probs = clf.predict_proba([SPAM, HAM])
    assert probs.shape == (2, 2)
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_prediction_does_not_depend_on_batch_neighbours(tiny_run):
    clf = Classifier.load(tiny_run.path, precision="fp32")
    long_text = " ".join([HAM] * 8)
    alone = clf.predict_proba([SPAM])
    mixed = clf.predict_proba([long_text, SPAM, HAM, long_text], batch_size=4)
    assert np.allclose(alone[0], mixed[1], atol=1e-5)


def test_bucketing_returns_predictions_in_input_order(tiny_run):
    clf = Classifier.load(tiny_run.path, precision="fp32")
    texts = [SPAM[: 10 + 7 * i] if i % 2 else HAM[: 5 + 3 * i] for i in range(20)]
    batched = clf.predict_proba(texts, batch_size=3)
    one_by_one = np.concatenate([clf.predict_proba([t]) for t in texts])
    assert np.allclose(batched, one_by_one, atol=1e-5)


def test_bf16_and_fp32_agree_on_clear_cases(tiny_run):
    from gptclassify.data import read_labelled

    texts = read_labelled(tiny_run.path / "data" / "test.csv").texts
    p32 = Classifier.load(tiny_run.path, precision="fp32").predict_proba(texts)
    p16 = Classifier.load(tiny_run.path, precision="bf16").predict_proba(texts)
    clear = np.abs(p32[:, 1] - 0.5) > 0.1
    assert clear.sum() > 200
    assert (p32[clear].argmax(1) == p16[clear].argmax(1)).all()
    assert np.abs(p32 - p16).max() < 0.1


@pytest.mark.parametrize("pool", ["last-real", "mean"])
def test_bf16_weights_are_cast_once_beside_the_model_and_give_autocast_numbers(tiny_run, pool):
    from gptclassify.data import read_labelled
    from gptclassify.data.batches import TokenSource
    from gptclassify.data.encode import encode
    from gptclassify.fastpath import fast_view
    from gptclassify.runtime import autocast

    loaded = Classifier.load(tiny_run.path, precision="fp32")
    model = loaded.model
    model.pool = pool
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    clf = Classifier(model, loaded.labels, loaded.policy, precision="bf16")
    texts = read_labelled(tiny_run.path / "data" / "test.csv").texts[:40]
    got = clf.logits(texts, batch_size=8)
    # The copies the passes run on are bf16, made once; the final block of a single-position
    # pool keeps fp32 (it runs at the pooled position in fp32).
    runner = clf.runtime.runner
    assert runner.gpt.h[0].attn.c_attn.weight.dtype == torch.bfloat16
    last = runner.gpt.h[-1].attn.c_attn.weight.dtype
    assert last == (torch.float32 if pool == "last-real" else torch.bfloat16)
    # Per-batch autocast with the fp32 weights (the same fused kernels, no copies), in the
    # same batches: what the copies must equal.
    per_call = fast_view(clf.model, torch.float32, skip_padding=True).eval()
    source = TokenSource(encode(texts, clf.policy), clf.device)
    order = torch.argsort(source.lengths, descending=True, stable=True)
    want = np.zeros_like(got)
    with torch.inference_mode():
        for idx in order.split(8):
            batch = source.batch(idx)
            with autocast(clf.device, torch.bfloat16):
                want[idx.numpy()] = per_call(*batch.args).float().numpy()
    assert np.array_equal(got, want)
    for name, p in clf.model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[name]), name


def test_save_load_round_trip_is_identical(tiny_run, tmp_path):
    a = Classifier.load(tiny_run.path, precision="fp32")
    a.save(tmp_path / "copy")
    assert a.path == tmp_path / "copy"
    b = Classifier.load(tmp_path / "copy", precision="fp32")
    texts = [SPAM, HAM, "hello"]
    assert np.array_equal(a.predict_proba(texts), b.predict_proba(texts))


def test_no_pickle_is_ever_loaded(tiny_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert Classifier.load(tiny_run.path).predict([SPAM]).tolist() == ["spam"]


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("data"))
    return dst


def test_tampered_weights_are_refused(tiny_run, tmp_path):
    run = _copy_run(tiny_run.path, tmp_path / "run")
    data = bytearray((run / "model.safetensors").read_bytes())
    data[-1] ^= 0x01  # flip one bit of one weight
    (run / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(GPTClassifyError, match="sha256 does not match"):
        Classifier.load(run)


def test_missing_or_broken_files_are_clear_errors(tiny_run, tmp_path):
    run = _copy_run(tiny_run.path, tmp_path / "run")
    (run / "model.safetensors").unlink()
    with pytest.raises(GPTClassifyError, match=r"model\.safetensors: file not found"):
        Classifier.load(run)
    run2 = _copy_run(tiny_run.path, tmp_path / "run2")
    (run2 / "config.json").write_text("{")
    with pytest.raises(GPTClassifyError, match=r"config\.json: not valid JSON"):
        Classifier.load(run2)
    with pytest.raises(GPTClassifyError, match="not a folder"):
        Classifier.load(tmp_path / "nothing")
    run3 = _copy_run(tiny_run.path, tmp_path / "run3")
    cfg = json.loads((run3 / "config.json").read_text())
    cfg["labels"] = ["a", "b", "c"]  # a head of the wrong size
    (run3 / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GPTClassifyError, match=r"tensor 'head\.(weight|bias)' has shape"):
        Classifier.load(run3)


def test_evaluate_on_a_file(tiny_run):
    report = tiny_run.evaluate(tiny_run.path / "data" / "test.csv")
    assert report["examples"] == 300
    assert abs(report["accuracy"] - tiny_run.metrics["test"]["accuracy"]) < 0.02
    assert 0.5 < report["roc_auc"] <= 1.0


def test_decide_threshold_and_top_k():
    probs = np.array([[0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    labels = ["ham", "spam"]
    assert decide(probs, labels) == ["ham", "spam", "spam"]
    assert decide(probs, labels, threshold=0.25) == ["spam", "spam", "spam"]
    assert decide(probs, labels, threshold=0.9) == ["ham", "ham", "ham"]
    with pytest.raises(GPTClassifyError, match="two-class"):
        decide(np.array([[0.2, 0.3, 0.5]]), ["a", "b", "c"], threshold=0.5)
    ranked = top_k(np.array([[0.1, 0.6, 0.3]]), ["a", "b", "c"], 2)
    assert ranked == [[("b", 0.6), ("c", 0.3)]]


def test_run_files_get_the_usual_permissions(tiny_run):
    import stat

    from gptclassify.files import default_file_mode

    for name in ("model.safetensors", "config.json", "metrics.json", "history.csv"):
        mode = stat.S_IMODE((tiny_run.path / name).stat().st_mode)
        assert mode == default_file_mode(), f"{name}: {oct(mode)}"
    assert not list(tiny_run.path.glob(".*.tmp"))  # no temporary files left behind


def test_predict_file_from_python_streams_writes_and_counts(tiny_run, tmp_path, monkeypatch):
    """The CLI's file prediction, reached from Python: same labels as `predict`, an error row
    for an empty text, truncation counted, and no output file when a chunk fails."""
    import pandas as pd

    from gptclassify.predict import files as predict_files
    from gptclassify.predict import predict_file

    clf = Classifier.load(tiny_run.path, precision="fp32")
    long = "win cash now " * 200  # longer than the tiny model reads
    texts = [SPAM, "see you at 6?", "", long] + [f"note {i}" for i in range(30)]
    pd.DataFrame({"id": range(len(texts)), "message": texts}).to_csv(tmp_path / "in.csv")
    monkeypatch.setattr(predict_files, "CHUNK_ROWS", 7)  # several chunks
    seen: list[int] = []
    done = predict_file(
        clf, tmp_path / "in.csv", tmp_path / "out.jsonl", "message", progress=seen.append
    )
    assert (done.rows, done.errors, done.truncated) == (len(texts), 1, 1)
    assert seen == [7, 7, 7, 7, 6] and len(done.preview) == 20
    out = pd.read_json(tmp_path / "out.jsonl", lines=True)
    assert out["id"].tolist() == list(range(len(texts)))
    kept = [i for i, t in enumerate(texts) if t]
    assert out["label"][kept].tolist() == clf.predict([texts[i] for i in kept]).tolist()
    assert isinstance(out["error"][2], str) and out["error"].isna().sum() == len(texts) - 1

    def broken(*args, **kwargs):
        raise RuntimeError("a pass failed")

    monkeypatch.setattr(predict_files, "predict_table", broken)
    with pytest.raises(RuntimeError):
        predict_file(clf, tmp_path / "in.csv", tmp_path / "again.csv", "message")
    assert list(tmp_path.glob("*again*")) == []
