"""The seams of the house: layering, the one forward, no mutation, exportability, old folders."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import FIXTURES
from gptclassify.classifier import GPTClassifier
from gptclassify.config import GPTConfig
from gptclassify.model import GPTModel

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gptclassify"
VERBS = (
    "data",
    "training",
    "predict",
    "baseline",
    "experiments",
    "cli",
    "serve",
    "export",
    "tune",
    "sklearn",
)
# What each part may import from the package (core modules: only core modules).
ALLOWED = {
    "core": set(),
    "data": {"data"},
    "predict": {"data", "predict"},
    "training": {"data", "predict", "baseline", "training"},
    "baseline": {"data", "baseline"},
    "experiments": {"data", "training", "baseline", "experiments"},
    "serve": {"predict", "serve"},  # through Classifier: no tokenizing or data files of its own
    "export": {"data", "predict", "export"},
    "tune": {"data", "predict", "training", "tune"},
    "sklearn": {"data", "predict", "training", "sklearn"},
    "cli": set(VERBS),
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE).parts
    if rel in (("__init__.py",), ("__main__.py",)):
        return "cli"  # the package's front doors: the public API and `python -m`
    return rel[0] if len(rel) > 1 and rel[0] in VERBS else "core"


def _imports(tree: ast.AST):
    """(module imported, line, inside a function?) for every import of the package."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            )
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


def _sources():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 30
    return [(path, path.read_text(encoding="utf-8")) for path in files]


def test_layers_import_only_what_is_below_them():
    problems = []
    for path, text in _sources():
        part = _part(path)
        for module, line, _ in _imports(ast.parse(text)):
            if not module.startswith("gptclassify."):
                continue
            target = module.split(".")[1]
            if target in VERBS and target not in ALLOWED[part] | {part}:
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: {part} imports {module}")
    assert problems == []


def test_function_level_imports_only_in_cli_or_for_named_extras():
    """Imports sit at the top of a module, except in cli/ (so `--help` stays fast) or for an
    optional extra, with a `# lazy:` comment saying which."""
    problems = []
    for path, text in _sources():
        if _part(path) == "cli":
            continue
        lines = text.splitlines()
        for module, line, in_function in _imports(ast.parse(text)):
            if in_function and "# lazy:" not in lines[line - 1]:
                problems.append(f"{path.relative_to(PACKAGE)}:{line}: import {module}")
    assert problems == []


def test_the_checker_sees_violations(tmp_path):
    """The two rules above catch what they should (so an empty result means something)."""
    tree = ast.parse(
        "import os\n"
        "from gptclassify.training import train\n"
        "def f():\n"
        "    from gptclassify.data import read_table\n"
    )
    assert _imports(tree) == [
        ("os", 1, False),
        ("gptclassify.training", 2, False),
        ("gptclassify.data", 4, True),
    ]
    assert _part(PACKAGE / "predict" / "api.py") == "predict"
    assert _part(PACKAGE / "model.py") == "core"
    assert "training" not in ALLOWED["predict"]


CFG = GPTConfig(vocab_size=50257, context_length=48, emb_dim=32, n_heads=4, n_layers=2)


def test_the_classifier_leaves_its_backbone_unchanged():
    torch.manual_seed(0)
    gpt = GPTModel(CFG).eval()
    ids = torch.randint(0, 50000, (2, 9))
    with torch.no_grad():
        before = gpt(ids).clone()
    blocks = list(gpt.h)
    model = GPTClassifier(gpt, 2)
    model.add_lora(4, 8)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # adapters that change the classifier's output
    assert gpt.lm_head is not None and gpt.lm_head.weight is gpt.wte.weight
    assert list(gpt.h) == blocks
    assert all(type(b.attn.c_attn) is nn.Linear for b in gpt.h)
    assert not any(type(m).__name__ == "LoRALinear" for m in gpt.modules())
    with torch.no_grad():
        assert torch.equal(gpt(ids), before)
    # The classifier shares the backbone's weights (no copy).
    assert model.gpt.wte.weight is gpt.wte.weight
    assert model.gpt.h[0].attn.c_attn.base.weight is gpt.h[0].attn.c_attn.weight


