"""Checkpoints, kill-and-resume, signals, and run folders that are complete or absent.

Runs are killed for real: a child process (forked from a server that imported gptclassify
once) sets GPTCLASSIFY_KILL_AT and is stopped by SIGKILL at that point, like an out-of-memory
kill. The run is then resumed in this process; its model.safetensors must be byte for byte
the one of a run that was never interrupted.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import write_three_classes
from gptclassify.args import DataConfig, TrainConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.training import train
from gptclassify.training.checkpoint import checkpoints, latest_checkpoint
from gptclassify.training.folder import RunFolder
from gptclassify.training.run import TrainingInterrupted

TINY = {"emb_dim": 32, "n_heads": 4, "n_layers": 2, "context_length": 32}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A small 3-class data file and a tiny model config: runs of ~2 s."""
    root = tmp_path_factory.mktemp("resume")
    (root / "tiny.json").write_text(json.dumps(TINY))
    write_three_classes(root / "topics.csv", n_per_class=30)
    return root


def config(job: Path, out: Path, **kw) -> TrainConfig:
    options = dict(
        data=DataConfig(train=str(job / "topics.csv")),
        model=str(job / "tiny.json"),
        weights="random",
        lr=2e-3,
        epochs=3,
        batch_size=4,
        eval_freq=5,
        eval_iter=2,
        checkpoint_every=7,
        out=str(out),
    )
    return TrainConfig(**{**options, **kw})


def _child(cfg: TrainConfig, kill_at: str, env: dict[str, str], setup: Any = None) -> None:
    os.environ.update(env)
    os.environ["GPTCLASSIFY_KILL_AT"] = kill_at
    if setup is not None:
        setup()
    try:
        train(cfg, quiet=True)
    except TrainingInterrupted as exc:
        sys.exit(exc.exit_code)


