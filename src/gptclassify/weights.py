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
from huggingface_hub import hf_hub_download
from safetensors import safe_open
from torch import Tensor

from gptclassify.config import HUB_REPOS, PRESETS, GPTConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.files import read_json
from gptclassify.model import LAYER_NORM_EPS, GPTModel, skip_meta_init

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
) -> dict[str, str]:
    """Our parameter name -> the file's tensor name, after checking every name and shape.

    Both naming styles (`h.0...` and `transformer.h.0...`) are accepted; GPT-2's attention
    mask buffers are ignored; the tied `lm_head.weight` is checked and skipped; anything
    else unexpected or missing is an error naming the tensor (and both shapes).
    """
    expected = _expected_shapes(config)
    plan: dict[str, str] = {}
    unknown = []
    for raw_name, raw_shape in shapes.items():
        name = raw_name.removeprefix("transformer.")
        if _IGNORED.match(name):
            continue
        if name == "lm_head.weight":
            # Tied to wte in GPT-2; we tie it ourselves, but a wrong shape still means a wrong file.
            if raw_shape != expected["wte.weight"]:
                raise GPTClassifyError(
                    f"{source}: tensor {raw_name!r} has shape {raw_shape}, "
                    f"expected {expected['wte.weight']}"
                )
            continue
        if name not in expected:
            unknown.append(raw_name)
            continue
        if name in plan:
            raise GPTClassifyError(
                f"{source}: tensor {name!r} appears twice (with and without prefix)"
            )
        # Conv1D weights are stored (in, out): compare against the transposed expectation.
        want = expected[name][::-1] if name.endswith(TRANSPOSED) else expected[name]
        if raw_shape != want:
            raise GPTClassifyError(
                f"{source}: tensor {raw_name!r} has shape {raw_shape}, expected {want}"
            )
        plan[name] = raw_name
    if unknown:
        raise GPTClassifyError(
            f"{source}: unexpected tensor(s) {', '.join(sorted(unknown)[:5])}"
            + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        )
    missing = [n for n in expected if n not in plan]
    if missing:
        raise GPTClassifyError(
            f"{source}: missing tensor(s) {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        )
    return plan


def _expected_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    with skip_meta_init(), torch.device("meta"):
        model = GPTModel(config)
    return {n: tuple(p.shape) for n, p in model.state_dict().items() if n != "lm_head.weight"}


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
    tensors = CheckpointTensors(directory)
    plan = map_hf_names({n: tensors.shape(n) for n in tensors.names()}, config, str(directory))
    # Allocate without the random init, then fill each parameter straight from the file.
    with skip_meta_init(), torch.device("meta"):
        model = GPTModel(config)
    model.to_empty(device="cpu")
    params = model.state_dict()
    with torch.no_grad():
        for name, raw_name in plan.items():
            tensor = tensors[raw_name]
            params[name].copy_(tensor.t() if name.endswith(TRANSPOSED) else tensor)
    model.lm_head.weight = model.wte.weight  # to_empty gave the head its own storage; re-tie
    return model


def download_pretrained(name: str, revision: str | None = None) -> Path:
    """Fetch a preset's config.json + model.safetensors through the Hub cache; returns the folder.

    huggingface_hub handles caching, HF_HOME / HF_HUB_CACHE, HF_ENDPOINT, HF_HUB_OFFLINE, the
    progress bar and the integrity of the download.
    """
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
