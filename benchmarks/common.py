"""Shared pieces of the speed benchmarks: paths, the random GPT-2 weights, child processes.

Every measured variant runs in a fresh child process (`run_child`), so its wall time includes
interpreter start-up and imports, and its peak RSS is its own (read with `os.wait4`, which
returns the resource usage of that one child; `RUSAGE_CHILDREN` would give the maximum over
all children reaped so far).

No network is needed: the weights are random (seeded) and written locally in Hugging Face
format, the data and tokenizer files come from the shared folder next to the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# The package's own copies (shipped in src/gptclassify/assets): no network, no shared folder.
ASSETS = REPO_ROOT / "src" / "gptclassify" / "assets"
DEFAULT_SMS_SOURCE = ASSETS / "sms_spam_collection" / "SMSSpamCollection"
GPT2_FILES = ASSETS / "gpt2"
DEFAULT_OUT = BENCH_DIR / "out"
TIKTOKEN_CACHE = DEFAULT_OUT / "tiktoken_cache"

# The reference loop tokenizes with tiktoken.get_encoding("gpt2"), as the book does, which
# reads its two files from a cache named by the sha1 of their download URL. A Hugging Face
# GPT-2 tokenizer calls the same two files vocab.json and merges.txt.
TIKTOKEN_FILES = {
    "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6": "encoder.json",  # vocab.json
    "6d1cbeee0f20b3d9449abfede4726ed8212e3aee": "vocab.bpe",  # merges.txt
}

WEIGHTS_MARKER = "benchmark-weights.json"
PAD_TOKEN_ID = 50256


def setup_offline_env() -> None:
    """tiktoken's cache filled from the shipped tokenizer files, and no Hub traffic (set
    before heavy imports)."""
    TIKTOKEN_CACHE.mkdir(parents=True, exist_ok=True)
    for cached, name in TIKTOKEN_FILES.items():
        if not (TIKTOKEN_CACHE / cached).is_file():
            shutil.copyfile(GPT2_FILES / name, TIKTOKEN_CACHE / cached)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def default_threads() -> int:
    return os.cpu_count() or 1


def child_env(threads: int) -> dict[str, str]:
    """Environment of a measured child: same thread count for every variant, offline."""
    setup_offline_env()
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    env["BENCH_THREADS"] = str(threads)
    # The package is normally installed editable in the venv; this also covers a bare checkout.
    src = str(REPO_ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# ---- random GPT-2 small weights, written once ------------------------------------------


def cached(
    directory: Path, key: dict[str, Any], needed: str, marker_name: str = WEIGHTS_MARKER
) -> bool:
    """Whether `directory` holds a folder written by `write_folder` with `key` in its marker
    (e.g. the same seed) and the file `needed`: then it is reused as it is."""
    marker = directory / marker_name
    if not (marker.is_file() and (directory / needed).is_file()):
        return False
    try:
        recorded = json.loads(marker.read_text())
    except ValueError:
        return False
    return isinstance(recorded, dict) and all(recorded.get(k) == v for k, v in key.items())


def write_folder(
    directory: Path,
    marker: dict[str, Any],
    write: Callable[[Path], None],
    marker_name: str = WEIGHTS_MARKER,
) -> Path:
    """`write(tmp)` fills a temporary sibling folder, the marker file is added, and the folder
    replaces `directory`: an interrupted run never leaves a half-written folder to reuse."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    write(tmp)  # it makes the folder
    (tmp / marker_name).write_text(json.dumps(marker, indent=2, default=str) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"transformers": transformers.__version__, "torch": torch.__version__}


def ensure_gpt2_weights(directory: Path, seed: int = 123) -> Path:
    """Random GPT-2 small (124M) in Hugging Face format (config.json + model.safetensors).

    Written once with `GPT2LMHeadModel(GPT2Config())` under `torch.manual_seed(seed)` and
    reused while the marker file says the same seed. The same folder feeds every variant.
    """
    if cached(directory, {"seed": seed}, "model.safetensors"):
        return directory
    import torch
    import transformers

    print(f"Writing random GPT-2 small weights (seed {seed}) to {directory} ...", flush=True)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    marker = {
        "seed": seed,
        "recipe": "torch.manual_seed(seed); GPT2LMHeadModel(GPT2Config()).save_pretrained()",
        **_versions(),
    }
    return write_folder(directory, marker, model.save_pretrained)


LLAMA_SMALL = {
    # GPT-2 small's shape in the Llama family: 12 layers of width 768, 12 query heads sharing
    # 4 key/value heads, and an intermediate size of 2048 so that SwiGLU's three matrices
    # (3 x 768 x 2048) hold what GPT-2's two 768 x 3072 matrices hold. GPT-2's vocabulary and
    # context, tied embeddings (as GPT-2 and Llama 3.2 1B/3B).
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "num_key_value_heads": 4,
    "intermediate_size": 2048,
    "vocab_size": 50257,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": True,
    "bos_token_id": PAD_TOKEN_ID,
    "eos_token_id": PAD_TOKEN_ID,
}


