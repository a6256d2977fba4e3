"""Export: Hugging Face folders that transformers runs as ours, ONNX graphs that ONNX Runtime
runs as ours (fp32 exactly, int8 closely), refusals with reasons, and the path that
classifies with torch unimportable."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import TINY
from gptclassify.args import LORA_TARGETS
from gptclassify.artifact import LoraInfo, Provenance, read_classifier_config
from gptclassify.classifier import GPTClassifier
from gptclassify.cli import cli
from gptclassify.data.encode import InputPolicy, encode, pad_batch
from gptclassify.data.tables import read_labelled
from gptclassify.errors import GPTClassifyError
from gptclassify.export import export, folder_kind
from gptclassify.export.hf import fold_head_bias
from gptclassify.model import GPTModel
from gptclassify.predict import Classifier

THREE = ("sport", "food", "tech")
TINY_RUN_LAYERS = 2  # conftest.TINY_JSON


def test_texts(run) -> tuple[list[str], list[str]]:
    table = read_labelled(run.path / "data" / "test.csv")
    return table.texts, table.labels


test_texts.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def onnx_dir(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "onnx"
    export(tiny_run.path, "onnx", out)
    return out


@pytest.fixture(scope="module")
def int8_dir(tiny_run, tmp_path_factory) -> Path:
    """Made through the command line, as a user makes it."""
    out = tmp_path_factory.mktemp("export") / "int8"
    res = CliRunner().invoke(
        cli,
        ["export", str(tiny_run.path), "--format", "onnx", "--quantize", "int8", "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "int8 vs fp32 on 300 texts: labels agree" in res.output
    assert "accuracy" in res.output and "Wrote ONNX (int8)" in res.output
    return out


@pytest.fixture(scope="module")
def hf_dir(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "hf"
    report = export(tiny_run.path, "hf", out)
    assert any("folded" in note for note in report.notes)
    return out


def save_random(directory: Path, labels=("ham", "spam"), lora: bool = False, **kwargs) -> Path:
    """A random tiny classifier folder (head bias non-zero, as after training)."""
    torch.manual_seed(0)
    temperature = kwargs.pop("temperature", 1.0)
    model = GPTClassifier(GPTModel(TINY), len(labels), **kwargs)
    provenance = Provenance(weights="random")
    if lora:
        model.add_lora(4, 8)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5)  # adapters that change the output
        provenance = Provenance(weights="random", lora=LoraInfo(4, 8.0, LORA_TARGETS))
    with torch.no_grad():
        model.head.bias.normal_(0, 1.0)
    policy = InputPolicy(TINY.context_length, None)
    clf = Classifier(model, labels, policy, temperature, precision="fp32", provenance=provenance)
    clf.save(directory)
    return directory


MIXED = [
    "hi",
    "WINNER!! You have been selected to receive a prize, call now to claim it " * 2,
    "see you at home later",
    "ok",
    "Free entry in 2 a wkly comp to win FA Cup final tkts, text FA to 87121",
    "what time is the match tonight? the team looked good",
]


# ---- Hugging Face -------------------------------------------------------------------------


def test_hf_export_runs_in_the_transformers_pipeline_with_our_probabilities(tiny_run, hf_dir):
    import transformers

    texts, _ = test_texts(tiny_run)
    ours = Classifier.load(tiny_run.path, precision="fp32").predict_proba(texts)
    pipe = transformers.pipeline("text-classification", model=str(hf_dir), top_k=None, device="cpu")
    rows = pipe(texts, batch_size=8, truncation=True)  # batches of mixed lengths, padded
    labels = ["ham", "spam"]
    theirs = np.array(
        [[{d["label"]: d["score"] for d in row}[name] for name in labels] for row in rows]
    )
    assert np.abs(theirs - ours).max() < 1e-5
    model = transformers.GPT2ForSequenceClassification.from_pretrained(hf_dir)
    assert model.config.id2label == {0: "ham", 1: "spam"} and model.config.pad_token_id == 50256
    assert model.score.bias is None
    config = json.loads((hf_dir / "config.json").read_text())
    source = config["gptclassify"]["exported_from"]
    assert source["path"] == str(tiny_run.path.resolve())
    assert set(source["sha256"]) == {"config.json", "model.safetensors"}
    assert folder_kind(hf_dir) == "hf"


def test_hf_export_merges_lora_and_keeps_three_labels(tmp_path):
    import transformers

    run = save_random(tmp_path / "run", labels=THREE, lora=True)
    report = export(run, "hf", tmp_path / "hf")
    assert any("LoRA" in note for note in report.notes)
    model = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert model.config.id2label == dict(enumerate(THREE))
    clf = Classifier.load(run, precision="fp32")
    encoded = encode(MIXED, clf.policy)
    ids, mask = pad_batch(encoded.ids, encoded.lengths)
    with torch.no_grad():
        theirs = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    assert np.abs(theirs.numpy() - clf.logits(MIXED)).max() < 1e-4


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"pool": "mean"}, "averages"),
        ({"pool": "first"}, "first token"),
        ({"pool": "last"}, "last padded position"),
        ({"causal": False}, "without the causal mask"),
    ],
)
def test_hf_export_refuses_what_hugging_face_cannot_run(tmp_path, settings, reason):
    run = save_random(tmp_path / "run", **settings)
    with pytest.raises(GPTClassifyError, match=reason):
        export(run, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()  # nothing half-written


def test_hf_export_warns_that_transformers_ignores_the_temperature(tmp_path):
    run = save_random(tmp_path / "run", temperature=1.7)
    report = export(run, "hf", tmp_path / "hf")
    assert any("temperature 1.7" in w for w in report.warnings)
    assert (
        json.loads((tmp_path / "hf" / "config.json").read_text())["gptclassify"]["temperature"]
        == 1.7
    )


def test_hf_export_checks_the_folder_in_transformers_on_the_data_given(tiny_run, tmp_path):
    data = tiny_run.path / "data" / "validation.csv"
    report = export(tiny_run.path, "hf", tmp_path / "hf", data=data)
    assert report.checks["checked_on"] == str(data)
    assert report.checks["transformers_max_abs_dlogit"] < 1e-4
    assert any("transformers (AutoModelForSequenceClassification" in n for n in report.notes)


def test_hf_export_that_transformers_computes_differently_is_not_written(
    tiny_run, tmp_path, monkeypatch
):
    from safetensors.torch import load_file, save_file

    from gptclassify.export import run as export_run

    original = export_run.write_hf_folder

    def broken(folder, *args, **kwargs):  # a writer bug: the head's weights scaled
        original(folder, *args, **kwargs)
        weights = load_file(folder / "model.safetensors")
        weights["score.weight"] = weights["score.weight"] * 2
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})

    monkeypatch.setattr(export_run, "write_hf_folder", broken)
    with pytest.raises(GPTClassifyError, match="does not compute this model in transformers"):
        export(tiny_run.path, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_hf_export_without_transformers_says_it_was_not_checked(tiny_run, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_transformers(name, *args, **kwargs):
        if name == "transformers":
            raise ImportError("no transformers")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_transformers)
    report = export(tiny_run.path, "hf", tmp_path / "hf")
    assert any("not checked in transformers" in w for w in report.warnings)
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def test_folding_the_head_bias_is_exact_or_refused():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 16)).astype(np.float32)
    b = rng.normal(size=16).astype(np.float32)
    c = rng.normal(size=3).astype(np.float32)
    folded = fold_head_bias(w, b, c)
    assert np.abs(w.astype(np.float64) @ folded - (w.astype(np.float64) @ b + c)).max() < 1e-5
    dependent = np.stack([w[0], w[1], w[0] + w[1]])
    with pytest.raises(GPTClassifyError, match="rank 2 < 3"):
        fold_head_bias(dependent, b, c)


# ---- ONNX ---------------------------------------------------------------------------------


def test_onnx_export_runs_in_onnx_runtime_with_our_logits(tiny_run, onnx_dir):
    texts, _ = test_texts(tiny_run)
    torch_clf = Classifier.load(tiny_run.path, precision="fp32")
    onnx_clf = Classifier.load(onnx_dir)
    assert onnx_clf.runtime.name == "onnx" and "fp32" in onnx_clf.runtime.describe()
    assert onnx_clf.labels == torch_clf.labels and onnx_clf.policy == torch_clf.policy
    # Sorted batches (the runtime's) and input-order batches of mixed lengths.
    for batch_size in (1, 8, 300):
        diff = np.abs(onnx_clf.logits(texts, batch_size) - torch_clf.logits(texts, batch_size))
        assert diff.max() < 1e-4, batch_size
    session = onnx_clf.runtime
    encoded = encode(MIXED, onnx_clf.policy)
    ids, mask = pad_batch(encoded.ids, encoded.lengths)
    with torch.no_grad():
        want = torch_clf.model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.abs(session.run(ids, mask) - want).max() < 1e-4
    config = read_classifier_config(onnx_dir)
    assert config.format_version == 2 and config.onnx.precision == "fp32"
    assert config.onnx.checks["fp32_max_abs_dlogit"] < 1e-4
    assert (
        config.exported_from.sha256["model.safetensors"]
        == read_classifier_config(tiny_run.path).weights_sha256
    )
    # the graph, our config (with transformers' fields beside it) and the tokenizer files
    # transformers / Optimum read (tests/test_optimum.py loads them there)
    files = sorted(p.name for p in onnx_dir.iterdir())
    assert files == ["config.json", "model.onnx", "tokenizer.json", "tokenizer_config.json"]


def test_onnx_passes_keep_to_a_token_budget_with_the_same_logits(tiny_run, onnx_dir):
    texts, _ = test_texts(tiny_run)
    runtime = Classifier.load(onnx_dir).runtime
    encoded = Classifier.load(onnx_dir).encode(texts)
    alone = runtime.logits(encoded, 1)  # one text per pass: no padding, no neighbours
    shapes: list[tuple[int, int]] = []
    run = runtime.run
    runtime.run = lambda ids, mask: (shapes.append(ids.shape), run(ids, mask))[1]
    runtime.max_tokens = 96
    budgeted = runtime.logits(encoded, 32)
    assert np.abs(budgeted - alone).max() < 1e-5
    assert (budgeted.argmax(1) == alone.argmax(1)).all()
    # Every pass within the budget (a text longer than it alone), every text once; long
    # texts in small passes, short ones in larger ones.
    assert all(rows * width <= 96 or rows == 1 for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == len(texts)
    assert shapes[0] == (1, max(width for _, width in shapes)) and shapes[0][1] > 96
    assert max(rows for rows, _ in shapes) > 96 // 32
    # With a budget that never binds, batch_size does.
    shapes.clear()
    runtime.max_tokens = 10**9
    assert np.abs(runtime.logits(encoded, 32) - alone).max() < 1e-5
    assert max(rows for rows, _ in shapes) == 32 and len(shapes) == -(-len(texts) // 32)


def test_int8_agrees_with_fp32_on_the_test_split(tiny_run, int8_dir):
    texts, labels = test_texts(tiny_run)
    fp32 = Classifier.load(tiny_run.path, precision="fp32").predict(texts)
    int8 = Classifier.load(int8_dir).predict(texts)
    agreement = np.mean([a == b for a, b in zip(fp32, int8, strict=True)])
    assert agreement >= 0.99
    check = read_classifier_config(int8_dir).onnx.checks["int8"]
    assert check["label_agreement"] == agreement and check["texts"] == 300
    accuracy = np.mean([p == y for p, y in zip(int8, labels, strict=True)])
    assert abs(check["accuracy_int8"] - accuracy) < 1e-12
    # The linear layers run as int8 products (four of every block but the last, which runs
    # at the pooled position only), each with its input quantized per row; where the export
    # fell back to KEEP_FP32 (below MIN_AGREEMENT), the MLP output projections stay fp32.
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(int8_dir / "model.onnx"))
    int8_products = [n for n in graph.graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(int8_products) == check["int8_matmuls"] >= 3 * (TINY_RUN_LAYERS - 1)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    float_weights = [
        inits[n.input[1]] for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in inits
    ]
    model = Classifier.load(tiny_run.path, precision="fp32").model
    c_proj = [block.mlp.c_proj.weight.detach().t().numpy() for block in model.gpt.h[:-1]]
    kept = [any(np.array_equal(f, w) for f in float_weights) for w in c_proj]
    if check["fp32_rule"] == "none":
        assert check["fp32_matmuls"] == 0 and not any(kept)
    else:
        assert check["fp32_matmuls"] == TINY_RUN_LAYERS - 1 and all(kept)


def test_int8_answers_do_not_depend_on_the_other_texts_of_the_batch(int8_dir):
    # A scale per row: a text's products are the same whatever shares its pass (with one
    # scale per batch, ONNX Runtime's dynamic quantization, they were not).
    clf = Classifier.load(int8_dir)
    alone = np.concatenate([clf.predict_proba([t]) for t in MIXED])
    together = clf.predict_proba(MIXED, batch_size=len(MIXED))
    assert np.abs(alone - together).max() < 1e-5


def test_below_the_agreement_bar_int8_is_tried_again_with_layers_in_fp32(
    tiny_run, tmp_path, monkeypatch
):
    from gptclassify.export import quantize

    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # never met: both rules are tried
    report = export(tiny_run.path, "onnx", tmp_path / "int8", quantize="int8")
    check = read_classifier_config(tmp_path / "int8").onnx.checks["int8"]
    assert [t["fp32_rule"] for t in check["tried"]] == ["none", quantize.KEEP_FP32]
    assert check["label_agreement"] == max(t["label_agreement"] for t in check["tried"])
    assert any("below 101%" in w for w in report.warnings)
    assert sorted(p.name for p in (tmp_path / "int8").iterdir() if "onnx" in p.name) == [
        "model.onnx"
    ]


def test_onnx_export_keeps_three_labels_and_the_temperature(tmp_path):
    run = save_random(tmp_path / "run", labels=THREE, lora=True, temperature=0.8)
    export(run, "onnx", tmp_path / "onnx", data=None)
    clf = Classifier.load(tmp_path / "onnx")
    assert clf.labels == list(THREE) and clf.temperature == 0.8
    want = Classifier.load(run, precision="fp32").predict_proba(MIXED)
    assert np.abs(clf.predict_proba(MIXED) - want).max() < 1e-5
    assert read_classifier_config(tmp_path / "onnx").provenance.lora.merged


def test_runtime_and_precision_must_match_the_folder(tiny_run, onnx_dir):
    with pytest.raises(GPTClassifyError, match="holds an exported ONNX graph"):
        Classifier.load(onnx_dir, runtime="torch")
    with pytest.raises(GPTClassifyError, match="export it first"):
        Classifier.load(tiny_run.path, runtime="onnx")
    with pytest.raises(GPTClassifyError, match="fp32 ONNX graph"):
        Classifier.load(onnx_dir, precision="bf16")
    with pytest.raises(GPTClassifyError, match="--quantize int8"):
        Classifier.load(tiny_run.path, precision="int8")
    with pytest.raises(GPTClassifyError, match="runs on the CPU"):
        Classifier.load(onnx_dir, device="cuda")
    with pytest.raises(GPTClassifyError, match="already an ONNX export"):
        export(onnx_dir, "onnx", onnx_dir.parent / "again")


def test_an_export_replaces_only_an_export_of_its_own_format(tiny_run, tmp_path, onnx_dir, hf_dir):
    other_run = save_random(tmp_path / "run")
    with pytest.raises(GPTClassifyError, match="holds a classifier with PyTorch weights"):
        export(tiny_run.path, "onnx", other_run)
    with pytest.raises(GPTClassifyError, match="the folder being exported"):
        export(tiny_run.path, "onnx", tiny_run.path)
    with pytest.raises(GPTClassifyError, match="holds a onnx export"):
        export(tiny_run.path, "hf", onnx_dir)
    with pytest.raises(GPTClassifyError, match="holds a hf export"):
        export(tiny_run.path, "onnx", hf_dir)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(GPTClassifyError, match="not a gptclassify export"):
        export(tiny_run.path, "hf", tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    with pytest.raises(GPTClassifyError, match="applies to --format onnx only"):
        export(tiny_run.path, "hf", tmp_path / "x", quantize="int8")


def test_a_changed_graph_is_refused(onnx_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(onnx_dir, copy)
    with open(copy / "model.onnx", "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\x00" * 8)
    with pytest.raises(GPTClassifyError, match="sha256 does not match"):
        Classifier.load(copy)


# ---- without torch ------------------------------------------------------------------------

BLOCK_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
"""


