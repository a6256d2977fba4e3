"""The training loop: cached prefix == whole network, gradient accumulation, loss options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gptclassify.args import TrainConfig
from gptclassify.classifier import GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.data.batches import TokenSource
from gptclassify.data.encode import InputPolicy, encode
from gptclassify.errors import GPTClassifyError
from gptclassify.model import GPTModel
from gptclassify.runtime import autocast
from gptclassify.training import Callbacks, Engine, Sources, class_weight_tensor, fit
from gptclassify.training.build import new_state, training_net
from gptclassify.training.prefix_cache import build_prefix_source

CFG = GPTConfig(vocab_size=50257, context_length=48, emb_dim=32, n_heads=4, n_layers=3)
CPU = torch.device("cpu")

TEXTS = [
    "WINNER!! claim your free prize now, call 09061701461",
    "ok see you at home later",
    "URGENT: your mobile number has won £2000, text CLAIM to 80086",
    "Sorry, I'll call later",
    "Free entry in 2 a wkly comp to win FA Cup final tkts",
    "Are you coming to dinner tonight?",
    "Congratulations you have been selected for a cash reward, reply YES",
    "I'm on the bus, be there in ten minutes",
] * 6


def make_model(trainable="last-block", seed=0, pool="last-real"):
    torch.manual_seed(seed)
    model = GPTClassifier(GPTModel(CFG), 2, pool=pool)
    start = model.set_trainable(trainable)
    return model, start


def sources(pad_to="batch"):
    labels = [i % 2 == 0 for i in range(len(TEXTS))]
    policy = InputPolicy.resolve(pad_to, None, "end", CFG.context_length, [20])
    train = TokenSource(encode(TEXTS[:40], policy, [int(y) for y in labels[:40]]), CPU)
    val = TokenSource(encode(TEXTS[40:], policy, [int(y) for y in labels[40:]]), CPU)
    return train, val


class Losses(Callbacks):
    def __init__(self):
        self.losses = []

    def on_step(self, state, loss):
        self.losses.append(loss)


def engine(model, source, class_weights=None):
    return Engine(
        training_net(model, torch.float32, source.start), CPU, torch.float32, class_weights
    )


def fit_with(model, train, val, cfg, order_seed, callbacks=None):
    """fit() with the data order drawn from `order_seed` (estimates from cfg.seed + 1)."""
    state = new_state(model, cfg.train, CPU)
    state.order_rng.manual_seed(order_seed)
    return fit(state, engine(model, train), Sources(train, val), cfg.train, cfg.eval, callbacks)


def run_fit(model, train, val, **overrides):
    cfg = TrainConfig(epochs=2, batch_size=8, eval_freq=2, eval_iter=2, lr=1e-3, **overrides)
    losses = Losses()
    state = fit_with(model, train, val, cfg, 5, losses)
    return state, losses.losses


def test_cached_prefix_gives_the_same_losses_and_weights():
    train, val = sources()
    plain, start = make_model()
    cached, _ = make_model()
    assert start == 2
    ctrain = build_prefix_source(cached, train, start)
    cval = build_prefix_source(cached, val, start)
    assert ctrain.states.shape == (int(train.encoded.lengths.sum()), CFG.emb_dim)
    r1, l1 = run_fit(plain, train, val)
    r2, l2 = run_fit(cached, ctrain, cval)
    assert len(l1) == len(l2) == 10
    assert torch.allclose(torch.tensor(l1), torch.tensor(l2), atol=1e-5)
    assert l1[-1] < l1[0]  # it did learn something, so equality is not trivial
    for (n, p), (_, q) in zip(plain.named_parameters(), cached.named_parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-5), n
    assert [e["val_accuracy"] for e in r1.history.epochs] == [
        e["val_accuracy"] for e in r2.history.epochs
    ]


def test_cached_prefix_with_fixed_padding_and_book_pooling():
    train, val = sources(pad_to="longest")
    plain, start = make_model(pool="last")
    cached, _ = make_model(pool="last")
    _, l1 = run_fit(plain, train, val)
    _, l2 = run_fit(
        cached,
        build_prefix_source(cached, train, start),
        build_prefix_source(cached, val, start),
    )
    assert torch.allclose(torch.tensor(l1), torch.tensor(l2), atol=1e-5)


def test_grad_accumulation_equals_one_big_batch():
    train, val = sources()
    a, _ = make_model(trainable="all")
    b, _ = make_model(trainable="all")
    cfg_big = TrainConfig(epochs=1, batch_size=8, grad_accum=1, eval_freq=0, lr=1e-3)
    cfg_acc = TrainConfig(epochs=1, batch_size=2, grad_accum=4, eval_freq=0, lr=1e-3)
    fit_with(a, train, val, cfg_big, 9)
    fit_with(b, train, val, cfg_acc, 9)
    C = CFG.emb_dim
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        if n.endswith("attn.c_attn.bias"):
            # The key bias has an exactly-zero true gradient (softmax ignores a shift shared by
            # all keys); Adam divides its float noise by its own tiny RMS, so skip that slice.
            p, q = torch.cat([p[:C], p[2 * C :]]), torch.cat([q[:C], q[2 * C :]])
        assert torch.allclose(p, q, atol=1e-5), n
    fresh, _ = make_model(trainable="all")
    moved = any(
        not torch.allclose(p, q) for p, q in zip(a.parameters(), fresh.parameters(), strict=True)
    )
    assert moved


def test_batches_over_the_token_budget_train_in_passes_to_the_same_weights(monkeypatch):
    """A batch with more padded tokens than TRAIN_TOKENS_PER_PASS runs as several passes of
    one optimizer step (bounded activation memory): the same weights as one pass."""
    from gptclassify.training import loop

    train, val = sources()
    a, _ = make_model(trainable="all")
    b, _ = make_model(trainable="all")
    cfg = TrainConfig(epochs=1, batch_size=8, eval_freq=0, lr=1e-3)
    fit_with(a, train, val, cfg, 9)
    passes = []
    pieces = loop.token_pieces

    def recorded(*args, **kwargs):
        out = pieces(*args, **kwargs)
        passes.extend(len(p) for p in out)
        return out

    monkeypatch.setattr(loop, "token_pieces", recorded)
    monkeypatch.setattr(loop, "TRAIN_TOKENS_PER_PASS", 40)  # 2-3 SMS texts a pass
    fit_with(b, train, val, cfg, 9)
    assert len(passes) > 5 * 3 and sum(passes) == 40 and max(passes) < 8  # 5 steps, split
    C = CFG.emb_dim
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        if n.endswith("attn.c_attn.bias"):  # see test_grad_accumulation_equals_one_big_batch
            p, q = torch.cat([p[:C], p[2 * C :]]), torch.cat([q[:C], q[2 * C :]])
        assert torch.allclose(p, q, atol=1e-5), n


def test_token_pieces_cut_a_batch_in_order_within_the_budget():
    from gptclassify.data.batches import token_pieces

    lengths = torch.tensor([10, 3, 3, 8, 2, 2, 2, 50])
    idx = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    assert [t.tolist() for t in token_pieces(idx, lengths, 100)] == [idx.tolist()]  # fits
    pieces = token_pieces(idx, lengths, 20)
    assert torch.equal(torch.cat(pieces), idx)  # every text once, in order
    assert all(len(p) * int(lengths[p].max()) <= 20 for p in pieces)
    assert [t.tolist() for t in token_pieces(torch.tensor([7, 0]), lengths, 20)] == [[7], [0]]
    # at least min_size texts a piece (DDP: one per rank), the short tail joining the last
    paired = token_pieces(idx, lengths, 20, min_size=2)
    assert torch.equal(torch.cat(paired), idx) and all(len(p) >= 2 for p in paired)


def test_uneven_micro_batches_average_like_one_batch():
    train, _ = sources()
    idx = torch.arange(8)
    for weights in (None, torch.tensor([0.3, 1.7])):
        model, _ = make_model(trainable="all")
        trainer = engine(model, train, weights)
        loss, w, _ = trainer.loss_sum(train, idx)
        (loss / w).backward()
        full = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        parts = [idx[:3], idx[3:]]
        total = sum(trainer.loss_sum(train, part)[1] for part in parts)
        for part in parts:
            trainer.loss_sum(train, part)[0].div(total).backward()
        for g, p in zip(full, model.parameters(), strict=True):
            assert torch.allclose(g, p.grad, atol=1e-6)


def test_class_weights_are_inverse_frequency():
    w = class_weight_tensor(torch.tensor([0, 0, 0, 1]), 2)
    assert torch.allclose(w, torch.tensor([4 / 6, 4 / 2]))
    assert torch.isclose((w * torch.tensor([3.0, 1.0])).sum() / 4, torch.tensor(1.0))


def test_best_epoch_weights_are_restored_and_patience_stops():
    train, val = sources()
    model, _ = make_model(trainable="all")
    cfg = TrainConfig(epochs=6, batch_size=8, eval_freq=0, lr=3e-2, patience=1, best_by="val_loss")
    result = fit_with(model, train, val, cfg, 1)
    val_losses = [e["full_val_loss"] for e in result.history.epochs]
    best = min(range(len(val_losses)), key=val_losses.__getitem__) + 1
    assert result.best_epoch == best
    assert result.stopped_early == (len(result.history.epochs) < 6)
    loss, _ = engine(model, val).estimate(val, [torch.arange(len(val))])
    assert abs(loss - val_losses[best - 1]) < 1e-5


# ---- options end to end on small data ---------------------------------------------------


def small_run(tmp_path, tiny_json, name, rows=None, **kw):
    import csv

    from conftest import write_three_classes
    from gptclassify.args import DataConfig
    from gptclassify.training import train

    data = tmp_path / f"{name}.csv"
    if rows is None:
        write_three_classes(data, n_per_class=40)
    else:
        with open(data, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(rows)
    options = dict(
        data=DataConfig(train=str(data)),
        model=str(tiny_json),
        weights="random",
        trainable="all",
        lr=2e-3,
        epochs=2,
        eval_freq=0,
        out=str(tmp_path / name),
        precision="fp32",
    )
    cfg = TrainConfig(**{**options, **kw})
    return train(cfg, quiet=True)


def test_calibration_temperature_is_stored_and_used(tmp_path, tiny_json):
    import json

    import numpy as np

    from gptclassify.metrics import softmax
    from gptclassify.predict import Classifier

    clf = small_run(tmp_path, tiny_json, "cal", calibrate=True)
    cal = clf.metrics["calibration"]
    assert cal["temperature"] > 0 and cal["val_ece_after"] <= cal["val_ece_before"] + 1e-9
    saved = json.loads((tmp_path / "cal" / "config.json").read_text())
    assert saved["temperature"] == cal["temperature"] != 1.0
    loaded = Classifier.load(tmp_path / "cal", precision="fp32")
    texts = ["goal team", "oven pizza"]
    assert np.allclose(
        loaded.predict_proba(texts), softmax(loaded.logits(texts), cal["temperature"])
    )


def test_weighted_loss_is_the_class_weighted_mean():
    train, _ = sources()
    weights = torch.tensor([0.25, 3.0])
    model, _ = make_model()
    idx = torch.arange(8)
    loss, total, logits = engine(model, train, weights).loss_sum(train, idx)
    labels = train.labels[idx]
    per_example = F.cross_entropy(logits.float(), labels, reduction="none")
    assert torch.isclose(loss, (weights[labels] * per_example).sum())
    assert total == pytest.approx(float(weights[labels].sum()))


def test_class_weights_auto_shift_decisions_toward_the_rare_class(tmp_path, tiny_json):
    import random

    rng = random.Random(0)
    # The text says nothing about the label (the same few texts in both classes), so the
    # best a model can do is predict the class prior, which the weights change.
    texts = [f"see you at lunch {i}" for i in range(4)]
    rows = [[rng.choice(texts), "ham"] for _ in range(90)]
    rows += [[rng.choice(texts), "spam"] for _ in range(15)]
    rng.shuffle(rows)
    plain = small_run(tmp_path, tiny_json, "plain", rows=rows)
    weighted = small_run(tmp_path, tiny_json, "weighted", rows=rows, class_weights="auto")
    log = (tmp_path / "weighted" / "train.log").read_text()
    assert "ham" in log and weighted.labels == ["ham", "spam"]
    # Up-weighting spam (about 6x here) moves its predicted probability from near the
    # prior (1 in 7) towards one half.
    p_plain = plain.predict_proba(texts)[:, 1]
    p_weighted = weighted.predict_proba(texts)[:, 1]
    assert p_plain.max() < 0.2 and p_weighted.min() > 0.25
    w = class_weight_tensor(torch.tensor([0] * 80 + [1] * 20), 2)
    assert w[1] / w[0] == pytest.approx(4.0)


def test_random_weights_for_every_preset_size():
    from gptclassify.models import PRESETS, family_of
    from gptclassify.training import build_backbone

    for name, preset in PRESETS.items():
        if family_of(preset).tokenizer_json:
            # Its tokenizer comes from the Hub, which tests never reach: one clear line.
            with pytest.raises(GPTClassifyError, match="tokenizer of .*model='DIR'"):
                build_backbone(TrainConfig(model=name, weights="random"))
            continue
        with torch.device("meta"):  # shapes only: no 1.5B-parameter allocation in a test
            backbone = build_backbone(TrainConfig(model=name, weights="random"))
        assert backbone.model.config == preset
        assert backbone.pretrained_dir is None


def test_pad_to_none_with_batch_one_and_accumulation(tmp_path, tiny_json):
    clf = small_run(
        tmp_path, tiny_json, "nopad", pad_to="none", batch_size=1, grad_accum=8, epochs=1
    )
    assert clf.policy.pad_length is None
    assert (
        clf.metrics["examples_seen"]
        == len(open(tmp_path / "nopad" / "data" / "train.csv").read().splitlines()) - 1
    )


def test_quiet_training_prints_nothing(tmp_path, tiny_json, capfd):
    small_run(tmp_path, tiny_json, "quiet", epochs=1)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert "Train accuracy" in (tmp_path / "quiet" / "train.log").read_text()


def test_bf16_prefix_cache_matches_autocast_and_leaves_weights_alone():
    train, _ = sources()
    model, start = make_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cached = build_prefix_source(model, train, start, torch.bfloat16)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    idx = torch.arange(4)
    batch = train.batch(idx)
    with torch.no_grad(), autocast(CPU, torch.bfloat16):
        expected = model.prefix(batch.args[0], batch.lengths, start)
    got = cached.batch(idx).args[0]
    for row, n in enumerate(batch.lengths.tolist()):
        assert torch.allclose(got[row, :n], expected[row, :n].float(), atol=2e-2, rtol=2e-2)


def test_best_by_accuracy_breaks_ties_with_loss():
    train, val = sources()
    model, _ = make_model(trainable="all")
    cfg = TrainConfig(epochs=5, batch_size=8, eval_freq=0, lr=1e-2)
    assert cfg.best_by == "val_accuracy"
    result = fit_with(model, train, val, cfg, 0)
    rows = result.history.epochs
    # This seed reaches full validation accuracy at every epoch: only the loss can decide.
    assert len({r["full_val_accuracy"] for r in rows}) == 1
    best = min(rows, key=lambda r: r["full_val_loss"])
    assert result.best_epoch == best["epoch"] != 1


def test_a_tie_broken_by_loss_keeps_the_epoch_but_does_not_reset_patience():
    from gptclassify.args import TrainArgs
    from gptclassify.training.state import selection_score

    model, _ = make_model(trainable="last-block")
    state = new_state(model, TrainArgs(), CPU)
    head = dict(model.named_parameters())["head.weight"]
    # reuters_r8's curve (seed 123): accuracy plateaus while the loss edges down.
    curve = [(0.80, 0.57), (0.87, 0.42), (0.87, 0.40), (0.87, 0.40), (0.87, 0.39), (0.86, 0.30)]
    gains, waits = [], []
    for epoch, (acc, loss) in enumerate(curve, start=1):
        state.epoch = epoch
        with torch.no_grad():
            head.fill_(epoch)  # which epoch's weights are kept
        gains.append(state.keep_if_best(selection_score("val_accuracy", acc, loss)))
        waits.append(state.epochs_without_gain)
    assert gains == [True, True, False, False, False, False]
    assert waits == [0, 0, 1, 2, 3, 4]  # patience 3 stops after epoch 5, not never
    # The kept weights are the last tie's (lowest loss at the best accuracy), not epoch 2's
    # and not epoch 6's lower loss at a lower accuracy.
    assert state.best_epoch == 5
    assert torch.all(state.best_weights["head.weight"] == 5)
    # By loss alone, the loss is the metric: every lower loss is a gain.
    state = new_state(model, TrainArgs(), CPU)
    got = [state.keep_if_best(selection_score("val_loss", a, loss)) for a, loss in curve]
    assert got == [True, True, True, False, True, True]


def test_peak_memory_is_this_process_peak_in_mb():
    # A fresh interpreter: in the suite's own process the peak is whatever an earlier test
    # reached (5 GB after the real-model tests), which says nothing about the units.
    import json
    import subprocess
    import sys

    script = """
