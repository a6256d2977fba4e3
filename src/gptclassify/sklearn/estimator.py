"""`GPTTextClassifier`: fine-tuning as a scikit-learn estimator.

A thin adapter, as the server is: `fit` is `gptclassify.train` on the texts and labels in
memory (into a temporary run folder, or `out`), the fitted model is a `Classifier`, and
`predict` / `predict_proba` are its methods. The estimator follows scikit-learn's contract
(parameters stored as given in `__init__`, validated in `fit`; fitted state in attributes
ending in `_`), so `sklearn.base.clone`, `Pipeline`, `cross_val_score` and `GridSearchCV`
work with it.

Classes: `classes_` holds the distinct values of `y` as given (sorted), so `predict` returns
values of y's own kind (ints stay ints) and `score` compares like with like. The model
folder names the classes by `label_names` (a mapping from y's values to names, e.g.
`{0: "ham", 1: "spam"}`; default: the values as text), which is what config.json, the CLI,
the server and a Hugging Face export show.

Inputs: X is any container `Classifier.predict` takes (a list, Series, numpy array of
strings, a one-column or text-column DataFrame, a datasets.Dataset); a DataFrame X with a
label column may stand without y.
"""

from __future__ import annotations

import json
import numbers
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from gptclassify.args import TrainConfig
from gptclassify.data import inputs
from gptclassify.data.encode import EMPTY, blank
from gptclassify.errors import GPTClassifyError
from gptclassify.predict import Classifier
from gptclassify.training import train

ESTIMATOR_FILE = "estimator.json"
"""Beside a saved model folder's own files: the estimator's parameters and `classes_` (y's
values, which config.json's label names may not show: ints, or renamed classes)."""


