"""Padding-free passes (fastpath.packed_blocks): the same function as the padded blocks at
every real position, in tiles of the row sizes it promises; where the classifier uses them;
and what the server's planner and warm-up make of them."""

from __future__ import annotations

import pytest
import torch

from gptclassify import fastpath
from gptclassify.classifier import GPTClassifier
from gptclassify.data.encode import Encoded
from gptclassify.fastpath import fast_view, packed_blocks
from gptclassify.model import GPTModel
from gptclassify.predict.torch_runtime import TorchRuntime
from gptclassify.runtime import autocast
from gptclassify.serve.batching import PassWork, plan_passes

LENGTHS = [23, 5, 40, 1, 17, 40, 9]


@pytest.fixture
def gpt(tiny_config):
    torch.manual_seed(0)
    return GPTModel(tiny_config).eval()


def padded_batch(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50000, (len(lengths), max(lengths)), generator=g)
    lengths_t = torch.tensor(lengths)
    ids[torch.arange(ids.shape[1])[None, :] >= lengths_t[:, None]] = 50256
    return ids, lengths_t


@pytest.mark.parametrize("tile", [512, 64])
def test_packed_blocks_equal_the_padded_blocks_at_every_real_position(gpt, monkeypatch, tile):
    monkeypatch.setattr(fastpath, "CPU_ROW_TILE", tile)
    ids, lengths = padded_batch(LENGTHS)
    with torch.inference_mode():
        x = gpt.embed(ids)
        want = gpt.run_blocks(x)
        rows_seen: list[int] = []
        hook = gpt.h[0].attn.c_attn.register_forward_hook(
            lambda module, args, out: rows_seen.append(args[0].shape[0])
        )
        got = packed_blocks(gpt.h, x, lengths)
        hook.remove()
    real = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
    assert torch.allclose(got[real], want[real], atol=1e-5, rtol=1e-5)
    assert not got[~real].any()  # padding positions are left zero
    # 135 real tokens run as 192 rows (a multiple of ROW_ALIGN), in tiles of at most `tile`
    assert sum(rows_seen) == 192 and max(rows_seen) == min(tile, 192)
    assert all(n % fastpath.ROW_ALIGN == 0 for n in rows_seen)


@pytest.mark.parametrize("pool", ["last-real", "first", "mean", "last"])
def test_a_packed_classifier_gives_the_padded_logits(gpt, pool, monkeypatch):
    import gptclassify.classifier as classifier_module

    clf = GPTClassifier(gpt, 3, pool=pool).eval()
    ids, lengths = padded_batch(LENGTHS, seed=2)
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    calls: list[int] = []

    def spy(*args):
        calls.append(1)
        return packed_blocks(*args)

    monkeypatch.setattr(classifier_module, "packed_blocks", spy)
    with torch.inference_mode():
        want = fast_view(clf, torch.float32)(ids, mask)
        packed = fast_view(clf, torch.float32, skip_padding=True)
        got = packed(ids, mask)
        alone = packed(ids[:1, : LENGTHS[0]], mask[:1, : LENGTHS[0]])  # no padding
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    if pool != "last":  # `last` reads a padding position: alone is another input
        assert torch.allclose(alone, want[:1], atol=1e-5, rtol=1e-5)
    # `last` reads a padding position, so it never skips padding; a batch without padding
    # has nothing to skip.
    assert clf.padding_free == (pool != "last")
    assert len(calls) == (1 if pool != "last" else 0)


def test_packed_bf16_passes_agree_with_padded_bf16_passes(gpt):
    clf = GPTClassifier(gpt, 2).eval()
    ids, lengths = padded_batch(LENGTHS, seed=3)
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.inference_mode(), autocast(torch.device("cpu"), torch.bfloat16):
        want = fast_view(clf, torch.bfloat16)(ids, mask).float()
        got = fast_view(clf, torch.bfloat16, skip_padding=True)(ids, mask).float()
    assert torch.allclose(got, want, atol=3e-2)


def test_the_planner_keeps_mixed_lengths_together_when_padding_is_free():
    free = PassWork(packed=True, attention=1 / (12 * 768))
    # padded: the long text alone, as padding the short ones to it costs more than a pass
    assert plan_passes([10, 100, 10, 10], 4096, overhead=50) == [[1], [0, 2, 3]]
    assert plan_passes([10, 100, 10, 10], 4096, overhead=50, work=free) == [[1, 0, 2, 3]]
    # but the attention over a very wide pass still costs: 1,000 wide, a short text there
    # costs 10 tokens plus ~108 tokens' worth of attention, more than another pass
    assert plan_passes([1000, 10, 10], 4096, overhead=50, work=free) == [[0], [1, 2]]
    assert free(longest=100, rows=4, real=130) == pytest.approx(130 + 4 * 100 * 100 / 9216)
    assert PassWork()(longest=100, rows=4, real=130) == 400


