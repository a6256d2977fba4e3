"""Classify with a trained model: `Classifier` (load once, predict in batches) and prediction
tables and files."""

from gptclassify.data.encode import Encoded
from gptclassify.predict.api import Classifier, TextRejected
from gptclassify.predict.files import PredictionSummary, predict_file
from gptclassify.predict.tables import decide, predict_table, prob_column, top_k, write_predictions

__all__ = [
    "Classifier",
    "Encoded",
    "PredictionSummary",
    "TextRejected",
    "decide",
    "predict_file",
    "predict_table",
    "prob_column",
    "top_k",
    "write_predictions",
]