def run_without_torch(code: str) -> subprocess.CompletedProcess:
    script = BLOCK_TORCH + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )


def test_an_onnx_folder_classifies_with_torch_unimportable(tiny_run, int8_dir):
    expected = Classifier.load(int8_dir).predict(MIXED)
    res = run_without_torch(
        f"""
        import json
        import gptclassify, gptclassify.cli, gptclassify.predict
        from gptclassify import Classifier
        assert "torch" not in sys.modules
        clf = Classifier.load({str(int8_dir)!r})
        labels = clf.predict({MIXED!r})
        from gptclassify.cli import main
        try:
            main(["predict", {str(int8_dir)!r}, "WINNER!! claim your prize", "see you later"])
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        assert not any(m.split(".")[0] in ("torch", "transformers") for m in sys.modules)
        print(json.dumps(labels.tolist()))
        """
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == expected.tolist()
    assert "spam" in res.stdout and "ham" in res.stdout  # the predict table


def test_a_torch_command_without_torch_ends_with_one_line_naming_the_extra(tiny_run):
    res = run_without_torch(
        f"""
        from gptclassify.cli import main
        main(["predict", {str(tiny_run.path)!r}, "hello"])
        """
    )
    assert res.returncode == 1
    assert res.stderr.strip() == (
        'Error: this needs torch, which is not installed: pip install "gptclassify[torch]" '
        '(in a clone of the repository: pip install ".[torch]")'
    )


def test_cpu_flags_decide_what_is_fast():
    # benchmarks/cpu_flags.py: the CPU line of the benchmark reports (a script folder, no package)
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_flags.py"
    spec = importlib.util.spec_from_file_location("cpu_flags", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cpu_flags", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    cpu_info, parse_cpuinfo = module.cpu_info, module.parse_cpuinfo

    amx = parse_cpuinfo(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n"
        "flags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
        "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n"
    )
    assert amx.name == "Intel(R) Xeon(R) Processor"
    assert amx.amx and amx.fast_bf16 and amx.fast_int8
    assert amx.summary() == (
        "Intel(R) Xeon(R) Processor; flags: avx2 avx512f amx_bf16 avx512_bf16 amx_int8 "
        "avx512_vnni amx_tile"
    )
    epyc = parse_cpuinfo(
        "model name\t: AMD EPYC 9R14\nflags\t: avx2 avx512f avx512_bf16 avx512_vnni\n"
    )
    assert not epyc.amx and epyc.fast_bf16 and epyc.fast_int8
    old = parse_cpuinfo("model name\t: Intel Xeon E5\nflags\t: avx2 fma\n")
    assert not (old.fast_bf16 or old.fast_int8)
    assert parse_cpuinfo("", default_name="arm64").summary() == "arm64; flags: unknown"
    assert isinstance(cpu_info().flags, frozenset)


def test_the_gpt2_tokenizer_json_of_an_onnx_folder_reads_as_ours(tmp_path):
    """The tokenizer.json an ONNX GPT-2 folder carries for transformers / Optimum (built
    from the table gptclassify ships) gives tiktoken's ids on awkward texts, loaded by
    `tokenizers` as transformers' fast tokenizer loads it."""
    from tokenizers import Tokenizer

    from gptclassify.export.onnx import gpt2_tokenizer_json
    from gptclassify.tokenizer import get_encoding

    path = tmp_path / "tokenizer.json"
    gpt2_tokenizer_json(path)
    fast = Tokenizer.from_file(str(path))
    texts = [
        "WINNER!! You have been selected to receive a £900 prize reward!",
        "  leading spaces, trailing   ",
        "tabs\tand\nnew lines\r\n and émojis 🎉 and 中文",
        "I'm can't won't 'quoted' 123456789 3.14",
        "",
    ]
    ours = get_encoding()
    for text in texts:
        assert fast.encode(text).ids == ours.encode_ordinary(text), text
    assert fast.token_to_id("<|endoftext|>") == 50256
