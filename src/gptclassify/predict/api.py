"""`Classifier`: load a trained model once, classify texts in batches, evaluate on a file.

A Classifier is labels, an input policy and a temperature around a *runtime* that turns
token ids into logits: PyTorch (predict/torch_runtime.py) for model folders written by
`train`, ONNX Runtime (predict/onnx_runtime.py) for folders written by `gptclassify export
--format onnx`. The folder decides (`runtime="auto"`): a folder holds either safetensors
weights or an ONNX graph. This module imports no torch, so a runtime that needs none does
not load it.

Batches are formed from texts of similar length (sorted, then chunked) so padding is small,
and results are put back in input order. With the default last-real-token pooling a text
gets the same prediction alone or next to longer texts. Any number of threads can call
`logits` / `predict` on one Classifier at the same time: inference never changes the model.

A Classifier is built once, from everything that describes it (`from_record`: config.json,
a runtime and the load's long-text policy; a training run passes the same values); only
`save` changes it afterwards (where it was written, the weights' checksum). Evaluation (predict/evaluation.py), explanation
(predict/explain.py) and long-text windows (predict/long_texts.py) are functions over a
Classifier, as scikit-learn keeps metrics outside its estimators; the methods of those names
call them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from gptclassify import tokenizer
from gptclassify.args import LoadOptions
from gptclassify.artifact import (
    FORMAT_BASELINE,
    FORMAT_CLASSIFIER,
    KIND_NAMES,
    ONNX_KIND,
    ClassifierConfig,
    Provenance,
    folder_kind,
    read_classifier_config,
    read_metrics,
)
from gptclassify.config import GPTConfig
from gptclassify.data import inputs
from gptclassify.data.encode import (
    EMPTY,
    Encoded,
    InputPolicy,
    blank,
    encode,
    encode_ids,
    not_text,
    not_unicode,
)
from gptclassify.data.multilabel import MULTI
from gptclassify.errors import GPTClassifyError, option
from gptclassify.files import inside, replace_folder, sha256_file
from gptclassify.metrics import sigmoid, softmax
from gptclassify.predict import evaluation
from gptclassify.predict.long_texts import (
    LongTexts,
    Windows,
    classifier_windows,
    combine_classifier_windows,
)
from gptclassify.surface import SurfaceHead, read_texts

if TYPE_CHECKING:
    import torch

    from gptclassify.classifier import GPTClassifier
    from gptclassify.predict.explain import Explanation


class Runtime(Protocol):
    """What runs the network for a Classifier."""

    name: str
    gpt_config: GPTConfig
    pool: str
    causal: bool
    num_classes: int

    @property
    def padding_free(self) -> bool: ...

    def logits(self, encoded: Encoded, batch_size: int) -> np.ndarray: ...

    def describe(self) -> str: ...

    def warm_up(self, max_tokens: int) -> None: ...


class TextRejected(GPTClassifyError):
    """One text of a batch cannot be classified as asked (`Classifier.encode_checked`)."""

    def __init__(
        self, index: int, reason: str, tokens: int, max_length: int, bad: str = ""
    ) -> None:
        self.index = index
        """Which text (0-based)."""
        self.reason = reason
        """"empty", "not-text" (a lone surrogate), or "too-long" (more than `max_length`
        tokens, and truncation was off)."""
        self.tokens = tokens
        self.max_length = max_length
        if reason == "empty":
            message = f"text {index + 1} is {EMPTY}: nothing to classify"
        elif reason == "not-text":
            message = f"text {index + 1} {not_text(bad)}"
        else:
            message = f"text {index + 1} has {tokens} tokens; the model reads at most {max_length}"
        super().__init__(message)


class Classifier:
    """A trained text classifier (any implemented decoder family) with its labels and input
    policy."""

    def __init__(
        self,
        model: GPTClassifier,
        labels: Sequence[str],
        policy: InputPolicy,
        temperature: float = 1.0,
        device: str | torch.device = "auto",
        precision: str = "auto",
        provenance: Provenance | None = None,
        **record: Any,
    ) -> None:
        """`record`: how logits become answers (`task`, `thresholds`, `label_sep`, `lexical`,
        `surface`, `long_texts`) and what is known of the folder it was loaded from or written
        to (`path`, `weights_sha256`, `metrics`): given here, once (see `from_record`)."""
        from gptclassify.predict.torch_runtime import TorchRuntime  # lazy: torch

        runtime = TorchRuntime(model, device, precision)
        self._setup(runtime, labels, policy, temperature, provenance, **record)

    @classmethod
    def with_runtime(
        cls,
        runtime: Runtime,
        labels: Sequence[str],
        policy: InputPolicy,
        temperature: float = 1.0,
        provenance: Provenance | None = None,
        **record: Any,
    ) -> Classifier:
        """A Classifier around any runtime (e.g. ONNX Runtime for an exported folder)."""
        classifier = cls.__new__(cls)
        classifier._setup(runtime, labels, policy, temperature, provenance, **record)
        return classifier

    @classmethod
    def from_record(
        cls,
        runtime: Runtime,
        config: ClassifierConfig,
        tok: tokenizer.Tokenizer,
        *,
        long_texts: LongTexts | None = None,
        surface: SurfaceHead | None = None,
        path: Path | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> Classifier:
        """The Classifier that a folder's config.json describes, around `runtime`, with its
        tokenizer and the load's `long_texts` policy. `surface`: the head its record names,
        read from the folder (`SurfaceHead.load`); `metrics`: its metrics.json."""
        return cls.with_runtime(
            runtime,
            config.labels,
            InputPolicy(config.max_length, config.pad_length, config.truncate, tok),
            temperature=config.temperature,
            provenance=config.provenance,
            task=config.task,
            thresholds=config.thresholds,
            label_sep=config.label_sep,
            lexical=config.lexical,
            surface=surface,
            long_texts=long_texts,
            path=path,
            weights_sha256=config.weights_sha256 or None,
            metrics=metrics,
        )

    def _setup(
        self,
        runtime: Runtime,
        labels: Sequence[str],
        policy: InputPolicy,
        temperature: float,
        provenance: Provenance | None,
        *,
        task: str = "single-label",
        thresholds: Sequence[float] | None = None,
        label_sep: str = ";",
        lexical: dict[str, Any] | None = None,
        surface: SurfaceHead | None = None,
        long_texts: LongTexts | None = None,
        path: Path | None = None,
        weights_sha256: str | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        if len(labels) != runtime.num_classes:
            raise GPTClassifyError(
                f"{len(labels)} label names for a {runtime.num_classes}-class head"
            )
        if surface is not None and (surface.num_classes != len(labels) or surface.task != task):
            raise GPTClassifyError(
                f"the surface head ({surface.task}, {surface.num_classes} classes) does not fit "
                f"this {task} model of {len(labels)} classes"
            )
        self.runtime = runtime
        self.labels = list(labels)
        self.policy = policy
        self.temperature = float(temperature)
        self.provenance = provenance or Provenance()
        self.path: Path | None = path
        """The model folder this classifier was loaded from or last saved to."""
        self.weights_sha256: str | None = weights_sha256
        """sha256 of that folder's PyTorch weights file (checked when it loaded)."""
        self.metrics: dict[str, Any] | None = metrics
        """metrics.json of the training run, when known."""
        self.task = task
        """single-label (softmax, one class per text) or multi-label (a sigmoid per label,
        any set of labels per text)."""
        self.thresholds: list[float] | None = list(thresholds) if thresholds else None
        """Multi-label: each label's decision threshold (None: 0.5 for every label)."""
        self.label_sep = label_sep
        """Multi-label: how a label set is joined in prediction files."""
        self.long_texts = long_texts or LongTexts()
        """What happens to texts longer than the model reads: truncated (the input policy
        cuts them), or classified in windows whose probabilities are aggregated."""
        self.lexical: dict[str, Any] | None = lexical
        """How the bag-of-tokens logistic regression in the logits was fitted (lexical.py),
        when the model has one."""
        self.surface: SurfaceHead | None = surface
        """A TF-IDF word/character n-gram head weighed in with the network's logits (or in
        their place), chosen on validation when it trained (surface.py)."""

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI

    @property
    def model(self) -> GPTClassifier:
        """The PyTorch model (torch runtime only)."""
        return self.runtime.model  # type: ignore[attr-defined]

    @property
    def gpt_config(self) -> GPTConfig:
        """The network's shape (layers, width, context)."""
        return self.runtime.gpt_config

    @property
    def padding_free(self) -> bool:
        """Whether a pass computes only the real tokens of its texts (the PyTorch runtime of a
        causal model), rather than every padded one: what a pass of mixed lengths costs."""
        return self.runtime.padding_free

    @property
    def device(self) -> torch.device | str:
        return self.runtime.device  # type: ignore[attr-defined]

    @property
    def dtype(self) -> torch.dtype:
        return self.runtime.dtype  # type: ignore[attr-defined]

    # ---- persistence ------------------------------------------------------------------

    @classmethod
    def load(
        cls, run_dir: str | Path, options: LoadOptions | None = None, **overrides: Any
    ) -> Classifier:
        """Load a model folder written by `train`, `save` or `export --format onnx`
        (checksum-verified, no pickle).

        options: how to load it (args.LoadOptions, the fields below; the CLI's flags);
        keywords of the same names override its fields, e.g.
        `Classifier.load(run, precision="fp32")`.

        long_texts / stride / aggregate: texts longer than the model reads are cut
        ("truncate") or classified in windows `stride` tokens apart whose probabilities are
        combined by `aggregate` ("mean" or "max"); see predict/long_texts.py.

        runtime: "auto" (what the folder holds: PyTorch weights or an ONNX graph), "torch" or
        "onnx" (an error when the folder does not hold that). precision: for PyTorch, "auto"
        (bf16 where the CPU or GPU has fast bf16, else fp32), "fp32" or "bf16"; an ONNX graph
        runs in the precision it was exported in ("auto", or that precision by name).
        base_model: the base of LoRA adapters saved alone, when the folder names a local
        folder (it is not followed on its own: it lies outside the model folder).
        """
        if not isinstance(run_dir, str | os.PathLike):
            raise TypeError(
                f"Classifier.load: expected a model folder (a str or Path), got "
                f"{type(run_dir).__name__}"
            )
        if options is not None and not isinstance(options, LoadOptions):
            raise TypeError(
                f"Classifier.load: options must be a LoadOptions, got "
                f"{type(options).__name__} (pass device=..., precision=... as keywords)"
            )
        load = dataclasses.replace(options or LoadOptions(), **overrides)
        device, precision, runtime = load.device, load.precision, load.runtime
        if folder_kind(run_dir) == FORMAT_BASELINE:
            raise GPTClassifyError(
                f"{run_dir} is a TF-IDF baseline folder, not a model folder: its scores are in "
                "its metrics.json; in Python, gptclassify.baseline.Baseline.load(folder)"
                ".predict_proba(texts) runs it"
            )
        # checked before anything loads
        long = LongTexts(load.long_texts, load.stride, load.aggregate)
        config = read_classifier_config(run_dir)
        surface = SurfaceHead.load(run_dir, config.surface) if config.surface is not None else None
        kind = choose_runtime(config, runtime, Path(run_dir))
        tok = tokenizer.load_tokenizer(config.tokenizer, Path(run_dir))
        if kind == "onnx":
            check_onnx_settings(config, device, precision, Path(run_dir))
            files = [config.onnx.file, config.onnx.data_file] if config.onnx else []
            with _Checksums(Path(run_dir), files) as sums:
                from gptclassify.predict.onnx_runtime import OnnxRuntime  # lazy: onnxruntime

                runtime_: Runtime = OnnxRuntime(run_dir, config, digests=sums.result())
        else:
            if precision == "int8":
                raise GPTClassifyError(
                    f"{option('precision', 'int8')}: {run_dir} holds PyTorch weights; int8 runs an ONNX "
                    f"export: gptclassify export {run_dir} --format onnx --quantize int8 --out DIR"
                )
            with _Checksums(Path(run_dir), [config.weights_file]) as sums:
                from gptclassify.model_io import load_classifier  # lazy: torch
                from gptclassify.predict.torch_runtime import TorchRuntime  # lazy: torch

                digest = sums.result()[config.weights_file]
            model, config = load_classifier(
                run_dir, config, base_model=load.base_model, weights_sha256=digest
            )
            runtime_ = TorchRuntime(model, device, precision)
        metrics = read_metrics(run_dir)
        return cls.from_record(
            runtime_,
            config,
            tok,
            long_texts=long,
            surface=surface,
            path=Path(run_dir),
            metrics=metrics.to_json() if metrics is not None else None,
        )

    @property
    def config(self) -> ClassifierConfig:
        """What config.json records for this classifier (the weights' checksum is added on
        save)."""
        return ClassifierConfig(
            model=self.runtime.gpt_config,
            labels=tuple(self.labels),
            pool=self.runtime.pool,
            causal=self.runtime.causal,
            max_length=self.policy.max_length,
            pad_length=self.policy.pad_length,
            truncate=self.policy.truncate,
            temperature=self.temperature,
            provenance=self.provenance,
            tokenizer=self.policy.tokenizer.describe(),
            task=self.task,
            thresholds=tuple(self.thresholds) if self.thresholds is not None else None,
            label_sep=self.label_sep,
            lexical=self.lexical,
            surface=self.surface.record() if self.surface is not None else None,
        )

    def describe(self) -> dict[str, Any]:
        """config.json's fields for this classifier, as a dict."""
        return self.config.to_json()

    def save(self, directory: str | Path, overwrite: bool = False) -> Path:
        """Write model.safetensors + config.json into `directory`; returns the folder.

        The CLI's folder rules: `directory` must be absent or empty, or (with `overwrite`)
        a classifier folder, which is replaced as a whole (the old one stays until the new
        one is complete). Another kind of folder (a baseline, a data folder, files of your
        own with a config.json) is never written into.
        """
        if not isinstance(directory, str | os.PathLike):
            raise TypeError(
                f"Classifier.save: expected a folder (a str or Path), got {type(directory).__name__}"
            )
        found = folder_kind(directory)
        if found == "file":
            raise GPTClassifyError(f"save: {directory} exists and is not a folder")
        if found not in (None, FORMAT_CLASSIFIER, ONNX_KIND):
            what = (
                KIND_NAMES.get(found, f"a {found} folder")
                if found
                else ("a folder that is not a gptclassify model folder")
            )
            raise GPTClassifyError(
                f"save: {directory} is {what} and not empty; it is never replaced: choose "
                "another folder"
            )
        if found is not None and not overwrite:
            raise GPTClassifyError(
                f"save: {directory} already holds a model; pass overwrite=True to replace it"
            )
        self._check_savable()
        with replace_folder(directory) as tmp:
            self.write_files(tmp)
        self.path = Path(directory)
        self.weights_sha256 = read_classifier_config(self.path).weights_sha256
        return self.path

    def write_files(self, directory: str | Path) -> None:
        """The model files (weights, config.json, tokenizer.json) written into a folder the
        caller owns and publishes (a training run's work folder); `save` is the safe way."""
        self._check_savable()
        from gptclassify.model_io import save_classifier  # lazy: torch

        config = self.config
        if self.surface is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            config = dataclasses.replace(config, surface=self.surface.save(directory))
        save_classifier(directory, self.model, config, self.policy.tokenizer)
        self.weights_sha256 = read_classifier_config(directory).weights_sha256

    def _check_savable(self) -> None:
        if self.runtime.name != "torch":
            raise GPTClassifyError(
                f"a classifier run by {self.runtime.name} is saved by exporting its training "
                "run (gptclassify export), or by copying its folder"
            )

    # ---- inference --------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> Encoded:
        """Token ids of `texts` under this classifier's input policy (`.cut` says which
        were truncated)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        return encode(texts, self.policy)

    def encode_checked(
        self,
        texts: Sequence[str],
        truncate: bool = True,
        keep_raw: bool = False,
        policy: InputPolicy | None = None,
    ) -> Encoded:
        """`encode`, refusing the first empty text and, without `truncate`, the first text
        longer than the model reads, with a `TextRejected` that says which and why.
        `keep_raw`: the untruncated ids ride along as `.raw` (for `windows`). `policy`:
        another input policy for these texts (a server request's truncation side or
        length), with this classifier's tokenizer."""
        policy = policy or self.policy
        limit = policy.max_length
        for i, text in enumerate(texts):
            if isinstance(text, str) and blank(text):
                raise TextRejected(i, "empty", 0, limit)
            if isinstance(text, str) and (bad := not_unicode(text)):
                raise TextRejected(i, "not-text", 0, limit, bad)
        raw = policy.tokenizer.encode_batch(texts)
        for i, ids in enumerate(raw):
            if not ids:
                raise TextRejected(i, "empty", 0, limit)
            if not truncate and len(ids) > limit:
                raise TextRejected(i, "too-long", len(ids), limit)
        encoded = encode_ids(raw, policy)
        if keep_raw:
            encoded.raw = raw
        return encoded

    def logits_encoded(self, encoded: Encoded, batch_size: int | None = None) -> np.ndarray:
        """Raw class logits of already encoded texts, in passes of `batch_size` texts (None:
        all of them in one pass, as a caller that planned its own passes wants)."""
        if len(encoded) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self._logits(self._padded_as_ours(encoded), batch_size or len(encoded))

    def _logits(self, encoded: Encoded, batch_size: int) -> np.ndarray:
        """The runtime's logits, with the surface head's weighed in (or alone) where the
        model has one: every path from ids to logits goes through here."""
        head = self.surface
        if head is not None and not head.network_weight:
            network = np.zeros((len(encoded), len(self.labels)), dtype=np.float32)
        else:
            network = self.runtime.logits(encoded, batch_size)
        if head is None:
            return network
        texts = read_texts(encoded.ids, encoded.lengths, self.policy.tokenizer)
        return head.combine(network, texts)

    def warm_up(self, max_tokens: int) -> None:
        """Run the passes whose first run would be slow (a CPU builds a kernel per matmul
        shape) for passes of up to `max_tokens` tokens: what a server does before its first
        request. Nothing to do for most runtimes."""
        self.runtime.warm_up(max_tokens)

    def logits(self, texts: Any, batch_size: int = 32, errors: str = "raise") -> np.ndarray:
        """Raw class logits (N, num_classes), in input order (with `long_texts` chunking: the
        logits of the windows' aggregated probabilities).

        texts: a list, tuple, pandas Series, numpy array of strings, a one-column (or
        text-column) DataFrame or a `datasets.Dataset` (see data/inputs.py). errors: what an
        empty, missing or non-string text does: "raise" (the default) stops the call naming
        it; "nan" gives its row NaN and classifies the others (as the CLI does row-wise).
        """
        return self.classify_texts(texts, batch_size, errors)[0]

    def classify_texts(
        self, texts: Any, batch_size: int = 32, errors: str = "raise"
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(logits (N, K), cut (N,) bool: truncated, windows (N,) int: windows read per text).

        Truncating, every text is one window and `cut` marks those longer than the model
        reads; chunking, nothing is cut and `windows` says how many windows each text took.
        Rows of texts refused with errors="nan" are NaN (0 windows).
        """
        checked = self._checked(texts, errors)
        n = len(checked.texts)
        out = np.full((n, len(self.labels)), np.nan, dtype=np.float32)
        cut = np.zeros(n, dtype=bool)
        count = np.zeros(n, dtype=np.int64)
        valid = checked.valid
        if not valid:
            return out, cut, count
        raw = self.policy.tokenizer.encode_batch([checked.texts[i] for i in valid])
        ok = []
        for i, ids in zip(valid, raw, strict=True):
            if ids:
                ok.append((i, ids))
            elif errors == "raise":
                raise TextRejected(i, "empty", 0, self.policy.max_length)
            else:
                checked.invalid[i] = "empty"
        if not ok:
            return out, cut, count
        rows = [i for i, _ in ok]
        ids = [t for _, t in ok]
        if not self.long_texts.chunk:
            encoded = encode_ids(ids, self.policy)
            out[rows] = self._logits(encoded, batch_size)
            cut[rows] = encoded.cut
            count[rows] = 1
        else:
            win = self.windows(ids)
            out[rows] = self.combine_windows(self._logits(win.encoded, batch_size), win)
            count[rows] = win.counts
        return out, cut, count

    def _checked(self, texts: Any, errors: str) -> inputs.CheckedTexts:
        inputs.check_errors(errors)
        checked = inputs.check_texts(inputs.text_items(texts), errors)
        # Whitespace only is empty, as in training, `predict` and the server; a lone
        # surrogate is not text (a tokenizer would replace it quietly).
        limit = self.policy.max_length
        for i in checked.valid:
            text = checked.texts[i]
            if blank(text):
                if errors == "raise":
                    raise TextRejected(i, "empty", 0, limit)
                checked.invalid[i] = "empty"
            elif bad := not_unicode(text):
                if errors == "raise":
                    raise TextRejected(i, "not-text", 0, limit, bad)
                checked.invalid[i] = "not valid Unicode"
        return checked

    @property
    def classes_(self) -> np.ndarray:
        """Class names in column order of `predict_proba` (scikit-learn's name)."""
        return np.array(self.labels, dtype=object)

    def windows(self, raw: Sequence[list[int]]) -> Windows:
        """The windows of tokenized texts under this classifier's `long_texts` settings."""
        return classifier_windows(self, raw)

    def combine_windows(self, logits: np.ndarray, win: Windows) -> np.ndarray:
        """Per-text logits from the logits of `windows(...)`'s rows."""
        return combine_classifier_windows(self, logits, win)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Probabilities from logits: softmax at the temperature, or for multi-label a
        sigmoid per label."""
        if self.multi_label:
            return sigmoid(logits)
        return softmax(logits, self.temperature)

    def label_sets(self, probs: np.ndarray, threshold: float | None = None) -> list[list[str]]:
        """Multi-label: the labels whose probability reaches their threshold, per row (a
        `threshold` given overrides every label's)."""
        cut = self.decision_thresholds(threshold)
        return [
            [name for name, p, t in zip(self.labels, row, cut, strict=True) if p >= t]
            for row in probs
        ]

    def decision_thresholds(self, threshold: float | None = None) -> list[float]:
        """Multi-label: each label's threshold (`threshold` overrides them all)."""
        if threshold is not None:
            if not 0.0 <= threshold <= 1.0:
                raise GPTClassifyError(
                    f"{option('threshold')} must be between 0 and 1, got {threshold}"
                )
            return [float(threshold)] * len(self.labels)
        return list(self.thresholds) if self.thresholds else [0.5] * len(self.labels)

    def proba_encoded(self, encoded: Encoded, batch_size: int = 32) -> np.ndarray:
        """Class probabilities of already encoded texts (see `encode`)."""
        if len(encoded) == 0:
            return np.zeros((0, len(self.labels)))
        logits = self._logits(self._padded_as_ours(encoded), batch_size)
        return self.probabilities(logits)

    def _padded_as_ours(self, encoded: Encoded) -> Encoded:
        """`encoded` padded with this model's padding id (rows gathered from several requests
        arrive without one; the id matters to the `last` pool and must be in the vocabulary)."""
        pad = self.policy.tokenizer.pad_id
        return encoded if encoded.pad_id == pad else dataclasses.replace(encoded, pad_id=pad)

    def predict_proba(self, texts: Any, batch_size: int = 32, errors: str = "raise") -> np.ndarray:
        """Class probabilities (N, num_classes), columns in `self.labels` (`classes_`) order
        (multi-label: each label's own probability; rows need not sum to 1); an invalid
        text's row is NaN with errors="nan" (see `logits`)."""
        with np.errstate(invalid="ignore"):
            return self.probabilities(self.logits(texts, batch_size, errors))

    def predict(
        self, texts: Any, batch_size: int = 32, errors: str = "raise"
    ) -> np.ndarray | list[Any]:
        """Class names, one per text, as a numpy array (object dtype); multi-label: a list of
        lists of labels (maybe empty), each decided at its threshold. An invalid text's entry
        is NaN with errors="nan" (see `logits`)."""
        probs = self.predict_proba(texts, batch_size, errors)
        bad = np.isnan(probs).any(axis=1)
        if self.multi_label:  # lists of labels: a list, as numpy would make them a 2-D array
            sets = self.label_sets(np.nan_to_num(probs))
            return [np.nan if b else s for b, s in zip(bad, sets, strict=True)]
        out = np.empty(len(probs), dtype=object)
        for i, row in enumerate(probs):
            out[i] = np.nan if bad[i] else self.labels[int(row.argmax())]
        return out

    def explain(
        self,
        text: str,
        method: str = "integrated-gradients",
        steps: int = 32,
        target: str | None = None,
    ) -> Explanation:
        """Why `text` gets its label: each token's class probabilities along the text and its
        attribution (integrated gradients or gradient x input); see predict/explain.py.

        `target`: the class to explain (default: the predicted one). Needs the torch runtime.
        """
        if self.runtime.name != "torch":
            raise GPTClassifyError(
                f"explanations need the PyTorch runtime; this classifier runs on "
                f"{self.runtime.name} (load the model folder written by `train` instead)"
            )
        from gptclassify.predict.explain import explain_classifier  # lazy: torch

        return explain_classifier(self, text, method, steps, target)

    def evaluate(
        self,
        data: Any,
        text_column: str | None = None,
        label_column: str | None = None,
        batch_size: int = 32,
        label_columns: str | None = None,
        labels: Any = None,
    ) -> dict[str, Any]:
        """Metrics on a labelled file, the test split of a prepared/run data folder, or data
        in memory: a DataFrame or `datasets.Dataset` with text and label columns (found by
        name, or `text_column` / `label_column`), (texts, labels), or texts with `labels=`.

        Multi-label models read label sets from files, joined by their `label_sep` (or 0/1
        `label_columns`, comma-separated, or JSON lists) and report multi-label metrics at
        their thresholds. With chunking, `chunked` says how many texts took several windows.
        """
        return evaluation.evaluate(
            self, data, text_column, label_column, batch_size, label_columns, labels
        )


RUNTIMES = ("auto", "torch", "onnx")


class _Checksums:
    """sha256 of a folder's weight files, computed in a thread while the runtime's library is
    imported: hashlib releases the GIL, so on two cores verifying the weights costs no
    start-up time beside importing torch, which takes longer than hashing a GPT-2 small folder
    (figures: benchmarks/RESULTS.md, "Figures that left the docstrings")."""

    def __init__(self, directory: Path, names: Sequence[str | None]) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        paths = {name: inside(directory, name) for name in names if name}  # before reading
        self.futures = {name: self.pool.submit(_sha256_or_none, p) for name, p in paths.items()}

    def __enter__(self) -> _Checksums:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True)

    def result(self) -> dict[str, str | None]:
        """File name -> sha256 (None when the file could not be read: the loader reports it)."""
        return {name: future.result() for name, future in self.futures.items()}


def _sha256_or_none(path: Path) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


def choose_runtime(config: ClassifierConfig, runtime: str, directory: Path) -> str:
    """torch or onnx for a folder: what it holds, checked against what was asked for."""
    if runtime not in RUNTIMES:
        raise GPTClassifyError(
            f"{option('runtime')}: {runtime!r} is not one of {', '.join(RUNTIMES)}"
        )
    held = "torch" if config.has_torch_weights else "onnx"
    if runtime in ("auto", held):
        return held
    if held == "onnx":
        raise GPTClassifyError(
            f"{directory} holds an exported ONNX graph and no PyTorch weights: run it with "
            f"{option('runtime', 'onnx')} (or auto), or use the training run it was exported from"
            + (f" ({config.exported_from.path})" if config.exported_from else "")
        )
    raise GPTClassifyError(
        f"{directory} holds PyTorch weights, not an ONNX graph; export it first: "
        f"gptclassify export {directory} --format onnx --out DIR"
    )


def check_onnx_settings(config: ClassifierConfig, device: str, precision: str, where: Path) -> None:
    """An ONNX folder runs on the CPU, in the precision its graph was exported in."""
    graph = config.onnx.precision if config.onnx else "fp32"
    if precision not in ("auto", graph):
        raise GPTClassifyError(
            f"{option('precision', precision)}: {where} holds a {graph} ONNX graph, which runs in "
            f"{graph} (use {option('precision', 'auto')}, or export again with the precision you want)"
        )
    if device not in ("auto", "cpu"):
        raise GPTClassifyError(
            f"{option('device', device)}: the ONNX runtime runs on the CPU (use auto)"
        )
