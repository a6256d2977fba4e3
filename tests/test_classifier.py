"""GPTClassifier: pooling semantics, the pooled final block, freezing, LoRA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gptclassify.args import LORA_TARGETS
from gptclassify.classifier import GPTClassifier, trainable_blocks
from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.lora import LoRALinear
from gptclassify.model import GPTModel

CFG = GPTConfig(vocab_size=50257, context_length=64, emb_dim=32, n_heads=4, n_layers=3)


def make(pool="last-real", causal=True, seed=0, cfg=CFG):
    torch.manual_seed(seed)
    return GPTClassifier(GPTModel(cfg), 3, pool=pool, causal=causal).eval()


def right_pad(seqs, width=None):
    """(input_ids, attention_mask), right-padded with <|endoftext|>."""
    width = width or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), 50256)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def reference_logits(model, ids, mask):
    """Whole network on every position, then pooling: the plain definition."""
    lengths = mask.sum(-1)
    h = model.gpt.hidden_states(
        ids, attention_mask=None if model.causal else mask, causal=model.causal
    )
    return model.head(model.pool_states(h, lengths))


@pytest.mark.parametrize("pool", ["last-real", "last", "first", "mean"])
@pytest.mark.parametrize("causal", [True, False])
def test_pooled_final_block_equals_full_network(pool, causal):
    model = make(pool, causal)
    ids, mask = right_pad([[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]])
    with torch.no_grad():
        assert torch.allclose(model(ids, mask), reference_logits(model, ids, mask), atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_last_real_is_independent_of_batch_and_padding(causal):
    model = make("last-real", causal)
    text = [101, 2000, 318, 257]
    longer = list(range(300, 340))
    with torch.no_grad():
        alone = model(*right_pad([text]))
        in_batch = model(*right_pad([longer, text, longer[:20]]))[1:2]
        extra_pad = model(*right_pad([text], width=50))
    assert torch.allclose(alone, in_batch, atol=1e-5)
    assert torch.allclose(alone, extra_pad, atol=1e-5)


def test_book_last_position_reads_padding():
    """`last` reads the padded final position, so padding changes the answer (the book's
    choice: a short message is classified from a padding token)."""
    model = make("last")
    text = [101, 2000, 318, 257]
    with torch.no_grad():
        short = model(*right_pad([text]))
        padded_ids, mask = right_pad([text], width=12)
        padded = model(padded_ids, mask)
        h = model.gpt.hidden_states(padded_ids)
        assert torch.allclose(padded, model.head(h[:, -1]), atol=1e-5)
    assert not torch.allclose(short, padded, atol=1e-3)


def test_first_token_sees_later_tokens_only_without_causal_mask():
    a = [[7, 100, 200, 300]]
    b = [[7, 999, 888, 777]]  # same first token, different rest
    with torch.no_grad():
        causal = make("first", causal=True)
        assert torch.allclose(causal(*right_pad(a)), causal(*right_pad(b)), atol=1e-6)
        bidirectional = make("first", causal=False)
        assert not torch.allclose(
            bidirectional(*right_pad(a)), bidirectional(*right_pad(b)), atol=1e-4
        )


def test_mean_pool_averages_real_tokens_only():
    model = make("mean")
    ids, mask = right_pad([[5, 6, 7]], width=9)
    with torch.no_grad():
        h = model.gpt.hidden_states(ids)
        expected = model.head(h[:, :3].mean(dim=1))
        assert torch.allclose(model(ids, mask), expected, atol=1e-5)


def test_prefix_then_suffix_equals_whole():
    model = make()
    ids, mask = right_pad([[1, 2, 3, 4, 5], [6, 7]])
    lengths = mask.sum(-1)
    with torch.no_grad():
        for start in range(CFG.n_layers + 1):
            x = model.prefix(ids, lengths, start)
            assert torch.allclose(
                model.forward_from(x, lengths, start), model(ids, mask), atol=1e-5
            )


def test_head_is_seeded():
    a = make(seed=1)
    b = make(seed=2)
    assert torch.equal(a.head.weight, b.head.weight)  # the backbone differs, the head does not
    assert not torch.equal(a.gpt.wte.weight, b.gpt.wte.weight)


# ---- freezing -----------------------------------------------------------------------------


def block_params(model, i):
    return sum(p.numel() for p in model.gpt.h[i].parameters())


@pytest.mark.parametrize(
    "trainable, n_blocks",
    [("head", 0), ("last-block", 1), ("last-2-blocks", 2), ("last-3-blocks", 3), ("all", 3)],
)
def test_trainable_counts_match_the_formula(trainable, n_blocks):
    model = make()
    start = model.set_trainable(trainable)
    head = 32 * 3 + 3
    ln_f = 2 * 32
    expected = head
    if trainable == "all":
        expected = sum(p.numel() for p in model.parameters())
    elif n_blocks:
        expected += ln_f + sum(block_params(model, i) for i in range(3 - n_blocks, 3))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    assert start == (0 if trainable == "all" else 3 - n_blocks)


@pytest.mark.parametrize("trainable", ["head", "last-block", "last-2-blocks", "all", "lora"])
def test_only_chosen_parameters_change_after_a_step(trainable):
    model = make()
    if trainable == "lora":
        model.add_lora(rank=4, alpha=8)
    model.set_trainable(trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask = right_pad([[1, 2, 3, 4], [5, 6]])
    model.train()
    F.cross_entropy(model(ids, mask), torch.tensor([0, 2])).backward()
    opt.step()
    for name, p in model.named_parameters():
        if p.requires_grad:
            # lora_B starts at zero and gets a gradient; everything trainable moves.
            assert not torch.equal(p, before[name]), f"{name} should have changed"
        else:
            assert torch.equal(p, before[name]), f"{name} is frozen but changed"
    if trainable == "lora":
        assert all(
            ("lora_" in n or n.startswith("head."))
            for n, p in model.named_parameters()
            if p.requires_grad
        )


def test_bad_trainable_values():
    with pytest.raises(GPTClassifyError, match="last-4-blocks'?: the model has 3 blocks"):
        trainable_blocks("last-4-blocks", 3)
    with pytest.raises(GPTClassifyError, match="trainable: 'some'"):
        trainable_blocks("some", 3)
    assert trainable_blocks("last-12-blocks", 12) == 12


# ---- LoRA -------------------------------------------------------------------------------


def test_lora_parameter_count_is_2r_din_dout_per_layer():
    model = make()
    r = 4
    n = model.add_lora(rank=r, alpha=8)
    assert n == 4 * CFG.n_layers
    model.set_trainable("lora")
    C = CFG.emb_dim
    per_block = r * (C + 3 * C) + r * (C + C) + r * (C + 4 * C) + r * (4 * C + C)
    assert (
        sum(p.numel() for n_, p in model.named_parameters() if "lora_" in n_ and p.requires_grad)
        == CFG.n_layers * per_block
    )
    for block in model.gpt.h:
        for target in LORA_TARGETS:
            parent, attr = target.split(".")
            layer = getattr(getattr(block, parent), attr)
            assert isinstance(layer, LoRALinear)
            assert layer.lora_A.numel() + layer.lora_B.numel() == r * (
                layer.base.in_features + layer.base.out_features
            )


def test_lora_scaling_is_alpha_over_rank_and_merge_is_exact():
    model = make()
    model.add_lora(rank=4, alpha=2)
    layer = model.gpt.h[0].attn.c_attn
    assert layer.scaling == 0.5
    with torch.no_grad():  # give the adapters a non-zero update
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    ids, mask = right_pad([[1, 2, 3, 4, 5], [6, 7, 8]])
    with torch.no_grad():
        x = torch.randn(2, 5, CFG.emb_dim)
        expected = F.linear(
            x, layer.base.weight + 0.5 * layer.lora_B @ layer.lora_A, layer.base.bias
        )
        assert torch.allclose(layer(x), expected, atol=1e-5)
        before = model(ids, mask)
        model.merge_lora()
        assert not any(isinstance(m, LoRALinear) for m in model.modules())
        assert torch.allclose(model(ids, mask), before, atol=1e-5)
        assert not torch.allclose(before, make()(ids, mask), atol=1e-3)  # adapters mattered
