"""A bag-of-tokens logistic regression whose logits are added to the network's (`--lexical`).

A decoder fine-tuned on a thousand texts reads meaning well and surface form less well: on
the SMS book split the texts it gets wrong are ones a TF-IDF model gets right by their words
alone (placeholders such as "&lt;#&gt;" that only appear in ham, a spammer's "GIRLS"), and the
two models' errors overlap little. This module is that bag-of-words model in the network's own
terms: a logistic regression on each text's token counts (over the model's tokenizer ids,
divided by the text's length and weighted by the training split's inverse document
frequency), fitted with scikit-learn on the training split after the network has trained.
Its logits are added to the network's, a product of the two models' probabilities.

Because the features are linear in the counts, the fitted model is one table: a text's
logits are the mean over its real tokens of `weight[token]`, plus `bias`. So it lives in the
classifier as two buffers (`LexicalHead`), saved in model.safetensors, traced into an ONNX
export, and run wherever token ids go in; it never trains with the network (buffers are not
parameters), and the network never sees it during training: fitting both on the same texts
jointly would let the bag-of-tokens model, which fits the training split almost perfectly,
leave the network nothing to learn.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

DEFAULT_C = 30.0
"""Inverse L2 strength of the logistic regression (scikit-learn's C)."""

DESCRIPTION = "bag-of-tokens logistic regression (tf-idf of token counts / length)"


class LexicalHead(nn.Module):
    """Per-text logits = mean over real tokens of weight[token] + bias, in fp32."""

    def __init__(self, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(vocab_size, num_classes))
        self.register_buffer("bias", torch.zeros(num_classes))

    def forward(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        """(B, T) right-padded ids and (B,) real lengths -> (B, num_classes) logits."""
        real = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]
        per_token = self.weight.float()[input_ids] * real[..., None]  # (B, T, K)
        mean = per_token.sum(dim=1) / lengths[:, None].clamp_min(1).float()
        return mean + self.bias.float()

    def logits(self, ids: Sequence[Sequence[int]], lengths: np.ndarray | None = None) -> np.ndarray:
        """The same for token lists (a split's `Encoded.ids`; `lengths` cuts any padding)."""
        n = len(ids)
        out = np.zeros((n, self.bias.shape[0]), dtype=np.float32)
        weight = self.weight.detach().float().cpu().numpy()
        bias = self.bias.detach().float().cpu().numpy()
        for i, row in enumerate(ids):
            real = row[: int(lengths[i])] if lengths is not None else row
            out[i] = weight[np.asarray(real, dtype=np.int64)].mean(axis=0) + bias
        return out


@dataclass
class LexicalFit:
    head: LexicalHead
    fit_time_s: float
    features: int
    """Distinct tokens seen in the training split (the rest weigh 0)."""


def features(ids: Sequence[Sequence[int]], vocab_size: int, idf: np.ndarray | None = None):
    """Sparse (N, vocab) matrix of token counts / text length (times idf when given)."""
    from scipy import sparse  # lazy: scikit-learn's scipy, only when fitting

    rows, cols, vals = [], [], []
    for i, row in enumerate(ids):
        tokens, counts = np.unique(np.asarray(row, dtype=np.int64), return_counts=True)
        rows.append(np.full(len(tokens), i))
        cols.append(tokens)
        vals.append(counts / max(len(row), 1))
    x = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(ids), vocab_size),
    )
    return x if idf is None else x.multiply(idf[None, :]).tocsr()


def inverse_document_frequency(ids: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    """scikit-learn's smoothed idf, ln((1 + n) / (1 + df)) + 1, per token id."""
    df = np.zeros(vocab_size)
    for row in ids:
        df[np.unique(np.asarray(row, dtype=np.int64))] += 1
    return np.log((1 + len(ids)) / (1 + df)) + 1


def fit(
    ids: Sequence[Sequence[int]],
    labels: np.ndarray,
    num_classes: int,
    vocab_size: int,
    C: float = DEFAULT_C,
    class_weight: dict[int, float] | None = None,
) -> LexicalFit:
    """Fit the logistic regression on training texts' ids (no padding) and class ids
    (`class_weight`: each class's weight in the loss, as the network's `--class-weights`)."""
    from sklearn.linear_model import LogisticRegression  # lazy: only when fitting

    t0 = time.perf_counter()
    idf = inverse_document_frequency(ids, vocab_size)
    x = features(ids, vocab_size, idf)
    y = np.asarray(labels, dtype=np.int64)
    model = LogisticRegression(C=C, max_iter=5000, class_weight=class_weight).fit(x, y)
    coef = np.zeros((num_classes, vocab_size))
    intercept = np.zeros(num_classes)
    present = model.classes_.astype(np.int64)
    if len(present) == 2 and model.coef_.shape[0] == 1:
        # Binary: one margin z = coef . x + b; logits (-z/2, +z/2) for the two classes seen.
        coef[present[0]], coef[present[1]] = -model.coef_[0] / 2, model.coef_[0] / 2
        intercept[present[0]], intercept[present[1]] = (
            -model.intercept_[0] / 2,
            model.intercept_[0] / 2,
        )
    else:
        coef[present] = model.coef_
        intercept[present] = model.intercept_
    head = LexicalHead(vocab_size, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy((coef * idf[None, :]).T.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(intercept.astype(np.float32)))
    seen = int((idf < np.log(1 + len(ids)) + 1).sum())
    return LexicalFit(head, time.perf_counter() - t0, seen)