def run_killed(
    cfg: TrainConfig, kill_at: str, env: dict[str, str] | None = None, setup: Any = None
) -> int:
    """Run `cfg` in a child process stopped at `kill_at`; returns its exit code. `env` is set
    in the child (the forkserver's environment is the one it started with); `setup`, a
    module-level function, runs there before training."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["gptclassify.training.run", "torch._dynamo"])
    child = ctx.Process(target=_child, args=(cfg, kill_at, env or {}, setup))
    child.start()
    child.join(timeout=120)
    assert child.exitcode is not None, "the child hung"
    return child.exitcode


_references: dict[tuple, bytes] = {}


def reference(job: Path, tmp_path_factory, **kw) -> bytes:
    """model.safetensors of the same run, uninterrupted (one per setting, cached)."""
    key = tuple(sorted(kw.items()))
    if key not in _references:
        out = tmp_path_factory.mktemp("reference") / "run"
        train(config(job, out, **kw), quiet=True)
        _references[key] = (out / "model.safetensors").read_bytes()
    return _references[key]


@pytest.mark.parametrize(
    ("settings", "kill_at"),
    [
        ({"precision": "fp32"}, "step:10"),  # mid-epoch, between two checkpoints
        ({"precision": "fp32"}, "estimate:3"),  # during an evaluation
        ({"precision": "fp32"}, "epoch:2"),  # after an epoch's evaluation, before its checkpoint
        ({"precision": "fp32"}, "checkpoint:3"),  # between the two files of a checkpoint
        ({"precision": "fp32"}, "publish:1"),  # between the final files
        ({"precision": "bf16"}, "step:17"),
        ({"precision": "fp32", "cache": "off"}, "step:10"),
        ({"precision": "bf16", "cache": "off"}, "epoch:1"),
        ({"precision": "fp32", "trainable": "lora"}, "step:12"),
    ],
)
def test_killed_and_resumed_equals_uninterrupted(
    job, tmp_path, tmp_path_factory, settings, kill_at
):
    out = tmp_path / "run"
    assert run_killed(config(job, out, **settings), kill_at) == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # never an unfinished model under RUN
    assert (tmp_path / "run.partial").is_dir()
    resumed = train(resume=out, quiet=True)
    assert resumed.path == out and not (tmp_path / "run.partial").exists()
    assert (out / "model.safetensors").read_bytes() == reference(job, tmp_path_factory, **settings)
    log = (out / "train.log").read_text()
    assert "Resumed from step-" in log or kill_at == "step:10" and "Resumed" in log


def test_sigterm_and_ctrl_c_stop_after_the_step_with_a_checkpoint(job, tmp_path, tmp_path_factory):
    for name, code in (("SIGTERM", 143), ("SIGINT", 130)):
        out = tmp_path / name
        assert run_killed(config(job, out, precision="fp32"), f"step:9:{name}") == code
        latest = latest_checkpoint(tmp_path / f"{name}.partial")
        assert latest is not None and latest.name == "step-000000009"
        assert (
            f"Stopped by {name} after step 9"
            in (tmp_path / f"{name}.partial/train.log").read_text()
        )
        train(resume=out, quiet=True)
        assert (out / "model.safetensors").read_bytes() == reference(
            job, tmp_path_factory, precision="fp32"
        )


def test_the_command_line_says_how_to_resume_and_exits_143(job, tmp_path):
    out = tmp_path / "cli"
    args = [sys.executable, "-m", "gptclassify", "train", "--train", str(job / "topics.csv")]
    args += ["--model", str(job / "tiny.json"), "--weights", "random", "--epochs", "2"]
    args += ["--batch-size", "4", "--out", str(out), "--quiet"]
    env = {**os.environ, "GPTCLASSIFY_KILL_AT": "step:5:SIGTERM"}
    res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 143, res.stderr
    assert f"gptclassify train --resume {out}" in res.stderr and "Traceback" not in res.stderr
    # A resumed run keeps its settings: a changed option is refused, more epochs are fine.
    again = [sys.executable, "-m", "gptclassify", "train", "--resume", str(out), "--quiet"]
    refused = subprocess.run([*again, "--lr", "0.1"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "--lr 0.1: the run was started with" in refused.stderr
    done = subprocess.run([*again, "--epochs", "3"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3


def test_a_resume_is_refused_when_its_settings_files_changed(job, tmp_path, monkeypatch):
    """The --class-weights JSON and the --model shape a run started with are recorded
    (sha256); edited between the kill and the resume, the resume is refused, and the run is
    left as it was (its split and checkpoints untouched)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"sport": 1, "food": 2, "tech": 1}))
    cfg = config(job, Path("run"), model="tiny.json", class_weights="weights.json")
    assert run_killed(cfg, "step:10") == -signal.SIGKILL
    partial = tmp_path / "run.partial"

    def snapshot() -> dict[str, bytes]:
        return {
            str(p.relative_to(partial)): p.read_bytes()
            for p in sorted(partial.rglob("*"))
            if p.is_file() and p.name != "train.log"
        }

    before = snapshot()
    for path, edit in (
        (weights, {"sport": 1, "food": 50, "tech": 1}),
        (tmp_path / "tiny.json", {**TINY, "drop_rate": 0.9}),
    ):
        original = path.read_text()
        path.write_text(json.dumps(edit))
        with pytest.raises(GPTClassifyError, match=f"{path.name}: changed since the run started"):
            train(resume="run", quiet=True)
        assert snapshot() == before
        path.write_text(original)
    # Resumed from another folder: the run's relative paths are read where it started.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    done = train(resume=tmp_path / "run", quiet=True)
    recorded = json.loads((done.path / "config.json").read_text())["train_config"]
    assert recorded["train"]["class_weights"] == str(weights)


def test_a_refused_resume_leaves_the_runs_split_as_it_was(job, tmp_path):
    data = tmp_path / "topics.csv"
    data.write_text((job / "topics.csv").read_text())
    cfg = config(job, tmp_path / "run", data=DataConfig(train=str(data)), final_checkpoints="keep")
    assert run_killed(cfg, "step:10") == -signal.SIGKILL
    saved = tmp_path / "run.partial" / "data" / "train.csv"
    before = saved.read_bytes()
    original = data.read_text()
    data.write_text(original.replace(",sport", ",food"))  # other labels
    with pytest.raises(GPTClassifyError, match="the training data differ"):
        train(resume=tmp_path / "run", quiet=True)
    assert saved.read_bytes() == before
    data.write_text(original)
    # A finished run's resume that is refused leaves no copy of it behind.
    done = train(resume=tmp_path / "run", quiet=True)
    with pytest.raises(GPTClassifyError, match="already completed 3 epochs"):
        train(resume=done.path, overrides={"epochs": 2}, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "topics.csv"]


