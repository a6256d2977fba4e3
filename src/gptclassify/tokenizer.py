"""GPT-2 BPE through tiktoken: encode, truncate, pad, decode.

User text is encoded as ordinary text: a literal "<|endoftext|>" inside a message becomes
ordinary BPE pieces, so a message can never inject the special token that doubles as padding.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

import tiktoken

from gptclassify.config import PAD_TOKEN_ID
from gptclassify.errors import GPTClassifyError

ENCODING_NAME = "gpt2"
TruncateSide = Literal["right", "left"]


@lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """The GPT-2 encoding. tiktoken downloads its two files once and caches them."""
    try:
        return tiktoken.get_encoding(ENCODING_NAME)
    except Exception as exc:  # network errors come in many types (requests, ssl, OS)
        cache = os.environ.get("TIKTOKEN_CACHE_DIR", "<system temp>/data-gym-cache")
        raise GPTClassifyError(
            f"could not load the GPT-2 tokenizer ({type(exc).__name__}: {exc}); it is "
            f"downloaded once and cached in {cache}. Offline, set TIKTOKEN_CACHE_DIR to a "
            "folder holding tiktoken's cached gpt2 files (vocab.bpe and encoder.json)."
        ) from None


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
