"""The torch side of the model folder: a GPTClassifier to and from model.safetensors.

config.json is artifact.py's; this module writes the weights next to it, and rebuilds the
classifier from both (verifying the weights' sha256 first, and for LoRA adapters on a
pretrained base, the base's).

A folder stores its weights whole (`stored` "full": it needs nothing else) or trained-only
("trained"): the tensors training changed (the body's trainable parameters, the head, a
lexical head's tables) and, for the frozen rest, the base model's name and sha256. Loading
such a folder reads the base again (a packaged or preset name is fetched by name; a path is
read where it was), checks its sha256, and puts the stored tensors on it: the same model,
bit for bit, from a folder of a few MB instead of hundreds.
"""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptclassify.artifact import (
    CONFIG,
    FORMAT_CLASSIFIER,
    TOKENIZER_FILE,
    TORCH_LAYOUT_VERSION,
    WEIGHTS,
    ClassifierConfig,
    LoraInfo,
    read_classifier_config,
)
from gptclassify.artifact import versions as library_versions
from gptclassify.classifier import GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.errors import GPTClassifyError, advice, option
from gptclassify.files import atomic_path, atomic_write, inside, sha256_file
from gptclassify.lexical import LexicalHead
from gptclassify.lora import is_adapter_or_head
from gptclassify.model import GPTBody, skip_meta_init
from gptclassify.models import PRESETS
from gptclassify.packaged import is_packaged
from gptclassify.tokenizer import HFTokenizer, Tokenizer, load_tokenizer
from gptclassify.weights import (
    gguf_path,
    is_gguf,
    is_hub_id,
    load_pretrained_model,
    pretrained_dir,
    weights_file,
)


def versions() -> dict[str, str]:
    return library_versions(torch=torch.__version__)


