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

    # The shipped files are the two a Hugging Face GPT-2 tokenizer reads, under other names.
    files = tokenizer.tokenizer_files()
    shutil.copy(files["encoder.json"], tmp_path / "vocab.json")
    shutil.copy(files["vocab.bpe"], tmp_path / "merges.txt")
    hf = transformers.GPT2TokenizerFast.from_pretrained(tmp_path)
    for text in [
        "Free entry in 2 a wkly comp to win FA Cup final tkts",
        "  spaces\tand\nnewlines ",
        "£1000 cash!!",
        "I'll be there; don't   worry\r\n",
        "Ünïcödé 日本語 🎉 <|endoftext|>",
    ]:
        assert tokenizer.encode(text) == hf(text, split_special_tokens=True)["input_ids"]


def test_tokenizer_needs_no_network_or_cache(tmp_path):
    """The encoding loads from the package alone: no TIKTOKEN_CACHE_DIR, no download."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIKTOKEN", "DATA_GYM"))}
    env.update(
        HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", TMPDIR=str(tmp_path)
    )
    code = "from gptclassify import tokenizer; print(tokenizer.encode('Hello, world'))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[15496, 11, 995]"
    assert list(tmp_path.iterdir()) == []  # nothing cached anywhere


def test_damaged_shipped_file_is_refused(monkeypatch, tmp_path):
    from gptclassify.errors import GPTClassifyError

    damaged = tmp_path / "encoder.json"
    damaged.write_bytes(tokenizer.tokenizer_files()["encoder.json"].read_bytes()[:-10])
    monkeypatch.setattr(tokenizer, "tokenizer_files", lambda: {"encoder.json": damaged})
    tokenizer.get_encoding.cache_clear()
    try:
        with pytest.raises(GPTClassifyError, match="damaged GPT-2 tokenizer file"):
            tokenizer.get_encoding()
    finally:
        tokenizer.get_encoding.cache_clear()


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