def ensure_llama_weights(directory: Path, seed: int = 123) -> Path:
    """Random GPT-2-small-sized Llama (LLAMA_SMALL) in Hugging Face format, with a
    tokenizer.json made from the shipped GPT-2 tokenizer files, so that this model and GPT-2
    see the same token ids. Written once (seeded) and reused, as `ensure_gpt2_weights`."""
    if cached(directory, {"seed": seed}, "tokenizer.json"):
        return directory
    import torch
    import transformers

    print(f"Writing random GPT-2-small-sized Llama weights (seed {seed}) to {directory} ...")
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA_SMALL))

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        # transformers 5 reads the two files by their Hugging Face names (its constructor's
        # vocab_file/merges_file arguments gave an empty vocabulary here); the check below
        # keeps a wrong tokenizer.json from reaching a benchmark.
        shutil.copyfile(GPT2_FILES / "encoder.json", tmp / "vocab.json")
        shutil.copyfile(GPT2_FILES / "vocab.bpe", tmp / "merges.txt")
        tok = transformers.GPT2TokenizerFast.from_pretrained(tmp)
        tok.model_max_length = LLAMA_SMALL["max_position_embeddings"]
        tok.save_pretrained(tmp)
        _check_same_ids(tmp)

    marker = {
        "seed": seed,
        "recipe": "torch.manual_seed(seed); LlamaForCausalLM(LlamaConfig(**LLAMA_SMALL))"
        ".save_pretrained(); GPT2TokenizerFast(shipped files).save_pretrained()",
        "config": LLAMA_SMALL,
        **_versions(),
    }
    return write_folder(directory, marker, write)


def ensure_gemma3_weights(gguf: Path, directory: Path) -> Path:
    """The real Gemma 3 270M GGUF file as transformers reads it (its own GGUF loading,
    dequantized to fp32: `Gemma3ForCausalLM` and the file's tokenizer), saved once as a
    Hugging Face folder for the transformers side of a benchmark, so that its runs load
    plain safetensors rather than dequantizing the file each time. Reused while the marker
    names the same file (path, size and modification time)."""
    stat = gguf.stat()
    key = {"gguf": str(gguf), "gguf_bytes": stat.st_size, "gguf_mtime_ns": stat.st_mtime_ns}
    if cached(directory, key, "tokenizer.json"):
        return directory
    import torch
    import transformers

    print(f"Writing {gguf.name} as transformers loads it (fp32) to {directory} ...", flush=True)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers refuses to save a model loaded from GGUF ("not serializable"): its tensors
    # go into a plain model of the same config, which saves as any Hugging Face folder.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(loaded)(config)
    model.load_state_dict(loaded.state_dict())
    del loaded

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    recipe = "AutoModelForCausalLM / AutoTokenizer.from_pretrained(dir, gguf_file=...)"
    return write_folder(directory, {**key, "recipe": recipe, **_versions()}, write)


def _check_same_ids(directory: Path) -> None:
    """tokenizer.json must give GPT-2's ids (tiktoken's), or the two families are not fed alike."""
    import tiktoken
    from tokenizers import Tokenizer

    text = (
        "Go until jurong point, crazy.. Available only in bugis n great world la e buffet... 😀 ok"
    )
    ours = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text).ids
    if ours != tiktoken.get_encoding("gpt2").encode(text):
        raise SystemExit(f"{directory}/tokenizer.json does not give GPT-2's token ids")


FAMILIES = ("gpt2", "llama", "gemma3")
MODEL_NAMES = {
    "gpt2": "GPT-2 small",
    "llama": "Llama, GPT-2 small's size",
    "gemma3": "Gemma 3 270M",
}


def family_tag(family: str) -> str:
    """File-name suffix of a family's outputs ("" for GPT-2: its names stay as they were)."""
    return "" if family == "gpt2" else f"-{family}"


def ensure_weights(family: str, out: Path, seed: int = 123, gguf: Path | None = None) -> Path:
    """The base model of `family` in Hugging Face format in `out`, written once: random
    ("gpt2", "llama") or the real GGUF file `gguf` as transformers reads it ("gemma3")."""
    if family == "gemma3":
        if gguf is None:
            raise SystemExit("--family gemma3 needs --gguf FILE (the Gemma 3 270M .gguf)")
        return ensure_gemma3_weights(gguf, out / f"{gguf.stem}-hf")
    if family == "llama":
        return ensure_llama_weights(out / f"llama-small-random-seed{seed}", seed)
    return ensure_gpt2_weights(out / f"gpt2-small-random-seed{seed}", seed)


def add_family_args(p: argparse.ArgumentParser, family_help: str) -> None:
    """--family and --gguf, as the speed benchmarks take them."""
    p.add_argument("--family", choices=FAMILIES, default="gpt2", help=family_help)
    p.add_argument(
        "--gguf",
        type=Path,
        default=None,
        help="With --family gemma3: the Gemma 3 270M GGUF file (e.g. the path that "
        "../shared/models/fetch-gemma3 prints); ours reads the file, transformers its own "
        "fp32 loading of it (saved once under --out).",
    )


