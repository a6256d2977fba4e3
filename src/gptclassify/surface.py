"""The surface-feature head: TF-IDF word and character n-grams, a logistic regression whose
logits are weighed against the network's on validation (`train --lexical`).

A decoder fine-tuned on a few hundred texts reads meaning well and surface form less well:
placeholders that only occur in one class, a sender's spelling, a product code. A TF-IDF model
reads exactly those, fits in a second, and on small data is often as good as the network
(issue 32's held-back sets: 92-95% against 69-85% for the book's recipe). This head is that
model inside the classifier, so what `train` ships is never the worse of the two:

- features: word unigrams + bigrams (the TF-IDF baseline's own settings, `BaselineConfig`),
  optionally joined by character n-grams inside word boundaries (2-5), each block
  L2-normalised, sublinear tf, lowercase;
- a logistic regression on the training split; its strength C and the feature set are chosen
  on validation accuracy (ties: validation log-loss), from `C_GRID` x `FEATURE_SETS`, which
  holds the baseline's own configuration, so the head alone scores at least the baseline on
  validation;
- then the shipped logits are chosen on validation among the network alone, the network plus
  `weight` x the head (`WEIGHTS`), and the head alone (`network_weight` 0): the highest
  validation accuracy, ties broken by the lower validation log-loss (`auto`); `on` always
  adds the head.

Multi-label data (`task` "multi-label"): one logistic regression per label (scikit-learn's
OneVsRestClassifier, `label_tables`), its logits added to the network's before the sigmoid;
every choice above is made on validation macro F1 at per-label thresholds tuned on
validation (`metrics.tune_thresholds`, as the run tunes the shipped model's), ties broken by
the lower validation binary cross-entropy. Macro F1 is what the thresholds maximise and what
the run compares with the TF-IDF baseline.

It reads the text the network reads: the classified ids decoded back to text (byte-level BPE
decodes to the exact text; a truncated text is read as cut, a long text's windows one by one),
so it gives the same logits in every path that carries token ids (predict, the server's
batches, an ONNX folder, evaluation) and needs nothing else passed along.

Stored without pickle: `surface.json` (settings, each vectorizer's vocabulary in feature
order) and `surface.safetensors` (idf per block, coefficients, intercepts); config.json's
`surface` record holds the settings and both files' sha256 (and `task`: "multi-label" for a
head over label sets; a record without it is single-label).
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write, sha256_file
from gptclassify.metrics import (
    binary_cross_entropy,
    multilabel_report,
    sigmoid,
    tune_thresholds,
)

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
"""scikit-learn's default word pattern (as the TF-IDF baseline writes it down)."""
JSON_FILE = "surface.json"
TENSOR_FILE = "surface.safetensors"
FORMAT = "gptclassify-surface-head"
DESCRIPTION = "TF-IDF word and character n-grams, logistic regression"

