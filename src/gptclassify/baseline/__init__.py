"""The TF-IDF + logistic regression baseline: on the same splits `train` uses, with a
metrics.json of the same layout, so a GPT-2 classifier can be compared with it."""

from gptclassify.args import BaselineConfig
from gptclassify.baseline.run import load_splits, train_baseline
from gptclassify.baseline.tfidf import Baseline

__all__ = ["Baseline", "BaselineConfig", "load_splits", "train_baseline"]
