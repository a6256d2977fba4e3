"""The experiments runner: grid parsing and validation, the book's built-in grid, quick mode,
and a real (tiny) grid run with a failing entry."""

from __future__ import annotations

import csv
import json
import signal

import pytest
from click.testing import CliRunner

from gptclassify.args import DataConfig, ExperimentsConfig, TrainConfig, flat_dict
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError
from gptclassify.experiments import (
    BOOK_TEST_ACCURACY,
    CSV_COLUMNS,
    REFERENCE,
    builtin_grid,
    load_grid,
    parse_grid,
    quick_config,
    run_experiments,
    train_config,
    write_quick_models,
)
from gptclassify.experiments.grid import QUICK_PRESETS
from gptclassify.experiments.runner import _death

# ---- the built-in grid -----------------------------------------------------------------


def test_builtin_grid_has_one_entry_per_spec_row_with_the_right_fields(tmp_path):
    grid = builtin_grid()
    assert len(grid) == 19
    assert len({e.name for e in grid}) == 19
    rows = {number: entry for number, entry in enumerate(grid, start=1)}
    for number, entry in rows.items():
        assert entry.description.startswith(f"Book experiment {number}: ")
        assert f"(book: {BOOK_TEST_ACCURACY[entry.name]:.2f}% test)" in entry.description

    def changed(number: int) -> dict:
        options = rows[number].options
        return {k: v for k, v in options.items() if REFERENCE.get(k, object()) != v}

    # Row 1 is the book's setup; every other row is it plus its own change.
    assert (
        rows[1].options
        == REFERENCE
        == {
            "model": "gpt2",
            "weights": "pretrained",
            "trainable": "last-block",
            "pool": "last",
            "pad_to": "longest",
        }
    )
    assert changed(2) == {"pool": "first"}
    assert changed(3) == {"trainable": "head"}
    assert changed(4) == {"trainable": "last-2-blocks"}
    assert changed(5) == {"trainable": "all"}
    assert [changed(n) for n in (6, 7, 8)] == [
        {"model": "gpt2-medium"},
        {"model": "gpt2-large"},
        {"model": "gpt2-xl"},
    ]
    assert changed(9) == {"model": "gpt2-xl", "trainable": "all"}
    assert changed(10) == {"weights": "random", "trainable": "all"}
    assert changed(11) == {"trainable": "lora", "lora_rank": 16, "lora_alpha": 16.0}
    assert changed(12) == {
        "model": "gpt2-xl",
        "trainable": "lora",
        "lora_rank": 16,
        "lora_alpha": 8.0,
    }
    assert changed(13) == {"pad_to": "context"}
    assert changed(14) == {"pad_to": "none", "batch_size": 1}
    assert changed(15) == {"pad_to": "none", "batch_size": 1, "grad_accum": 8}
    assert changed(16) == {"pool": "last-real"}
    assert changed(17) == {"causal_mask": False}
    # The book's ignore_index variant cannot change a loss read at one position per text:
    # the row is the reference again (its description says so).
    assert changed(18) == {} and "the reference again" in rows[18].description
    assert changed(19) == {"pool": "mean"}

    # What a row runs: its TrainConfig has the values the row sets and differs from the
    # reference's nowhere else (the options are applied, not just listed; LoRA's rank and
    # alpha 16 are also the defaults), and the reference is the book's recipe.
    reference = flat_dict(train_config(rows[1], DataConfig(), tmp_path / "ref", seed=123))
    assert reference["pool"] == "last" and reference["pad_to"] == "longest"
    assert reference["trainable"] == "last-block" and reference["lr"] == 5e-5
    assert reference["batch_size"] == 8 and reference["epochs"] == 5
    for number, entry in rows.items():
        resolved = flat_dict(train_config(entry, DataConfig(), tmp_path / "ref", seed=123))
        differs = {k for k in resolved if resolved[k] != reference[k]}
        assert differs <= set(changed(number)), entry.name  # nothing else moved
        assert all(resolved[k] == v for k, v in changed(number).items()), entry.name

    # Every row is a valid TrainConfig, full size and quick.
    models = write_quick_models(tmp_path / "models")
    for entry in grid:
        full = train_config(entry, DataConfig(), tmp_path / entry.name, seed=123)
        assert full.weights == entry.options["weights"]
        quick = train_config(entry, DataConfig(), tmp_path / entry.name, 123, models)
        assert quick.weights == "random" and quick.model.endswith(".json")
        assert quick.epochs == 1 and full.epochs == TrainConfig().epochs
    # A grid file written with the same rows reads back to the same grid.
    items = [{"name": e.name, "description": e.description, **e.options} for e in grid]
    (tmp_path / "grid.json").write_text(json.dumps(items))
    assert load_grid(tmp_path / "grid.json") == grid


