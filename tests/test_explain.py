"""Explanations: the class probabilities along the text, the attributions, the terminal view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gptclassify import tokenizer
from gptclassify.classifier import GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.data.encode import InputPolicy
from gptclassify.errors import GPTClassifyError
from gptclassify.model import GPTModel
from gptclassify.predict import Classifier
from gptclassify.predict.explain import token_texts

SPAM = "WINNER!! You have been selected to receive a £900 prize reward! Call 09061701461 to claim"
CFG = GPTConfig(vocab_size=50257, context_length=48, emb_dim=32, n_heads=4, n_layers=2)


@pytest.fixture(scope="module")
def clf(tiny_run) -> Classifier:
    return Classifier.load(tiny_run.path, precision="fp32")


def small(pool: str = "last-real", causal: bool = True, pad_length: int | None = None):
    torch.manual_seed(0)
    model = GPTClassifier(GPTModel(CFG), 3, pool=pool, causal=causal)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # logits that move with the text
    policy = InputPolicy(max_length=24, pad_length=pad_length)
    return Classifier(model, ["a", "b", "c"], policy, temperature=1.5, precision="fp32")


def test_integrated_gradients_add_up_to_the_change_of_the_score(clf):
    e = clf.explain(SPAM, steps=64)
    total = sum(t.attribution for t in e.tokens) + e.padding_attribution
    change = e.score - e.baseline_score
    assert abs(change) > 0.05  # the text moves the score: the check below is not 0 == 0
    assert total == pytest.approx(change, abs=0.02 * abs(change) + 1e-3)
    assert e.completeness_gap == pytest.approx(total - change, abs=1e-5)
    assert e.method == "integrated-gradients" and e.steps == 64
    assert e.score == pytest.approx(np.log(e.probs[e.labels.index(e.target)]), abs=1e-5)
    # more steps, a smaller gap (the midpoint rule converges)
    rough = clf.explain(SPAM, steps=2)
    assert abs(rough.completeness_gap) >= abs(e.completeness_gap)


def test_the_view_along_the_text_is_each_prefix_classified_alone():
    for pool in ("last-real", "mean", "first"):
        c = small(pool)
        text = "free cash prize, call now to claim it"
        e = c.explain(text, method="gradient-x-input")
        ids = tokenizer.encode(text)
        assert len(e.tokens) == len(ids)
        for t in (0, 3, len(ids) - 1):
            prefix = torch.tensor([ids[: t + 1]])
            with torch.no_grad():
                want = torch.softmax(c.model(prefix) / c.temperature, dim=-1)[0].numpy()
            assert np.allclose(e.tokens[t].probs, want, atol=1e-5), (pool, t)
        # the last position is the whole text's classification
        assert np.allclose(e.tokens[-1].probs, e.probs, atol=1e-5)
        assert np.allclose(e.probs, c.predict_proba([text])[0], atol=1e-5)


def test_no_view_along_the_text_without_the_causal_mask():
    e = small(causal=False).explain("free cash prize", steps=4)
    assert all(t.probs is None for t in e.tokens)
    assert e.completeness_gap is not None


def test_gradient_x_input_is_the_first_order_term(clf):
    """Scaling every token embedding by (1 + eps) changes the score by about eps * sum(attr)."""
    e = clf.explain(SPAM, method="gradient-x-input")
    assert e.steps is None and e.baseline_score is None and e.completeness_gap is None
    model = clf.model
    ids = torch.tensor([tokenizer.encode(SPAM)])
    target = e.labels.index(e.target)
    pos = model.gpt.wpe(torch.arange(ids.shape[1]))[None]
    lengths = torch.tensor([ids.shape[1]])
    eps = 1e-3
    with torch.no_grad():
        x = model.gpt.wte(ids)
        scores = [
            torch.log_softmax(model.forward_from(x * s + pos, lengths, 0) / clf.temperature, -1)[
                0, target
            ]
            for s in (1 - eps, 1 + eps)
        ]
    slope = float(scores[1] - scores[0]) / (2 * eps)
    assert slope == pytest.approx(sum(t.attribution for t in e.tokens), rel=0.02, abs=1e-4)


def test_explaining_changes_nothing_in_the_model(clf):
    before = {n: p.detach().clone() for n, p in clf.model.named_parameters()}
    expected = clf.logits([SPAM])
    clf.explain(SPAM, steps=8)
    for name, p in clf.model.named_parameters():
        assert p.grad is None and torch.equal(p, before[name]), name
    assert np.array_equal(clf.logits([SPAM]), expected)


def test_another_target_and_the_attributions_follow_it(clf):
    mine = clf.explain(SPAM, steps=16)
    other = next(label for label in clf.labels if label != mine.target)
    theirs = clf.explain(SPAM, steps=16, target=other)
    assert theirs.target == other and theirs.label == mine.label
    assert theirs.score == pytest.approx(np.log(theirs.probs[clf.labels.index(other)]), abs=1e-5)
    a = np.array([t.attribution for t in mine.tokens])
    b = np.array([t.attribution for t in theirs.tokens])
    assert not np.allclose(a, b)
    with pytest.raises(GPTClassifyError, match="not a class"):
        clf.explain(SPAM, target="eggs")
    with pytest.raises(GPTClassifyError, match="method"):
        clf.explain(SPAM, method="lime")
    with pytest.raises(GPTClassifyError, match="empty"):
        clf.explain("")


def test_token_texts_rebuild_the_text_even_across_split_characters():
    text = "<script>alert('x')</script> café 🎉🎉 naïve"
    pieces = token_texts(tokenizer.encode(text))
    assert "".join(pieces) == text
    assert "" in pieces  # an emoji's bytes span tokens: the first ones carry no character


def test_long_texts_are_cut_as_the_model_reads_them():
    c = small(pad_length=None)
    text = " ".join(["word"] * 40)
    e = c.explain(text, steps=4)
    assert len(e.tokens) == 24 and e.truncated_tokens == 16
    # a fixed pad length: padding positions are attributed too, and reported apart
    padded = small(pool="last", pad_length=24).explain("free cash", steps=16)
    assert len(padded.tokens) == 2 and padded.padding_attribution != 0.0
    total = sum(t.attribution for t in padded.tokens) + padded.padding_attribution
    assert total == pytest.approx(padded.score - padded.baseline_score, abs=0.05)


def test_explain_needs_the_torch_runtime():
    from test_serve import POLICY, StubRuntime

    clf = Classifier.with_runtime(StubRuntime(), ["ham", "spam"], POLICY)
    with pytest.raises(GPTClassifyError, match="PyTorch runtime"):
        clf.explain("x")


def test_explain_command(tiny_run):
    from gptclassify.cli import cli

    result = CliRunner().invoke(cli, ["explain", str(tiny_run.path), SPAM, "--steps", "8"])
    assert result.exit_code == 0, result.output
    assert "Label:" in result.output and "integrated gradients, 8 steps" in result.output
    assert "Where it became" in result.output and "prize" in result.output
    as_json = CliRunner().invoke(
        cli, ["explain", str(tiny_run.path), SPAM, "--json", "--method", "gradient-x-input"]
    )
    body = json.loads(as_json.output)
    assert (
        body["method"] == "gradient-x-input" and "".join(t["text"] for t in body["tokens"]) == SPAM
    )