import json, os, torch
from gptclassify.runtime import peak_memory_mb
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = rss_mb()
block = torch.ones(64 * 2**20)  # 256 MB, written, so resident
during = rss_mb()
peak = peak_memory_mb(torch.device("cpu"))
del block
print(json.dumps({"before": before, "during": during, "peak": peak, "after": rss_mb()}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    m = json.loads(out.strip().splitlines()[-1])
    assert m["during"] > m["before"] + 200
    assert m["after"] < m["during"] - 200  # the block is gone: what follows is a peak
    # MB, not KB or bytes; this process's peak, which the freed block still counts in
    assert m["during"] - 5 <= m["peak"] <= m["during"] + 512


def test_the_tfidf_baseline_is_fitted_beside_the_model_and_warns_when_better(
    tmp_path, tiny_json, caplog
):
    import json
    import logging

    # Keyword topics: TF-IDF separates them perfectly; a random tiny model after one epoch
    # at a tiny learning rate does not.
    with caplog.at_level(logging.INFO, logger="gptclassify"):
        small_run(tmp_path, tiny_json, "weak", epochs=1, lr=1e-6, trainable="head")
    metrics = json.loads((tmp_path / "weak" / "metrics.json").read_text())
    base = metrics["baseline"]
    assert base["model"] == "tfidf-logistic-regression"
    assert base["validation"]["accuracy"] > metrics["validation"]["accuracy"]
    assert set(base) >= {"validation", "fit_time_s"}
    warnings = [r.getMessage() for r in caplog.records if "baseline beats" in r.getMessage()]
    assert len(warnings) == 1 and "macro F1" in warnings[0]
    small_run(tmp_path, tiny_json, "nobase", epochs=1, baseline=False)
    assert json.loads((tmp_path / "nobase" / "metrics.json").read_text())["baseline"] is None
