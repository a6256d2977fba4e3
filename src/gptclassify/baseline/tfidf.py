"""TF-IDF + logistic regression: the baseline a GPT-2 classifier has to beat.

The fitted model is stored without pickle: the vocabulary as a JSON list (feature order), the
idf weights, coefficients and intercepts as float64 tensors in a safetensors file, and the
vectorizer settings in config.json together with the sha256 of both files. Loading rebuilds
the scikit-learn vectorizer from those settings and computes probabilities with numpy.

Multi-label data (label sets): the same features, one logistic regression per label
(scikit-learn's OneVsRestClassifier; surface.label_tables), each label's probability its
sigmoid, decided at a per-label threshold tuned on validation exactly as a GPT run tunes its
own (`metrics.tune_thresholds`, `tune_thresholds` here). A label that every training text has,
or none has, is a constant-score column (probability 1 or 0, as OneVsRestClassifier gives it)
and the fit says so in one warning line. Such a folder records `task` "multi-label" and the
thresholds, with format_version 2, so a reader of version 1 refuses it instead of reading its
scores as a softmax.
"""

from __future__ import annotations

import json
import logging
import platform
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from safetensors import SafetensorError
from safetensors.numpy import load_file, save
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from gptclassify import __version__
from gptclassify.args import BaselineConfig
from gptclassify.artifact import CONFIG, FORMAT_BASELINE
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write, sha256_file
from gptclassify.metrics import classification_report, multilabel_report, sigmoid, softmax
from gptclassify.metrics import tune_thresholds as tuned_thresholds
from gptclassify.surface import label_tables

FORMAT = FORMAT_BASELINE
FORMAT_VERSION = 1
MULTI_LABEL_VERSION = 2
"""format_version of a multi-label baseline folder (single-label folders keep 1)."""
SINGLE, MULTI = "single-label", "multi-label"
VOCABULARY = "vocabulary.json"
WEIGHTS = "baseline.safetensors"

log = logging.getLogger("gptclassify.baseline")

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
"""scikit-learn's default word pattern, written down so a changed default cannot silently
change the features of a saved model."""


