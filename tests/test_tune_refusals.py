"""`gptclassify tune` refuses a search space train would refuse before the first trial, and a
search stopped by SIGTERM ends in one line naming how to continue it (no Optuna traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_three_classes
from gptclassify.args import DataConfig, TrainConfig
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError

optuna = pytest.importorskip("optuna")

TINY = {"emb_dim": 32, "n_heads": 4, "n_layers": 2, "context_length": 32}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune-refusals")
    (root / "tiny.json").write_text(json.dumps(TINY))
    write_three_classes(root / "topics.csv", n_per_class=30)
    return root


def tiny_args(job: Path) -> list[str]:
    args = ["--train", str(job / "topics.csv"), "--model", str(job / "tiny.json")]
    return [*args, "--weights", "random", "--epochs", "2", "--batch-size", "4"]


@pytest.mark.parametrize(
    "spec, refused",
    [
        ("batch_size=choice(0)", "batch_size=0"),
        ("lr=choice(-1)", "lr=-1.0"),
        ("epochs=int(0,2)", "epochs=0"),
        ("epochs=int(1,1e9)", "epochs=1000000000"),
        ("lr=uniform(-0.1,0.1)", "lr=-0.1"),
    ],
)
def test_a_space_holding_values_train_refuses_is_refused_before_any_trial(
    job, tmp_path, spec, refused
):
    from gptclassify.tune import build_space, search

    base = TrainConfig(
        data=DataConfig(train=str(job / "topics.csv")),
        model=str(job / "tiny.json"),
        weights="random",
    )
    out = tmp_path / "search"
    with pytest.raises(GPTClassifyError, match="is refused by train") as caught:
        search(base, build_space([spec]), out=out, trials=1)
    assert f"{refused} is refused by train" in str(caught.value)
    result = CliRunner().invoke(cli, ["tune", *tiny_args(job), "--search", spec, "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{refused} is refused by train" in lines[0], result.stderr
    assert not out.exists()  # no trial, no data folder, no study


def test_sigterm_stops_a_search_in_one_line_that_says_how_to_continue(job, tmp_path):
    out = tmp_path / "search"
    command = [sys.executable, "-m", "gptclassify", "tune", *tiny_args(job)]
    command += ["--checkpoint-every", "3", "--search", "lr=loguniform(1e-4,1e-2)"]
    command += ["--trials", "1", "--out", str(out)]
    env = {**os.environ, "GPTCLASSIFY_KILL_AT": "step:5:SIGTERM"}
    stopped = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert stopped.returncode != 0
    assert "Traceback" not in stopped.stderr, stopped.stderr
    assert "Stopped by SIGTERM" in stopped.stderr
    assert f"Continue the search with the same gptclassify tune command (--out {out})" in (
        stopped.stderr
    )
    assert "train --resume" not in stopped.stderr  # that would leave the study behind
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "Best: trial 1" in again.stdout  # the stopped trial 0, run again as trial 1
    assert "Resumed from step-" in (out / "trial-0000" / "train.log").read_text()