def save_classifier(
    directory: str | Path,
    model: GPTClassifier,
    config: ClassifierConfig,
    tokenizer: Tokenizer | None = None,
) -> Path:
    """Write the weights, config.json (and a tokenizer.json tokenizer) into `directory`;
    returns the config path.

    `config` describes the classifier; this function fills in the weights file's name and
    sha256, the tokenizer's description and the library versions. Each file is written to a
    temporary name and renamed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(tokenizer, HFTokenizer):
        atomic_write(directory / TOKENIZER_FILE, tokenizer.text)
        config = dataclasses.replace(config, tokenizer=tokenizer.describe())
    elif tokenizer is not None:
        config = dataclasses.replace(config, tokenizer=tokenizer.describe())
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    lora = config.provenance.lora
    if lora is not None and lora.adapters_only:
        state = {k: v for k, v in state.items() if is_adapter_or_head(k)}
    elif config.trained_only:
        kept = trained_tensors(model)
        state = {k: v for k, v in state.items() if k in kept}
    with atomic_path(directory / WEIGHTS) as tmp:
        save_file(state, tmp, metadata={"format": FORMAT_CLASSIFIER})
    config = dataclasses.replace(
        config,
        weights_file=WEIGHTS,
        weights_sha256=sha256_file(directory / WEIGHTS),
        versions=versions(),
        format_version=TORCH_LAYOUT_VERSION,
        onnx=None,
        exported_from=None,
    )
    atomic_write(directory / CONFIG, json.dumps(config.to_json(), indent=2) + "\n")
    return directory / CONFIG


def load_classifier(
    directory: str | Path,
    config: ClassifierConfig | None = None,
    base_model: str | Path | None = None,
    weights_sha256: str | None = None,
) -> tuple[GPTClassifier, ClassifierConfig]:
    """Rebuild the classifier from a folder, verifying the weights' checksum first.

    base_model: for LoRA adapters saved alone, the base to put them on, when config.json
    does not name one that can be used (a Hub preset, or a path inside the folder).
    weights_sha256: the weights file's sha256 when the caller has computed it already (e.g.
    in a thread while torch was being imported); computed here otherwise.
    """
    directory = Path(directory)
    config = config or read_classifier_config(directory)
    if not config.has_torch_weights:
        raise GPTClassifyError(
            f"{directory}: holds an ONNX graph, not PyTorch weights; run it with ONNX Runtime "
            "(runtime 'onnx' or 'auto')"
        )
    weights = inside(directory, config.weights_file)
    if not weights.is_file():
        raise GPTClassifyError(f"{weights}: file not found")
    if (weights_sha256 or sha256_file(weights)) != config.weights_sha256:
        raise GPTClassifyError(
            f"{weights}: sha256 does not match config.json (the file changed after it was saved); "
            "refusing to load it"
        )
    lora = config.provenance.lora
    adapters_only = lora is not None and lora.adapters_only
    if adapters_only:
        gpt = _lora_base(lora, config.model, directory, base_model)
    elif config.trained_only:
        gpt = _trained_base(config, directory, base_model)
    else:
        with skip_meta_init(), torch.device("meta"):  # every tensor comes from the file
            gpt = GPTBody(config.model, init=False)
    with skip_meta_init():  # the head (and adapters) of a meta body are meta too
        model = GPTClassifier(gpt, len(config.labels), pool=config.pool, causal=config.causal)
        if lora is not None and not lora.merged:
            model.add_lora(lora.rank, lora.alpha, lora.targets)
    if config.lexical is not None:
        model.lexical = LexicalHead(config.model.vocab_size, len(config.labels))
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as exc:
        raise GPTClassifyError(f"{weights}: unreadable safetensors file ({exc})") from None
    expected = model.state_dict()
    if adapters_only:
        expected = {k: v for k, v in expected.items() if is_adapter_or_head(k)}
    elif config.trained_only:  # the body's tensors not stored here are the base's
        expected = {k: v for k, v in expected.items() if k in state or not _in_body(k)}
    missing = sorted(set(expected) - set(state))
    unknown = sorted(set(state) - set(expected))
    if missing or unknown:
        raise GPTClassifyError(
            f"{weights}: tensors do not match config.json"
            + (f"; missing {', '.join(missing[:3])}" if missing else "")
            + (f"; unexpected {', '.join(unknown[:3])}" if unknown else "")
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise GPTClassifyError(
                f"{weights}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                f"expected {tuple(expected[name].shape)}"
            )
    if adapters_only:
        model.load_state_dict(state, strict=False)  # the base weights came from the base model
    elif config.trained_only:
        model.load_state_dict(state, strict=False)  # the frozen rest came from the base
        # Frozen as in training: saving this classifier again stores the same tensors.
        for name, param in model.named_parameters(remove_duplicate=False):
            param.requires_grad_(name in state)
    else:
        model.load_state_dict(state, assign=True)
    return model.eval(), config


def _lora_base(
    lora: LoraInfo, gpt_config: GPTConfig, folder: Path, given: str | Path | None
) -> GPTBody:
    """The pretrained base of an adapters-only folder, checked against its recorded sha256.

    A base is a Hub preset or id, a path inside the model folder, or one the user gives: a
    path recorded in config.json that leads outside the folder is never followed on its own.
    """
    source = folder / CONFIG
    base = str(given) if given is not None else lora.base
    if not base:
        raise GPTClassifyError(f"{source}: LoRA adapters without a 'base' model field")
    if given is not None or _named(base):
        location: Path | str = base if is_gguf(base) or _named(base) else Path(base).expanduser()
    else:
        location = (folder / base).resolve()
        if Path(base).is_absolute() or not location.is_relative_to(folder.resolve()):
            raise GPTClassifyError(
                f"{source}: the LoRA base {base!r} is outside the model folder; name it "
                f"yourself: {advice('--base-model PATH', 'Classifier.load(..., base_model=PATH)')}; "
                "its sha256 is checked against the one recorded"
            )
    # Resolved once (a preset or Hub id is fetched here), then checked and loaded from disk.
    local = gguf_path(location) if is_gguf(location) else pretrained_dir(location)
    file = local if is_gguf(local) else weights_file(local)
    not_it = (
        f"{source}: the base model {base} ({file}) is not the one these "
        "LoRA adapters were trained on (sha256 differs)"
    )
    return _checked_base(local, file, lora.base_sha256, not_it, gpt_config, source, base)


def _checked_base(
    local: Path,
    file: Path,
    sha256: str | None,
    not_it: str,
    config: GPTConfig,
    source: Path,
    base: str,
) -> GPTBody:
    """The base model at `local` (weights `file`), loaded once its sha256 is the recorded one
    (else `not_it`) and its shape the folder's `config`: the frozen weights of an
    adapters-only or trained-only folder."""
    if sha256_file(file) != sha256:
        raise GPTClassifyError(not_it)
    gpt = load_pretrained_model(local).model
    if gpt.config != config:
        raise GPTClassifyError(
            f"{source}: base model {base} has another shape than config.json says"
        )
    return gpt


def lora_base_name(model_name: str, location: Path) -> str:
    """How an adapters-only (or trained-only) folder names its base: a packaged model, a
    preset or a Hub id works on any machine (fetched by name, then cached); a folder or GGUF
    file is recorded as an absolute path (an adapters-only folder needs it given again: see
    _lora_base)."""
    if _named(model_name):
        return model_name
    return str(location.resolve())


def _named(base: str) -> bool:
    """A base named so that any machine can fetch it (no local path)."""
    return is_packaged(base) or base in PRESETS or is_hub_id(base)


def stored_as(save: str, model_name: str, weights: str, lora: LoraInfo | None) -> str:
    """What a run's model.safetensors holds, from its --save: 'trained' or 'full'.

    auto is trained-only where the base can be fetched again by name on any machine (a
    packaged model, a preset, a Hub id: the folder then goes wherever a full one goes), full
    where the base is a local file or folder (the run folder alone could not be copied
    elsewhere) or there is none (random weights; TrainConfig refuses --save trained there).
    LoRA has its own rule (`describe_lora`: unmerged adapters on a pretrained base are saved
    alone, trained-only already; merged ones changed the base's weights): full here.
    """
    if lora is not None or weights != "pretrained":
        return "full"
    if save == "auto":
        return "trained" if _named(model_name) else "full"
    return save


def trained_tensors(model: GPTClassifier) -> set[str]:
    """The state-dict names a trained-only folder stores: everything outside the body (the
    head, a lexical head's tables, adapters) and the body's parameters that train. The
    body's frozen parameters and its buffers are the base's."""
    frozen = {
        f"gpt.{name}"
        for name, p in model.gpt.named_parameters(remove_duplicate=False)
        if not p.requires_grad
    }
    frozen |= {f"gpt.{name}" for name, _ in model.gpt.named_buffers(remove_duplicate=False)}
    return {k for k in model.state_dict() if k not in frozen}


def _in_body(key: str) -> bool:
    return key.startswith("gpt.") and ".lora_" not in key


def _trained_base(config: ClassifierConfig, folder: Path, given: str | Path | None) -> GPTBody:
    """The base whose frozen tensors a trained-only folder leaves out, checked against the
    sha256 config.json records.

    config.json names it by a packaged or preset name (fetched, or read from the cache) or
    by an absolute path, which is followed: only a regular file is read, and it is used only
    when its sha256 is the recorded one (`given`, e.g. --base-model, names another place).
    """
    p = config.provenance
    source = folder / CONFIG
    base = str(given) if given is not None else (p.base or "")
    if not base or not p.base_sha256:
        raise GPTClassifyError(f"{source}: trained-only weights without a 'base' to read")
    name_it = (
        f"put it back, or name where it is now: "
        f"{advice('--base-model PATH', 'Classifier.load(..., base_model=PATH)')}; or save "
        f"the run whole ({option('save', 'full')}), or export it"
    )
    if is_packaged(base):
        local: Path = gguf_path(base)  # fetched by name when not cached; its sha256 checked
    elif _named(base):
        local = pretrained_dir(base)
    else:
        local = Path(base).expanduser()
        if not local.exists():
            raise GPTClassifyError(
                f"{local}: the base model of {folder} is missing (its model.safetensors holds "
                f"only the trained tensors; the frozen rest is read from the base); {name_it}"
            )
    try:
        file = local if is_gguf(local) else weights_file(local)
        regular = stat.S_ISREG(file.stat().st_mode)
    except (GPTClassifyError, OSError):
        regular = False
    if not regular:
        raise GPTClassifyError(
            f"{local}: the base model of {folder} is missing or not a model file "
            f"(its weights file is not a regular file); {name_it}"
        )
    not_it = (
        f"{file}: not the base model {folder} was trained on (sha256 differs from "
        f"{p.base_sha256[:16]}... in {CONFIG}); {name_it}"
    )
    return _checked_base(local, file, p.base_sha256, not_it, config.model, source, base)


def folder_tokenizer(directory: str | Path, config: ClassifierConfig) -> Tokenizer:
    """The tokenizer of a model folder (GPT-2's, or its tokenizer.json, checked by sha256)."""
    return load_tokenizer(config.tokenizer, Path(directory))