class Baseline:
    """A fitted TF-IDF vectorizer and logistic regression over `labels` (class id = index).

    `coef` is (1, features) for two classes (scikit-learn's binary form: the score of the
    second class) and (classes, features) otherwise; `intercept` matches its first axis.
    Multi-label (`task` "multi-label"): (labels, features), one regression per label, with
    each label's decision `thresholds`.
    """

    def __init__(
        self,
        vectorizer: TfidfVectorizer,
        coef: np.ndarray,
        intercept: np.ndarray,
        labels: list[str],
        settings: dict[str, Any],
        task: str = SINGLE,
        thresholds: list[float] | None = None,
    ) -> None:
        rows = len(labels) if task == MULTI or len(labels) != 2 else 1
        if coef.shape != (rows, len(vectorizer.vocabulary_)) or intercept.shape != (rows,):
            raise ValueError(
                f"Baseline: coef {coef.shape} / intercept {intercept.shape} do not fit "
                f"{len(labels)} classes and {len(vectorizer.vocabulary_)} features"
            )
        if thresholds is not None and len(thresholds) != len(labels):
            raise ValueError(f"Baseline: {len(thresholds)} thresholds for {len(labels)} labels")
        self.vectorizer = vectorizer
        self.coef = coef
        self.intercept = intercept
        self.labels = list(labels)
        self.settings = settings
        """Vectorizer and regression settings, as config.json records them."""
        self.task = task
        """"single-label" or "multi-label" (label sets)."""
        self.thresholds = None if thresholds is None else [float(t) for t in thresholds]
        """Multi-label: each label's decision threshold (tuned on validation by
        `tune_thresholds`; None: 0.5 each)."""
        self.metrics: dict[str, Any] | None = None
        """metrics.json of the run that fitted it (None when loaded or fitted alone)."""
        self.path: Path | None = None
        """The folder it was saved to or loaded from."""

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI

    @property
    def num_params(self) -> int:
        """Coefficients plus intercepts: what the regression learns (idf is a count)."""
        return int(self.coef.size + self.intercept.size)

    @classmethod
    def fit(
        cls,
        texts: list[str],
        labels: list[str],
        label_names: list[str],
        cfg: BaselineConfig | None = None,
    ) -> Baseline:
        """Fit the vectorizer and the regression on training texts with class names."""
        cfg = cfg or BaselineConfig()
        index = {name: i for i, name in enumerate(label_names)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        missing = [name for i, name in enumerate(label_names) if not (y == i).any()]
        if missing:
            raise GPTClassifyError(
                f"class {missing[0]!r} has no training examples; the baseline needs every "
                "class in the training split"
            )
        vectorizer, x = _features(texts, cfg)
        model = LogisticRegression(
            C=cfg.c,
            class_weight="balanced" if cfg.class_weights == "auto" else None,
            max_iter=cfg.max_iter,
            random_state=cfg.seed,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(x, y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        if not converged:
            log.warning(
                "The logistic regression did not converge in %d iterations; raise --max-iter",
                cfg.max_iter,
            )
        settings = {
            "vectorizer": _vectorizer_record(cfg),
            "logistic_regression": {
                "C": cfg.c,
                "class_weight": model.class_weight,
                "solver": model.solver,
                "max_iter": cfg.max_iter,
                "n_iter": int(np.max(model.n_iter_)),
                "converged": converged,
            },
        }
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        return cls(vectorizer, coef, intercept, label_names, settings)

    @classmethod
    def fit_label_sets(
        cls,
        texts: list[str],
        y: np.ndarray,
        label_names: list[str],
        cfg: BaselineConfig | None = None,
    ) -> Baseline:
        """Multi-label: fit the vectorizer and one logistic regression per label (scikit-learn's
        OneVsRestClassifier) on training texts and their 0/1 label sets `y` (texts, labels).
        Thresholds are 0.5 until `tune_thresholds` sets them on validation."""
        cfg = cfg or BaselineConfig()
        y = np.asarray(y)
        if y.ndim != 2 or y.shape != (len(texts), len(label_names)):
            raise ValueError(
                f"Baseline.fit_label_sets: label sets {y.shape} do not fit {len(texts)} texts "
                f"and {len(label_names)} labels"
            )
        vectorizer, x = _features(texts, cfg)
        class_weight = "balanced" if cfg.class_weights == "auto" else None
        tables = label_tables(x, y, cfg.c, class_weight, cfg.max_iter, cfg.seed)
        if not tables.converged:
            log.warning(
                "A logistic regression did not converge in %d iterations; raise --max-iter",
                cfg.max_iter,
            )
        constant = [label_names[j] for j in tables.constant]
        if constant:
            log.warning(
                "Warning: label(s) %s are on every training text or on none: the baseline "
                "gives them a constant score (probability 1 or 0)",
                ", ".join(map(repr, constant)),
            )
        settings = {
            "vectorizer": _vectorizer_record(cfg),
            "logistic_regression": {
                "C": cfg.c,
                "class_weight": class_weight,
                "solver": "lbfgs",
                "max_iter": cfg.max_iter,
                "n_iter": tables.n_iter,
                "converged": tables.converged,
                "one_vs_rest": True,
                "constant_labels": constant,
            },
        }
        return cls(vectorizer, tables.coef, tables.intercept, label_names, settings, task=MULTI)

    @classmethod
    def fit_parts(
        cls,
        parts: Mapping[str, Any],
        y: Mapping[str, np.ndarray],
        label_names: list[str],
        cfg: BaselineConfig | None = None,
        multi_label: bool = False,
    ) -> Baseline:
        """Fit on a run's split: `parts` (texts and labels per split name) and their class
        ids or 0/1 label sets `y`; multi-label: thresholds tuned on parts['validation']."""
        train = parts["train"]
        if not multi_label:
            return cls.fit(train.texts, train.labels, label_names, cfg)
        baseline = cls.fit_label_sets(train.texts, y["train"], label_names, cfg)
        baseline.tune_thresholds(parts["validation"].texts, y["validation"])
        return baseline

    def report(self, texts: list[str], y: np.ndarray) -> dict[str, Any]:
        """Metrics on labelled texts, as a GPT run reports its own: `classification_report`
        on class ids, or (multi-label) `multilabel_report` at the tuned thresholds."""
        probs = self.predict_proba(texts)
        if self.multi_label:
            return multilabel_report(probs, y, self.labels, self.thresholds)
        return classification_report(probs, y, self.labels)

    def tune_thresholds(self, texts: list[str], y: np.ndarray) -> list[float]:
        """Multi-label: set each label's threshold to the one maximising its F1 on these
        (validation) texts, as a GPT run tunes its own; returns them."""
        if not self.multi_label:
            raise ValueError("Baseline.tune_thresholds: a single-label baseline has no thresholds")
        self.thresholds = tuned_thresholds(self.predict_proba(texts), y)
        return self.thresholds

    def decision_function(self, texts: list[str]) -> np.ndarray:
        """Scores (texts, 1) for two classes, (texts, classes) otherwise (multi-label: each
        label's logit)."""
        x = self.vectorizer.transform(list(texts))
        return x @ self.coef.T + self.intercept

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, (texts, classes), columns in `labels` order (multi-label: each
        label's own probability, a sigmoid)."""
        scores = self.decision_function(texts)
        if self.multi_label:
            return sigmoid(scores)
        if len(self.labels) == 2:
            # scikit-learn's binary form: one score for the second class, through a sigmoid.
            p = expit(scores[:, 0])
            return np.stack([1.0 - p, p], axis=1)
        return softmax(scores)

    def predict(self, texts: list[str]) -> list[str] | list[tuple[str, ...]]:
        """The most probable class name of each text (multi-label: the labels at or above
        their thresholds, as a tuple)."""
        probs = self.predict_proba(texts)
        if self.multi_label:
            cut = np.asarray(self.thresholds or [0.5] * len(self.labels))
            return [
                tuple(n for n, on in zip(self.labels, row, strict=True) if on)
                for row in probs >= cut[None, :]
            ]
        return [self.labels[i] for i in probs.argmax(axis=1)]

    # ---- the model folder -------------------------------------------------------------

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write config.json, vocabulary.json and the safetensors weights into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = self.vectorizer.vocabulary_
        terms = [""] * len(vocab)
        for term, i in vocab.items():
            terms[i] = term
        atomic_write(directory / VOCABULARY, json.dumps(terms, ensure_ascii=False) + "\n")
        tensors = {
            "idf": np.ascontiguousarray(self.vectorizer.idf_, dtype=np.float64),
            "coef": np.ascontiguousarray(self.coef),
            "intercept": np.ascontiguousarray(self.intercept),
        }
        atomic_write(directory / WEIGHTS, save(tensors, metadata={"format": FORMAT}))

        config = {
            "format": FORMAT,
            "format_version": MULTI_LABEL_VERSION if self.multi_label else FORMAT_VERSION,
            "label_names": self.labels,
            **(
                {"task": MULTI, "thresholds": self.thresholds or [0.5] * len(self.labels)}
                if self.multi_label
                else {}
            ),
            **self.settings,
            **(extra or {}),
            "files": {"vocabulary": VOCABULARY, "weights": WEIGHTS},
            "sha256": {
                VOCABULARY: sha256_file(directory / VOCABULARY),
                WEIGHTS: sha256_file(directory / WEIGHTS),
            },
            "versions": {
                "gptclassify": __version__,
                "scikit-learn": sklearn.__version__,
                "python": platform.python_version(),
            },
        }
        atomic_write(directory / CONFIG, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        self.path = directory
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Baseline:
        """Rebuild a saved baseline; checksums, shapes and settings are checked, nothing is
        unpickled."""

        directory = Path(directory)
        config_path = directory / CONFIG
        if not config_path.is_file():
            raise GPTClassifyError(f"{directory}: no {CONFIG}; not a baseline run folder")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GPTClassifyError(f"{config_path}: not valid JSON ({exc})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            found = config.get("format") if isinstance(config, dict) else None
            raise GPTClassifyError(
                f"{config_path}: format {found!r} is not {FORMAT!r}; not a baseline run folder"
            )
        version = config.get("format_version")
        if version not in (FORMAT_VERSION, MULTI_LABEL_VERSION):
            raise GPTClassifyError(
                f"{config_path}: format_version {version!r} is not {FORMAT_VERSION} or "
                f"{MULTI_LABEL_VERSION}; written by another gptclassify version"
            )
        task = config.get("task", SINGLE)
        if task not in (SINGLE, MULTI) or (task == MULTI) != (version == MULTI_LABEL_VERSION):
            raise GPTClassifyError(
                f"{config_path}: task {task!r} does not fit format_version {version!r}"
            )
        for name in (VOCABULARY, WEIGHTS):
            path = directory / name
            if not path.is_file():
                raise GPTClassifyError(f"{path}: file not found")
            if sha256_file(path) != config.get("sha256", {}).get(name):
                raise GPTClassifyError(
                    f"{path}: checksum does not match {CONFIG}; the file was changed or truncated"
                )
        terms = json.loads((directory / VOCABULARY).read_text(encoding="utf-8"))
        try:
            tensors = load_file(str(directory / WEIGHTS))
        except (SafetensorError, OSError) as exc:
            raise GPTClassifyError(f"{directory / WEIGHTS}: cannot read ({exc})") from None
        missing = sorted({"idf", "coef", "intercept"} - set(tensors))
        if missing:
            raise GPTClassifyError(f"{directory / WEIGHTS}: missing tensor(s) {', '.join(missing)}")
        labels = config.get("label_names")
        if not (isinstance(labels, list) and all(isinstance(n, str) for n in labels)):
            raise GPTClassifyError(f"{config_path}: 'label_names' must be a list of strings")
        idf = tensors["idf"]
        if not (isinstance(terms, list) and len(terms) == len(idf) == len(set(terms))):
            raise GPTClassifyError(
                f"{directory / VOCABULARY}: expected {len(idf)} distinct terms (one per idf weight)"
            )
        vectorizer = _vectorizer(config["vectorizer"])
        vectorizer.set_params(vocabulary={term: i for i, term in enumerate(terms)})
        vectorizer.idf_ = np.asarray(idf, dtype=np.float64)
        settings = {k: config[k] for k in ("vectorizer", "logistic_regression") if k in config}
        thresholds = config.get("thresholds") if task == MULTI else None
        if task == MULTI and not (
            isinstance(thresholds, list)
            and all(
                isinstance(t, int | float) and not isinstance(t, bool) and 0.0 <= t <= 1.0
                for t in thresholds
            )
        ):
            raise GPTClassifyError(
                f"{config_path}: 'thresholds' must be a list of numbers from 0 to 1"
            )
        try:
            baseline = cls(
                vectorizer,
                tensors["coef"],
                tensors["intercept"],
                labels,
                settings,
                task=task,
                thresholds=thresholds,
            )
        except ValueError as exc:
            raise GPTClassifyError(f"{directory / WEIGHTS}: {exc}") from None
        baseline.path = directory
        return baseline


def _vectorizer_record(cfg: BaselineConfig) -> dict[str, Any]:
    """The vectorizer's settings as config.json records them."""
    return {
        "analyzer": cfg.analyzer,
        "ngram_range": [cfg.ngram_min, cfg.ngram_max],
        "lowercase": True,
        "token_pattern": TOKEN_PATTERN,
        "sublinear_tf": cfg.sublinear_tf,
        "norm": "l2",
        "smooth_idf": True,
        "min_df": cfg.min_df,
        "max_features": cfg.max_features,
    }


def _features(texts: list[str], cfg: BaselineConfig) -> tuple[TfidfVectorizer, Any]:
    """The vectorizer fitted on the training texts and their TF-IDF rows."""
    vectorizer = _vectorizer(_vectorizer_record(cfg))
    vectorizer.set_params(min_df=cfg.min_df, max_features=cfg.max_features)
    try:
        x = vectorizer.fit_transform(texts)
    except ValueError as exc:  # e.g. "empty vocabulary" when min_df removes everything
        raise GPTClassifyError(f"baseline: cannot build TF-IDF features ({exc})") from None
    return vectorizer, x


def _vectorizer(settings: dict[str, Any]) -> TfidfVectorizer:
    """A TfidfVectorizer with the transform-relevant settings recorded in config.json."""
    return TfidfVectorizer(
        analyzer=settings["analyzer"],
        ngram_range=tuple(settings["ngram_range"]),
        lowercase=settings["lowercase"],
        token_pattern=settings["token_pattern"],
        sublinear_tf=settings["sublinear_tf"],
        norm=settings["norm"],
        smooth_idf=settings["smooth_idf"],
        dtype=np.float64,
    )
