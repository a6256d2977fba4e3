"""A gptclassify model as an MLflow pyfunc model (`--report-to mlflow` logs it as RUN's `model`).

MLflow's "models from code": this file is the model's code, copied into the logged model and
run by `mlflow.pyfunc.load_model`, which then calls `load_context` (the model folder, an
artifact of the logged model, loaded with `Classifier.load`) and `predict`. Nothing is
pickled. It needs the track extra (mlflow) and gptclassify where the model is loaded.

predict takes a pandas DataFrame (a `text` column, or a single column of texts), a Series,
or a list of texts, and returns a DataFrame: `label` (the class, as `Classifier.predict`
decides it: thresholds and multi-label included) and one `p(<class>)` column per class in
the model's class order (`Classifier.predict_proba`).
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd

from gptclassify.predict import Classifier

MODEL_ARTIFACT = "model_folder"
"""The logged model's artifact holding the gptclassify model folder."""
TEXT_COLUMN = "text"


def probability_column(label: str) -> str:
    return f"p({label})"


def texts_of(model_input: Any) -> list[str]:
    """The texts of what a pyfunc caller passes (see the module docstring)."""
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN in model_input.columns:
            column = model_input[TEXT_COLUMN]
        elif len(model_input.columns) == 1:
            column = model_input.iloc[:, 0]
        else:
            raise ValueError(
                f"expected a DataFrame with a {TEXT_COLUMN!r} column (or one column of texts), "
                f"got columns {list(model_input.columns)[:5]}"
            )
        return column.tolist()
    if isinstance(model_input, pd.Series | np.ndarray):
        return list(model_input.tolist())
    if isinstance(model_input, str):
        return [model_input]
    return list(model_input)


class GPTClassifyModel(mlflow.pyfunc.PythonModel):
    """The pyfunc model around a gptclassify model folder."""

    def load_context(self, context: Any) -> None:
        self.classifier = Classifier.load(context.artifacts[MODEL_ARTIFACT])

    # No type hints on predict: MLflow reads them as a signature (the logged one is explicit).
    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201
        texts = texts_of(model_input)
        clf = self.classifier
        probs = clf.predict_proba(texts)
        labels = clf.predict(texts)
        out = {"label": [str(v) for v in np.asarray(labels, dtype=object).tolist()]}
        for i, name in enumerate(clf.labels):
            out[probability_column(name)] = probs[:, i].astype(np.float64)
        return pd.DataFrame(out)


mlflow.models.set_model(GPTClassifyModel())