def test_quick_models_grow_with_the_preset_and_respect_entry_settings(tmp_path):
    shapes = [quick_config(name) for name in QUICK_PRESETS]
    assert QUICK_PRESETS == ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
    assert [c.context_length for c in shapes] == [64] * 4
    widths, depths = [c.emb_dim for c in shapes], [c.n_layers for c in shapes]
    assert widths == sorted(widths) and len(set(widths)) == 4
    assert depths == sorted(depths) and depths[0] >= 2  # last-2-blocks must fit the smallest
    assert all(c.head_dim == 16 for c in shapes)
    models = write_quick_models(tmp_path)
    assert json.loads(models["gpt2-xl"].read_text())["emb_dim"] == shapes[-1].emb_dim
    (entry,) = parse_grid([{"name": "long", "model": "gpt2-large", "epochs": 3, "seed": 7}])
    cfg = train_config(entry, DataConfig(), tmp_path / "long", seed=123, quick_models=models)
    assert cfg.model == str(models["gpt2-large"]) and cfg.weights == "random"
    assert cfg.epochs == 3 and cfg.seed == 7  # the entry's own values win


# ---- grid files and their errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ({"name": "a"}, "expected a list of entries"),
        ([], "the grid has no entries"),
        (["a"], "entry 1: expected a mapping"),
        ([{"pool": "last"}], r"entry 1: 'name' must be"),
        ([{"name": "a b"}], r"entry 1: 'name' must be"),
        ([{"name": "a"}, {"name": "a"}], r"entry 2 \(a\): the name is used by an earlier entry"),
        ([{"name": "data"}], r"entry 1 \(data\): the name is reserved"),
        (
            [{"name": "ok"}, {"name": "x", "pol": "last"}],
            r"entry 2 \(x\): unknown field 'pol' \(did you mean 'pool'\?\); valid fields: "
            r"name, description, .*batch_size, .*trainable",
        ),
        ([{"name": "x", "data": "sms-spam"}], r"entry 1 \(x\): field 'data' cannot be set"),
        ([{"name": "x", "epochs": "two"}], r"entry 1 \(x\): epochs must be an integer"),
        ([{"name": "x", "lr": True}], r"entry 1 \(x\): lr must be a number"),
        ([{"name": "x", "pool": "middle"}], r"entry 1 \(x\): pool: 'middle' is not one of"),
        ([{"name": "x", "description": 3}], r"entry 1 \(x\): 'description' must be text"),
        (
            [{"name": "x", "pad_to": "none"}],
            r"entry 1 \(x\): pad_to='none' needs batch_size=1",
        ),
    ],
)
def test_grid_errors_name_the_entry_and_field(items, message):
    with pytest.raises(GPTClassifyError, match=message):
        parse_grid(items, "grid.yaml")


