"""Training checkpoints on disk: a TrainState as safetensors + JSON, never a pickle.

A checkpoint is a folder `checkpoints/step-<step>/` holding `state.safetensors` (every
tensor of `TrainState.state_dict()`: trainable weights, optimizer moments, best weights, RNG
states) and `state.json` (everything else: counters, scores, history, the optimizer's
hyper-parameters, and where each tensor goes). It is written into a temporary folder and
renamed into place, so a kill at any moment leaves the previous checkpoints intact and never
a half-written one. `keep` of the newest survive, plus the one written at the end of the best
epoch so far.
"""

from __future__ import annotations

import errno
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptclassify.errors import GPTClassifyError, advice
from gptclassify.files import replace_folder
from gptclassify.training import faults

CHECKPOINTS = "checkpoints"
FORMAT = "gptclassify-checkpoint"
FORMAT_VERSION = 1
_NAME = re.compile(r"step-(\d{9})")


def _encode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of a state_dict value; tensors go to `tensors` under a generated key."""
    if isinstance(value, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = value.detach().to("cpu").contiguous()
        return {"__tensor__": key}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v, tensors) for k, v in value.items()}
        return {"__items__": [[k, _encode(v, tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            return tensors[value["__tensor__"]]
        if "__items__" in value:
            return {k: _decode(v, tensors) for k, v in value["__items__"]}
        if "__tuple__" in value:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        if "__float__" in value:
            return float(value["__float__"])
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def resume_advice(run: str | Path) -> str:
    """How to continue the run in `run`, as the caller's interface says it."""
    final = Path(run)
    return advice(f"gptclassify train --resume {final}", f"train(resume={str(final)!r})")


def save_checkpoint(
    run_dir: Path, state: dict[str, Any], meta: dict[str, Any], keep: int = 1
) -> Path:
    """Write `state` (a TrainState.state_dict()) as the checkpoint of its step; prune old ones.

    `meta` (JSON) travels with it: e.g. whether this is the best epoch so far, elapsed time.
    """
    tensors: dict[str, torch.Tensor] = {}
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": meta,
        "state": _encode(state, tensors),
    }
    folder = Path(run_dir) / CHECKPOINTS / f"step-{state['step'] + 1:09d}"
    kept = latest_checkpoint(run_dir)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with replace_folder(folder) as tmp:
            save_file(tensors, tmp / "state.safetensors", metadata={"format": FORMAT})
            faults.reached("checkpoint")  # between the two files of a checkpoint
            text = json.dumps(document, indent=1) + "\n"
            (tmp / "state.json").write_text(text, encoding="utf-8")
    except (OSError, SafetensorError) as exc:
        if not _disk_full(exc):
            raise
        # The half-written copy is gone (replace_folder); the earlier checkpoints stay.
        raise GPTClassifyError(
            f"{folder.parent}: the disk is full (no space left on device) while writing "
            f"checkpoint {folder.name}; "
            + (
                f"kept the previous checkpoint {kept.name}: free some space, then continue "
                f"with: {resume_advice(run_dir)}"
                if kept is not None
                else "no earlier checkpoint to keep: free some space and start the run again"
            )
        ) from None
    prune(run_dir, keep)
    return folder


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC (or EDQUOT, a full quota), from Python or from safetensors' Rust writer."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return "No space left on device" in text or "os error 28" in text


def checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.fullmatch(p.name) and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def read_meta(folder: Path) -> dict[str, Any]:
    return _read_document(folder)["meta"]


def load_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state_dict, meta) of a checkpoint folder."""
    document = _read_document(folder)
    try:
        tensors = load_file(folder / "state.safetensors")
    except (SafetensorError, OSError) as exc:
        raise GPTClassifyError(f"{folder}: unreadable checkpoint tensors ({exc})") from None
    return _decode(document["state"], tensors), document["meta"]


def _read_document(folder: Path) -> dict[str, Any]:
    path = folder / "state.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GPTClassifyError(f"{path}: unreadable checkpoint ({exc})") from None
    if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
        raise GPTClassifyError(f"{path}: not a gptclassify checkpoint of a version this reads")
    return document


def prune(run_dir: Path, keep: int) -> None:
    """Keep the `keep` newest checkpoints and the newest one marked best; remove leftovers
    of interrupted writes."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return
    for leftover in root.glob(".*"):  # temporary folders of writes that were killed
        shutil.rmtree(leftover, ignore_errors=True)
    found = checkpoints(run_dir)
    kept = set(found[-keep:]) if keep > 0 else set()
    best = [p for p in found if read_meta(p).get("best")]
    if best:
        kept.add(best[-1])
    for folder in found:
        if folder not in kept:
            shutil.rmtree(folder, ignore_errors=True)
