"""--report-to tensorboard,mlflow: read back through the trackers' own readers.

TensorBoard's events are read with tensorboard's EventAccumulator (what TensorBoard shows);
MLflow runs are reported to a real `mlflow server` (SQLite backend) started here on
127.0.0.1 and read back through mlflow.MlflowClient. Runs are killed for real (SIGKILL at
the end of an epoch, after its reports, before its checkpoint) and resumed, so the resumed
run redoes steps the trackers already hold.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_three_classes
from gptclassify.args import DataConfig, TrainConfig
from gptclassify.errors import GPTClassifyError
from gptclassify.training import train
from test_browser import free_port
from test_resume import run_killed

pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")

TINY = {"emb_dim": 32, "n_heads": 4, "n_layers": 2, "context_length": 32}


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    (root / "tiny.json").write_text(json.dumps(TINY))
    write_three_classes(root / "topics.csv", n_per_class=30)
    write_three_classes(root / "test.csv", n_per_class=10, seed=1)
    return root


def config(job: Path, out: Path, **kw) -> TrainConfig:
    options = dict(
        data=DataConfig(train=str(job / "topics.csv"), test=str(job / "test.csv")),
        model=str(job / "tiny.json"),
        weights="random",
        lr=2e-3,
        epochs=2,
        batch_size=4,
        eval_freq=5,
        eval_iter=2,
        checkpoint_every=7,
        precision="fp32",
        out=str(out),
    )
    return TrainConfig(**{**options, **kw})


def steps_per_run(cfg: TrainConfig) -> int:
    return (81 // cfg.batch_size) * cfg.epochs  # 90 texts, 10% held out: 81 train


def scalars(logdir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_a_resumed_runs_event_file_is_read_after_the_interrupted_runs(tmp_path):
    # The interrupted run's file, opened this very second by a process with a higher id: a
    # file the resumed run opened in the same second would sort before it, and TensorBoard
    # would read its purge of the redone steps first (the folder then held steps 14+ only).
    from torch.utils.tensorboard import SummaryWriter

    from gptclassify.training import report

    logdir = tmp_path / "tensorboard"
    writer = SummaryWriter(str(logdir))
    for step in range(20):
        writer.add_scalar("step/train_loss", float(step), step)
    writer.close()
    (old,) = logdir.glob("events.out.tfevents.*")
    old.rename(logdir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.9999999.0")
    report._after_earlier_event_files(logdir)
    writer = SummaryWriter(str(logdir), purge_step=14)
    for step in range(14, 30):
        writer.add_scalar("step/train_loss", float(step) + 0.5, step)
    writer.close()
    read = scalars(logdir, "step/train_loss")
    assert [s for s, _ in read] == list(range(30))
    assert [v for s, v in read if s >= 14] == [s + 0.5 for s in range(14, 30)]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real tracking server on 127.0.0.1 with a SQLite backend; its URL."""
    import requests

    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if server.poll() is not None:
                pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not answer /health within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        # A graceful stop of the server and its workers takes seconds; nothing here needs it.
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
        log.close()


def _flush_until_sent() -> None:
    """In the killed child: the epoch's reports reach the server before the kill however
    loaded the machine is (the run's 5 s bound is for servers that do not answer; this one
    does, slowly, when the CPU is shared)."""
    from gptclassify.training.report import MLflowReporter

    MLflowReporter.EPOCH_FLUSH_S = 120.0