def check_family_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.family == "gemma3") != (args.gguf is not None):
        p.error("--gguf FILE goes with --family gemma3, and --family gemma3 needs it")
    if args.gguf is not None:
        args.gguf = args.gguf.expanduser().resolve()
        if not args.gguf.is_file():
            p.error(f"--gguf {args.gguf}: no such file")


def add_sms_source(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sms-source",
        type=Path,
        default=DEFAULT_SMS_SOURCE,
        help="SMSSpamCollection file or zip.",
    )


def gptclassify(*argv: str, ranks: int = 1) -> list[str]:
    """The command line of `gptclassify ARGV...` in this interpreter (a child process); with
    `ranks` > 1, that many processes started by torchrun (`torch.distributed.run`)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    return [sys.executable, *(launcher if ranks > 1 else []), "-m", "gptclassify", *argv]


def install_hf_tokenizer(directory: Path) -> None:
    """A GPT-2 tokenizer for transformers, built offline from the shipped tokenizer files."""
    from transformers import GPT2TokenizerFast

    shutil.copyfile(GPT2_FILES / "encoder.json", directory / "vocab.json")
    shutil.copyfile(GPT2_FILES / "vocab.bpe", directory / "merges.txt")
    tok = GPT2TokenizerFast.from_pretrained(directory)
    tok.pad_token = tok.eos_token  # GPT-2 has no pad token; <|endoftext|> (50256) doubles as one
    tok.model_max_length = 1024
    tok.save_pretrained(directory)


# ---- data --------------------------------------------------------------------------------


def split_digest(splits) -> str:
    """sha256 over every (part, text, label): equal digests mean the same rows in the same order."""
    h = hashlib.sha256()
    for name, part in splits.parts():
        h.update(f"[{name}:{len(part)}]".encode())
        for text, label in zip(part.texts, part.labels, strict=True):
            h.update(text.encode("utf-8") + b"\x00" + label.encode("utf-8") + b"\x01")
    return h.hexdigest()


# ---- child processes ----------------------------------------------------------------------


@dataclass
class ChildResult:
    returncode: int
    wall_s: float
    """Wall-clock seconds from spawn to exit (includes interpreter start-up and imports)."""
    maxrss_mb: float
    """Peak resident set size of the child (and of its own waited-for children), MiB."""
    log: Path
    cpu_s: float = 0.0
    """CPU seconds (user + system) of the child and its waited-for children."""


def run_child(
    cmd: Sequence[str], env: dict[str, str], log: Path, cwd: Path = REPO_ROOT
) -> ChildResult:
    """Run `cmd`, stdout+stderr to `log`; wall time and the child's own peak RSS."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as handle:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
        # wait4 reaps exactly this child and returns its rusage (ru_maxrss in KiB on Linux).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss / 2**20 if sys.platform == "darwin" else usage.ru_maxrss / 2**10
    cpu = usage.ru_utime + usage.ru_stime
    return ChildResult(proc.returncode, wall, rss, log, cpu)


def check_child(result: ChildResult, what: str) -> None:
    if result.returncode != 0:
        tail = result.log.read_text(errors="replace").splitlines()[-25:]
        raise SystemExit(
            f"{what} failed (exit {result.returncode}); last lines of {result.log}:\n"
            + "\n".join(tail)
        )


# ---- reporting ----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: the CPU with the flags the choice of precision
    depends on (cpu_flags.py), thread count, versions."""
    import torch

    from cpu_flags import cpu_info

    cpu = cpu_info()
    info: dict[str, Any] = {
        "cpu": cpu.name,
        "cpu_line": cpu.summary(),
        "cpu_flags": sorted(cpu.flags),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    try:
        from gptclassify.runtime import cpu_has_fast_bf16

        info["cpu_fast_bf16"] = cpu_has_fast_bf16()
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    for name in ("transformers", "onnxruntime", "onnx"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            pass
    return info


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; numbers right-aligned, text left-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [
        all(isinstance(row[i], (int, float)) or row[i] is None for row in rows) and bool(rows)
        for i in range(len(headers))
    ]

    def fmt(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    lines = [fmt(list(headers)), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:,.2f}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def publish(out: Path, stem: str, header: str, body: str, t0: float, data: dict[str, Any]) -> str:
    """The benchmark's text (header, body, its total time since `t0`) printed and written to
    OUT/STEM.txt, and `data` with that text as "table" to OUT/STEM.json; returns the text."""
    text = f"{header}\n\n{body}\n\n(benchmark total {time.perf_counter() - t0:.0f} s)"
    print("\n" + text)
    write_json(out / f"{stem}.json", {**data, "table": text})
    (out / f"{stem}.txt").write_text(text + "\n", encoding="utf-8")
    print(f"\nWrote {out}/{stem}.json and .txt")
    return text


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
