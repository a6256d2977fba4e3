"""Reading a GGUF file: time and peak memory of `read_gguf` against transformers' GGUF loading.

Each variant runs in a fresh child process (common.run_child: its own peak RSS, by wait4):
`imports` only imports what the readers need (the floor under every other row), `ours fp32`
and `ours bf16` call gptclassify.models.gguf.read_gguf, `transformers fp32` calls
AutoModelForCausalLM.from_pretrained(dir, gguf_file=...), the reference the tests compare
with. "load s" is the call alone, timed inside the child.

    python benchmarks/gguf_read.py                  # SmolLM2-135M-Instruct Q4_1 (fetched once)
    python benchmarks/gguf_read.py --file some.gguf
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import common

FETCH = common.REPO_ROOT.parent / "shared" / "models" / "fetch-smollm2"
VARIANTS = ("imports", "ours fp32", "ours bf16", "transformers fp32")


def child(variant: str, path: Path) -> None:
    """Runs in the child: import, load, print the load time and the parameter count."""
    import torch
    import transformers  # noqa: F401  (imported by every row, so the floor is the same)

    from gptclassify.models.gguf import read_gguf

    t0 = time.perf_counter()
    if variant == "imports":
        count = 0
    elif variant.startswith("ours"):
        dtype = torch.bfloat16 if variant.endswith("bf16") else torch.float32
        count = sum(t.numel() for t in read_gguf(path, dtype=dtype).state_dict.values())
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
        count = sum(p.numel() for p in model.parameters())
    print(f"RESULT {time.perf_counter() - t0:.3f} {count}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--file", type=Path, help="a GGUF file (default: SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("--threads", type=int, default=common.default_threads())
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "gguf_read")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    path = args.file or Path(subprocess.check_output([str(FETCH)], text=True).strip())
    if args.child:
        child(args.child, path)
        return

    env = common.child_env(args.threads)
    rows = []
    for variant in VARIANTS:
        log = args.out / f"{variant.replace(' ', '_')}.log"
        result = common.run_child(
            [sys.executable, __file__, "--file", str(path), "--child", variant], env, log
        )
        common.check_child(result, variant)
        line = next(x for x in log.read_text().splitlines() if x.startswith("RESULT "))
        load_s, count = line.split()[1:]
        rows.append([variant, result.wall_s, float(load_s), result.maxrss_mb, int(count)])
    floor = rows[0][3]
    for row in rows:
        row.append(row[3] - floor)
    info = common.machine_info()
    print(
        f"GGUF read: {path.name} ({path.stat().st_size / 2**20:.0f} MiB), {info['cpu']}, "
        f"{args.threads} thread(s), torch {info['torch']}, transformers {info.get('transformers')}\n"
    )
    print(
        common.format_table(
            ["variant", "wall s", "load s", "peak RSS MB", "parameters", "RSS over imports MB"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