WORD = {
    "analyzer": "word",
    "ngram_range": [1, 2],
    "lowercase": True,
    "token_pattern": TOKEN_PATTERN,
    "sublinear_tf": True,
    "norm": "l2",
    "smooth_idf": True,
    "min_df": 1,
    "max_features": None,
}
"""The TF-IDF baseline's features (BaselineConfig's defaults)."""
CHAR = {
    "analyzer": "char_wb",
    "ngram_range": [2, 5],
    "lowercase": True,
    "token_pattern": None,
    "sublinear_tf": True,
    "norm": "l2",
    "smooth_idf": True,
    "min_df": 2,
    "max_features": 300_000,
}
FEATURE_SETS: dict[str, tuple[dict[str, Any], ...]] = {"word": (WORD,), "word+char": (WORD, CHAR)}
C_GRID = (3.0, 10.0, 30.0, 100.0)
"""scikit-learn's C for the regression; 10 is the baseline's. Chosen on the development
corpus's validation parts (benchmarks/RESULTS.md, issue 32): 1 was never picked."""
WEIGHTS = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Weights of the head's logits added to the network's."""
SINGLE, MULTI = "single-label", "multi-label"
CONSTANT_LOGIT = 30.0
"""Multi-label: the logit of a label that every training text has (+) or none has (-), a
constant-score column: scikit-learn's OneVsRestClassifier gives such a label probability
1 / 0, and sigmoid(30) is within 1e-13 of 1."""


def _vectorizer(settings: dict[str, Any]):
    from sklearn.feature_extraction.text import TfidfVectorizer  # lazy: only with a head

    kwargs = {
        "analyzer": settings["analyzer"],
        "ngram_range": tuple(settings["ngram_range"]),
        "lowercase": settings["lowercase"],
        "sublinear_tf": settings["sublinear_tf"],
        "norm": settings["norm"],
        "smooth_idf": settings["smooth_idf"],
        "dtype": np.float64,
    }
    if settings.get("token_pattern"):
        kwargs["token_pattern"] = settings["token_pattern"]
    return TfidfVectorizer(**kwargs)


@dataclass
class SurfaceHead:
    """Fitted vectorizers and a regression over `num_classes` classes, with the weights the
    classifier gives its logits (`logits` already applies `weight`)."""

    vectorizers: list[Any]
    blocks: list[dict[str, Any]]
    """Each vectorizer's settings (WORD / CHAR)."""
    coef: np.ndarray
    """(num_classes, features) float32."""
    intercept: np.ndarray
    """(num_classes,) float32."""
    C: float
    features: str
    weight: float = 1.0
    """Factor on this head's logits where they are added."""
    network_weight: float = 1.0
    """1: network + weight x head; 0: the head alone decides (the network is not run)."""
    info: dict[str, Any] = field(default_factory=dict)
    """How it was chosen (validation scores), for config.json."""
    task: str = SINGLE
    """"multi-label": one regression per label, its logits read through a sigmoid (the
    combination is the same: logits added before the softmax or the sigmoid)."""

    @property
    def num_classes(self) -> int:
        return int(self.coef.shape[0])

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI

    def matrix(self, texts: Sequence[str]):
        from scipy import sparse  # lazy: scikit-learn's scipy

        return sparse.hstack([v.transform(list(texts)) for v in self.vectorizers]).tocsr()

    def raw_logits(self, texts: Sequence[str]) -> np.ndarray:
        """(N, K) float32 logits of the regression alone (no weight)."""
        if not len(texts):
            return np.zeros((0, self.num_classes), dtype=np.float32)
        x = self.matrix(texts)
        return np.asarray(x @ self.coef.T.astype(np.float64) + self.intercept, dtype=np.float32)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """What the head adds to the network's logits: weight x its logits."""
        return self.raw_logits(texts) * np.float32(self.weight)

    def combine(self, network: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """The classifier's logits from the network's and the texts it read."""
        out = self.logits(texts)
        if self.network_weight:
            out = out + np.asarray(network, dtype=np.float32) * np.float32(self.network_weight)
        return out

    def record(self) -> dict[str, Any]:
        """config.json's `surface` record (the files' sha256 are added by `save`)."""
        return {
            "kind": DESCRIPTION,
            "features": self.features,
            "C": self.C,
            "weight": self.weight,
            "network_weight": self.network_weight,
            "files": {"json": JSON_FILE, "tensors": TENSOR_FILE},
            **({"task": MULTI} if self.multi_label else {}),  # absent: single-label, as before
            **self.info,
        }

    # ---- files ------------------------------------------------------------------------

    def save(self, directory: str | Path) -> dict[str, Any]:
        """Write surface.json and surface.safetensors; returns the config.json record."""

        directory = Path(directory)
        vocabularies = []
        tensors: dict[str, np.ndarray] = {
            "coef": np.ascontiguousarray(self.coef, dtype=np.float32),
            "intercept": np.ascontiguousarray(self.intercept, dtype=np.float32),
        }
        for i, v in enumerate(self.vectorizers):
            terms = [""] * len(v.vocabulary_)
            for term, j in v.vocabulary_.items():
                terms[j] = term
            vocabularies.append(terms)
            tensors[f"idf.{i}"] = np.ascontiguousarray(v.idf_, dtype=np.float64)
        doc = {"format": FORMAT, "blocks": self.blocks, "vocabularies": vocabularies}
        if self.multi_label:
            doc["task"] = MULTI
        atomic_write(directory / JSON_FILE, json.dumps(doc, ensure_ascii=False) + "\n")
        atomic_write(directory / TENSOR_FILE, save(tensors, metadata={"format": FORMAT}))
        rec = self.record()
        rec["sha256"] = {
            JSON_FILE: sha256_file(directory / JSON_FILE),
            TENSOR_FILE: sha256_file(directory / TENSOR_FILE),
        }
        return rec

    @classmethod
    def load(cls, directory: str | Path, record: dict[str, Any]) -> SurfaceHead:
        """Rebuild the head from a folder and its config.json record (checksums checked)."""

        directory = Path(directory)
        sums = record.get("sha256") or {}
        for name in (JSON_FILE, TENSOR_FILE):
            path = directory / name
            if not path.is_file():
                raise GPTClassifyError(f"{path}: file not found (config.json names a surface head)")
            if sha256_file(path) != sums.get(name):
                raise GPTClassifyError(
                    f"{path}: checksum does not match config.json; the file was changed or "
                    "truncated"
                )
        try:
            doc = json.loads((directory / JSON_FILE).read_text(encoding="utf-8"))
            tensors = load_file(str(directory / TENSOR_FILE))
        except (json.JSONDecodeError, UnicodeDecodeError, SafetensorError, OSError) as exc:
            raise GPTClassifyError(f"{directory / JSON_FILE}: cannot read ({exc})") from None
        where = directory / JSON_FILE
        blocks, vocabularies = doc.get("blocks"), doc.get("vocabularies")
        if doc.get("format") != FORMAT or not (
            isinstance(blocks, list)
            and isinstance(vocabularies, list)
            and len(blocks) == len(vocabularies) >= 1
        ):
            raise GPTClassifyError(f"{where}: not a surface head file")
        vectorizers, width = [], 0
        for i, (settings, terms) in enumerate(zip(blocks, vocabularies, strict=True)):
            idf = tensors.get(f"idf.{i}")
            if idf is None or not isinstance(terms, list) or len(terms) != len(idf):
                raise GPTClassifyError(f"{where}: block {i}: vocabulary and idf do not match")
            if len(set(terms)) != len(terms):
                raise GPTClassifyError(f"{where}: block {i}: repeated terms in the vocabulary")
            try:
                v = _vectorizer(settings)
            except (KeyError, TypeError) as exc:
                raise GPTClassifyError(f"{where}: block {i}: bad settings ({exc})") from None
            v.set_params(vocabulary={t: j for j, t in enumerate(terms)})
            v.idf_ = np.asarray(idf, dtype=np.float64)
            vectorizers.append(v)
            width += len(terms)
        coef, intercept = tensors.get("coef"), tensors.get("intercept")
        if coef is None or intercept is None or coef.ndim != 2 or coef.shape[1] != width:
            raise GPTClassifyError(
                f"{directory / TENSOR_FILE}: coefficients do not fit {width} features"
            )
        if intercept.shape != (coef.shape[0],):
            raise GPTClassifyError(f"{directory / TENSOR_FILE}: intercepts do not fit the classes")
        task = record.get("task", SINGLE)
        if doc.get("task", SINGLE) != task:
            raise GPTClassifyError(
                f"{where}: task {doc.get('task', SINGLE)!r} is not config.json's {task!r}"
            )
        weight = float(record.get("weight", 1.0))
        network_weight = float(record.get("network_weight", 1.0))
        info = {k: v for k, v in record.items() if k not in _RECORD_KEYS}
        return cls(
            vectorizers,
            blocks,
            coef,
            intercept,
            float(record["C"]),
            str(record.get("features", "")),
            weight,
            network_weight,
            info,
            task,
        )


_RECORD_KEYS = {"kind", "features", "C", "weight", "network_weight", "files", "sha256", "task"}


def check_record(record: dict[str, Any], source: str) -> None:
    """Validate config.json's `surface` record (artifact.py calls this on load)."""

    def number(key: str, low: float, allow_zero: bool = False) -> float:
        value = record.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < low or (value == low and not allow_zero):
            raise GPTClassifyError(f"{source}: surface: {key!r} must be a number above {low}")
        return float(value)

    number("C", 0.0)
    number("weight", 0.0)
    network = number("network_weight", 0.0, allow_zero=True)
    if network not in (0.0, 1.0):
        raise GPTClassifyError(f"{source}: surface: 'network_weight' must be 0 or 1")
    if record.get("task", SINGLE) not in (SINGLE, MULTI):
        raise GPTClassifyError(f"{source}: surface: 'task' must be {SINGLE!r} or {MULTI!r}")
    sums = record.get("sha256")
    if not (isinstance(sums, dict) and {JSON_FILE, TENSOR_FILE} <= set(sums)):
        raise GPTClassifyError(
            f"{source}: surface: 'sha256' must name {JSON_FILE} and {TENSOR_FILE}"
        )


# ---- fitting and choosing ---------------------------------------------------------------


def _log_loss(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood at the best temperature of a grid (the run calibrates a
    temperature afterwards, so only the shape of the logits should count, not their scale)."""
    best = math.inf
    for t in _TEMPERATURES:
        z = logits.astype(np.float64) / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        best = min(best, float(-logp[np.arange(len(y)), y].mean()))
    return best


_TEMPERATURES = tuple(float(t) for t in np.logspace(-1, 2, 31))


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == y).mean()) if len(y) else 0.0


def _class_scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Single-label: validation accuracy (what is maximised) and log-loss (ties)."""
    return {"accuracy": _accuracy(logits, y), "log_loss": _log_loss(logits, y)}


def tuned_macro_f1(logits: np.ndarray, y: np.ndarray) -> float:
    """Multi-label: macro F1 over labels at per-label thresholds tuned on these same texts
    (`metrics.tune_thresholds`: what the run does on validation), as
    `metrics.multilabel_report` counts it (a label never predicted nor present scores 0)."""
    probs = sigmoid(logits)
    names = [str(j) for j in range(probs.shape[1])]
    return float(multilabel_report(probs, y, names, tune_thresholds(probs, y))["macro_f1"])


def _label_set_scores(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Multi-label: validation macro F1 at tuned thresholds (maximised) and the mean binary
    cross-entropy of the sigmoid probabilities (ties)."""
    return {"macro_f1": tuned_macro_f1(logits, y), "loss": binary_cross_entropy(sigmoid(logits), y)}


def _fit_regression(x, y: np.ndarray, num_classes: int, C: float, class_weight) -> tuple:
    from sklearn.exceptions import ConvergenceWarning  # lazy: only when fitting
    from sklearn.linear_model import LogisticRegression  # lazy: only when fitting

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C, max_iter=2000, class_weight=class_weight).fit(x, y)
    coef, intercept = class_tables(model, num_classes, x.shape[1])
    return coef.astype(np.float32), intercept.astype(np.float32)


def class_tables(model: Any, num_classes: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted scikit-learn LogisticRegression as logits per class: (num_classes, width)
    coefficients and (num_classes,) intercepts, in float64; classes absent from its training
    labels weigh 0."""
    coef = np.zeros((num_classes, width))
    intercept = np.zeros(num_classes)
    present = model.classes_.astype(np.int64)
    if len(present) == 2 and model.coef_.shape[0] == 1:
        # Binary: one margin z; logits (-z/2, +z/2) give the same probabilities by softmax.
        coef[present[0]], coef[present[1]] = -model.coef_[0] / 2, model.coef_[0] / 2
        intercept[present[0]], intercept[present[1]] = (
            -model.intercept_[0] / 2,
            model.intercept_[0] / 2,
        )
    else:
        coef[present] = model.coef_
        intercept[present] = model.intercept_
    return coef, intercept


@dataclass
class LabelTables:
    """One logistic regression per label as logits: what `label_tables` fitted."""

    coef: np.ndarray
    """(labels, features) float64."""
    intercept: np.ndarray
    """(labels,) float64."""
    constant: list[int]
    """Labels every training text has or none has: 0 coefficients, intercept
    +-CONSTANT_LOGIT (the constant probability scikit-learn gives them)."""
    converged: bool
    n_iter: int


def label_tables(
    x,
    y: np.ndarray,
    C: float,
    class_weight: str | dict[int, float] | None = None,
    max_iter: int = 2000,
    random_state: int | None = None,
) -> LabelTables:
    """Multi-label: one logistic regression per label on features `x` and 0/1 label sets `y`
    (texts, labels), as logits per label. class_weight None or "balanced" (each label's own
    regression balanced): scikit-learn's OneVsRestClassifier over LogisticRegression; a dict
    {label: weight of its positives} (the run's pos_weight, negatives 1): the same
    regression fitted per label with those weights."""
    from sklearn.exceptions import ConvergenceWarning  # lazy: only when fitting
    from sklearn.linear_model import LogisticRegression  # lazy: only when fitting
    from sklearn.multiclass import OneVsRestClassifier  # lazy: only when fitting

    y = (np.asarray(y) > 0.5).astype(np.int64)
    k = y.shape[1]
    coef, intercept = np.zeros((k, x.shape[1])), np.zeros(k)
    positives = y.sum(axis=0)
    constant = [j for j in range(k) if positives[j] in (0, len(y))]

    def regression(weight) -> Any:
        return LogisticRegression(
            C=C, max_iter=max_iter, class_weight=weight, random_state=random_state
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        if class_weight is None or isinstance(class_weight, str):
            fitted = OneVsRestClassifier(regression(class_weight)).fit(x, y).estimators_
        else:
            fitted = [
                None
                if j in constant
                else regression({0: 1.0, 1: float(class_weight[j])}).fit(x, y[:, j])
                for j in range(k)
            ]
    n_iter = 0
    for j, model in enumerate(fitted):
        if j in constant:  # OneVsRestClassifier's constant predictor: probability 0 or 1
            intercept[j] = CONSTANT_LOGIT if positives[j] else -CONSTANT_LOGIT
            continue
        coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
        n_iter = max(n_iter, int(np.max(model.n_iter_)))
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return LabelTables(coef, intercept, constant, converged, n_iter)


def _fit_label_regressions(x, y: np.ndarray, C: float, class_weight) -> tuple:
    tables = label_tables(x, y, C, class_weight)
    return tables.coef.astype(np.float32), tables.intercept.astype(np.float32)


@dataclass
class Choice:
    """What `choose` decided, with the validation scores behind it."""

    head: SurfaceHead | None
    """None: the network alone ships."""
    shipped: str
    """'network', 'network + head' or 'head alone'."""
    scores: dict[str, dict[str, float]]
    """Validation scores of the network, the head alone and what shipped: accuracy and
    log-loss (single-label), or macro F1 at tuned thresholds and binary cross-entropy
    (multi-label)."""
    fit_time_s: float
    tried: int
    """Regressions fitted."""
    metric: str = "accuracy"
    """The score the choice maximised: 'accuracy' or (multi-label) 'macro_f1'."""


def _feature_sets(texts: dict[str, Sequence[str]]):
    """(name, blocks, vectorizers, train matrix, validation matrix) of each FEATURE_SETS
    entry whose blocks all find features in the training texts (a block is fitted once)."""
    from scipy import sparse  # lazy: scikit-learn's scipy, only when fitting

    fitted_blocks: dict[int, Any] = {}
    for name, blocks in FEATURE_SETS.items():
        vectorizers, train_parts, val_parts = [], [], []
        for settings in blocks:
            key = id(settings)
            if key not in fitted_blocks:
                v = _vectorizer(settings)
                v.set_params(min_df=settings["min_df"], max_features=settings["max_features"])
                try:
                    xt = v.fit_transform(list(texts["train"]))
                except ValueError:  # e.g. an empty vocabulary: this block has nothing to add
                    fitted_blocks[key] = None
                    continue
                v.set_params(min_df=1, max_features=None)  # fitted: the vocabulary is fixed
                fitted_blocks[key] = (v, xt, v.transform(list(texts["validation"])))
            if fitted_blocks[key] is None:
                continue
            v, xt, xv = fitted_blocks[key]
            vectorizers.append(v)
            train_parts.append(xt)
            val_parts.append(xv)
        if len(vectorizers) != len(blocks):
            continue
        yield (
            name,
            blocks,
            vectorizers,
            sparse.hstack(train_parts).tocsr(),
            sparse.hstack(val_parts).tocsr(),
        )


def choose(
    texts: dict[str, Sequence[str]],
    labels: dict[str, np.ndarray],
    network: dict[str, np.ndarray],
    num_classes: int,
    mode: str = "auto",
    C: float | None = None,
    class_weight: dict[int, float] | None = None,
    multi_label: bool = False,
) -> Choice:
    """Fit the head on texts['train'] and choose on texts['validation'] (see the module's
    docstring). `network`: the network's validation logits under 'validation'. `C` given:
    only that strength. mode 'on': the head is always added (weight chosen on validation);
    'auto': the network alone, network + head, or the head alone, whichever validates best.
    multi_label: `labels` are 0/1 label sets (texts, labels), the head one regression per
    label (class_weight: each label's weight of its positives), chosen on validation macro F1
    at tuned thresholds."""
    t0 = time.perf_counter()
    if multi_label:
        y_train = np.asarray(labels["train"], dtype=np.float64)
        y_val = np.asarray(labels["validation"], dtype=np.float64)
        metric, loss, score = "macro_f1", "loss", _label_set_scores
    else:
        y_train = np.asarray(labels["train"], dtype=np.int64)
        y_val = np.asarray(labels["validation"], dtype=np.int64)
        metric, loss, score = "accuracy", "log_loss", _class_scores

    def key(scores: dict[str, float]) -> tuple[float, float]:
        return scores[metric], -scores[loss]

    grid = (float(C),) if C is not None else C_GRID
    best: tuple | None = None  # (key, head-without-weights, val logits)
    tried = 0
    for name, blocks, vectorizers, xt, xv in _feature_sets(texts):
        for c in grid:
            if multi_label:
                coef, intercept = _fit_label_regressions(xt, y_train, c, class_weight)
            else:
                coef, intercept = _fit_regression(xt, y_train, num_classes, c, class_weight)
            tried += 1
            val = np.asarray(xv @ coef.T.astype(np.float64) + intercept, dtype=np.float32)
            k = key(score(val, y_val))
            if best is None or k > best[0]:
                head = SurfaceHead(
                    vectorizers,
                    list(blocks),
                    coef,
                    intercept,
                    c,
                    name,
                    task=MULTI if multi_label else SINGLE,
                )
                best = (k, head, val)
    if best is None:
        raise GPTClassifyError("--lexical: no word or character features in the training texts")
    _, head, head_val = best
    net_val = np.asarray(network["validation"], dtype=np.float32)
    options: list[tuple[str, float, float, np.ndarray]] = []  # (shipped, net w, head w, logits)
    if mode == "auto":
        options.append(("network", 1.0, 0.0, net_val))
    options += [("network + head", 1.0, w, net_val + w * head_val) for w in WEIGHTS]
    if mode == "auto":
        options.append(("head alone", 0.0, 1.0, head_val))
    # Highest accuracy (multi-label: macro F1); on a tie the network alone (the head is kept
    # only where validation rises), then the network with the head over the head alone, then
    # the lower loss (single-label: log-loss at its best temperature).
    priority = {"network": 2, "network + head": 1, "head alone": 0}
    scored = [(o, score(o[3], y_val)) for o in options]
    (shipped, net_w, head_w, logits), _ = max(
        scored, key=lambda s: (s[1][metric], priority[s[0][0]], -s[1][loss])
    )
    scores = {
        "network": score(net_val, y_val),
        "head": score(head_val, y_val),
        "shipped": score(logits, y_val),
    }
    fit_time = time.perf_counter() - t0
    if shipped == "network":
        return Choice(None, shipped, scores, fit_time, tried, metric)
    head.weight, head.network_weight = head_w, net_w
    head.info = {
        "shipped": shipped,
        "chosen_by": mode,
        "train_texts": len(y_train),
        "validation": scores,
    }
    return Choice(head, shipped, scores, fit_time, tried, metric)


def read_texts(ids: Sequence[Sequence[int]], lengths: Sequence[int], tokenizer: Any) -> list[str]:
    """The text each row of ids stands for (its real tokens, without the tokenizer's prefix
    and suffix tokens), decoded: what the network reads, as text."""
    pre, post = list(tokenizer.prefix), list(tokenizer.suffix)
    out = []
    for row, n in zip(ids, lengths, strict=True):
        row = list(row[: int(n)])
        if pre and row[: len(pre)] == pre:
            row = row[len(pre) :]
        if post and len(row) >= len(post) and row[len(row) - len(post) :] == post:
            row = row[: len(row) - len(post)]
        out.append(tokenizer.decode(row))
    return out
