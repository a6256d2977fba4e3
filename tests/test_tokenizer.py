"""GPT-2 BPE through tiktoken: known ids, special-token safety, truncation, padding."""

from __future__ import annotations

import pytest

from gptclassify import tokenizer


def test_known_gpt2_ids_and_round_trip():
    # Ids of OpenAI's GPT-2 vocabulary (the same in transformers' GPT2Tokenizer).
    assert tokenizer.encode("Hello, world") == [15496, 11, 995]
    text = "Every effort moves you — naïve café 😀"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.get_encoding().n_vocab == 50257


def test_matches_transformers_tokenizer(tmp_path):
    import shutil

    import transformers

    from conftest import SHARED

    # The tiktoken cache holds the same two files a Hugging Face GPT-2 tokenizer reads.
    cache = SHARED / "tiktoken_cache"
    if not cache.is_dir():
        pytest.skip("no shared tiktoken cache")
    shutil.copy(cache / "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6", tmp_path / "vocab.json")
    shutil.copy(cache / "6d1cbeee0f20b3d9449abfede4726ed8212e3aee", tmp_path / "merges.txt")
    hf = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    for text in [
        "Free entry in 2 a wkly comp to win FA Cup final tkts",
        "  spaces\tand\nnewlines ",
        "£1000 cash!!",
    ]:
        assert tokenizer.encode(text) == hf(text)["input_ids"]


def test_end_of_text_in_user_text_is_not_the_special_token():
    ids = tokenizer.encode("hi <|endoftext|> there")
    assert 50256 not in ids
    assert tokenizer.decode(ids) == "hi <|endoftext|> there"


def test_batch_encoding_equals_single():
    texts = ["one", "two words", "", "three little words"]
    assert tokenizer.encode_batch(texts) == [tokenizer.encode(t) for t in texts]


def test_truncate_keeps_start_or_end_and_pad_right():
    ids = list(range(10))
    assert tokenizer.truncate(ids, 4) == [0, 1, 2, 3]
    assert tokenizer.truncate(ids, 4, keep="left") == [6, 7, 8, 9]
    assert tokenizer.truncate(ids, 20) == ids
    assert tokenizer.pad([1, 2], 5) == [1, 2, 50256, 50256, 50256]
    with pytest.raises(ValueError):
        tokenizer.pad(ids, 3)
    with pytest.raises(ValueError):
        tokenizer.truncate(ids, 0)