def test_yaml_grid_file_values_and_syntax_errors(tmp_path):
    good = tmp_path / "grid.yaml"
    good.write_text(
        "- name: padded\n  description: pad to 120\n  pad_to: 120\n  lr: 1\n"
        "- {name: capped, max_length: null, causal_mask: false}\n"
    )
    padded, capped = load_grid(good)
    assert padded.options == {"pad_to": "120", "lr": 1.0}  # YAML numbers where TrainConfig wants
    assert padded.description == "pad to 120"
    assert capped.options == {"max_length": None, "causal_mask": False}

    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: a\n  pool: [last\n")
    with pytest.raises(GPTClassifyError, match=r"bad.yaml: not valid YAML \(line \d+"):
        load_grid(bad)
    with pytest.raises(GPTClassifyError, match="missing.yaml: grid file not found"):
        load_grid(tmp_path / "missing.yaml")


def test_cli_lists_the_builtin_grid_and_reports_grid_errors_in_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["experiments", "--quick", "--list"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for entry in builtin_grid():
        assert entry.name in res.output
    assert "tiny gpt2-xl" in res.output

    grid = tmp_path / "grid.yaml"
    grid.write_text("- {name: x, pol: last}\n")
    res = runner.invoke(cli, ["experiments", "--grid", str(grid)])
    assert res.exit_code == 1
    assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1
    assert "entry 1 (x): unknown field 'pol'" in res.output

    res = runner.invoke(cli, ["experiments", "--only", "reference,nope", "--list"])
    assert res.exit_code == 1 and "--only: no entry named 'nope'" in res.output


def test_a_dead_run_process_is_explained():
    assert "killed by SIGKILL (out of memory?)" in _death(-signal.SIGKILL)
    assert "exited with status 3" in _death(3)


# ---- a real run ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_sms(tmp_path_factory, sms_file):
    """~200 real SMS (half spam) as train/validation/test CSVs: 140 / 30 / 30."""
    from gptclassify.data.sms_spam import read_sms_spam

    data = read_sms_spam(sms_file)
    ham = [t for t, y in zip(data.texts, data.labels, strict=True) if y == "ham"][:100]
    spam = [t for t, y in zip(data.texts, data.labels, strict=True) if y == "spam"][:100]
    folder = tmp_path_factory.mktemp("small_sms")
    cuts = {"train": (0, 70), "validation": (70, 85), "test": (85, 100)}
    paths = {}
    for name, (lo, hi) in cuts.items():
        paths[name] = folder / f"{name}.csv"
        with open(paths[name], "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            for i in range(lo, hi):
                writer.writerow([ham[i], "ham"])
                writer.writerow([spam[i], "spam"])
    return paths


def test_small_grid_runs_every_entry_and_a_failure_is_a_row(tmp_path, small_sms):
    grid = parse_grid(
        [
            {"name": "book-pool", "pool": "last", "pad_to": "longest"},
            {"name": "mean-all", "description": "mean pool, all", "trainable": "all", "seed": 7},
            {"name": "too-deep", "trainable": "last-9-blocks"},
        ]
    )
    data = DataConfig(
        train=str(small_sms["train"]),
        validation=str(small_sms["validation"]),
        test=str(small_sms["test"]),
    )
    out = tmp_path / "exp"
    lines: list[str] = []
    results = run_experiments(
        ExperimentsConfig(data=data, quick=True, out=str(out)), grid, echo=lines.append
    )

    names = [r.name for r in results.rows]
    assert names == ["tfidf-baseline", "book-pool", "mean-all", "too-deep"]
    status = {r.name: r for r in results.rows}
    assert [r.ok for r in results.rows] == [True, True, True, False]
    assert "trainable='last-9-blocks': the model has 2 blocks" in status["too-deep"].error
    assert any(line.startswith("[4/4] too-deep: failed: ") for line in lines)

    # The same 140 / 30 / 30 texts for every row, an entry's own seed notwithstanding.
    shared_test = (out / "data" / "test.csv").read_text()
    for name in ("book-pool", "mean-all"):
        assert (out / name / "data" / "test.csv").read_text() == shared_test
    base_metrics = json.loads((out / "tfidf-baseline" / "metrics.json").read_text())
    gpt_metrics = json.loads((out / "mean-all" / "metrics.json").read_text())
    assert set(base_metrics) == set(gpt_metrics)  # one layout for reports
    assert base_metrics["test"]["examples"] == gpt_metrics["test"]["examples"] == 30
    assert base_metrics["train"]["examples"] == gpt_metrics["train"]["examples"] == 140

    ok = [r for r in results.rows if r.ok]
    for row in ok:
        assert 0.0 <= row.test_accuracy <= 1.0 and row.peak_memory_mb > 100
        assert row.trainable_params > 0 and row.time_s >= 0
    assert status["book-pool"].trainable_params < status["mean-all"].trainable_params
    assert status["tfidf-baseline"].test_accuracy > 0.8
    assert status["too-deep"].test_accuracy is None

    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == names
    assert tuple(table[0]) == CSV_COLUMNS
    assert table[3]["status"] == "failed" and "last-9-blocks" in table[3]["error"]
    assert table[3]["test_accuracy"] == ""
    assert float(table[2]["test_accuracy"]) == status["mean-all"].test_accuracy

    markdown = (out / "results.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 4  # header + one per row
    assert "| mean-all | mean pool, all | tiny gpt2 (random init) |" in markdown
    assert "failed: trainable='last-9-blocks'" in rows[-1]
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")


def test_terminal_parameter_counts_are_compact():
    from gptclassify.experiments.report import _compact

    counts = (98, 999, 14938, 999_999, 124_439_808, 1_557_611_200)
    assert [_compact(n) for n in counts] == ["98", "999", "14.9k", "1M", "124M", "1.56B"]