def test_more_epochs_continue_a_finished_run_exactly(job, tmp_path, tmp_path_factory):
    out = tmp_path / "run"
    train(config(job, out, precision="fp32", epochs=2, final_checkpoints="keep"), quiet=True)
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
    train(resume=out, overrides={"epochs": 3}, quiet=True)
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3
    assert (out / "model.safetensors").read_bytes() == reference(
        job, tmp_path_factory, precision="fp32"
    )
    with pytest.raises(GPTClassifyError, match="already completed 3 epochs"):
        train(resume=out, overrides={"epochs": 2}, quiet=True)


def test_checkpoints_kept_are_the_newest_and_the_best(job, tmp_path):
    out = tmp_path / "run"
    cfg = config(
        job, out, precision="fp32", keep_checkpoints=2, checkpoint_every=3, final_checkpoints="keep"
    )
    train(cfg, quiet=True)
    kept = checkpoints(out)
    metas = [json.loads((p / "state.json").read_text())["meta"] for p in kept]
    assert 2 <= len(kept) <= 3
    assert any(m["best"] for m in metas)
    steps = [int(p.name.split("-")[1]) for p in kept]
    assert steps[-1] == max(steps)  # the newest is kept
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]


# ---- run folders ----------------------------------------------------------------------------


def test_an_existing_run_folder_is_kept_until_the_new_run_is_complete(job, tmp_path):
    out = tmp_path / "run"
    train(config(job, out, precision="fp32", epochs=1), quiet=True)
    old = (out / "model.safetensors").read_bytes()
    with pytest.raises(GPTClassifyError, match="already holds a run; pass overwrite=True"):
        train(config(job, out, precision="fp32", epochs=1, seed=5), quiet=True)
    # Killed while replacing: the old folder is still whole (model and its own data/).
    cfg = config(job, out, precision="fp32", epochs=1, seed=5)
    ctx_cfg = cfg  # run_killed pickles the config; --overwrite goes through train()'s flag

    def killed_overwrite() -> int:
        ctx = mp.get_context("forkserver")
        child = ctx.Process(target=_overwrite_child, args=(ctx_cfg, "publish:1"))
        child.start()
        child.join(timeout=120)
        return child.exitcode

    assert killed_overwrite() == -signal.SIGKILL
    assert (out / "model.safetensors").read_bytes() == old
    from gptclassify.predict import Classifier

    # Still a complete, consistent folder: the model scores its own validation rows as before.
    report = Classifier.load(out).evaluate(out / "data" / "validation.csv")
    assert (
        report["accuracy"]
        == json.loads((out / "metrics.json").read_text())["validation"]["accuracy"]
    )
    train(config(job, out, precision="fp32", epochs=1, seed=5), quiet=True, overwrite=True)
    assert (out / "model.safetensors").read_bytes() != old
    assert not list(tmp_path.glob(".run.*")) and not (tmp_path / "run.partial").exists()


def _overwrite_child(cfg: TrainConfig, kill_at: str) -> None:
    os.environ["GPTCLASSIFY_KILL_AT"] = kill_at
    train(cfg, quiet=True, overwrite=True)


def test_default_run_folders_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = RunFolder.new(None), RunFolder.new(None)
    assert first.final != second.final
    assert first.work.is_dir() and second.work.is_dir()


def test_a_publish_killed_between_renames_is_repaired(tmp_path):
    final = tmp_path / "run"
    old = tmp_path / ".run.old-12345678"
    old.mkdir()
    (old / "config.json").write_text("{}")
    (tmp_path / ".run.abcdef12.tmp").mkdir()
    work = tmp_path / "run.partial" / "checkpoints"
    work.mkdir(parents=True)
    (work / "run.json").write_text("{}")
    RunFolder.resume(final).release()
    assert (final / "config.json").is_file()  # the previous folder is back under its name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.partial"]


def _cli_train(job: Path, out: Path, *more: str) -> list[str]:
    args = [sys.executable, "-m", "gptclassify", "train", "--train", str(job / "topics.csv")]
    args += ["--model", str(job / "tiny.json"), "--weights", "random", "--epochs", "2"]
    return [*args, "--batch-size", "4", "--out", str(out), "--quiet", *more]


