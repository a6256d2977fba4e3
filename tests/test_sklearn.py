"""`gptclassify.sklearn.GPTTextClassifier` with scikit-learn's own tools: clone, Pipeline,
cross_val_score, GridSearchCV, its estimator checks (those that apply to text input), and
save / load through a normal model folder. Tiny random-weight models: seconds per fit."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn.utils.estimator_checks as checks
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from gptclassify import Classifier
from gptclassify.errors import GPTClassifyError
from gptclassify.sklearn import GPTTextClassifier
from test_python_api import MICRO, topics


@pytest.fixture(scope="module")
def micro_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("micro") / "micro.json"
    path.write_text(json.dumps(MICRO))
    return str(path)


def estimator(micro_json: str, **more) -> GPTTextClassifier:
    return GPTTextClassifier(model=micro_json, weights="random", lr=1e-2, epochs=1, **more)


@pytest.fixture(scope="module")
def data():
    df = topics(n_per_class=30)
    return df["Sentence"], (df["Category"] == "sport").astype(int).to_numpy()


@pytest.fixture(scope="module")
def fitted(micro_json, data):
    X, y = data
    return estimator(micro_json, label_names={0: "food", 1: "sport"}).fit(X, y)


def test_fit_predict_score_in_y_s_own_kind(fitted, data):
    X, y = data
    assert fitted.classes_.tolist() == [0, 1]
    pred = fitted.predict(X)
    assert pred.dtype.kind == "i" and set(pred.tolist()) <= {0, 1}
    probs = fitted.predict_proba(X)
    assert probs.shape == (len(X), 2)
    # Columns in classes_ order: the model's class 'sport' is y == 1.
    model = fitted.classifier_.predict_proba(X)
    sport = fitted.classifier_.labels.index("sport")
    np.testing.assert_array_equal(probs[:, 1], model[:, sport])
    assert pred.tolist() == probs.argmax(axis=1).tolist()
    assert fitted.score(X, y) == pytest.approx(np.mean(pred == y))
    # The model folder names the classes.
    assert fitted.classifier_.labels == ["food", "sport"]


def test_string_labels_and_a_dataframe_without_y(micro_json):
    df = topics(n_per_class=20, classes=3).rename(columns={"Sentence": "text", "Category": "label"})
    est = estimator(micro_json).fit(df)
    assert est.classes_.tolist() == ["food", "sport", "tech"]
    assert set(est.predict(df["text"]).tolist()) <= {"food", "sport", "tech"}
    assert est.predict_proba(df).shape == (len(df), 3)


def test_clone_get_set_params_and_pickle(fitted, data):
    X, _ = data
    params = fitted.get_params()
    assert params["epochs"] == 1 and params["label_names"] == {0: "food", 1: "sport"}
    twin = clone(fitted)
    assert twin.get_params() == params and not hasattr(twin, "classifier_")
    with pytest.raises(NotFittedError):
        twin.predict(X)
    twin.set_params(lr=0.5, options={"weight_decay": 0.0})
    assert twin.lr == 0.5 and fitted.lr == 1e-2
    again = pickle.loads(pickle.dumps(fitted))  # e.g. joblib's process pool
    np.testing.assert_array_equal(again.predict_proba(X), fitted.predict_proba(X))


def test_pipeline(micro_json, data):
    X, y = data
    lower = FunctionTransformer(lambda s: s.str.lower())
    pipe = Pipeline([("lower", lower), ("gpt", estimator(micro_json))]).fit(X, y)
    direct = estimator(micro_json).fit(X.str.lower(), y)
    # Same data, same seed: the same model (the pipeline only lowercased first).
    np.testing.assert_allclose(pipe.predict_proba(X), direct.predict_proba(X.str.lower()))


def test_cross_val_score_matches_manual_folds(micro_json, data):
    X, y = data
    folds = KFold(n_splits=2, shuffle=True, random_state=0)
    scores = cross_val_score(estimator(micro_json), X, y, cv=folds)
    manual = []
    for train_idx, test_idx in folds.split(X):
        est = estimator(micro_json).fit(X.iloc[train_idx], y[train_idx])
        manual.append(est.score(X.iloc[test_idx], y[test_idx]))
    np.testing.assert_allclose(scores, manual)


def test_grid_search(micro_json, data):
    X, y = data
    search = GridSearchCV(estimator(micro_json), {"lr": [1e-2, 1e-4]}, cv=2).fit(X, y)
    assert search.best_params_["lr"] in (1e-2, 1e-4)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.best_estimator_.lr == search.best_params_["lr"]
    assert search.predict(X).shape == (len(X),)


def test_save_and_load_a_normal_model_folder(fitted, data, tmp_path):
    X, _ = data
    folder = fitted.save(tmp_path / "model")
    # A normal model folder: Classifier.load and the CLI's loaders read it.
    clf = Classifier.load(folder)
    assert clf.labels == ["food", "sport"]
    np.testing.assert_allclose(clf.predict_proba(X), fitted.classifier_.predict_proba(X))
    back = GPTTextClassifier.load(folder)
    assert back.classes_.tolist() == [0, 1] and back.get_params()["epochs"] == 1
    assert back.label_names == {0: "food", 1: "sport"}
    np.testing.assert_array_equal(back.predict(X), fitted.predict(X))
    with pytest.raises(GPTClassifyError, match="overwrite=True"):
        fitted.save(folder)


def test_errors_policy(fitted):
    with pytest.raises(GPTClassifyError, match="text 2 is empty"):
        fitted.predict(["pizza oven", ""])
    nan = clone(fitted).set_params(errors="nan")
    nan.classifier_, nan.classes_, nan._columns = (
        fitted.classifier_,
        fitted.classes_,
        fitted._columns,
    )
    pred = nan.predict(["pizza oven", "", None])
    assert pred[0] in (0, 1) and pd.isna(pred[1]) and pd.isna(pred[2])
    assert np.isnan(nan.predict_proba(["", "x"])[0]).all()


# scikit-learn's estimator checks. `check_estimator` runs only the clone check for an
# estimator whose input tag is `string` (the rest feed numeric 2-D arrays); these are the
# checks that do not need numeric X, run one by one. Not applicable (they fit on random
# numeric matrices): check_fit_check_is_fitted, check_n_features_in, check_classifiers_* (but
# the one-label checks, whose ValueError is raised before X is read),
# check_estimators_dtypes, check_fit2d_*, check_dont_overwrite_parameters,
# check_estimators_pickle, check_dict_unchanged, check_methods_subset_invariance, and the
# other fitting checks; tests above do their text-input equivalents (clone, pickle,
# unfitted predict, params unchanged by fit, classes_ and predict's kind).
APPLICABLE = [
    "check_estimator_cloneable",
    "check_get_params_invariance",
    "check_set_params",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_estimator_repr",
    "check_estimators_unfitted",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_mixin_order",
    "check_estimator_sparse_tag",
    "check_classifiers_one_label",
    "check_classifiers_one_label_sample_weights",
]


@pytest.mark.parametrize("name", APPLICABLE)
def test_sklearn_estimator_checks(micro_json, name):
    getattr(checks, name)("GPTTextClassifier", estimator(micro_json))


def test_fit_leaves_params_unchanged(micro_json, data):
    X, y = data
    est = estimator(micro_json, options={"weight_decay": 0.0})
    before = {k: repr(v) for k, v in est.get_params().items()}
    est.fit(X, y)
    assert {k: repr(v) for k, v in est.get_params().items()} == before


def test_bad_parameters_fail_at_fit_with_the_name(micro_json, data):
    X, y = data
    with pytest.raises(GPTClassifyError, match="options: .*unexpected keyword argument 'nope'"):
        estimator(micro_json, options={"nope": 1}).fit(X, y)
    with pytest.raises(GPTClassifyError, match="label_names: no name for class"):
        estimator(micro_json, label_names={0: "food"}).fit(X, y)
    with pytest.raises(GPTClassifyError, match="a classifier needs two"):
        estimator(micro_json).fit(X, np.zeros(len(X), dtype=int))


def test_one_class_is_a_value_error_naming_it_and_our_errors_are_value_errors(micro_json, data):
    """scikit-learn's convention: a fit on one class raises ValueError (its message says
    "class"); GPTClassifyError is a ValueError, so `except ValueError` around scikit-learn
    code catches ours too, and `except GPTClassifyError` still catches only ours."""
    X, _ = data
    assert issubclass(GPTClassifyError, ValueError)
    with pytest.raises(ValueError, match=r"y holds 1 class \(sport\)") as caught:
        estimator(micro_json).fit(X, ["sport"] * len(X))
    assert isinstance(caught.value, GPTClassifyError)
    # before any text is read: numbers as X still get the class error, as sklearn's check feeds
    with pytest.raises(ValueError, match="class"):
        estimator(micro_json).fit(np.ones((4, 3)), np.ones(4))
