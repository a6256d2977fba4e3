"""How OpenMP's threads wait, alone and with other processes: `gptclassify predict` over SMS
messages under each setting, one process at a time and N started together.

Each setting is a set of environment variables given to every `gptclassify predict RUN
--input texts.csv --batch-size B --quiet` process: `rule` sets none (the CLI decides from the
processes runnable when it starts: a short spin on an idle machine, sleeping threads on a busy
one; gptclassify.cli.app.openmp_wait_settings), `OMP_WAIT_POLICY=PASSIVE` makes waiting
threads sleep at once, `GOMP_SPINCOUNT=N` spins N iterations before sleeping (libgomp's
default is 300,000 when nothing is set). The time is each process's wall clock, start-up
included; "x alone" divides the mean by the same setting's time alone (2.0 with two processes
on two CPUs is a fair share).

    python benchmarks/omp_wait.py --run RUN_DIR --limit 400 --at-once 1 2
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

SETTINGS = ["rule", "OMP_WAIT_POLICY=PASSIVE", "GOMP_SPINCOUNT=10000", "GOMP_SPINCOUNT=300000"]
NAMES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def sms_texts(limit: int | None) -> list[str]:
    rows = common.DEFAULT_SMS_SOURCE.read_text(encoding="utf-8").splitlines()
    texts = [r.split("\t", 1)[1] for r in rows if "\t" in r]
    return texts[:limit] if limit else texts


def run_together(args: argparse.Namespace, setting: str, n: int, texts_csv: Path) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in NAMES}
    if setting != "rule":
        name, value = setting.split("=", 1)
        env[name] = value
    cmd = [
        *common.gptclassify("predict", str(args.run)),
        "--input",
        str(texts_csv),
        "--batch-size",
        str(args.batch_size),
        "--quiet",
    ]
    starts, procs = [], []
    for i in range(n):
        out = args.out / f"omp-{n}-{i}.csv"
        starts.append(time.perf_counter())
        procs.append(
            subprocess.Popen(
                [*cmd, "--output", str(out)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    walls = []
    for start, proc in zip(starts, procs, strict=True):
        _, err = proc.communicate()
        walls.append(time.perf_counter() - start)
        if proc.returncode:
            sys.exit(f"{setting}: gptclassify predict failed: {err.strip().splitlines()[-1:]}")
    return walls


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="A model folder to predict with.")
    p.add_argument("--limit", type=int, default=None, help="The first N SMS messages only.")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--at-once", type=int, nargs="+", default=[1, 2])
    p.add_argument("--settings", nargs="+", default=SETTINGS)
    p.add_argument("--out", type=Path, default=common.DEFAULT_OUT / "omp_wait")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    texts = sms_texts(args.limit)
    texts_csv = args.out / "texts.csv"
    with texts_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text"])
        writer.writerows([t] for t in texts)
    info = common.machine_info()
    load_before = os.getloadavg()[0]
    rows = []
    for setting in args.settings:
        alone = None
        for n in args.at_once:
            walls = run_together(args, setting, n, texts_csv)
            mean = statistics.fmean(walls)
            alone = mean if n == 1 else alone
            rows.append(
                [
                    setting,
                    n,
                    " / ".join(f"{w:.1f}" for w in walls),
                    f"{mean:.1f}",
                    f"{mean / alone:.2f}" if alone else "-",
                ]
            )
            print(f"{setting}, {n} at once: {rows[-1][2]} s", flush=True)
    print(
        f"\n`gptclassify predict` of {len(texts):,} SMS messages, batch {args.batch_size}, "
        f"{args.run.name}; {info['cpu_line']}; {os.cpu_count()} CPUs; load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after\n"
    )
    print(common.format_table(["setting", "at once", "wall s each", "mean s", "x alone"], rows))


if __name__ == "__main__":
    main()