def test_a_killed_and_resumed_run_continues_one_mlflow_run_and_step_axis(
    job, tmp_path, mlflow_server, monkeypatch
):
    import mlflow
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = {"MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_EXPERIMENT_NAME": "tracking-test"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    cfg = config(job, out, report_to="tensorboard,mlflow")
    # Killed after epoch 1's reports, before its checkpoint: the resumed run redoes the
    # steps after the last step checkpoint (step 13), which both trackers already hold.
    assert run_killed(cfg, "epoch:1", env, _flush_until_sent) == -signal.SIGKILL
    record = json.loads((tmp_path / "run.partial" / "mlflow.json").read_text())
    client = mlflow.MlflowClient(tracking_uri=mlflow_server)
    before = client.get_metric_history(record["run_id"], "train_loss")
    assert max(m.step for m in before) > 13
    assert client.get_run(record["run_id"]).info.status == "RUNNING"  # killed: never ended
    events_before = scalars(tmp_path / "run.partial" / "tensorboard", "step/train_loss")
    assert events_before[-1][0] > 13

    train(resume=out, quiet=True)
    total = steps_per_run(cfg)
    metrics = json.loads((out / "metrics.json").read_text())

    # TensorBoard: each step once, in order; the redone steps read as the killed run wrote
    # them (an exact resume).
    events = scalars(out / "tensorboard", "step/train_loss")
    assert [s for s, _ in events] == list(range(total))
    assert events[: len(events_before)] == events_before
    epochs = scalars(out / "tensorboard", "epoch/full_val_accuracy")
    assert [s for s, _ in epochs] == [total // 2 * e - 1 for e in (1, 2)]
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    assert {"confusion/validation", "confusion/test"} <= set(acc.Tags()["images"])
    final = scalars(out / "tensorboard", "final/test_accuracy")
    assert final[0][1] == pytest.approx(metrics["test"]["accuracy"])

    # MLflow: the same run, finished, each step once.
    assert json.loads((out / "mlflow.json").read_text())["run_id"] == record["run_id"]
    experiment = client.get_experiment_by_name("tracking-test")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [record["run_id"]]  # one run, continued
    run = runs[0]
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert sorted(m.step for m in history) == list(range(total))  # no step twice
    assert sorted((m.step, m.value) for m in history) == [(s, pytest.approx(v)) for s, v in events]
    with open(out / "history.csv", encoding="utf-8") as f:
        rows = [line.split(",") for line in f.read().splitlines()[1:]]
    epoch_rows = [r for r in rows if r[5]]  # rows with a train accuracy
    full_val = client.get_metric_history(run.info.run_id, "full_val_accuracy")
    assert sorted((m.step, m.value) for m in full_val) == [
        (int(r[0]), pytest.approx(float(r[7]))) for r in epoch_rows
    ]
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert run.data.params["lr"] == "0.002"
    assert run.data.params["report_to"] == "tensorboard,mlflow"
    record_json = json.loads((out / "checkpoints" / "run.json").read_text())
    assert run.data.tags["gptclassify.data_sha256"] == record_json["data_sha256"]
    assert run.data.tags["gptclassify.base_model"] == str(job / "tiny.json")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.safetensors", "config.json", "metrics.json", "tensorboard"} <= artifacts
    assert "checkpoints" not in artifacts


def test_an_unreachable_tracking_server_is_a_warning_not_a_failure(job, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    out = tmp_path / "run"
    clf = train(config(job, out, report_to="mlflow", epochs=1, eval_freq=0), quiet=True)
    assert clf.path == out and (out / "model.safetensors").is_file()
    log = (out / "train.log").read_text()
    assert "Warning: MLflow: reporting is off for this run" in log


def test_report_to_names_are_checked(job, tmp_path):
    with pytest.raises(GPTClassifyError, match="report_to: wandb not one of none"):
        config(job, tmp_path / "x", report_to="tensorboard,wandb")
    assert config(job, tmp_path / "x", report_to=" mlflow , tensorboard").report_to


def test_a_reporter_that_raises_is_switched_off_with_a_warning(job, tmp_path):
    from gptclassify.training.report import Reporter

    class Broken(Reporter):
        calls = 0

        def on_step(self, state, loss):
            Broken.calls += 1
            raise OSError("disk full")

        def close(self, status, folder):
            raise RuntimeError("cannot close")

    out = tmp_path / "run"
    clf = train(config(job, out, epochs=1, eval_freq=0), quiet=True, callbacks=[Broken()])
    assert clf.path == out and (out / "model.safetensors").is_file()
    assert Broken.calls == 1  # switched off after the first failure
    log = (out / "train.log").read_text()
    assert "Warning: Broken stopped reporting (disk full)" in log


def test_the_model_is_an_mlflow_pyfunc_model_with_its_data_and_a_registered_version(
    job, tmp_path, monkeypatch
):
    """--report-to mlflow --register-model NAME, read back as MLflow's users do: the model
    through mlflow.pyfunc.load_model("runs:/<id>/model") and "models:/NAME/1" (a DataFrame
    or a list of texts in, labels and probabilities out, equal to gptclassify's own), its
    signature and input example, and the splits as the run's dataset inputs."""
    import mlflow
    import numpy as np
    import pandas as pd

    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the cwd
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "pyfunc-test")
    out = tmp_path / "run"
    cfg = config(job, out, report_to="mlflow", register_model="topics", epochs=1, eval_freq=0)
    clf = train(cfg, quiet=True)
    run_id = json.loads((out / "mlflow.json").read_text())["run_id"]
    assert "Warning: MLflow" not in (out / "train.log").read_text()

    texts = [
        "the goal in the final match",
        "a spicy pizza from the oven",
        "python code on a server",
    ]
    # gptclassify's own answer for the folder: Classifier.load, as the pyfunc model loads it
    # (precision auto: bf16 on an AMX CPU, so not the fp32 of the classifier train returned)
    from gptclassify.predict import Classifier

    own = Classifier.load(out)
    want_labels = [str(v) for v in own.predict(texts)]
    want = own.predict_proba(texts)
    columns = [f"p({name})" for name in clf.labels]
    client = mlflow.MlflowClient(tracking_uri=uri)
    for model_uri in (f"runs:/{run_id}/model", "models:/topics/1"):
        model = mlflow.pyfunc.load_model(model_uri)
        for given in (pd.DataFrame({"text": texts}), texts):
            frame = model.predict(given)
            assert list(frame.columns) == ["label", *columns]
            assert frame["label"].tolist() == want_labels
            assert np.allclose(frame[columns].to_numpy(), want, atol=1e-6, rtol=0)
        signature = model.metadata.signature
        assert [t.name for t in signature.inputs.input_types()] == ["string"]
        assert signature.outputs.input_names() == ["label", *columns]
    local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", tracking_uri=uri)
    example = mlflow.models.Model.load(local).load_input_example(local)
    validation = pd.read_csv(out / "data" / "validation.csv", dtype=str, keep_default_na=False)
    assert example["text"].tolist() == validation["text"].tolist()[:3]

    run = client.get_run(run_id)
    inputs = {
        d.dataset.name: ({t.key: t.value for t in d.tags}, d.dataset)
        for d in run.inputs.dataset_inputs
    }
    assert set(inputs) == {"train", "validation", "test"}
    assert inputs["train"][0]["mlflow.data.context"] == "training"
    assert inputs["test"][0]["mlflow.data.context"] == "testing"
    train_rows = pd.read_csv(out / "data" / "train.csv", dtype=str, keep_default_na=False)
    profile = json.loads(inputs["train"][1].profile)
    assert profile["num_rows"] == len(train_rows)
    assert json.loads(inputs["train"][1].schema)["mlflow_colspec"][0]["name"] == "text"

    versions = client.search_model_versions("name='topics'")
    assert [(str(v.version), v.run_id) for v in versions] == [("1", run_id)]


def test_register_model_needs_mlflow(job, tmp_path):
    with pytest.raises(GPTClassifyError, match="register_model needs report_to=.mlflow."):
        config(job, tmp_path / "x", register_model="topics")
