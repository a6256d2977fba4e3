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
import re
from collections.abc import Sequence
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

import tiktoken
from tiktoken_ext.openai_public import r50k_pat_str
from tokenizers import Tokenizer as RustTokenizer

from gptclassify.config import PAD_TOKEN_ID
from gptclassify.errors import GPTClassifyError
from gptclassify.files import inside

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


class Tokenizer:
    """What the rest of the package asks of a tokenizer, whatever the model family.

    `encode` turns user text into ids as ordinary text: strings that look like special
    tokens ("<|endoftext|>", "<|im_start|>") are never turned into them, so a message can
    not inject control tokens. `prefix` / `suffix` are the tokens the model expects around
    every text (a BOS token for Llama 3); truncation keeps them.
    """

    name: str = ""
    pad_id: int = 0
    """Padding id (its value never reaches a real token: padding is on the right, under the
    causal mask, and pooling reads real tokens)."""
    eos_id: int | None = None
    prefix: tuple[int, ...] = ()
    suffix: tuple[int, ...] = ()
    vocab_size: int = 0
    """Number of ids the tokenizer can emit (a model needs at least as many embeddings)."""

    def encode_ordinary_batch(self, texts: Sequence[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    def describe(self) -> dict:
        """What config.json records about the tokenizer."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids per text, with the model's prefix and suffix tokens (an empty text stays
        empty, so callers can report it)."""
        pre, post = list(self.prefix), list(self.suffix)
        return [pre + ids + post if ids else [] for ids in self.encode_ordinary_batch(texts)]

    def truncate(self, ids: list[int], max_length: int, keep: TruncateSide = "right") -> list[int]:
        """`truncate` that cuts the text between the prefix and suffix tokens."""
        if len(ids) <= max_length:
            return ids
        n_pre, n_post = len(self.prefix), len(self.suffix)
        if not n_pre and not n_post or max_length <= n_pre + n_post:
            return truncate(ids, max_length, keep)
        body = truncate(ids[n_pre : len(ids) - n_post], max_length - n_pre - n_post, keep)
        return ids[:n_pre] + body + ids[len(ids) - n_post :]

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes one token stands for (a character may span several tokens)."""
        return self.decode([token_id]).encode("utf-8")

    chat_template: str | None = None
    """The model's chat template (Jinja), when it has one."""

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """A conversation rendered with the model's chat template, ending with the prompt
        for the assistant's turn; its control tokens are real control tokens here (the
        template writes them, not the user)."""
        raise GPTClassifyError(f"the {self.name} tokenizer has no chat template")


class GPT2Tokenizer(Tokenizer):
    """GPT-2's BPE through tiktoken, from the files shipped in the package."""

    name = "gpt2"
    pad_id = PAD_TOKEN_ID
    eos_id = PAD_TOKEN_ID
    vocab_size = 50257

    def encode_ordinary_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return encode_batch(texts)

    def decode(self, ids: Sequence[int]) -> str:
        return decode(ids)

    def describe(self) -> dict:
        return {"library": "tiktoken", "encoding": "gpt2", "pad_id": PAD_TOKEN_ID}

    def token_bytes(self, token_id: int) -> bytes:
        return get_encoding().decode_single_token_bytes(token_id)


def gpt2() -> GPT2Tokenizer:
    return GPT2Tokenizer()


TOKENIZER_JSON = "tokenizer.json"


class HFTokenizer(Tokenizer):
    """A Hugging Face `tokenizer.json` through the `tokenizers` library (Llama, Qwen,
    SmolLM2, Mistral, and GGUF files' tokenizers converted to it).

    User text is encoded by a copy of the tokenizer without its added tokens (special and
    not), so typed control strings stay text; the prefix/suffix the tokenizer's
    post-processor puts around a text (BOS for Llama 3) is added back by `encode_batch`.
    """

    def __init__(self, text: str, source: str = TOKENIZER_JSON, settings: dict | None = None):
        settings = settings or {}
        self.text = text
        self._source = source
        try:
            data = json.loads(text)
            ordinary = dict(data, added_tokens=[], post_processor=None, truncation=None)
            ordinary["padding"] = None
            self.ordinary = RustTokenizer.from_str(json.dumps(ordinary))
        except Exception as exc:  # tokenizers raises its own exception type
            raise GPTClassifyError(f"{source}: not a usable tokenizer.json ({exc})") from None
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        # Byte-level BPE (GPT-2's scheme, used by Llama 3, Qwen, SmolLM2): each token's
        # string spells its bytes in GPT-2's byte alphabet.
        decoder = json.dumps(data.get("decoder") or {})
        self._byte_level = "ByteLevel" in decoder
        # Sentencepiece-style BPE (Gemma): spaces spelled "\u2581", bytes as <0xNN> tokens.
        self._byte_fallback = "ByteFallback" in decoder
        self._added = {t["id"] for t in data.get("added_tokens", [])}
        self.name = settings.get("name", "tokenizer.json")
        if "prefix" in settings:  # what the model was trained with (a run folder's record)
            self.prefix = tuple(settings["prefix"])
            self.suffix = tuple(settings.get("suffix", ()))
        else:  # what the post-processor puts around a text, found by a probe
            probe_with = self.full.encode("a", add_special_tokens=True).ids
            probe = self.ordinary.encode("a", add_special_tokens=False).ids
            start = _find(probe_with, probe)
            if start < 0:  # a post-processor that rewrites the text's own ids: not implemented
                raise GPTClassifyError(f"{source}: its post-processor changes the text's tokens")
            self.prefix = tuple(probe_with[:start])
            self.suffix = tuple(probe_with[start + len(probe) :])
        self.chat_template = settings.get("chat_template")
        self.eos_id = settings.get("eos_id", self._id(data, "eos", settings.get("eos_token")))
        pad = settings.get("pad_id", self._id(data, "pad", settings.get("pad_token")))
        self.pad_id = pad if pad is not None else (self.eos_id if self.eos_id is not None else 0)

    @cached_property
    def full(self) -> RustTokenizer:
        """The whole tokenizer (added tokens, post-processor), for chat, decoding and the
        probe of a new tokenizer. Built on first use: classifying texts needs only
        `ordinary`, and each parse of Gemma 3's 262,144-token file takes about a second."""
        try:
            return RustTokenizer.from_str(self.text)
        except Exception as exc:  # tokenizers raises its own exception type
            raise GPTClassifyError(f"{self._source}: not a usable tokenizer.json ({exc})") from None

    @cached_property
    def vocab_size(self) -> int:  # type: ignore[override]
        return self.full.get_vocab_size(with_added_tokens=True)

    @staticmethod
    def _id(data: dict, kind: str, named: str | None = None) -> int | None:
        """The id of the eos/pad token: the one `named` (by tokenizer_config.json) when the
        file has it, else a conventional one the file has."""
        names = {
            "eos": ("<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>", "<eos>"),
            "pad": ("<|finetune_right_pad_id|>", "<pad>", "<|pad|>", "[PAD]"),
        }[kind]
        by_content = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
        for name in (named, *names):
            if name in by_content:
                return int(by_content[name])
        return None

    @classmethod
    def from_folder(cls, folder: Path, settings: dict | None = None) -> HFTokenizer:
        path = folder / TOKENIZER_JSON
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise GPTClassifyError(f"{path}: cannot read the tokenizer ({exc})") from None
        settings = dict(settings or {})
        config = folder / "tokenizer_config.json"
        if config.is_file() and "eos_id" not in settings:
            values = read_json_quiet(config)
            for key in ("eos_token", "pad_token"):  # looked up in the file by __init__
                token = values.get(key)
                token = token.get("content") if isinstance(token, dict) else token
                if isinstance(token, str):
                    settings.setdefault(key, token)
            if isinstance(values.get("chat_template"), str):
                settings.setdefault("chat_template", values["chat_template"])
        return cls(text, str(path), settings)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if not self.chat_template:
            return super().encode_chat(messages)
        # A sandbox, as transformers renders templates: a template is data from a file.
        from jinja2.sandbox import ImmutableSandboxedEnvironment  # lazy: only for chat

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        try:
            text = env.from_string(self.chat_template).render(
                messages=messages, add_generation_prompt=True
            )
        except Exception as exc:  # jinja2's errors: syntax, undefined, sandbox
            raise GPTClassifyError(f"{self.name}: the chat template failed ({exc})") from None
        return self.full.encode(text, add_special_tokens=False).ids

    def encode_ordinary_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.ordinary.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.full.decode(list(ids), skip_special_tokens=False)

    def token_bytes(self, token_id: int) -> bytes:
        piece = self.full.id_to_token(token_id)
        if piece is None:
            return b""
        if self._byte_level and token_id not in self._added:
            table = _byte_decoder()
            if all(ch in table for ch in piece):
                return bytes(table[ch] for ch in piece)
        if self._byte_fallback and token_id not in self._added:
            if _BYTE_PIECE.fullmatch(piece):
                return bytes([int(piece[3:5], 16)])  # one byte of a character
            return piece.replace("\u2581", " ").encode("utf-8")
        return self.decode([token_id]).encode("utf-8")

    def describe(self) -> dict:
        return {
            "library": "tokenizers",
            "file": TOKENIZER_JSON,
            "sha256": self.sha256,
            "pad_id": self.pad_id,
            "eos_id": self.eos_id,
            "prefix": list(self.prefix),
            "suffix": list(self.suffix),
        }


_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _find(haystack: list[int], needle: list[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    return -1


def read_json_quiet(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_tokenizer(description: dict | None, folder: Path | None = None) -> Tokenizer:
    """The tokenizer a config.json's "tokenizer" entry describes (absent: GPT-2's)."""
    if not description or description.get("library") == "tiktoken":
        return gpt2()
    if folder is None:
        raise GPTClassifyError("a tokenizers tokenizer needs the folder holding tokenizer.json")
    path = inside(folder, description.get("file", TOKENIZER_JSON))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GPTClassifyError(f"{path}: cannot read the tokenizer ({exc})") from None
    if (
        description.get("sha256")
        and hashlib.sha256(text.encode()).hexdigest() != description["sha256"]
    ):
        raise GPTClassifyError(f"{path}: sha256 does not match config.json; refusing to use it")
    return HFTokenizer(text, str(path), description)
