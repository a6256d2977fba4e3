"""GPTModel: shapes, causality, padding masks, block slicing, config validation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.model import GPTModel, attention_bias
from gptclassify.models import PRESETS, preset


@pytest.fixture
def model(tiny_config):
    torch.manual_seed(0)
    return GPTModel(tiny_config).eval()


def test_presets_have_the_published_parameter_counts():
    expected = {
        "gpt2": 124_439_808,
        "gpt2-medium": 354_823_168,
        "gpt2-large": 774_030_080,
        "gpt2-xl": 1_557_611_200,
    }
    for name, count in expected.items():
        with torch.device("meta"):
            assert GPTModel(PRESETS[name]).num_parameters() == count, name


def test_output_head_is_tied(model):
    assert model.lm_head.weight is model.wte.weight


def test_forward_shape_and_causality(model):
    ids = torch.randint(0, 50257, (2, 10))
    logits = model(ids)
    assert logits.shape == (2, 10, 50257)
    changed = ids.clone()
    changed[:, 6:] = 7  # change the future
    out = model(changed)
    assert torch.allclose(logits[:, :6], out[:, :6], atol=1e-6)
    assert not torch.allclose(logits[:, 6:], out[:, 6:])


def test_right_padding_does_not_change_real_positions(model):
    ids = torch.randint(0, 50000, (1, 7))
    padded = torch.cat([ids, torch.full((1, 5), 50256)], dim=1)
    mask = torch.cat([torch.ones(1, 7), torch.zeros(1, 5)], dim=1)
    a = model(ids)
    assert torch.allclose(model(padded)[:, :7], a, atol=1e-5)
    assert torch.allclose(model(padded, attention_mask=mask)[:, :7], a, atol=1e-5)


def test_padding_mask_hides_keys_without_causal_mask(model):
    ids = torch.randint(0, 50000, (1, 6))
    padded = torch.cat([ids, torch.full((1, 3), 50256)], dim=1)
    mask = torch.tensor([[1] * 6 + [0] * 3])
    alone = model.hidden_states(ids, causal=False)
    with_mask = model.hidden_states(padded, attention_mask=mask, causal=False)
    without_mask = model.hidden_states(padded, causal=False)
    assert torch.allclose(with_mask[:, :6], alone, atol=1e-5)
    assert not torch.allclose(without_mask[:, :6], alone, atol=1e-3)


def test_attention_bias_never_leaves_an_empty_row():
    mask = torch.tensor([[0, 0, 1, 1]])  # left padding
    bias = attention_bias(mask, 4, causal=True)
    assert bias.shape == (1, 1, 4, 4)
    assert bias.any(dim=-1).all()
    # Real queries see only real, earlier-or-same keys.
    assert bias[0, 0, 3].tolist() == [False, False, True, True]
    assert bias[0, 0, 2].tolist() == [False, False, True, False]


def test_left_padding_with_mask_is_finite(model):
    ids = torch.tensor([[50256, 50256, 10, 11, 12]])
    out = model(ids, attention_mask=torch.tensor([[0, 0, 1, 1, 1]]))
    assert torch.isfinite(out).all()


def test_run_blocks_slices_compose(model):
    ids = torch.randint(0, 50257, (3, 9))
    x = model.embed(ids)
    full = model.run_blocks(x)
    split = model.run_blocks(model.run_blocks(x, 0, 1), 1, None)
    assert torch.equal(full, split)
    assert torch.equal(model.ln_f(full), model.hidden_states(ids))


def test_too_long_input_is_refused(model, tiny_config):
    with pytest.raises(ValueError, match="exceeds the model context"):
        model(torch.zeros(1, tiny_config.context_length + 1, dtype=torch.long))


def test_config_json_round_trip_and_errors(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"emb_dim": 48, "n_heads": 6, "n_layers": 3, "context_length": 32}))
    cfg = GPTConfig.from_json(path)
    assert (cfg.emb_dim, cfg.n_heads, cfg.n_layers, cfg.context_length) == (48, 6, 3, 32)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    path.write_text(json.dumps({"emb_dim": 50, "n_heads": 6}))
    with pytest.raises(
        GPTClassifyError, match="tiny.json: GPTConfig.emb_dim .50. must be divisible by n_heads"
    ):
        GPTConfig.from_json(path)
    path.write_text(json.dumps({"emb_size": 48}))
    with pytest.raises(GPTClassifyError, match="unknown GPTConfig field.*emb_size"):
        GPTConfig.from_json(path)
    path.write_text("{not json")
    with pytest.raises(GPTClassifyError, match="not valid JSON"):
        GPTConfig.from_json(path)
    with pytest.raises(GPTClassifyError, match="unknown model preset 'gpt3'"):
        preset("gpt3")


def test_skip_meta_init_skips_only_meta_tensors():
    from gptclassify.model import skip_meta_init

    torch.manual_seed(0)
    with skip_meta_init():
        real = nn.Linear(16, 16)
        meta = nn.Linear(16, 16, device="meta")
    assert real.weight.abs().sum() > 0 and meta.weight.is_meta
    # Outside the block the initialisers are torch's own again.
    assert nn.init.normal_.__module__ == "torch.nn.init"


def test_loading_a_model_folder_does_not_import_torch_dynamo():
    """torch._dynamo costs ~0.9 s of `predict` start-up; building the model for its weights
    must not pull it in."""
    import subprocess
    import sys

    from conftest import FIXTURES

    code = (
        "import sys\n"
        "from gptclassify.predict import Classifier\n"
        f"clf = Classifier.load({str(FIXTURES / 'v1' / 'classifier')!r})\n"
        "clf.predict(['hello there'])\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"


@pytest.mark.parametrize("offset", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_without_a_graph_gives_the_same_bits_and_keeps_its_input(offset, dtype):
    """RMSNorm works in place where nothing records the pass (inference, frozen-prefix
    passes); the values are the graph-keeping path's, bit for bit, and the input is never
    changed (an fp32 input is its own fp32 copy)."""
    from gptclassify.model import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(48, 1e-6, offset=offset)
    with torch.no_grad():
        norm.weight.add_(torch.randn(48) * 0.3)
    x = (torch.randn(3, 5, 48) * 4).to(dtype)
    before = x.clone()
    graph = norm(x)  # the weight requires grad: the graph-keeping path
    assert graph.requires_grad
    with torch.no_grad():
        fast = norm(x)
    assert not fast.requires_grad and fast.dtype == graph.dtype
    assert torch.equal(fast, graph.detach()) and torch.equal(x, before)
    # a frozen norm on an input that needs no gradient takes the in-place path too
    norm.weight.requires_grad_(False)
    assert torch.equal(norm(x), graph.detach()) and torch.equal(x, before)
    # and gradients still reach an input that asks for them
    x32 = x.float().requires_grad_(True)
    norm(x32).sum().backward()
    assert x32.grad is not None and torch.isfinite(x32.grad).all()
