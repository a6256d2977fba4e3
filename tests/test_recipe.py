"""`train --recipe auto`: candidates within a budget, the best by validation, published as a
normal run folder that equals a plain run with the chosen options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import write_three_classes
from gptclassify.args import DataConfig, TrainConfig
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier
from gptclassify.training import train
from gptclassify.tune.recipe import Candidate, Deadline, auto_recipe, parse_budget

TINY = {"emb_dim": 32, "n_heads": 4, "n_layers": 2, "context_length": 32}
# Three cheap candidates whose validation scores differ on the three-topic data: a learning
# rate too small to learn in 2 epochs, one that learns, and one on a deeper trainable part.
CANDIDATES = (
    Candidate("slow", {"lr": 1e-6, "epochs": 2}, "too small a learning rate"),
    Candidate("fast", {"lr": 3e-3, "epochs": 4}, "a learning rate that learns"),
    Candidate("deep", {"trainable": "last-2-blocks", "lr": 1e-3, "epochs": 3}, "two blocks"),
)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    (root / "tiny.json").write_text(json.dumps(TINY))
    write_three_classes(root / "topics.csv", n_per_class=30)
    return root


def base(job: Path, **kw) -> TrainConfig:
    options = dict(
        data=DataConfig(train=str(job / "topics.csv")),
        model=str(job / "tiny.json"),
        weights="random",
        batch_size=4,
        eval_freq=0,
        precision="fp32",
    )
    return TrainConfig(**{**options, **kw})


def test_budget_parsing():
    assert parse_budget("3m") == 180
    assert parse_budget("1m30s") == 90
    assert parse_budget("90") == 90
    assert parse_budget("1h") == 3600
    for bad in ("soon", "3x", "0s", "-5", "3m foo"):
        with pytest.raises(GPTClassifyError, match="--budget"):
            parse_budget(bad)


def test_auto_keeps_the_best_candidate_and_equals_a_plain_run(job, tmp_path):
    lines: list[str] = []
    result = auto_recipe(
        base(job), "1h", out=tmp_path / "auto", candidates=CANDIDATES, echo=lines.append
    )
    record = json.loads((tmp_path / "auto" / "recipe.json").read_text())
    tried = {t["name"]: t for t in record["tried"]}
    assert [t["state"] for t in record["tried"]] == ["done", "done", "done"]
    # The choice follows the stated rule: best validation accuracy, then lower loss.
    best = min(tried.values(), key=lambda t: (-t["val_accuracy"], t["val_loss"], t["seconds"]))
    assert record["chosen"] == result.chosen == best["name"]
    assert tried["slow"]["val_accuracy"] < tried[best["name"]]["val_accuracy"]
    assert any(line.startswith(f"recipe auto: chose {best['name']}") for line in lines)
    # OUT is a normal run folder: the chosen candidate's, and nothing else is left around.
    metrics = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert metrics["validation"]["accuracy"] == pytest.approx(best["val_accuracy"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]
    loaded = Classifier.load(tmp_path / "auto")
    assert list(loaded.predict(["a test text"])) == list(result.classifier.predict(["a test text"]))
    # ... equal, bit for bit, to a plain run with the chosen options on the same data.
    chosen = next(c for c in CANDIDATES if c.name == best["name"])
    plain_cfg = base(job, out=str(tmp_path / "plain"))
    for name, value in chosen.params.items():
        setattr(plain_cfg, name, value)
    train(plain_cfg, quiet=True, progress=False)
    ours = (tmp_path / "auto" / "model.safetensors").read_bytes()
    assert ours == (tmp_path / "plain" / "model.safetensors").read_bytes()
    # Candidates that share their frozen blocks shared one frozen-prefix cache.
    assert record["prefix_cache"]["hits"] >= 1


def test_a_small_budget_runs_the_first_candidate_and_skips_the_rest(job, tmp_path):
    result = auto_recipe(base(job), 0.001, out=tmp_path / "auto", candidates=CANDIDATES)
    states = [(t.name, t.state) for t in result.tried]
    assert states == [("slow", "done"), ("fast", "skipped"), ("deep", "skipped")]
    assert "budget" in result.tried[1].note
    assert result.chosen == "slow"
    assert result.reason == "the only candidate that ran within the budget"
    assert (tmp_path / "auto" / "model.safetensors").is_file()


def test_a_passed_deadline_stops_a_run_at_the_end_of_its_epoch(job, tmp_path):
    stop = Deadline(0.0)  # long past
    clf = train(
        base(job, epochs=4, out=str(tmp_path / "run")), quiet=True, progress=False, callbacks=[stop]
    )
    assert stop.hit
    assert clf.metrics["epochs_run"] == 1 and clf.metrics["stopped_early"] is True


def test_cli_recipe_auto(job, tmp_path):
    common = [
        "train",
        "--train",
        str(job / "topics.csv"),
        "--model",
        str(job / "tiny.json"),
        "--weights",
        "random",
        "--batch-size",
        "4",
        "--eval-freq",
        "0",
        "--precision",
        "fp32",
    ]
    runner = CliRunner()
    # What auto chooses cannot be given too; --budget needs auto; a bad budget is one line.
    for extra, message in (
        (["--recipe", "auto", "--lr", "1e-3"], "--recipe auto chooses --lr"),
        (["--recipe", "auto", "--lexical", "on"], "--recipe auto chooses --lexical"),
        (["--budget", "2m"], "--budget is for --recipe auto"),
        (["--recipe", "auto", "--budget", "soon"], "--budget 'soon': not a duration"),
    ):
        res = runner.invoke(cli, [*common, *extra, "--out", str(tmp_path / "x")])
        assert res.exit_code != 0 and message in res.output, res.output
        assert not (tmp_path / "x").exists()
    out = tmp_path / "auto"
    res = runner.invoke(cli, [*common, "--recipe", "auto", "--budget", "1h", "--out", str(out)])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "recipe.json").read_text())
    assert f"Recipe: {record['chosen']}" in res.output
    states = {t["name"]: t["state"] for t in record["tried"]}
    assert states == {
        "fitted": "failed",  # four blocks: the tiny model has 2 blocks: said, not hidden
        "book": "done",
        "last-block lr 5e-4 10 ep": "done",
        "lora r16 lr 5e-4": "done",
    }
    # Every candidate ran with --lexical auto (recorded, so a plain train can repeat it).
    assert all(t["params"]["lexical"] == "auto" for t in record["tried"])
    deep = next(t for t in record["tried"] if t["name"] == "fitted")
    assert "the model has 2 blocks" in deep["note"]
    # The fitted candidate's epochs follow the data size: 90 texts, batch 4 -> 22 steps an
    # epoch -> 20 epochs (the most) for at least 600 steps.
    assert deep["params"]["epochs"] == 20 and deep["params"]["trainable"] == "last-4-blocks"
    # The budget counts work (CPU time per thread), recorded per candidate.
    assert all(t["work_s"] > 0 for t in record["tried"] if t["state"] == "done")
    assert Classifier.load(out).metrics["validation"]["accuracy"] == max(
        t["val_accuracy"] for t in record["tried"] if t["state"] == "done"
    )


def test_candidates_of_a_rotary_family_share_the_frozen_prefix(tmp_path):
    """Llama has no position embeddings: the cache key must not need them."""
    from families import write_hf_family

    folder = write_hf_family(tmp_path / "llama", "llama")
    write_three_classes(tmp_path / "topics.csv", n_per_class=20)
    cfg = TrainConfig(
        data=DataConfig(train=str(tmp_path / "topics.csv")),
        model=str(folder),
        batch_size=4,
        eval_freq=0,
        precision="fp32",
    )
    twice = (
        Candidate("a", {"lr": 1e-3, "epochs": 1}, "one"),
        Candidate("b", {"lr": 2e-3, "epochs": 1}, "the same frozen blocks"),
    )
    result = auto_recipe(cfg, "1h", out=tmp_path / "auto", candidates=twice)
    assert [t.state for t in result.tried] == ["done", "done"]
    assert result.prefix_cache["hits"] >= 1


def test_the_fitted_recipe_gives_small_data_enough_steps():
    from gptclassify.tune.recipe import MIN_STEPS, fitted_options

    assert fitted_options(259)["epochs"] == 19  # 32 steps an epoch
    assert fitted_options(1045)["epochs"] == 5  # SMS: the book's 5 epochs already give 650
    assert fitted_options(9496)["epochs"] == 3  # the fewest
    assert fitted_options(40)["epochs"] == 20  # the most
    for n in (100, 259, 450, 1045, 3000):
        o = fitted_options(n)
        assert o["epochs"] * (n // 8) >= MIN_STEPS or o["epochs"] == 20
        assert o["lexical"] == "auto" and o["patience"] == 3 and o["lr"] == 2e-4
        assert o["group_by_length"] is True


def test_the_default_recipe_follows_the_job(job):
    from gptclassify.tune.recipe import resolve_recipe

    sms = TrainConfig()
    assert resolve_recipe(None, sms, set())[1] == "book"
    mine = base(job, weights="pretrained", model="gpt2")
    cfg, which, why = resolve_recipe(None, mine, {"lr"})
    assert which == "fitted" and "your own data" in why and "yours: lr" in why
    # Only what the user did not set changes; the user's lr stays.
    assert cfg.train.lr == mine.train.lr and cfg.backbone.trainable == "last-4-blocks"
    assert cfg.eval.lexical == "auto" and cfg.eval.patience == 3
    assert mine.backbone.trainable == "last-block"  # the given config is not changed
    # Random weights: an experiment, run as given.
    assert resolve_recipe(None, base(job), set())[1] == "book"
    assert resolve_recipe("book", mine, set())[0] is mine


def test_a_skipped_candidate_names_the_budget_that_would_run_it(job, tmp_path):
    result = auto_recipe(base(job), 0.001, out=tmp_path / "auto", candidates=CANDIDATES)
    assert "--budget" in result.tried[1].note and "would run it" in result.tried[1].note


def test_candidates_sharing_a_cache_are_predicted_without_its_build():
    from gptclassify.tune.recipe import Measured, _predict_seconds

    cfg = TrainConfig()
    m = [Measured(units=5.0, train_s=10.0, other_s=100.0, cache_s=80.0)]
    same = Candidate("same", {"lr": 1e-3, "epochs": 5}, "")
    other = Candidate("deeper", {"trainable": "last-2-blocks", "epochs": 5}, "")
    # Same frozen blocks as the measured one: 20 s around the loop + 10 s of training.
    assert _predict_seconds(same, cfg, m, 12, {"last-block": 80.0}) == pytest.approx(30.0)
    # Other frozen blocks: a cache of its own to build.
    assert _predict_seconds(other, cfg, m, 12, {"last-block": 80.0}) == pytest.approx(120.0)


def test_label_sets_are_compared_on_macro_f1_not_subset_accuracy():
    """On multi-label data subset accuracy rewards predicting few labels; candidates are
    compared on macro F1, what their thresholds maximise (and the surface head and the
    baseline comparison use)."""
    from gptclassify.metrics import selection_metric
    from gptclassify.tune.recipe import Tried, _best, _reason

    few = {"task": "multi-label", "accuracy": 0.30, "macro_f1": 0.20, "loss": 0.2}
    many = {"task": "multi-label", "accuracy": 0.10, "macro_f1": 0.45, "loss": 0.3}
    rows = []
    for name, report in (("few", few), ("many", many)):
        metric, score = selection_metric(report)
        rows.append(
            Tried(
                name,
                {},
                "",
                "done",
                report["accuracy"],
                score,
                metric,
                report["loss"],
                None,
                1,
                1.0,
            )
        )
    best = _best(rows)
    assert best.name == "many" and best.metric == "macro F1"
    assert _reason(best, rows) == "highest validation macro F1 (0.4500; next few 0.2000)"
    assert selection_metric({"accuracy": 0.9, "macro_f1": 0.5}) == ("accuracy", 0.9)
