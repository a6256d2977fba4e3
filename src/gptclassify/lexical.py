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
from torch.nn.utils.rnn import pad_sequence

from gptclassify.surface import class_tables

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

    def logits(
        self, ids: Sequence[Sequence[int]], lengths: np.ndarray | None = None, rows: int = 4096
    ) -> np.ndarray:
        """`forward` for token lists (a split's `Encoded.ids`; `lengths` cuts any padding),
        `rows` texts per pass."""
        n_real = [len(r) if lengths is None else int(lengths[i]) for i, r in enumerate(ids)]
        device = self.weight.device
        out = [np.zeros((0, self.bias.shape[0]), dtype=np.float32)]
        with torch.no_grad():
            for start in range(0, len(ids), rows):
                end = min(start + rows, len(ids))
                chunk = [
                    torch.as_tensor(ids[i][: n_real[i]], dtype=torch.long)
                    for i in range(start, end)
                ]
                padded = pad_sequence(chunk, batch_first=True).to(device)  # 0s, masked out
                lengths_ = torch.tensor(n_real[start:end], device=device)
                out.append(self(padded, lengths_).cpu().numpy())
        return np.concatenate(out)


@dataclass
class LexicalFit:
    head: LexicalHead
    fit_time_s: float
    features: int
    """Distinct tokens seen in the training split (the rest weigh 0)."""


def features(ids: Sequence[Sequence[int]], vocab_size: int):
    """Sparse (N, vocab) matrix of token counts / text length (each row's tokens once)."""
    from scipy import sparse  # lazy: scikit-learn's scipy, only when fitting

    rows, cols, vals = [], [], []
    for i, row in enumerate(ids):
        tokens, counts = np.unique(np.asarray(row, dtype=np.int64), return_counts=True)
        rows.append(np.full(len(tokens), i))
        cols.append(tokens)
        vals.append(counts / max(len(row), 1))
    return sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(ids), vocab_size),
    )


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
    x = features(ids, vocab_size)
    # Documents per token (each row holds a token once); scikit-learn's smoothed idf.
    df = np.bincount(x.indices, minlength=vocab_size)
    idf = np.log((1 + len(ids)) / (1 + df)) + 1
    x = x.multiply(idf[None, :]).tocsr()
    y = np.asarray(labels, dtype=np.int64)
    model = LogisticRegression(C=C, max_iter=5000, class_weight=class_weight).fit(x, y)
    coef, intercept = class_tables(model, num_classes, vocab_size)
    head = LexicalHead(vocab_size, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy((coef * idf[None, :]).T.astype(np.float32)))
        head.bias.copy_(torch.from_numpy(intercept.astype(np.float32)))
    return LexicalFit(head, time.perf_counter() - t0, int((df > 0).sum()))