class GPTTextClassifier(ClassifierMixin, BaseEstimator):
    """Fine-tune a decoder LM into a text classifier, the scikit-learn way.

    Parameters (each a `gptclassify train` option of the same name, except where said):
    model: preset, Hub id, Hugging Face folder, GGUF file, or a JSON file of GPTConfig fields
        (with weights="random"); None: `gptclassify train`'s default model.
    weights: "pretrained" or "random".
    trainable, pool, epochs, lr, batch_size, max_length: as `gptclassify train`.
    seed: the run's seed (data hold-out, initialisation, shuffling).
    options: any other `train` option by its flat name (`{"weight_decay": 0.0}`).
    label_names: {y value: class name} for the model folder (default: str(value)).
    errors: "raise" or "nan": what an empty or invalid text does in predict / predict_proba.
    out: keep the training run folder here (default: a temporary folder, removed after fit;
        the fitted model stays in memory and `save` writes a model folder).
    device, precision: where and how the model runs ("auto": the runtime decides).
    verbose: show the training log.
    """

    def __init__(
        self,
        model: str | None = None,
        weights: str = "pretrained",
        trainable: str = "last-block",
        pool: str = "last-real",
        epochs: int = 5,
        lr: float = 5e-5,
        batch_size: int = 8,
        max_length: int | None = None,
        seed: int = 123,
        options: dict[str, Any] | None = None,
        label_names: dict[Any, str] | None = None,
        errors: str = "raise",
        out: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.weights = weights
        self.trainable = trainable
        self.pool = pool
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.max_length = max_length
        self.seed = seed
        self.options = options
        self.label_names = label_names
        self.errors = errors
        self.out = out
        self.device = device
        self.precision = precision
        self.verbose = verbose

    def __sklearn_tags__(self):  # noqa: ANN204 (sklearn's Tags type, version-dependent)
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.non_deterministic = False
        return tags

    # ---- fitting ------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> GPTTextClassifier:
        """Train on texts X with labels y (or a DataFrame X with text and label columns);
        10% of the rows (seeded) are held out for validation, as `train --train FILE` does."""
        if y is None and not inputs.is_table(X):
            raise TypeError("fit: give labels y (or a DataFrame with a label column as X)")
        if y is not None:  # first, as scikit-learn's classifiers do (a ValueError naming it)
            _check_two_classes(_sorted_unique(_label_array(y)))
        # Texts are checked as predict checks them: a missing or blank text is refused,
        # naming it, never dropped without a word.
        _check_fit_texts(inputs.text_items(X, where="X"))
        if y is not None:
            texts = inputs.text_items(X, where="X")
            values = _label_array(y)
            if len(values) != len(texts):
                raise GPTClassifyError(
                    f"fit: {len(texts)} texts in X but {len(values)} labels in y"
                )
        else:
            table = inputs.labelled(X)
            texts, values = table.texts, np.array(table.labels, dtype=object)
        classes = _sorted_unique(values)
        _check_two_classes(classes)
        names = self._names(classes)
        by_value = dict(zip(classes.tolist(), names, strict=True))
        labels = [by_value[v] for v in values.tolist()]
        # Class order = classes_ order: name them so that the model's label order (numeric
        # when every name is a number, else alphabetical) cannot differ; checked below.
        cfg = self._config(texts, labels)
        folder = Path(self.out) if self.out is not None else None
        tmp = None if folder is not None else Path(tempfile.mkdtemp(prefix="gptclassify-fit-"))
        try:
            run = folder if folder is not None else tmp / "run"
            cfg.out = str(run)
            classifier = train(cfg, quiet=not self.verbose, progress=self.verbose)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        self._adopt(classifier, classes, names)
        if tmp is not None:
            classifier.path = None  # the run folder is gone; `save` writes a model folder
        return self

    def _names(self, classes: np.ndarray) -> list[str]:
        if self.label_names is None:
            return [str(v) for v in classes.tolist()]
        if not isinstance(self.label_names, dict):
            raise TypeError("label_names: a dict {y value: class name}")
        missing = [v for v in classes.tolist() if v not in self.label_names]
        if missing:
            raise GPTClassifyError(f"label_names: no name for class(es) {missing[:5]}")
        names = [str(self.label_names[v]) for v in classes.tolist()]
        if len(set(names)) != len(names):
            raise GPTClassifyError("label_names: two classes have the same name")
        return names

    def _config(self, texts: list[str], labels: list[str]) -> TrainConfig:
        if self.errors not in inputs.ERRORS:
            raise GPTClassifyError(f"errors={self.errors!r}: must be one of raise, nan")
        options = dict(self.options or {})
        fixed = {
            "weights": self.weights,
            "trainable": self.trainable,
            "pool": self.pool,
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "seed": self.seed,
            "device": self.device,
            "precision": self.precision,
        }
        clash = sorted(set(options) & (set(fixed) | {"model"}))
        if clash:
            raise GPTClassifyError(f"options: {', '.join(clash)} are parameters of their own")
        if self.model is not None:
            fixed["model"] = self.model
        options.setdefault("baseline", False)  # the TF-IDF comparison: a `train` extra
        try:
            return TrainConfig.from_data(train=(texts, labels), **fixed, **options)
        except TypeError as exc:
            raise GPTClassifyError(f"options: {exc}") from None

    def _adopt(self, classifier: Classifier, classes: np.ndarray, names: list[str]) -> None:
        if list(classifier.labels) != names:
            # The model orders classes as `sort_labels` does; map its columns to classes_.
            order = [classifier.labels.index(n) for n in names]
        else:
            order = None
        self.classifier_ = classifier
        self.classes_ = classes
        self._columns = order
        self.n_features_in_ = 1  # one text per row (scikit-learn's count of input columns)

    # ---- inference ----------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        """(n, k) probabilities, columns in `classes_` order (NaN rows for invalid texts with
        errors="nan")."""
        check_is_fitted(self, "classifier_")
        probs = self.classifier_.predict_proba(X, errors=self.errors)
        return probs if self._columns is None else probs[:, self._columns]

    def predict(self, X: Any) -> np.ndarray:
        """The likeliest class of each text, a value of `classes_` (NaN for an invalid text
        with errors="nan")."""
        probs = self.predict_proba(X)
        bad = np.isnan(probs).any(axis=1)
        if not bad.any():
            return self.classes_[probs.argmax(axis=1)]
        out = np.empty(len(probs), dtype=object)
        out[~bad] = self.classes_[probs[~bad].argmax(axis=1)]
        out[bad] = np.nan
        return out

    # ---- persistence --------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (joblib's process pools, `pickle.dumps`): a fitted model travels as its
        model folder's files (safetensors + JSON), never as pickled tensors or locks."""
        state = dict(self.__dict__)
        classifier = state.pop("classifier_", None)
        if classifier is not None:
            with tempfile.TemporaryDirectory(prefix="gptclassify-pickle-") as tmp:
                folder = classifier.save(Path(tmp) / "model")
                state["_model_files"] = {
                    p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()
                }
            state["_load"] = {"device": self.device, "precision": self.precision}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        files = state.pop("_model_files", None)
        load = state.pop("_load", {})
        self.__dict__.update(state)
        if files is not None:
            with tempfile.TemporaryDirectory(prefix="gptclassify-unpickle-") as tmp:
                for name, content in files.items():
                    (Path(tmp) / name).write_bytes(content)
                self.classifier_ = Classifier.load(tmp, **load)
            self.classifier_.path = None

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """A normal model folder (`gptclassify predict / evaluate / serve` and
        `Classifier.load` use it), plus estimator.json for `GPTTextClassifier.load`."""
        check_is_fitted(self, "classifier_")
        path = self.classifier_.save(directory, overwrite=overwrite)
        record = {
            "params": {k: v for k, v in self.get_params().items() if k != "label_names"},
            "classes": self.classes_.tolist(),
        }
        try:
            text = json.dumps(record, indent=2) + "\n"
        except TypeError as exc:
            raise GPTClassifyError(f"save: classes_ or parameters are not JSON ({exc})") from None
        (path / ESTIMATOR_FILE).write_text(text, encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path, **load_options: Any) -> GPTTextClassifier:
        """A fitted estimator from a model folder (saved by `save`, or any gptclassify model
        folder: classes_ are then its label names). `load_options`: `Classifier.load`'s."""
        classifier = Classifier.load(directory, **load_options)
        record_file = Path(directory) / ESTIMATOR_FILE
        params: dict[str, Any] = {}
        classes = np.array(classifier.labels, dtype=object)
        if record_file.is_file():
            try:
                record = json.loads(record_file.read_text(encoding="utf-8"))
                params = dict(record["params"])
                classes = _label_array(record["classes"])
            except (ValueError, KeyError, TypeError) as exc:
                raise GPTClassifyError(f"{record_file}: unreadable ({exc})") from None
            if len(classes) != len(classifier.labels):
                raise GPTClassifyError(
                    f"{record_file}: {len(classes)} classes for a {len(classifier.labels)}-class model"
                )
        names = list(classifier.labels)
        estimator = cls(**params)
        if any(str(v) != n for v, n in zip(classes.tolist(), names, strict=True)):
            estimator.label_names = dict(zip(classes.tolist(), names, strict=True))
        estimator._adopt(classifier, classes, names)
        return estimator


