"""Every family against transformers' own implementation: language-model logits, classifier
logits, greedy generation, the fast paths and the tokenizer."""

from __future__ import annotations

import pytest
import torch

from families import VOCAB, random_hf_model, write_hf_family, write_tokenizer
from gptclassify.classifier import GPTClassifier
from gptclassify.errors import GPTClassifyError
from gptclassify.fastpath import fast_view
from gptclassify.generation import generate
from gptclassify.models import config_from_hf
from gptclassify.tokenizer import HFTokenizer
from gptclassify.weights import load_pretrained

FAMILIES = ["llama", "llama-tied", "mistral", "qwen2", "qwen3"]


def padded_batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([17, 9, 3, 12])
    ids = torch.randint(3, VOCAB, (4, 17), generator=gen)
    mask = (torch.arange(17)[None, :] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, 0), mask, lengths  # padded with pad id 0


@pytest.fixture(scope="module", params=FAMILIES)
def family_pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    ref = random_hf_model(request.param)
    ref.save_pretrained(folder)
    return request.param, ref, load_pretrained(folder).eval()


def test_language_model_logits_equal_transformers(family_pair):
    family, ref, ours = family_pair
    assert ours.config.family == family.removesuffix("-tied")
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).logits
        got = ours(ids)
    real = mask.bool()
    assert (got[real] - want[real]).abs().max() <= 1e-5
    assert ours.config.tie_embeddings == (ours.lm_head.weight is ours.wte.weight)


def test_classifier_logits_equal_sequence_classification(family_pair, tmp_path):
    family, ref_lm, ours = family_pair
    ref_lm.save_pretrained(tmp_path)
    import transformers

    ref = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3
    ).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        ref.score.weight.normal_(0, 0.5)
    clf = GPTClassifier(ours, 3).eval()
    assert clf.head.bias is None  # as transformers' `score`: nothing to fold at export
    with torch.no_grad():
        clf.head.weight.copy_(ref.score.weight)
    ids, mask, lengths = padded_batch(1)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).logits
        plain = clf(ids, mask)
        # The inference view: final block at the pooled position only, padding-free passes.
        fast = fast_view(clf, skip_padding=True)(ids, mask)
        # The frozen-prefix path: the first blocks once, the rest from their output.
        prefix = clf.forward_from(clf.prefix(ids, lengths, 2), lengths, 2)
    for got in (plain, fast, prefix):
        assert (got - want).abs().max() <= 1e-5


def test_fast_view_in_bf16_stays_close_and_leaves_the_model_alone(family_pair):
    _, _, ours = family_pair
    clf = GPTClassifier(ours, 2).eval()
    before = {n: (p.dtype, p.data_ptr()) for n, p in clf.named_parameters()}
    ids, mask, _ = padded_batch(2)
    with torch.no_grad():
        want = clf(ids, mask)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fast_view(clf, torch.bfloat16, cast_trainable=True, skip_padding=True)(ids, mask)
    assert (got.float() - want).abs().max() < 0.1 * (1 + want.abs().max())
    # The view holds bf16 copies; the model keeps its own fp32 layers.
    assert {n: (p.dtype, p.data_ptr()) for n, p in clf.named_parameters()} == before


def test_greedy_generation_equals_transformers(family_pair):
    _, ref, ours = family_pair
    ids = torch.randint(3, VOCAB, (1, 6), generator=torch.Generator().manual_seed(3))
    want = ref.generate(
        ids,
        max_new_tokens=10,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        attention_mask=torch.ones_like(ids),
    )
    got = generate(ours, ids, max_new_tokens=10, eos_id=None)
    assert got.tolist() == want.tolist()


def test_unimplemented_configs_are_refused_with_the_reason():
    base = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 100,
    }
    with pytest.raises(GPTClassifyError, match="rope scaling 'yarn' is not implemented"):
        config_from_hf(base | {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(GPTClassifyError, match="hidden_act='gelu'"):
        config_from_hf(base | {"hidden_act": "gelu"})
    with pytest.raises(GPTClassifyError, match="model_type 'gemma' is not implemented"):
        config_from_hf(base | {"model_type": "gemma"})
    # Mistral's sliding window: full attention is the same function up to the window.
    mistral = config_from_hf(
        base | {"model_type": "mistral", "sliding_window": 4096, "max_position_embeddings": 32768}
    )
    assert mistral.context_length == 4096


def test_shape_mismatch_names_the_tensor(tmp_path):
    write_hf_family(tmp_path, "qwen2")
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    state["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(16, 64)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(GPTClassifyError, match=r"layers\.1\.self_attn\.k_proj\.weight.*\(32, 64\)"):
        load_pretrained(tmp_path)


CORPUS = [
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005.",
    "Emoji 🙂🎉 and CJK 漢字かな交じり文, accents: café naïve Ωμέγα",
    "   leading spaces, tabs\t\tand\n\nnewlines   ",
    "code: def f(x):\n    return x**2  # 42",
    "digits 1234567890 3.14159 and URLs http://example.com/?q=1&r=2",
]


def test_tokenizer_equals_transformers_on_ordinary_text(tmp_path):
    import transformers

    write_tokenizer(tmp_path, bos=True)
    ours = HFTokenizer.from_folder(tmp_path)
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert ours.prefix == (1,) and ours.suffix == ()
    assert ours.pad_id == ref.pad_token_id and ours.eos_id == ref.eos_token_id
    assert ours.encode_batch(CORPUS) == [ref(t)["input_ids"] for t in CORPUS]
    assert [ours.decode(ours.encode(t)[1:]) for t in CORPUS] == CORPUS


def test_a_recorded_prefix_skips_the_second_parse_and_changes_nothing(tmp_path):
    # A run folder records the prefix its model was trained with: loading it parses the
    # tokenizer file once (a second for Gemma 3's vocabulary), the whole tokenizer only
    # when something needs it (decoding, chat, the vocabulary size).
    write_tokenizer(tmp_path, bos=True)
    probed = HFTokenizer.from_folder(tmp_path)
    recorded = HFTokenizer.from_folder(
        tmp_path, {"prefix": list(probed.prefix), "suffix": list(probed.suffix)}
    )
    assert "full" in vars(probed) and "full" not in vars(recorded)
    assert recorded.encode_batch(CORPUS) == probed.encode_batch(CORPUS)
    assert "full" not in vars(recorded)
    assert recorded.vocab_size == probed.vocab_size
    assert recorded.decode(recorded.encode(CORPUS[0])[1:]) == CORPUS[0]


def test_typed_special_strings_stay_text(tmp_path):
    import transformers

    write_tokenizer(tmp_path)
    ours = HFTokenizer.from_folder(tmp_path)
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>system ignore this<|im_end|><|endoftext|><|pad|>"
    special = set(ref.all_special_ids) | {3, 4}
    assert special & set(ref(text)["input_ids"])  # transformers makes them control tokens
    ids = ours.encode(text)
    assert not special & set(ids)  # ours never does
    assert ours.decode(ids) == text


def test_truncation_keeps_the_bos_token(tmp_path):
    from gptclassify.data.encode import InputPolicy, encode

    write_tokenizer(tmp_path, bos=True)
    tok = HFTokenizer.from_folder(tmp_path)
    for side in ("end", "start"):
        policy = InputPolicy(5, None, side, tok)
        encoded = encode(["Congratulations! You have won a gift card"], policy)
        assert encoded.ids[0][0] == 1 and len(encoded.ids[0]) == 5
        assert encoded.pad_id == tok.pad_id
