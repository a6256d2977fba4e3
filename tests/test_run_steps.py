"""The steps of a training run (training/build.py, training/results.py, callbacks.py) on tiny
inputs, without a run folder: each returns what the next one takes, and what it returns is
checked against metrics.py, surface.py and the baseline where they give the same figure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gptclassify import surface
from gptclassify.args import EvalArgs, InputArgs, TrainConfig
from gptclassify.artifact import LoraInfo
from gptclassify.baseline.tfidf import Baseline
from gptclassify.data.split import Splits
from gptclassify.data.tables import LabelledTexts
from gptclassify.errors import GPTClassifyError
from gptclassify.files import sha256_file
from gptclassify.metrics import (
    classification_report,
    fit_temperature,
    multilabel_report,
    sigmoid,
    softmax,
    tune_thresholds,
)
from gptclassify.tokenizer import gpt2
from gptclassify.training.build import (
    Backbone,
    check_batch_size,
    check_task,
    encode_splits,
    label_counts,
    training_parts,
)
from gptclassify.training.callbacks import RunCallbacks
from gptclassify.training.distributed import Dist
from gptclassify.training.results import (
    baseline_beats,
    compare_with_baseline,
    evaluate_run,
    fit_surface,
    run_metrics,
    run_provenance,
)
from gptclassify.training.state import TrainState

FRUIT = ["apple banana pear", "banana plum apple", "pear apple fig", "fig plum banana"]
CARS = ["car truck van", "truck bus car", "van bus truck", "bus car van"]
NAMES = ["fruit", "cars"]


def _texts() -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    texts = {"train": FRUIT + CARS, "validation": FRUIT[:2] + CARS[:2]}
    labels = {"train": np.array([0] * 4 + [1] * 4), "validation": np.array([0, 0, 1, 1])}
    return texts, labels


def _one_hot(y: np.ndarray, scale: float) -> np.ndarray:
    return (np.eye(2, dtype=np.float32)[y] * scale).astype(np.float32)


def test_surface_step_ships_the_head_alone_when_it_validates_better() -> None:
    texts, labels = _texts()
    # A confidently wrong network: no weight of the head added to it reaches the head alone.
    network = {k: _one_hot(1 - y, 1000.0) for k, y in labels.items()}
    before = {k: v.copy() for k, v in network.items()}
    fitted = fit_surface(texts, labels, network, 2, mode="auto")
    assert fitted.choice.shipped == "head alone"
    assert fitted.head is not None and fitted.head.network_weight == 0
    assert fitted.choice.scores["head"]["accuracy"] == 1.0
    assert fitted.choice.scores["network"]["accuracy"] == 0.0
    for k in network:  # the network's logits are left as they were; the result holds the shipped
        np.testing.assert_array_equal(network[k], before[k])
        np.testing.assert_allclose(fitted.logits[k], fitted.head.combine(network[k], texts[k]))
        assert (fitted.logits[k].argmax(1) == labels[k]).all()


def test_surface_step_keeps_the_network_when_the_head_does_not_beat_it() -> None:
    texts, labels = _texts()
    network = {k: _one_hot(y, 5.0) for k, y in labels.items()}  # right on every text
    fitted = fit_surface(texts, labels, network, 2, mode="auto")
    assert fitted.choice.shipped == "network"
    assert fitted.head is None
    for k in network:
        np.testing.assert_array_equal(fitted.logits[k], network[k])


def test_surface_step_on_always_adds_the_head() -> None:
    texts, labels = _texts()
    network = {k: _one_hot(y, 5.0) for k, y in labels.items()}
    fitted = fit_surface(texts, labels, network, 2, mode="on", C=10.0)
    assert fitted.choice.shipped == "network + head"
    assert fitted.head is not None and fitted.head.C == 10.0 and fitted.choice.tried == 2
    assert fitted.head.info["chosen_by"] == "on"


def _logits(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    logits = {k: rng.normal(size=(12, 3)).astype(np.float32) for k in ("validation", "test")}
    labels = {k: rng.integers(0, 3, size=12) for k in logits}
    return logits, labels


def test_evaluation_step_equals_metrics_on_the_same_logits() -> None:
    logits, labels = _logits()
    names = ["a", "b", "c"]
    plain = evaluate_run(logits, labels, names, multi_label=False, calibrate=False)
    assert plain.temperature == 1.0 and plain.calibration is None and plain.thresholds is None
    for k, v in logits.items():
        assert plain.reports[k] == classification_report(softmax(v), labels[k], names)

    calibrated = evaluate_run(logits, labels, names, multi_label=False, calibrate=True)
    t = fit_temperature(logits["validation"], labels["validation"])
    assert calibrated.temperature == t != 1.0
    assert calibrated.calibration is not None and calibrated.calibration["temperature"] == t
    for k, v in logits.items():
        assert calibrated.reports[k] == classification_report(softmax(v, t), labels[k], names)


def test_evaluation_step_multi_label_uses_thresholds_tuned_on_validation() -> None:
    logits, _ = _logits(1)
    rng = np.random.default_rng(2)
    labels = {k: rng.integers(0, 2, size=(12, 3)).astype(np.float32) for k in logits}
    names = ["a", "b", "c"]
    result = evaluate_run(logits, labels, names, multi_label=True, calibrate=False)
    thresholds = tune_thresholds(sigmoid(logits["validation"]), labels["validation"])
    assert result.thresholds == thresholds
    for k, v in logits.items():
        assert result.reports[k] == multilabel_report(sigmoid(v), labels[k], names, thresholds)


def test_baseline_step_scores_the_baseline_on_every_other_split() -> None:
    texts, labels = _texts()
    parts = {k: LabelledTexts(t, [NAMES[i] for i in labels[k]], k) for k, t in texts.items()}
    scores = compare_with_baseline(parts, labels, NAMES)
    assert set(scores) == {"model", "fit_time_s", "validation"}
    fitted = Baseline.fit(parts["train"].texts, parts["train"].labels, NAMES)
    report = classification_report(
        fitted.predict_proba(parts["validation"].texts), labels["validation"], NAMES
    )
    assert scores["validation"] == {"accuracy": report["accuracy"], "macro_f1": report["macro_f1"]}
    assert baseline_beats(scores, {"validation": {"macro_f1": report["macro_f1"] - 0.1}})
    assert not baseline_beats(scores, {"validation": {"macro_f1": report["macro_f1"]}})


def test_provenance_step(tmp_path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not really weights")
    cfg = TrainConfig.from_dict({"model": "micro.json", "weights": "random"})
    backbone = Backbone(None, "random init of micro", weights_file=weights)  # type: ignore[arg-type]
    p = run_provenance(cfg, backbone, None)
    assert p.base_model == "random init of micro" and p.lora is None
    assert p.base_sha256 == sha256_file(weights)
    assert p.train_config == cfg.to_dict() and p.stored == "full" and p.base is None

    lora = LoraInfo(4, 8.0, ("c_attn",), False, adapters_only=True, base="x", base_sha256="ab")
    cfg.runtime.save = "full"  # a folder that needs nothing else: no base named
    full = run_provenance(cfg, backbone, lora)
    assert full.lora is not None and not full.lora.adapters_only
    assert full.lora.base is None and full.base_sha256 == sha256_file(weights)


def test_metrics_step_counts_the_model_and_the_state() -> None:
    model = torch.nn.Linear(4, 2)
    model.bias.requires_grad_(False)
    state = TrainState.create(model, torch.optim.SGD(model.parameters(), lr=0.1), 0)
    state.best_epoch, state.examples_seen = 2, 96
    logits, labels = _logits()
    result = evaluate_run(logits, labels, ["a", "b", "c"], False, False)
    m = run_metrics(
        state,
        result,
        model,
        {"validation": 1},
        None,
        training_time_s=1.5,
        total_time_s=2.0,
        cached=True,
        device=torch.device("cpu"),
        precision="float32",
    )
    assert (m.trainable_params, m.total_params) == (8, 10)
    assert m.best_epoch == 2 and m.examples_seen == 96 and m.epochs_run == 0
    assert m.splits == result.reports and m.truncated == {"validation": 1}
    assert m.to_json()["test"] == result.reports["test"] and m.peak_memory_mb > 0


def _splits(task: str = "single-label", validation: int = 2) -> Splits:
    def part(texts: list[str], labels: list[str], name: str) -> LabelledTexts:
        sets = [(label,) for label in labels] if task == "multi-label" else None
        return LabelledTexts(texts, labels, name, label_sets=sets)

    train = part(FRUIT + CARS, ["fruit"] * 4 + ["cars"] * 4, "train")
    val = part(FRUIT[:validation], ["fruit"] * validation, "validation")
    return Splits(train, val, None, ["cars", "fruit"], task=task)


def test_build_steps_check_the_data_before_any_model() -> None:
    check_task(_splits(), "single-label", EvalArgs(calibrate=True, lexical="auto"))
    multi = _splits("multi-label")
    with pytest.raises(GPTClassifyError, match="the data hold label sets"):
        check_task(multi, "single-label", EvalArgs())
    with pytest.raises(GPTClassifyError, match="fits a softmax temperature"):
        check_task(multi, "auto", EvalArgs(calibrate=True))
    check_task(multi, "auto", EvalArgs(lexical="on"))  # one regression per label
    assert list(training_parts(_splits())) == ["train", "validation"]
    with pytest.raises(GPTClassifyError, match="the validation split is empty"):
        training_parts(_splits(validation=0))
    check_batch_size(8, 8, 2)
    with pytest.raises(GPTClassifyError, match="must divide evenly over the 3 processes"):
        check_batch_size(8, 8, 3)
    with pytest.raises(GPTClassifyError, match="larger than the 8 training texts"):
        check_batch_size(16, 8, 1)


def test_encode_step_resolves_the_policy_on_the_training_texts() -> None:
    splits, tok = _splits(), gpt2()
    policy, encoded, tokenized = encode_splits(
        training_parts(splits), splits, tok, InputArgs(pad_to="longest"), 1024
    )
    longest = max(len(ids) for ids in tok.encode_batch(FRUIT + CARS))
    assert policy.max_length == policy.pad_length == longest  # the book's padding
    assert tokenized["train"].ids == tok.encode_batch(FRUIT + CARS)
    assert encoded["train"].labels.tolist() == [1] * 4 + [0] * 4  # "cars" sorts first
    assert label_counts(encoded["train"], 2).tolist() == [4, 4]
    assert label_counts(encoded["validation"], 2).tolist() == [0, 2]


class _Bar:
    def __init__(self) -> None:
        self.n = 0

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix(self, **_: object) -> None:
        pass


def test_run_callbacks_take_only_what_they_use() -> None:
    saved: list[tuple[int, bool]] = []
    stop = [False]
    callbacks = RunCallbacks(
        _Bar(),  # type: ignore[arg-type]
        0.0,
        checkpoint=lambda state, fit_time, best: saved.append((state.step, best)),
        stop_requested=lambda: stop[0],
        dist=Dist.single(),
        checkpoint_every=2,
        patience=1,
    )
    model = torch.nn.Linear(2, 2)
    state = TrainState.create(model, torch.optim.SGD(model.parameters(), lr=0.1), 0)
    for step in range(4):
        state.step = step
        callbacks.on_step(state, 0.5)
    assert saved == [(1, False), (3, False)] and callbacks.bar.n == 4
    state.best_epoch = 1
    row = {"epoch": 1, "train_accuracy": 1, "val_accuracy": 1, "full_val_accuracy": 1}
    callbacks.on_epoch(state, {**row, "full_val_loss": 0.1})
    assert saved[-1] == (3, True)
    assert not callbacks.should_stop()
    stop[0] = True
    assert callbacks.should_stop()


def test_surface_read_texts_is_what_the_run_fits_on() -> None:
    # The run decodes the encoded ids back into texts for the head (surface.read_texts).
    tok = gpt2()
    ids = tok.encode_batch(FRUIT)
    assert surface.read_texts(ids, [len(i) for i in ids], tok) == FRUIT