def _check_two_classes(classes: np.ndarray) -> None:
    """scikit-learn's convention (check_classifiers_one_label): fitting on one class is a
    ValueError whose message names the class (GPTClassifyError is a ValueError)."""
    if len(classes) < 2:
        raise GPTClassifyError(
            f"fit: y holds {len(classes)} class ({', '.join(map(str, classes.tolist()))}); "
            "a classifier needs two or more classes"
        )


def _check_fit_texts(texts: list[Any]) -> None:
    checked = inputs.check_texts(texts, "raise")
    for i, text in enumerate(checked.texts):
        if blank(text):
            raise GPTClassifyError(f"fit: text {i + 1} is {EMPTY}: nothing to learn from")


def _label_kind(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, numbers.Number):
        return "number"
    if isinstance(value, str):
        return "str"
    return type(value).__name__


def _label_array(y: Any) -> np.ndarray:
    """y as a 1-D array; a missing label, or labels of mixed kinds (`1` and `"1"`, which numpy
    would quietly make two strings of one class), are refused naming them."""
    if isinstance(y, str | bytes) or y is None:
        raise TypeError("y: expected a sequence of labels")
    items = y.tolist() if hasattr(y, "tolist") else list(y)
    first: dict[str, Any] = {}
    for i, value in enumerate(items):
        if inputs.is_missing(value):
            raise GPTClassifyError(
                f"y: label {i + 1} is missing (None/NaN); every text needs a label"
            )
        first.setdefault(_label_kind(value), value)
    if len(first) > 1:
        shown = " and ".join(f"{v!r} ({k})" for k, v in first.items())
        raise GPTClassifyError(
            f"y: labels of mixed kinds ({shown}); give every label as one kind (all numbers "
            "or all strings)"
        )
    values = np.asarray(items)
    if values.ndim != 1:
        raise GPTClassifyError(f"y: expected one label per text (1-D), got shape {values.shape}")
    return values


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    try:
        return np.unique(values)
    except TypeError:  # mixed kinds: no order between them
        raise GPTClassifyError(
            "y: labels of mixed kinds (e.g. 1 and '1') cannot be ordered"
        ) from None