@pytest.mark.parametrize("pool", ["last-real", "mean"])
def test_forward_is_torch_exportable_with_dynamic_batch_and_length(pool):
    torch.manual_seed(0)
    model = GPTClassifier(GPTModel(CFG), 3, pool=pool).eval()
    ids = torch.randint(0, 50000, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    batch = torch.export.Dim("batch", min=1, max=64)
    seq = torch.export.Dim("seq", min=2, max=CFG.context_length)
    exported = torch.export.export(
        model,
        (ids, mask),
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
    )
    run = exported.module()
    for shape in ((3, 11), (5, 20), (1, 2)):
        other = torch.randint(0, 50000, shape)
        other_mask = torch.ones_like(other)
        other_mask[0, shape[1] // 2 + 1 :] = 0
        with torch.no_grad():
            want = model(other, other_mask)
        assert torch.allclose(run(other, other_mask), want, atol=1e-5), shape


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_classify_from_8_threads_at_once_equals_one_sequential_call(tiny_run, precision):
    from gptclassify.predict import Classifier

    texts = [f"message {i}: " + "win cash now " * (i % 7) + "see you later" for i in range(200)]
    clf = Classifier.load(tiny_run.path, precision=precision)
    weights = {n: p.detach().clone() for n, p in clf.model.named_parameters()}
    expected = clf.logits(texts, batch_size=16)
    results: list[np.ndarray | None] = [None] * 8
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    # Count forward passes in flight: with a lock around inference it never exceeds 1.
    active, peak, guard = [0], [0], threading.Lock()

    def enter(module, args):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])

    def leave(module, args, output):
        with guard:
            active[0] -= 1

    clf.runtime.runner.register_forward_pre_hook(enter)
    clf.runtime.runner.register_forward_hook(leave)

    def work(slot: int) -> None:
        try:
            start.wait()
            results[slot] = clf.logits(texts, batch_size=16)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and all(r is not None for r in results)
    for got in results:
        assert np.array_equal(got, expected)
    assert peak[0] > 1  # the threads really classified at the same time
    for name, p in clf.model.named_parameters():  # inference never touched the weights
        assert p.dtype == torch.float32 and torch.equal(p, weights[name]), name


# ---- folders written by gptclassify 0.1.0 ---------------------------------------------------


def test_a_classifier_folder_from_release_0_1_0_loads_and_predicts_the_same():
    from gptclassify.predict import Classifier

    expected = json.loads((FIXTURES / "v1" / "expected.json").read_text())
    clf = Classifier.load(FIXTURES / "v1" / "classifier", precision="fp32")
    assert clf.labels == ["ham", "spam"]
    assert clf.provenance.trainable == "all" and clf.provenance.weights == "random"
    assert clf.metrics is not None and clf.metrics["test"]["examples"] == 300
    probs = clf.predict_proba(expected["texts"])
    assert np.abs(probs - np.array(expected["classifier_probs_fp32"])).max() < 1e-6
    # Its recorded (flat, 0.1.0-style) training config still reads as a TrainConfig.
    from gptclassify.args import TrainConfig

    recorded = TrainConfig.from_dict(clf.provenance.train_config)
    assert recorded.trainable == "all" and recorded.lr == 0.003 and recorded.epochs == 1


def test_a_baseline_folder_from_release_0_1_0_loads_and_predicts_the_same():
    from gptclassify.baseline import Baseline

    expected = json.loads((FIXTURES / "v1" / "expected.json").read_text())
    baseline = Baseline.load(FIXTURES / "v1" / "baseline")
    probs = baseline.predict_proba(expected["texts"])
    assert np.abs(probs - np.array(expected["baseline_probs"])).max() < 1e-12


def test_a_saved_folder_round_trips_through_the_contract(tmp_path):
    """What save writes, load reads back field for field (and a re-save is byte-identical)."""
    from gptclassify.artifact import ClassifierConfig, read_classifier_config
    from gptclassify.predict import Classifier

    clf = Classifier.load(FIXTURES / "v1" / "classifier", precision="fp32")
    clf.save(tmp_path / "a")
    config = read_classifier_config(tmp_path / "a")
    assert isinstance(config, ClassifierConfig)
    assert config.labels == ("ham", "spam") and config.max_length == 32
    assert config.provenance == clf.provenance
    Classifier.load(tmp_path / "a", precision="fp32").save(tmp_path / "b")
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


