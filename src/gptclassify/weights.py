"""Pretrained GPT-2 weights: from the Hugging Face Hub or a local folder in its format.

The Hub stores GPT-2 with OpenAI's parameter names, which our model keeps, so loading is a
name-for-name copy. The only twist is OpenAI's `Conv1D`: it stores (in, out) matrices applied
as x @ W, where nn.Linear stores (out, in); `TRANSPOSED` lists the tensors that need a
transpose. Every tensor is shape-checked; nothing unexpected is silently dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gptclassify.config import HUB_REPOS, PRESETS, GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.files import read_json
from gptclassify.model import LAYER_NORM_EPS, GPTModel

TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
"""Conv1D weights stored (in, out) in GPT-2 files; nn.Linear wants (out, in)."""

# Causal-mask buffers some exports carry (older transformers versions); not parameters.
_IGNORED = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def gpt_config_from_hf(hf: dict[str, Any], source: str = "config.json") -> GPTConfig:
    """Translate a transformers GPT-2 config.json into a GPTConfig, refusing what we can't run."""
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise GPTClassifyError(f"{source}: model_type is {model_type!r}, only 'gpt2' is supported")
    checks = {
        # Field: (value we implement, default when absent)
        "activation_function": ("gelu_new", "gelu_new"),
        "scale_attn_weights": (True, True),
        "scale_attn_by_inverse_layer_idx": (False, False),
        "reorder_and_upcast_attn": (False, False),
    }
    for key, (wanted, default) in checks.items():
        value = hf.get(key, default)
        ok = (
            value in ("gelu_new", "gelu_pytorch_tanh")
            if key == "activation_function"
            else value == wanted
        )
        if not ok:
            raise GPTClassifyError(f"{source}: {key}={value!r} is not supported (need {wanted!r})")
    eps = hf.get("layer_norm_epsilon", LAYER_NORM_EPS)
    if abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise GPTClassifyError(f"{source}: layer_norm_epsilon={eps} is not supported (need 1e-5)")
    try:
        return GPTConfig(
            vocab_size=int(hf["vocab_size"]),
            context_length=int(hf.get("n_positions", hf.get("n_ctx", 1024))),
            emb_dim=int(hf["n_embd"]),
            n_heads=int(hf["n_head"]),
            n_layers=int(hf["n_layer"]),
            drop_rate=0.0,
            qkv_bias=True,
        )
    except KeyError as exc:
        raise GPTClassifyError(f"{source}: missing field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise GPTClassifyError(f"{source}: {exc}") from None


def read_checkpoint(directory: Path) -> dict[str, Tensor]:
    """Tensors from a Hugging Face model folder (safetensors preferred; .bin without pickle code)."""
    from safetensors.torch import load_file

    if (directory / "model.safetensors").is_file():
        return load_file(directory / "model.safetensors")
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index)["weight_map"].values()))
        tensors: dict[str, Tensor] = {}
        for shard in shards:
            tensors.update(load_file(directory / shard))
        return tensors
    if (directory / "pytorch_model.bin").is_file():
        # weights_only=True: a .bin is a pickle, and a full unpickle would run code from the file.
        try:
            return torch.load(
                directory / "pytorch_model.bin", map_location="cpu", weights_only=True
            )
        except Exception as exc:
            raise GPTClassifyError(
                f"{directory / 'pytorch_model.bin'}: refused to load ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
    raise GPTClassifyError(
        f"{directory}: no weights found (expected one of {', '.join(_WEIGHT_FILES)})"
    )


def convert_hf_state_dict(
    tensors: dict[str, Tensor], config: GPTConfig, source: str = "checkpoint"
) -> dict[str, Tensor]:
    """Map GPT-2 tensors (with or without the `transformer.` prefix) onto our parameter names."""
    expected = _expected_shapes(config)
    out: dict[str, Tensor] = {}
    unknown = []
    for raw_name, tensor in tensors.items():
        name = raw_name.removeprefix("transformer.")
        if _IGNORED.match(name):
            continue
        if name == "lm_head.weight":
            # Tied to wte in GPT-2; we tie it ourselves, but a wrong shape still means a wrong file.
            if tuple(tensor.shape) != expected["wte.weight"]:
                raise GPTClassifyError(
                    f"{source}: tensor {raw_name!r} has shape {tuple(tensor.shape)}, "
                    f"expected {expected['wte.weight']}"
                )
            continue
        if name not in expected:
            unknown.append(raw_name)
            continue
        if name in out:
            raise GPTClassifyError(
                f"{source}: tensor {name!r} appears twice (with and without prefix)"
            )
        if name.endswith(TRANSPOSED):
            tensor = tensor.t()
        if tuple(tensor.shape) != expected[name]:
            shape = tuple(tensor.t().shape) if name.endswith(TRANSPOSED) else tuple(tensor.shape)
            want = expected[name][::-1] if name.endswith(TRANSPOSED) else expected[name]
            raise GPTClassifyError(
                f"{source}: tensor {raw_name!r} has shape {shape}, expected {want}"
            )
        out[name] = tensor.to(torch.float32).contiguous()
    if unknown:
        raise GPTClassifyError(
            f"{source}: unexpected tensor(s) {', '.join(sorted(unknown)[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    missing = [n for n in expected if n not in out]
    if missing:
        raise GPTClassifyError(
            f"{source}: missing tensor(s) {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    return out


def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = GPTModel(config)
    return {n: tuple(p.shape) for n, p in model.state_dict().items() if n != "lm_head.weight"}


def model_from_state_dict(config: GPTConfig, state: dict[str, Tensor]) -> GPTModel:
    """Build a GPTModel holding `state` (our names) without a wasted random init."""
    with torch.device("meta"):
        model = GPTModel(config)
    model.load_state_dict({**state, "lm_head.weight": state["wte.weight"]}, assign=True)
    model.lm_head.weight = model.wte.weight  # assign=True breaks the tie; restore it
    return model


def load_hf_directory(directory: str | Path) -> GPTModel:
    """Load a Hugging Face GPT-2 folder (config.json + weights) of any size."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise GPTClassifyError(
            f"model directory not found: {directory} (expected a folder with config.json and "
            f"model.safetensors, or a preset: {', '.join(PRESETS)})"
        )
    config_path = directory / "config.json"
    config = gpt_config_from_hf(read_json(config_path), source=str(config_path))
    state = convert_hf_state_dict(read_checkpoint(directory), config, source=str(directory))
    return model_from_state_dict(config, state)


def download_pretrained(name: str, revision: str | None = None) -> Path:
    """Fetch a preset's config.json + model.safetensors through the Hub cache; returns the folder.

    huggingface_hub handles caching, HF_HOME / HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE, the
    progress bar and the integrity of the download.
    """
    from huggingface_hub import hf_hub_download

    repo = HUB_REPOS[name]
    try:
        hf_hub_download(repo, "config.json", revision=revision)
        path = hf_hub_download(repo, "model.safetensors", revision=revision)
    except Exception as exc:  # offline, DNS, HTTP and cache errors all end the same way
        reason = (
            str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__
        )
        raise GPTClassifyError(
            f"could not get {name!r} from the Hugging Face Hub ({repo}): {reason}. To run "
            f"offline, put config.json and model.safetensors from https://huggingface.co/{repo} "
            "in a folder and pass that folder instead (--model DIR, or load_pretrained(DIR))"
        ) from None
    return Path(path).parent


def pretrained_dir(name_or_dir: str | Path, revision: str | None = None) -> Path:
    """The local folder holding a pretrained GPT-2: downloaded for a preset, else as given."""
    if isinstance(name_or_dir, str) and name_or_dir in PRESETS:
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
    """A pretrained GPT-2: a preset name (downloaded from the Hub) or a local HF-format folder."""
    return load_hf_directory(pretrained_dir(name_or_dir, revision))
