"""GPT-2 BPE through tiktoken, from the files shipped in the package: encode, truncate, pad.

The two tokenizer files (`assets/gpt2/`, OpenAI's, MIT-style license) are read from the
installed package and checked by sha256, so tokenizing never needs the network or a cache
folder. User text is encoded as ordinary text: a literal "<|endoftext|>" inside a message
becomes ordinary BPE pieces, so a message can never inject the special token that doubles as
padding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import tiktoken
from tiktoken_ext.openai_public import r50k_pat_str

from gptclassify.config import PAD_TOKEN_ID
from gptclassify.errors import GPTClassifyError

ENCODING_NAME = "gpt2"
TruncateSide = Literal["right", "left"]

ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"


def tokenizer_files() -> dict[str, Path]:
    """The shipped GPT-2 tokenizer files: {"vocab.bpe": path, "encoder.json": path}.

    (Hugging Face calls the same files merges.txt and vocab.json.)
    """
    folder = resources.files("gptclassify") / "assets" / "gpt2"
    return {name: Path(str(folder / name)) for name in ("vocab.bpe", "encoder.json")}


@lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """The GPT-2 encoding, built from the shipped encoder.json (verified by sha256).

    encoder.json maps every token to its id, which for GPT-2 is also its merge rank; tokens
    are written one printable character per byte (`_byte_decoder`).
    """
    path = tokenizer_files()["encoder.json"]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GPTClassifyError(f"{path}: cannot read the shipped GPT-2 tokenizer ({exc})") from None
    if hashlib.sha256(raw).hexdigest() != ENCODER_JSON_SHA256:
        raise GPTClassifyError(
            f"{path}: damaged GPT-2 tokenizer file (sha256); reinstall gptclassify"
        )
    decoder = _byte_decoder()
    ranks = {
        bytes(decoder[ch] for ch in token): rank
        for token, rank in json.loads(raw).items()
        if token != "<|endoftext|>"
    }
    return tiktoken.Encoding(
        name=ENCODING_NAME,
        pat_str=r50k_pat_str,  # GPT-2's pre-tokenizer pattern, as in tiktoken's own gpt2
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": PAD_TOKEN_ID},
        explicit_n_vocab=50257,
    )


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> character table: printable Latin-1 bytes stand for themselves, the
    other 68 bytes for chr(256), chr(257), ... in byte order (Radford et al.'s encoder.py)."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    others = [b for b in range(256) if b not in printable]
    return {chr(b): b for b in printable} | {chr(256 + n): b for n, b in enumerate(others)}


def encode(text: str) -> list[int]:
    return get_encoding().encode_ordinary(text)


def encode_batch(texts: Sequence[str]) -> list[list[int]]:
    # tiktoken releases the GIL and encodes in parallel threads.
    return get_encoding().encode_ordinary_batch(
        list(texts), num_threads=max(os.cpu_count() or 1, 1)
    )


def decode(ids: Sequence[int]) -> str:
    return get_encoding().decode(list(ids))


def truncate(ids: list[int], max_length: int, keep: TruncateSide = "right") -> list[int]:
    """Cut `ids` to at most `max_length` tokens.

    keep="right" keeps the start of the text (cuts the end); keep="left" keeps the end.
    """
    if max_length < 1:
        raise ValueError("max_length must be >= 1")
    if len(ids) <= max_length:
        return ids
    return ids[:max_length] if keep == "right" else ids[-max_length:]


def pad(ids: list[int], length: int, pad_id: int = PAD_TOKEN_ID) -> list[int]:
    """Right-pad to `length` (right padding keeps real tokens' positions and outputs intact)."""
    if len(ids) > length:
        raise ValueError(f"sequence of {len(ids)} tokens is longer than the pad length {length}")
    return ids + [pad_id] * (length - len(ids))
