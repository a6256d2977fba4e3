"""Generation: greedy parity with transformers, context cropping, stopping, sampling."""

from __future__ import annotations

import torch

from gptclassify.generation import generate, generate_text
from gptclassify.model import GPTModel
from gptclassify.weights import load_pretrained


def test_greedy_matches_transformers_generate(tiny_hf_dir):
    import transformers

    hf = transformers.GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    ours = load_pretrained(tiny_hf_dir)
    prompt = torch.randint(0, 50000, (1, 6), generator=torch.Generator().manual_seed(7))
    ref = hf.generate(
        prompt, max_new_tokens=25, do_sample=False, pad_token_id=50256, eos_token_id=None
    )
    out = generate(ours, prompt, max_new_tokens=25, eos_id=None)
    assert out.tolist() == ref.tolist()
    assert len(set(out[0, 6:].tolist())) > 3  # a varied continuation, not one repeated token


def test_context_is_cropped_on_the_left(tiny_config):
    torch.manual_seed(1)
    model = GPTModel(tiny_config).eval()
    ctx = tiny_config.context_length
    prompt = torch.randint(0, 50000, (1, ctx - 2))
    out = generate(model, prompt, max_new_tokens=6, eos_id=None)
    assert out.shape == (1, ctx + 4)
    # The last token was predicted from exactly the last `ctx` tokens before it.
    with torch.no_grad():
        expected = model(out[:, -ctx - 1 : -1])[0, -1].argmax().item()
    assert out[0, -1].item() == expected


def test_stops_at_end_of_text(tiny_config):
    torch.manual_seed(2)
    model = GPTModel(tiny_config).eval()
    with torch.no_grad():  # final hidden state is always v, and v . wte[eos] dominates
        v = torch.randn(tiny_config.emb_dim)
        model.ln_f.weight.zero_()
        model.ln_f.bias.copy_(v)
        model.wte.weight[50256] = 10 * v
    out = generate(model, torch.tensor([[1, 2, 3]]), max_new_tokens=10)
    assert out[0, -1].item() == 50256
    assert out.shape == (1, 4)  # stopped right after the first <|endoftext|>


def test_sampling_is_seeded_and_top_k_restricts(tiny_config):
    torch.manual_seed(3)
    model = GPTModel(tiny_config).eval()
    prompt = torch.tensor([[5, 6, 7]])

    def sample(seed, **kw):
        g = torch.Generator().manual_seed(seed)
        return generate(model, prompt, 12, temperature=1.5, eos_id=None, generator=g, **kw)

    assert torch.equal(sample(0), sample(0))
    assert not torch.equal(sample(0), sample(1))
    # top_k=1 is greedy whatever the temperature.
    greedy = generate(model, prompt, 12, eos_id=None)
    assert torch.equal(sample(4, top_k=1), greedy)


def test_generate_text_is_the_reference_continuation(tiny_hf_dir):
    """Text in, text out: the prompt's tokens plus transformers' greedy tokens, decoded."""
    import transformers

    from gptclassify import tokenizer

    prompt = "Every effort moves you"
    hf = transformers.GPT2LMHeadModel.from_pretrained(tiny_hf_dir).eval()
    ids = torch.tensor([tokenizer.encode(prompt)])
    ref = hf.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=50256, eos_token_id=None)
    text = generate_text(load_pretrained(tiny_hf_dir), prompt, max_new_tokens=8)
    assert text == tokenizer.decode(ref[0].tolist())
    assert tokenizer.encode(text)[: ids.shape[1]] == ids[0].tolist()
    assert len(set(ref[0, ids.shape[1] :].tolist())) > 2  # a varied continuation