def test_a_second_run_into_a_live_runs_folder_is_refused_and_changes_nothing(job, tmp_path):
    """Two real processes: the first stops itself (SIGSTOP) at its 3rd step, holding its run
    folder; the second, with and without --overwrite, and a --resume, are refused naming
    it, and the first then finishes a complete run."""
    out = tmp_path / "run"
    env = {**os.environ, "GPTCLASSIFY_KILL_AT": "step:3:SIGSTOP"}
    first = subprocess.Popen(
        _cli_train(job, out), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, status = os.waitpid(first.pid, os.WUNTRACED)  # returns once it has stopped itself
        assert os.WIFSTOPPED(status), "the first run ended before its 3rd step"
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        for extra in ((), ("--overwrite",)):
            second = subprocess.run(
                _cli_train(job, out, "--seed", "7", *extra),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert second.returncode == 1, second.stderr
            line = second.stderr.strip()
            assert "\n" not in line and "Traceback" not in line
            assert f"--out {out}: a run is writing it now (process {first.pid}" in line
            assert "--overwrite" not in line  # no advice that would not work
        with pytest.raises(GPTClassifyError, match=f"process {first.pid}, still alive"):
            train(resume=out, quiet=True)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    for name in ("model.safetensors", "config.json", "train.log", "data/train.csv"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["train_config"]["train"]["seed"] != 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the lock file went too
    # Free again: --overwrite replaces the finished run.
    again = subprocess.run(
        _cli_train(job, out, "--overwrite", "--epochs", "1"), capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr


def test_folders_of_another_kind_are_never_replaced(job, tmp_path, sms_file):
    from gptclassify.args import BaselineConfig
    from gptclassify.baseline import train_baseline

    base = tmp_path / "baseline"
    train_baseline(BaselineConfig(out=str(base)))
    with pytest.raises(GPTClassifyError, match="is a TF-IDF baseline folder and not empty"):
        train(config(job, base), quiet=True, overwrite=True)
    run = tmp_path / "run"
    train(config(job, run, precision="fp32", epochs=1), quiet=True)
    with pytest.raises(GPTClassifyError, match="is a classifier run folder and not empty"):
        train_baseline(BaselineConfig(out=str(run)))
    train_baseline(BaselineConfig(out=str(base)))  # a baseline folder may be replaced by one
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(GPTClassifyError, match="is not a gptclassify folder and not empty"):
        train(config(job, other), quiet=True, overwrite=True)
    assert (other / "todo.txt").read_text() == "mine"


# ---- bad runs end with one line ------------------------------------------------------------


def test_batch_larger_than_the_training_set_is_refused_before_anything_is_left(job, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(
        GPTClassifyError, match=r"batch_size=500 is larger than the \d+ training texts"
    ):
        train(config(job, out, batch_size=500), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_a_diverging_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(job, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(GPTClassifyError, match=r"loss became (nan|inf) at step \d+ .*--lr"):
        train(config(job, out, lr=1e30, weight_decay=0.0, checkpoint_every=1), quiet=True)
    assert not out.exists()
    partial = tmp_path / "run.partial"
    assert latest_checkpoint(partial) is not None
    assert "Run failed: the training loss became" in (partial / "train.log").read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vocab_size": 1000}, "vocab_size 1000 is smaller than the GPT-2 tokenizer's 50257"),
        ({"n_layers": 20000}, "parameters need .* GiB for the fp32 weights alone"),
    ],
)
def test_impossible_model_configs_are_refused_before_allocation(job, tmp_path, change, message):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(change))  # GPT-2 small's shape otherwise
    with pytest.raises(GPTClassifyError, match=message):
        train(config(job, tmp_path / "run", model=str(path)), quiet=True)
    assert not (tmp_path / "run.partial").exists()


def test_out_that_is_a_file_is_one_clear_line(job, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(GPTClassifyError, match="exists and is not a folder"):
        train(config(job, afile), quiet=True)


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    job, tmp_path, monkeypatch
):
    import errno

    from gptclassify.training import checkpoint

    real = checkpoint.save_file
    calls = []

    def full_disk(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint: half a file, then ENOSPC
            path.write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(tensors, path, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    out = tmp_path / "run"
    with pytest.raises(GPTClassifyError) as caught:
        train(config(job, out, precision="fp32"), quiet=True)
    message = str(caught.value)
    assert "\n" not in message and "the disk is full (no space left on device)" in message
    assert "kept the previous checkpoint step-000000007" in message
    assert f"train(resume={str(tmp_path / 'run.partial')!r})" in message
    partial = tmp_path / "run.partial"
    assert [p.name for p in (partial / "checkpoints").iterdir() if p.name != "run.json"] == [
        "step-000000007"
    ]  # no half-written checkpoint beside it
    monkeypatch.setattr(checkpoint, "save_file", real)
    done = train(resume=partial, quiet=True)
    assert done.path == out and (out / "model.safetensors").is_file()
