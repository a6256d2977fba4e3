"""Data-parallel training with torchrun (CPU, gloo, 2 ranks, tiny models): the same steps,
the same model and one set of files as a single process; a dead rank fails the job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_three_classes

WORKER = Path(__file__).with_name("ddp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GPTCLASSIFY_DIST_TIMEOUT_S": "60"}
TINY = {"emb_dim": 32, "n_heads": 4, "n_layers": 2, "context_length": 32}


def torchrun(
    *args: str, env: dict | None = None, timeout: int = 180
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run(
        [*cmd, *args], capture_output=True, text=True, env=env or ENV, timeout=timeout
    )


@pytest.mark.parametrize("trainable", ["last-block", "all", "lora"])
def test_one_step_on_two_ranks_equals_one_process_on_the_whole_batch(tmp_path, trainable):
    one = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "one"), trainable],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    assert one.returncode == 0, one.stderr
    two = torchrun(str(WORKER), str(tmp_path / "two"), trainable)
    assert two.returncode == 0, two.stderr
    single = load_file(tmp_path / "one" / "rank0.safetensors")
    ranks = [load_file(tmp_path / "two" / f"rank{r}.safetensors") for r in (0, 1)]
    assert set(single) == set(ranks[0]) == set(ranks[1]) and len(single) > 3
    C = 32
    for name in single:
        assert torch.equal(ranks[0][name], ranks[1][name]), name  # the ranks agree exactly
        mine, theirs = ranks[0][name], single[name]
        if name.endswith("attn.c_attn.bias"):
            # The key bias has an exactly-zero true gradient (softmax ignores a shift shared
            # by all keys); Adam divides its float noise by its own tiny RMS: skip that slice.
            mine = torch.cat([mine[:C], mine[2 * C :]])
            theirs = torch.cat([theirs[:C], theirs[2 * C :]])
        assert torch.allclose(mine, theirs, atol=1e-6, rtol=0), name
    # ... and the step did something to compare: every trainable tensor moved (but LoRA's A,
    # whose first gradient is zero because B starts at zero).
    for name in (n for n in single if not n.startswith("initial.") and n != "loss"):
        if "lora_A" not in name:
            assert (single[name] - single[f"initial.{name}"]).abs().max() > 5e-5, name
    assert torch.isclose(ranks[0]["loss"], single["loss"], atol=1e-6)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    (root / "tiny.json").write_text(json.dumps(TINY))
    write_three_classes(root / "topics.csv", n_per_class=30)
    return root


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "-m", "gptclassify", "train",
        "--train", str(data / "topics.csv"),
        "--model", str(data / "tiny.json"),
        "--weights", "random",
        "--trainable", "all",
        "--lr", "2e-3",
        "--epochs", "2",
        "--batch-size", "4",
        "--eval-freq", "5",
        "--precision", "fp32",
        "--out", str(out),
        "--quiet",
        *extra,
    ]  # fmt: skip


def test_a_torchrun_job_trains_the_model_one_process_trains(data, tmp_path):
    alone = subprocess.run(
        [sys.executable, *train_args(data, tmp_path / "alone")],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=180,
    )
    assert alone.returncode == 0, alone.stderr
    job = torchrun(*train_args(data, tmp_path / "ddp"))
    assert job.returncode == 0, job.stderr
    assert job.stdout.count("Model folder:") == 1  # one summary, from rank 0
    a = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    b = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    for split in ("train", "validation"):
        assert a[split]["accuracy"] == b[split]["accuracy"], split
    assert (a["world_size"], a["backend"]) == (1, None)
    assert (b["world_size"], b["backend"]) == (2, "gloo")
    assert a["examples_seen"] == b["examples_seen"]
    wa = load_file(tmp_path / "alone" / "model.safetensors")
    wb = load_file(tmp_path / "ddp" / "model.safetensors")
    C = TINY["emb_dim"]
    for name in wa:
        a, b = wa[name], wb[name]
        if name.endswith("attn.c_attn.bias"):  # without the key bias (see the test above)
            a, b = torch.cat([a[:C], a[2 * C :]]), torch.cat([b[:C], b[2 * C :]])
        assert torch.allclose(a, b, atol=1e-5, rtol=0), name
    # One copy of every file, written once: the same files as the one-process run.
    files = sorted(str(p.relative_to(tmp_path / "ddp")) for p in (tmp_path / "ddp").rglob("*"))
    alone_files = sorted(
        str(p.relative_to(tmp_path / "alone")) for p in (tmp_path / "alone").rglob("*")
    )
    assert files == alone_files
    log = (tmp_path / "ddp" / "train.log").read_text()
    assert log.count("Run folder:") == 1  # rank 1 logged nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone", "ddp"]


def test_a_global_batch_that_does_not_divide_is_refused(data, tmp_path):
    job = torchrun(*train_args(data, tmp_path / "odd"), "--batch-size", "5")
    assert job.returncode != 0
    assert "--batch-size 5 is the global batch: it must divide evenly over the 2 processes" in (
        job.stdout + job.stderr
    )


def test_a_dead_rank_fails_the_job_and_resume_finishes_it(data, tmp_path):
    out = tmp_path / "run"
    env = {**ENV, "GPTCLASSIFY_KILL_AT": "step:12", "GPTCLASSIFY_KILL_RANK": "1"}
    t0 = time.monotonic()
    job = torchrun(*train_args(data, out, "--checkpoint-every", "5"), env=env)
    assert job.returncode != 0
    assert time.monotonic() - t0 < 120  # failed, did not hang
    assert "exitcode" in job.stderr and "-9" in job.stderr  # torchrun names the dead rank
    assert not out.exists() and (tmp_path / "run.partial" / "checkpoints").is_dir()
    # The run is the same optimisation on any number of processes: one finishes it.
    done = subprocess.run(
        [sys.executable, "-m", "gptclassify", "train", "--resume", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["epochs_run"] == 2
        and "Resumed from step-000000010" in (out / "train.log").read_text()
    )