CORE_ORDER = (
    "errors",
    "torch_private",
    "files",
    "progress",
    "metrics",
    "surface",
    "config",
    "packaged",
    "args",
    "tokenizer",
    "model",
    "lora",
    "fastpath",
    "lexical",
    "classifier",
    "models",
    "weights",
    "artifact",
    "model_io",
    "generation",
    "runtime",
    "plots",
)
"""The core modules bottom-up: each imports only modules before it (and the package root
for its version), counting imports under TYPE_CHECKING and relative ones."""


def _all_imports(path: Path, tree: ast.AST) -> list[tuple[str, int]]:
    """Every import of the package in a file, relative ones resolved, TYPE_CHECKING ones
    included."""
    package = ".".join(("gptclassify", *path.relative_to(PACKAGE).parent.parts))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names = [f"{module}.{a.name}" for a in node.names] if module == "gptclassify" else []
            found.extend((n, node.lineno) for n in names or [module])
    return found


def test_core_order_lists_every_core_module_and_nothing_else():
    """Both ways: every listed module exists, and every core module is listed."""
    present = {
        p.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for p, _ in _sources()
        if _part(p) == "core" and p.relative_to(PACKAGE).parts not in (("__init__.py",),)
    }
    present.discard("__main__")
    assert sorted(set(CORE_ORDER) - present) == []  # listed, but no such module
    assert sorted(present - set(CORE_ORDER)) == []  # a module missing from the list


def test_core_modules_import_only_modules_below_them():
    problems = []
    core = set(CORE_ORDER)
    for path, text in _sources():
        if (
            _part(path) != "core"
            or path.name in ("__init__.py", "__main__.py")
            and path.parent == PACKAGE
        ):
            continue
        rel = path.relative_to(PACKAGE)
        me = rel.parts[0].removesuffix(".py")
        assert me in core, f"{rel}: a core module missing from CORE_ORDER"
        for module, line in _all_imports(path, ast.parse(text)):
            parts = module.split(".")
            if parts[0] != "gptclassify" or len(parts) < 2 or parts[1] == "__version__":
                continue
            target = parts[1]
            if target == me or target not in core:
                continue
            if CORE_ORDER.index(target) > CORE_ORDER.index(me):
                problems.append(f"{rel}:{line}: {me} imports {module}, which is above it")
    assert problems == []


# ---- families: code outside models/, model.py and config.py asks the registry ------------

FAMILY_SWITCHES = ("models", "model.py", "config.py")
"""Where a family may be named: the registry (models/) and the decoder's switches."""


def _family_names() -> set[str]:
    from gptclassify.models import FAMILIES

    return {t for f in FAMILIES for t in f.model_types} | {f.name for f in FAMILIES}


def _family_comparisons(tree: ast.AST, names: set[str]) -> list[int]:
    """Lines comparing `.family` / `model_type` with anything, or anything with a family
    name (==, !=, in, not in)."""
    lines = []

    def names_family(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute) and node.attr in ("family", "model_type"):
            return True
        if isinstance(node, ast.Name) and node.id in ("family", "model_type"):
            return True
        if isinstance(node, ast.Constant) and node.value in names:
            return True
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(names_family(e) for e in node.elts)
        return False

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            names_family(side) for side in (node.left, *node.comparators)
        ):
            lines.append(node.lineno)
    return lines


def test_no_family_name_is_compared_outside_the_registry():
    names = _family_names()
    problems = []
    for path, text in _sources():
        if path.relative_to(PACKAGE).parts[0] in FAMILY_SWITCHES:
            continue
        for line in _family_comparisons(ast.parse(text), names):
            problems.append(f"{path.relative_to(PACKAGE)}:{line}")
    assert problems == []


def test_the_family_checker_sees_comparisons():
    names = _family_names()
    tree = ast.parse(
        'a = config.family == "gpt2"\n'
        'b = model_type in ("llama", "qwen2")\n'
        'c = name != "gemma3_text"\n'
        'd = x == "spam"\n'
        "e = family_of(config).tokenizer_json\n"
    )
    assert _family_comparisons(tree, names) == [1, 2, 3]
