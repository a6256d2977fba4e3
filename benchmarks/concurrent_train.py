"""N trainings at once on one machine: does each get its fair share of the CPU?

A busy machine (CI runners, containers with CPU quotas, a shared workstation) is where the
OpenMP threads of a PyTorch process that spin while they wait take CPU time from everything
else, and four threads per process on two cores take turns with each other. This runs the
same short training (`gptclassify train`, a SmolLM2-width GPT with random weights on the
first --texts SMS messages, so no download) once alone and then N copies at the same time,
each a fresh process with the environment gptclassify gives itself, and reports each
concurrent run's wall time against its fair share: N x the solo time (each of N runs gets
1/N of the CPUs the solo run had). Target: every run within 1.3x of that.

`--omp-wait-policy active` (or passive) sets OMP_WAIT_POLICY in the children, to compare
with what gptclassify decides by itself (it spins briefly on an idle machine and sleeps on a
busy one: cli/app.py openmp_wait_settings; measured in RESULTS.md, issue 35).

The table's header names the CPU and the load average before and after: the machine is
shared, and a run under load says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

SHAPE = {"emb_dim": 576, "n_heads": 9, "n_layers": 4, "context_length": 128}
"""SmolLM2-135M's width (576, 9 heads), four blocks: a step costs what a 4-block SmolLM2
candidate's does, with no download (random weights)."""


def _write_inputs(folder: Path, texts: int) -> tuple[Path, Path]:
    rows = []
    with open(common.DEFAULT_SMS_SOURCE, encoding="utf-8") as f:
        for line in f:
            label, _, text = line.rstrip("\n").partition("\t")
            rows.append({"text": text, "label": label})
            if len(rows) == texts:
                break
    data = folder / "texts.csv"
    with open(data, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    shape = folder / "shape.json"
    shape.write_text(json.dumps(SHAPE))
    return data, shape


def _command(data: Path, shape: Path, out: Path, epochs: int) -> list[str]:
    return common.gptclassify(
        "train", "--train", str(data), "--model", str(shape),
        "--weights", "random", "--trainable", "all", "--epochs", str(epochs), "--batch-size", "8",
        "--eval-freq", "0", "--no-baseline", "--lexical", "off", "--quiet", "--out", str(out),
    )  # fmt: skip


def _env(policy: str | None) -> dict[str, str]:
    common.setup_offline_env()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(common.REPO_ROOT / "src") + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(name, None)  # what gptclassify chooses by itself
    if policy:
        env["OMP_WAIT_POLICY"] = policy.upper()
    return env


def _run_many(cmds: list[list[str]], env: dict[str, str]) -> list[float]:
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds
    ]
    walls = [0.0] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                walls[i] = time.perf_counter() - start
                pending.discard(i)
        time.sleep(0.05)
    for p, c in zip(procs, cmds, strict=True):
        if p.returncode != 0:
            err = p.stderr.read().decode(errors="replace").strip().splitlines()
            sys.exit(f"{' '.join(c[:4])} ... failed: {err[-1] if err else p.returncode}")
    return walls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", "--concurrent", type=int, default=2, help="trainings at once (2)")
    p.add_argument("--texts", type=int, default=240, help="SMS messages used (240)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--omp-wait-policy", choices=["active", "passive"], default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args()

    from gptclassify.runtime import usable_cpus  # after the argument check: imports torch

    cpus = usable_cpus()
    load_before = os.getloadavg()
    env = _env(args.omp_wait_policy)
    with tempfile.TemporaryDirectory(prefix="concurrent-train-") as tmp:
        folder = Path(tmp)
        data, shape = _write_inputs(folder, args.texts)
        solo = _run_many([_command(data, shape, folder / "solo", args.epochs)], env)[0]
        cmds = [
            _command(data, shape, folder / f"run{i}", args.epochs) for i in range(args.concurrent)
        ]
        walls = _run_many(cmds, env)
    load_after = os.getloadavg()
    fair = solo * args.concurrent
    ratios = [w / fair for w in walls]
    info = common.machine_info()
    print(
        f"Concurrent trainings: {args.concurrent} x `gptclassify train` (SmolLM2 width, 4 blocks, "
        f"random weights, {args.texts} SMS texts, {args.epochs} epoch(s)), "
        f"{info.get('cpu', 'CPU ?')}, {cpus} usable CPU(s), OMP_WAIT_POLICY "
        f"{args.omp_wait_policy or 'gptclassify default'}, load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n"
    )
    rows = [["solo", f"{solo:.1f}", "-", "-"]]
    rows += [
        [f"concurrent {i + 1}", f"{w:.1f}", f"{fair:.1f}", f"{r:.2f}"]
        for i, (w, r) in enumerate(zip(walls, ratios, strict=True))
    ]
    print(common.format_table(["run", "wall s", "fair share s", "x fair"], rows))
    worst = max(ratios)
    print(
        f"\nworst: {worst:.2f}x its fair share (target <= 1.3x: {'met' if worst <= 1.3 else 'NOT met'})"
    )
    if args.json:
        common.write_json(
            args.json,
            {
                "machine": info,
                "usable_cpus": cpus,
                "load_before": load_before,
                "load_after": load_after,
                "omp_wait_policy": args.omp_wait_policy,
                "solo_s": solo,
                "concurrent_s": walls,
                "x_fair": ratios,
            },
        )


if __name__ == "__main__":
    main()