def test_the_runtime_says_whether_it_skips_padding_and_warms_up_every_row_count(gpt):
    runtime = TorchRuntime(GPTClassifier(gpt, 2), "cpu", "fp32")
    assert (
        runtime.padding_free
        and PassWork.of(runtime.padding_free, runtime.gpt_config.emb_dim).packed
    )
    last = TorchRuntime(GPTClassifier(gpt, 2, pool="last"), "cpu", "fp32")
    assert not last.padding_free and PassWork.of(last.padding_free, 768) == PassWork()
    seen: list[Encoded] = []
    runtime.logits = lambda encoded, batch_size: seen.append(encoded)  # type: ignore[method-assign]
    runtime.warm_up(4096)
    # every multiple of ROW_ALIGN up to 2 x the context (64 here), as texts with padding
    widths = [-(-int(e.lengths.sum()) // fastpath.ROW_ALIGN) * fastpath.ROW_ALIGN for e in seen]
    assert widths == [64, 128]
    assert all(e.lengths.max() > e.lengths.min() >= 1 for e in seen)
    assert all(len(ids) == n for e in seen for ids, n in zip(e.ids, e.lengths, strict=True))
    seen.clear()
    last.logits = lambda encoded, batch_size: seen.append(encoded)  # type: ignore[method-assign]
    last.warm_up(4096)
    assert seen == []


needs_packing = pytest.mark.skipif(
    not fastpath.can_prepack(torch.bfloat16, torch.device("cpu")),
    reason="this CPU's oneDNN has no fast bf16 kernels (nothing is packed)",
)


@needs_packing
def test_a_packed_linear_computes_the_plain_bf16_product_and_falls_back_where_it_must(
    monkeypatch,
):
    torch.manual_seed(0)
    plain = torch.nn.Linear(96, 160)
    bf16 = fastpath._low_precision(plain, torch.bfloat16)
    packed = fastpath._low_precision(plain, torch.bfloat16, prepack=True)
    assert isinstance(packed, fastpath.PackedLinear) and packed.blocked_weight.is_mkldnn
    assert packed.weight.dtype == torch.bfloat16 and packed.weight is not plain.weight
    used: list[bool] = []
    kernel = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(
        fastpath.torch.ops.mkldnn,
        "_linear_pointwise",
        lambda x, w, *a: used.append(w.is_mkldnn) or kernel(x, w, *a),
        raising=False,
    )
    x = torch.randn(2, 50, 96)
    with torch.inference_mode(), autocast(torch.device("cpu"), torch.bfloat16):
        want, got = bf16(x), packed(x)
        assert used == [True]
        assert got.dtype == want.dtype == torch.bfloat16 and got.shape == (2, 50, 160)
        torch.testing.assert_close(got.float(), want.float(), rtol=1e-2, atol=1e-2)
        # more rows than a packed pass takes: the plain kernel
        packed(torch.randn(fastpath.PACKED_MAX_ROWS + 1, 96))
        assert used == [True]
    # with gradients (explanations): the plain bf16 weight, differentiable
    x.requires_grad_(True)
    with autocast(torch.device("cpu"), torch.bfloat16):
        packed(x).float().sum().backward()
    assert used == [True] and x.grad is not None


@pytest.mark.skipif(
    not fastpath.can_prepack(torch.bfloat16, torch.device("cpu"))
    or not fastpath.torch_private.has_fused_linear_mul(),
    reason="this CPU's oneDNN has no fast bf16 kernels (the gated MLP is not fused)",
)
@pytest.mark.parametrize("mlp", ["swiglu", "geglu"])
@pytest.mark.parametrize("prepack", [False, True])
def test_a_gated_mlp_fuses_its_activation_and_product_into_the_matmuls(
    tiny_config, monkeypatch, mlp, prepack
):
    """FastGLU: act(x Wg) and (x Wu) * that inside oneDNN's matmuls, with the weights
    packed or plain; values as close to fp32 as the plain bf16 MLP's; the plain gated MLP
    wherever gradients are on."""
    import dataclasses

    from gptclassify.model import SwiGLU

    config = dataclasses.replace(
        tiny_config, family="llama", positions="rope", norm="rmsnorm", mlp=mlp, mlp_bias=False
    )
    torch.manual_seed(0)
    clf = GPTClassifier(GPTModel(config), 2).eval()
    view = fast_view(clf, torch.bfloat16, cast_trainable=True, prepack=prepack)
    fused = view.gpt.h[0].mlp
    assert isinstance(fused, fastpath.FastGLU) and type(clf.gpt.h[0].mlp) is SwiGLU
    assert (fused.halves is not None) == prepack
    # packed apart, c_fc keeps no whole packed copy besides (it would never be read)
    assert (
        isinstance(fused.c_fc, fastpath.PackedLinear) is False
        and fused.c_fc.weight.dtype == torch.bfloat16
    )
    calls = []
    kernel = fastpath.torch_private.linear_gated
    monkeypatch.setattr(
        fastpath.torch_private, "linear_gated", lambda *a: calls.append(a[-1]) or kernel(*a)
    )
    x = torch.randn(3, 40, config.emb_dim)
    plain_mlp = clf.gpt.h[0].mlp
    with torch.no_grad():
        want = plain_mlp(x)  # fp32
        with autocast(torch.device("cpu"), torch.bfloat16):
            got = fused(x)
            plain_bf16 = plain_mlp(x)
    assert calls == ["gelu_tanh" if mlp == "geglu" else "silu"]
    assert got.shape == want.shape
    err, plain_err = (got.float() - want).abs().max(), (plain_bf16.float() - want).abs().max()
    assert err <= 2 * plain_err + 1e-3
    # with gradients (training, explanations): the plain gated MLP, differentiable
    x.requires_grad_(True)
    with autocast(torch.device("cpu"), torch.bfloat16):
        fused(x).float().sum().backward()
    assert len(calls) == 1 and x.grad is not None


@needs_packing
def test_the_runtime_packs_its_bf16_weights_and_predicts_what_the_unpacked_view_does(gpt):
    clf = GPTClassifier(gpt, 2).eval()
    runtime = TorchRuntime(clf, "cpu", "bf16")
    layers = [m for m in runtime.runner.modules() if isinstance(m, torch.nn.Linear)]
    packed = [m for m in layers if isinstance(m, fastpath.PackedLinear)]
    # every block's layers but the last block's (it runs in fp32 at the pooled position)
    assert len(packed) == 4 * (len(gpt.h) - 1)
    assert not any(
        isinstance(m, fastpath.PackedLinear) for m in clf.modules()
    )  # the model is untouched
    ids, lengths = padded_batch(LENGTHS, seed=5)
    encoded = Encoded.unlabelled([row[:n].tolist() for row, n in zip(ids, lengths, strict=True)])
    got = runtime.logits(encoded, batch_size=4)
    unpacked = fast_view(clf, torch.bfloat16, cast_trainable=True, skip_padding=True).eval()
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.inference_mode(), autocast(torch.device("cpu"), torch.bfloat16):
        want = unpacked(ids, mask).float().numpy()
    assert abs(got - want).max() < 3e-2
    assert (
        fast_view(clf, torch.float32, prepack=True).gpt.h[0].attn.c_attn.__class__
        is torch.nn.Linear
    )


# Heads wider than emb_dim / n_heads: learned positions with an explicit head_size (the
# plain pooled block's projections) and a Gemma 3-like block (rotary, one key/value head,
# sliding window, q/k norms: the rotary pooled block), as Gemma 3 270M's 4 x 256 over 640.
WIDE_HEADS = {
    "learned": dict(positions="learned", head_size=32),
    "gemma3-like": dict(
        family="gemma3_text",
        positions="rope",
        norm="rmsnorm",
        norm_offset=True,
        mlp="geglu",
        n_kv_heads=1,
        head_size=32,
        qk_norm=True,
        post_norms=True,
        embed_scale=True,
        attn_scalar=24.0,
        sliding_window=5,
        global_every=2,
        rope_theta=1e6,
        rope_local_theta=1e4,
        qkv_bias=False,
        out_bias=False,
        mlp_bias=False,
    ),
}


@pytest.mark.parametrize("kind", list(WIDE_HEADS))
@pytest.mark.parametrize("pool", ["last-real", "first"])
def test_the_pooled_block_handles_heads_wider_than_width_over_heads(kind, pool):
    from gptclassify.config import GPTConfig

    config = GPTConfig(
        vocab_size=320, context_length=64, emb_dim=32, n_heads=4, n_layers=3, **WIDE_HEADS[kind]
    )
    assert config.head_dim * config.n_heads != config.emb_dim
    torch.manual_seed(0)
    gpt = GPTModel(config)
    with torch.no_grad():  # norms away from their initial values, so they count
        for name, p in gpt.named_parameters():
            if "ln" in name or "norm" in name:
                p.normal_(0.0 if config.norm_offset else 1.0, 0.2)
    clf = GPTClassifier(gpt.eval(), 3, pool=pool).eval()
    ids, lengths = padded_batch([12, 3, 9, 12], seed=6)
    ids = ids % config.vocab_size
    mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
    with torch.inference_mode():
        # the plain model: every block at every position, then the pool
        h = clf.gpt.hidden_states(ids)
        want = clf.head(clf.pool_states(h, lengths))
        got = clf(ids, mask)  # the last block at the pooled position (pooled_block)
        fast = fast_view(clf, skip_padding=True)(ids, mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, want, rtol=1e-5, atol=1e-5)
