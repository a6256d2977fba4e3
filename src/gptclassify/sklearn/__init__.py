"""A scikit-learn estimator over gptclassify: `GPTTextClassifier` (fit / predict /
predict_proba / score, clone-able, in Pipelines, cross-validation and grid searches)."""

from gptclassify.sklearn.estimator import GPTTextClassifier

__all__ = ["GPTTextClassifier"]
