"""gptclassify tune: search spaces, a search whose trials are normal runs, its outputs,
resuming a stopped search, two workers on one SQLite study, and a PostgreSQL study.

Studies are read back through Optuna itself (optuna.load_study), as a user would."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_three_classes
from gptclassify.args import DataConfig, TrainConfig, flat_dict
from gptclassify.errors import GPTClassifyError
from gptclassify.training import faults, train
from gptclassify.training.run import TrainingInterrupted
from gptclassify.tune import build_space, parse_flag, search, train_command, trial_config
from test_browser import free_port

optuna = pytest.importorskip("optuna")

TINY = {"emb_dim": 32, "n_heads": 4, "n_layers": 2, "context_length": 32}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    (root / "tiny.json").write_text(json.dumps(TINY))
    write_three_classes(root / "topics.csv", n_per_class=30)
    return root


def base(job: Path, **kw) -> TrainConfig:
    options = dict(
        data=DataConfig(train=str(job / "topics.csv")),
        model=str(job / "tiny.json"),
        weights="random",
        trainable="last-block",
        epochs=2,
        batch_size=4,
        eval_freq=0,
        precision="fp32",
    )
    return TrainConfig(**{**options, **kw})


def test_search_spaces_from_flags_and_files_are_checked(tmp_path):
    lr = parse_flag("lr=loguniform(1e-5, 1e-3)")
    assert (lr.kind, lr.low, lr.high) == ("loguniform", 1e-5, 1e-3)
    pick = parse_flag("trainable=choice(last-block,last-2-blocks,lora)")
    assert pick.choices == ("last-block", "last-2-blocks", "lora")
    assert parse_flag("lora-rank=logint(4,64)").name == "lora_rank"
    assert parse_flag("causal_mask=choice(true,false)").choices == (True, False)
    space_file = tmp_path / "space.yaml"
    space_file.write_text(
        "lr: loguniform(1e-5, 1e-3)\n"
        "pool: [last-real, mean]\n"
        "epochs: {type: int, low: 2, high: 6}\n"
        "weight_decay: {low: 0.0, high: 0.2}\n"
    )
    space = build_space(["lr=uniform(1e-4,2e-4)"], space_file)  # the flag replaces the file's
    assert space.names() == ["lr", "pool", "epochs", "weight_decay"]
    assert space.params[0].kind == "uniform" and space.params[2].kind == "int"
    (tmp_path / "space.json").write_text(json.dumps({"batch_size": [4, 8]}))
    assert build_space(file=tmp_path / "space.json").params[0].choices == (4, 8)
    for spec, message in (
        ("learning_rate=loguniform(1e-5,1e-3)", "'learning_rate' is not a TrainConfig option"),
        ("out=choice(a,b)", "'out' is not a TrainConfig option"),
        ("lr=gaussian(0,1)", "'gaussian' is not one of"),
        ("lr=loguniform(1e-3,1e-5)", "low (0.001) must be below high"),
        ("lr=loguniform(0,1)", "loguniform needs low > 0"),
        ("epochs=uniform(1,5)", "the option takes an integer; use choice"),
        ("pool=choice(last-real,middle)", "'middle' is not one of last-real"),
        ("batch_size=choice(4,eight)", "batch_size must be an integer"),
        ("lr", "expected NAME=KIND(ARGS)"),
    ):
        with pytest.raises(GPTClassifyError, match=re.escape(message)):
            parse_flag(spec)
    with pytest.raises(GPTClassifyError, match="nothing to search"):
        build_space()
    (tmp_path / "bad.yaml").write_text("- lr\n")
    with pytest.raises(GPTClassifyError, match="bad.yaml: expected a mapping"):
        build_space(file=tmp_path / "bad.yaml")


def test_a_search_keeps_the_best_run_reproduces_it_and_continues(job, tmp_path):
    out = tmp_path / "search"
    space = build_space(["lr=loguniform(1e-4,1e-2)", "weight_decay=uniform(0,0.2)"])
    result = search(base(job), space, out=out, trials=4, seed=0)
    assert [r.number for r in result.rows] == [0, 1, 2, 3]
    assert all(r.state in ("COMPLETE", "PRUNED") for r in result.rows)
    complete = [r for r in result.rows if r.state == "COMPLETE"]
    assert result.best is not None and result.best.value == max(r.value for r in complete)
    # Every complete trial's value is the validation accuracy its run folder reports.
    for r in complete:
        metrics = json.loads((Path(r.run) / "metrics.json").read_text())
        assert r.value == metrics["validation"]["accuracy"]
        has_weights = (Path(r.run) / "model.safetensors").is_file()
        assert has_weights == (r.number == result.best.number)  # only the best keeps weights
    assert not list(out.glob("*.partial"))
    best = json.loads((out / "best.json").read_text())
    assert (
        best["best"]["trial"] == result.best.number and best["best"]["params"] == result.best.params
    )
    assert {"csv", "md", "best", "history"} <= set(result.files)
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["trial", "state", "val_accuracy", "test_accuracy"]
    assert {"lr", "weight_decay", "time_s"} <= set(header)

    # The frozen block (trainable: last-block of 2) and the data are shared by every trial:
    # the cache of each split was built once and reused by the other trials.
    assert result.prefix_cache["misses"] == 2  # train and validation
    assert result.prefix_cache["hits"] == 2 * 3

    # The command reproduces the best trial's settings, and running them (without any
    # shared cache) gives the best trial's weights byte for byte.
    from gptclassify.cli import cli
    from gptclassify.cli.options import build

    args = shlex.split(result.command)[2:]
    ctx = cli.commands["train"].make_context("train", args)
    from_cli = build(TrainConfig, dict(ctx.params))
    again = trial_config(
        base(job), DataConfig(data=str(out / "data")), result.best.params, out / "best"
    )
    assert flat_dict(from_cli) == flat_dict(again)
    train(from_cli, quiet=True)
    assert (out / "best" / "model.safetensors").read_bytes() == (
        Path(result.best.run) / "model.safetensors"
    ).read_bytes()

    # The same search again with more trials continues the study (tune.db in OUT).
    shutil.rmtree(out / "best")
    more = search(base(job), space, out=out, trials=5, seed=1)
    assert [r.number for r in more.rows] == [0, 1, 2, 3, 4]
    assert [r.value for r in more.rows[:4]] == [r.value for r in result.rows]
    with pytest.raises(GPTClassifyError, match="started with another metric"):
        search(base(job), space, out=out, trials=6, metric="val_loss")


def test_a_multi_label_search_ranks_trials_by_validation_macro_f1(job, tmp_path):
    from test_multilabel import rows, write_sep

    write_sep(tmp_path / "sets.csv", rows(120, 0), sep="|")
    cfg = base(job, data=DataConfig(train=str(tmp_path / "sets.csv"), label_sep="|"))
    result = search(cfg, build_space(["lr=loguniform(1e-4,1e-2)"]), out=tmp_path / "s", trials=2)
    complete = [r for r in result.rows if r.state == "COMPLETE"]
    assert complete
    for r in complete:  # what the run chose its epochs by, not the subset accuracy
        report = json.loads((Path(r.run) / "metrics.json").read_text())["validation"]
        assert report["task"] == "multi-label"
        assert r.value == report["macro_f1"] != report["accuracy"]


def test_a_trial_stopped_by_ctrl_c_resumes_from_its_checkpoint(job, tmp_path, monkeypatch):
    out = tmp_path / "search"
    space = build_space(["lr=loguniform(1e-4,1e-2)"])
    cfg = base(job, checkpoint_every=5)
    monkeypatch.setenv("GPTCLASSIFY_KILL_AT", "step:12:SIGINT")
    monkeypatch.setattr(faults, "_counts", faults.Counter())
    with pytest.raises(TrainingInterrupted):
        search(cfg, space, out=out, trials=1, seed=0)
    assert (out / "trial-0000.partial" / "checkpoints").is_dir()
    monkeypatch.delenv("GPTCLASSIFY_KILL_AT")
    result = search(cfg, space, out=out, trials=1, seed=0)
    first, again = result.rows
    assert (first.state, again.state) == ("FAIL", "COMPLETE")
    assert again.params == first.params and again.run == first.run
    assert "Resumed from step-" in (out / "trial-0000" / "train.log").read_text()
    # Exactly the run that was never stopped.
    plain = trial_config(cfg, DataConfig(data=str(out / "data")), first.params, tmp_path / "plain")
    train(plain, quiet=True)
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() == (
        out / "trial-0000" / "model.safetensors"
    ).read_bytes()


def test_two_workers_share_one_sqlite_study(job, tmp_path):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [
        sys.executable, "-m", "gptclassify", "tune", "--train", str(job / "topics.csv"),
        "--model", str(job / "tiny.json"), "--weights", "random", "--trainable", "last-block",
        "--epochs", "1", "--batch-size", "4", "--eval-freq", "0",
        "--search", "lr=loguniform(1e-4,1e-2)", "--search", "weight_decay=uniform(0,0.2)",
        "--trials", "4", "--pruner", "none", "--storage", storage, "--study", "shared",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    workers = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"w{i}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in (1, 2)
    ]
    outputs = []
    try:
        for w in workers:
            outputs.append(w.communicate(timeout=540)[0])
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=30)
    assert [w.returncode for w in workers] == [0, 0], outputs
    study = optuna.load_study(study_name="shared", storage=storage)
    trials = study.get_trials()
    assert len({t.number for t in trials}) == len(trials) >= 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    runs = [Path(t.user_attrs["run"]) for t in trials]
    # Each trial ran once, in one worker's folder, and that run reports the trial's value.
    by_worker = {i: [r for r in runs if r.parent.name == f"w{i}"] for i in (1, 2)}
    assert len(by_worker[1]) + len(by_worker[2]) == len(trials)
    assert by_worker[1] and by_worker[2]
    for t, run in zip(trials, runs, strict=True):
        metrics = json.loads((run / "metrics.json").read_text())
        assert t.value == metrics["validation"]["accuracy"]
    best_value = max(t.value for t in trials)
    assert study.best_value == best_value
    reported = [json.loads((tmp_path / f"w{i}" / "best.json").read_text()) for i in (1, 2)]
    assert max(r["best"]["value"] for r in reported) == best_value


@pytest.fixture
def postgres(tmp_path):
    """A PostgreSQL server (Debian's postgresql package) in a temporary folder, on
    127.0.0.1; its URL. Skipped where the package is not installed."""
    pytest.importorskip("psycopg2")
    bindir = Path("/usr/lib/postgresql")
    versions = sorted(bindir.glob("*/bin/initdb")) if bindir.is_dir() else []
    if not versions:
        pytest.skip("Debian's postgresql package is not installed")
    bin_ = versions[-1].parent
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = Path(f"/tmp/gptclassify-pg-{os.getpid()}-{tmp_path.name}")
    root.mkdir()
    if as_user:
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)

    try:
        run(str(bin_ / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        run(
            str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60",
            "-o", f"-k {root} -p {port} -c listen_addresses=127.0.0.1", "start",
        )  # fmt: skip
        run(str(bin_ / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "tune")
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/tune"
    finally:
        subprocess.run(
            [*as_user, str(bin_ / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_a_study_on_a_postgresql_server(job, tmp_path, postgres):
    space = build_space(["lr=loguniform(1e-4,1e-2)"])
    cfg = base(job, epochs=1)
    result = search(cfg, space, out=tmp_path / "pg", trials=2, storage=postgres, seed=0)
    assert [r.state for r in result.rows] == ["COMPLETE", "COMPLETE"]
    assert "***" not in result.storage  # (no password in this URL to hide)
    study = optuna.load_study(study_name="pg", storage=postgres)
    assert [t.value for t in study.trials] == [r.value for r in result.rows]
    assert not (tmp_path / "pg" / "tune.db").exists()


def test_train_command_round_trips_every_kind_of_option(job, tmp_path):
    from gptclassify.cli import cli
    from gptclassify.cli.options import build

    cfg = base(job, lr=3.0000000000000004e-05, causal_mask=False, calibrate=True, max_length=24)
    cfg.out = str(tmp_path / "x")
    command = train_command(cfg, out=cfg.out)
    ctx = cli.commands["train"].make_context("train", shlex.split(command)[2:])
    assert flat_dict(build(TrainConfig, dict(ctx.params))) == flat_dict(cfg)
    assert "--no-causal-mask" in command and "--calibrate" in command


def test_tune_without_optuna_names_the_extra():
    from gptclassify.cli.app import missing_extra

    error = ModuleNotFoundError("No module named 'optuna'", name="optuna")
    assert missing_extra(error) == (
        'this needs optuna, which is not installed: pip install "gptclassify[track]" '
        '(in a clone of the repository: pip install ".[track]")'
    )


def test_shared_prefix_caches_are_reused_only_for_the_same_prefix():
    import torch

    from gptclassify.classifier import GPTClassifier
    from gptclassify.config import GPTConfig
    from gptclassify.data.batches import TokenSource
    from gptclassify.data.encode import InputPolicy, encode
    from gptclassify.model import GPTModel
    from gptclassify.training.prefix_cache import PrefixMemo, build_prefix_source

    cfg = GPTConfig(vocab_size=50257, context_length=32, emb_dim=32, n_heads=4, n_layers=3)
    texts = ["win cash now", "see you at six", "call me later tonight please"]
    policy = InputPolicy(cfg.context_length, None)
    source = TokenSource(encode(texts, policy, [1, 0, 0]), torch.device("cpu"))

    def model(seed: int, causal: bool = True) -> GPTClassifier:
        torch.manual_seed(seed)
        return GPTClassifier(GPTModel(cfg), 2, causal=causal).eval()

    memo = PrefixMemo()  # passed explicitly: nothing shared unless given
    first = build_prefix_source(model(0), source, 2, memo=memo)
    again = build_prefix_source(model(0), source, 2, memo=memo)  # a new model, the same weights
    assert (memo.hits, memo.misses) == (1, 1) and again.states is first.states
    other = model(0)
    with torch.no_grad():
        other.gpt.h[1].mlp.c_fc.weight[0, 0] += 1e-3  # one frozen weight differs
    changed = build_prefix_source(other, source, 2, memo=memo)
    build_prefix_source(model(0), source, 1, memo=memo)  # fewer frozen blocks
    build_prefix_source(model(0, causal=False), source, 2, memo=memo)  # another attention mask
    shorter = TokenSource(encode(texts[:2], policy, [1, 0]), torch.device("cpu"))
    build_prefix_source(model(0), shorter, 2, memo=memo)  # other texts
    assert (memo.hits, memo.misses) == (1, 5)
    assert not torch.equal(changed.states, first.states)
    # Without a memo every run builds its own, with the same numbers.
    alone = build_prefix_source(model(0), source, 2)
    assert torch.equal(alone.states, first.states) and alone.states is not first.states
