"""Splitting labelled text: balance, shuffle and cut into train / validation / test.

Randomness is numpy's legacy `RandomState(seed)` used the way pandas' `DataFrame.sample`
uses it, so the SMS recipe picks the same rows, in the same order, as the book's pandas code
does with the same seed. A class id is its index in `Splits.label_names`.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gptclassify.data.multilabel import (
    MULTI,
    SINGLE,
    LabelFormat,
    iterative_split,
    label_matrix,
    label_names_of,
    read_examples,
    set_counts,
)
from gptclassify.data.tables import LabelledTexts, number_clashes, sort_labels
from gptclassify.errors import GPTClassifyError

SPLIT_NAMES = ("train", "validation", "test")
"""The three parts of a prepared folder, each written as `<name>.csv`."""

DEFAULT_FRACTIONS = (0.7, 0.1)
"""Train and validation fractions; the rest (20%) is test."""

VALIDATION_HOLDOUT = 0.1
"""Share of a raw training file held out for validation when no validation file is given."""


@dataclass
class Splits:
    """Train / validation / (optional) test parts and the class order shared by all three."""

    train: LabelledTexts
    """Rows to train on."""
    validation: LabelledTexts
    """Rows for model selection and progress reports."""
    test: LabelledTexts | None
    """Held-out rows for the final score; None when there is no test set."""
    label_names: list[str]
    """Class order: class id = index. Integer labels sort numerically, others as strings."""
    warnings: list[str] = field(default_factory=list)
    """One-line notes for the user, from reading and from splitting."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Where the data came from and how it was split (what dataset.json records)."""
    task: str = SINGLE
    """single-label, or multi-label (each part's `label_sets` holds the labels)."""
    label_sep: str = ";"
    """Multi-label: how a label set is joined in files."""

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI

    def parts(self) -> list[tuple[str, LabelledTexts]]:
        """(name, part) for each part present, in train, validation, test order."""
        named = zip(SPLIT_NAMES, (self.train, self.validation, self.test), strict=True)
        return [(name, part) for name, part in named if part is not None]

    def label_ids(self, part: LabelledTexts) -> list[int] | np.ndarray:
        """Class ids of a part's labels (multi-label: its (N, K) 0/1 float32 matrix); a label
        outside `label_names` is an error."""
        if self.multi_label:
            return label_matrix(part.label_sets or [], self.label_names, part.source)
        index = {name: i for i, name in enumerate(self.label_names)}
        try:
            return [index[label] for label in part.labels]
        except KeyError as exc:
            raise GPTClassifyError(
                f"{part.source}: label {exc.args[0]!r} is not one of the classes "
                f"{', '.join(map(repr, self.label_names))}"
            ) from None

    def fingerprint(self) -> str:
        """sha256 of every (part, label, text) row and the class order: equal fingerprints,
        equal data."""
        digest = hashlib.sha256(json.dumps(self.label_names).encode())
        for name, part in self.parts():
            for text, label in zip(part.texts, part.labels, strict=True):
                digest.update(json.dumps([name, label, text]).encode())
        return digest.hexdigest()

    def rename_labels(self, names: dict[str, str], flag: str = "--label-names") -> Splits:
        """The same rows with classes renamed (`{"0": "ham", "1": "spam"}`), class order
        kept: class 0 stays class 0, now called "ham". Every class needs a name, and every
        name a class of the data."""
        unnamed = [label for label in self.label_names if label not in names]
        if unnamed:
            raise GPTClassifyError(
                f"{flag}: no name for class(es) {', '.join(map(repr, unnamed[:5]))} (the data's "
                f"classes: {', '.join(map(repr, self.label_names))})"
            )
        unused = [key for key in names if key not in self.label_names]
        if unused:
            raise GPTClassifyError(
                f"{flag}: {', '.join(map(repr, unused[:5]))} is not a class of the data (its "
                f"classes: {', '.join(map(repr, self.label_names))})"
            )
        for part in (self.train, self.validation, self.test):
            if part is not None:
                part.labels = [names[label] for label in part.labels]
        self.label_names = [names[label] for label in self.label_names]
        self.meta["renamed_labels"] = dict(names)
        return self

    def duplicates(self) -> dict[str, int]:
        """Texts (exact, after whitespace normalisation) that occur in more than one part:
        {"validation": n, "test": m} counts the rows of that part whose text is also in an
        earlier part (train, or train/validation); parts without any are left out."""
        seen: set[str] = set()
        out: dict[str, int] = {}
        for name, part in self.parts():
            keys = [normalized(text) for text in part.texts]
            if seen:
                shared = sum(1 for key in keys if key in seen)
                if shared:
                    out[name] = shared
            seen.update(keys)
        return out

    def duplicate_warnings(self, source: str) -> list[str]:
        found = self.duplicates()
        if not found:
            return []
        shown = ", ".join(
            f"{n} of {len(getattr(self, name).texts)} {name} texts" for name, n in found.items()
        )
        return [
            f"{source}: {shown} also occur in an earlier split (same text after whitespace "
            "normalisation): scores on them overstate the model; --dedupe removes such "
            "duplicates before splitting"
        ]

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per class for each part: {part: {class: rows}}, every class listed."""
        out = {}
        for name, part in self.parts():
            if self.multi_label:
                out[name] = set_counts(part.label_sets or [], self.label_names)
                continue
            counts = Counter(part.labels)
            out[name] = {label: counts[label] for label in self.label_names}
        return out


# ---- splitting -------------------------------------------------------------------------


def normalized(text: str) -> str:
    """A text with runs of whitespace made one space and the ends stripped: what counts as
    the same text when duplicates are looked for."""
    return " ".join(text.split())


def drop_duplicates(data: LabelledTexts) -> tuple[LabelledTexts, int, int]:
    """The first row of every distinct text (after whitespace normalisation), in order;
    also how many rows were removed and how many of the kept texts had other labels in the
    removed rows (the first label is kept)."""
    first: dict[str, int] = {}
    conflicts: set[str] = set()
    for i, text in enumerate(data.texts):
        key = normalized(text)
        if key not in first:
            first[key] = i
        elif data.labels[first[key]] != data.labels[i]:
            conflicts.add(key)
    keep = sorted(first.values())
    kept = data.subset(keep)
    kept.warnings = list(data.warnings)
    return kept, len(data) - len(keep), len(conflicts)


def parse_label_names(
    spec: str | dict[str, str] | None, flag: str = "--label-names"
) -> dict[str, str] | None:
    """`0=ham,1=spam` (or a dict) as {"0": "ham", "1": "spam"}; None stays None."""
    if spec is None:
        return None
    if isinstance(spec, dict):
        pairs = [(str(k), str(v)) for k, v in spec.items()]
    else:
        pairs = []
        for item in str(spec).split(","):
            key, sep, name = item.partition("=")
            if not sep:
                raise GPTClassifyError(
                    f"{flag} {spec}: {item.strip()!r} is not LABEL=NAME (e.g. 0=ham,1=spam)"
                )
            pairs.append((key.strip(), name.strip()))
    out: dict[str, str] = {}
    for key, name in pairs:
        if not key or not name:
            raise GPTClassifyError(f"{flag}: empty label or name in {spec!r} (e.g. 0=ham,1=spam)")
        if key in out:
            raise GPTClassifyError(f"{flag}: label {key!r} is named twice")
        out[key] = name
    names = list(out.values())
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise GPTClassifyError(f"{flag}: name {twice[0]!r} is given to two labels")
    return out


def check_fractions(fractions: Sequence[float]) -> tuple[float, float]:
    """Validate (train, validation) fractions: both positive, sum below 1 (the rest is test)."""
    shown = " ".join(f"{f:g}" for f in fractions)
    if len(fractions) != 2:
        raise GPTClassifyError(f"--split {shown}: give two fractions, train and validation")
    train, validation = (float(f) for f in fractions)
    if not (train > 0 and validation > 0 and train + validation < 1):
        raise GPTClassifyError(
            f"--split {shown}: fractions must be positive and sum below 1 (the rest is test)"
        )
    return train, validation


SEED_MAX = 2**32 - 1
"""numpy's RandomState takes seeds 0 .. 2**32 - 1."""


def check_seed(seed: Any, flag: str = "--seed") -> int:
    """A seed numpy takes, or one line naming the flag."""
    whole = isinstance(seed, int | np.integer) and not isinstance(seed, bool)
    if not whole or not 0 <= seed <= SEED_MAX:
        raise GPTClassifyError(f"{flag} {seed}: a seed is a whole number from 0 to {SEED_MAX}")
    return int(seed)


def split_labelled(
    data: LabelledTexts,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 123,
    balance: bool = False,
    stratify: bool = False,
    label_sep: str = ";",
    dedupe: bool = False,
) -> Splits:
    """Balance (optional), shuffle and cut one labelled set into train / validation / test.

    `dedupe`: keep only the first row of each text (after whitespace normalisation) before
    anything else; without it, texts that land in more than one part are counted in
    `warnings` (`Splits.duplicates`).

    The book's SMS recipe, generalised to any number of classes:

    - `balance`: every class is undersampled to the size of the rarest one; classes are
      concatenated in class order, an undersampled class in the order sampled, the others
      in file order (for SMS: sampled ham, then all spam, as the book does).
    - shuffle everything with a fresh `RandomState(seed)`;
    - train = the first int(n * train_fraction) rows, validation the next
      int(n * validation_fraction), test the rest.
    - `stratify`: the cut is made per class (same int() rule, at least one row per part for
      classes with three rows or more), each part keeping the shuffled order.

    A class missing from some part is reported in `warnings`. Multi-label data (label sets)
    are always split by iterative stratification (`_split_label_sets`).
    """
    train_frac, val_frac = check_fractions(fractions)
    seed = check_seed(seed)
    if data.label_sets is not None:
        return _split_label_sets(data, (train_frac, val_frac), seed, balance, label_sep)
    removed = conflicting = 0
    if dedupe:
        data, removed, conflicting = drop_duplicates(data)
    label_names = sort_labels(data.labels)
    if len(label_names) < 2:
        raise GPTClassifyError(
            f"{data.source}: only one class ({label_names[0]!r}); a classifier needs at least two"
        )
    indices = np.arange(len(data))
    if balance:
        indices = _undersample(data.labels, label_names, seed)
    # choice(n, n, replace=False) is what pandas' sample(frac=1, random_state=seed) draws.
    shuffle = np.random.RandomState(seed).choice(len(indices), size=len(indices), replace=False)
    order = indices[shuffle]
    n = len(order)
    if stratify:
        parts = _stratified_cut(order, data.labels, label_names, train_frac, val_frac)
    else:
        train_end = int(n * train_frac)
        val_end = train_end + int(n * val_frac)
        parts = [order[:train_end], order[train_end:val_end], order[val_end:]]
    train, validation, test = _parts(data, parts, n, (train_frac, val_frac))
    splits = Splits(
        train,
        validation,
        test,
        label_names,
        warnings=list(data.warnings),
        meta={
            "seed": seed,
            "fractions": [train_frac, val_frac],
            "balance": balance,
            "stratify": stratify,
            "rows_read": len(data) + removed,
            "rows_used": n,
            "duplicates_removed": removed,
        },
    )
    if conflicting:
        splits.warnings.append(
            f"{data.source}: {conflicting} text(s) occur with different labels; the first "
            "row's label was kept"
        )
    splits.warnings += rare_class_warnings(splits, data.source, stratified=stratify)
    splits.warnings += splits.duplicate_warnings(data.source)
    return splits


def _split_label_sets(
    data: LabelledTexts, fractions: tuple[float, float], seed: int, balance: bool, sep: str
) -> Splits:
    """Multi-label: shuffle (seeded), then cut by iterative stratification, so every label's
    share of texts is about the same in train, validation and test (a label set is never
    broken up: a text and all its labels go to one part)."""
    if balance:
        raise GPTClassifyError(
            f"{data.source}: --balance undersamples single-label classes; multi-label data "
            "cannot be balanced that way (use --class-weights balanced when training)"
        )
    names = label_names_of([data])
    if len(names) < 2:
        raise GPTClassifyError(
            f"{data.source}: {len(names)} label(s) in the label sets; a multi-label classifier "
            "needs at least two (with one, train a single-label yes/no classifier)"
        )
    n = len(data)
    order = np.random.RandomState(seed).choice(n, size=n, replace=False)
    y = label_matrix([data.label_sets[i] for i in order], names, data.source)
    parts = [order[p] for p in iterative_split(y, fractions, seed)]
    train, validation, test = _parts(data, parts, n, fractions)
    splits = Splits(
        train,
        validation,
        test,
        names,
        warnings=list(data.warnings),
        meta={
            "seed": seed,
            "fractions": list(fractions),
            "balance": False,
            "stratify": "iterative (multi-label)",
            "rows_read": n,
            "rows_used": n,
        },
        task=MULTI,
        label_sep=sep,
    )
    splits.warnings += rare_class_warnings(splits, data.source, stratified=True)
    return splits


def _undersample(labels: Sequence[str], label_names: list[str], seed: int) -> np.ndarray:
    positions: dict[str, list[int]] = {name: [] for name in label_names}
    for i, label in enumerate(labels):
        positions[label].append(i)
    smallest = min(len(p) for p in positions.values())
    rng = np.random.RandomState(seed)
    kept: list[np.ndarray] = []
    for name in label_names:
        rows = np.asarray(positions[name], dtype=np.intp)
        if len(rows) > smallest:
            # Same draw as pandas' DataFrame.sample(smallest, random_state=seed).
            rows = rows[rng.choice(len(rows), size=smallest, replace=False)]
        kept.append(rows)
    return np.concatenate(kept)


def _stratified_cut(
    order: np.ndarray,
    labels: Sequence[str],
    label_names: list[str],
    train_frac: float,
    val_frac: float,
) -> list[np.ndarray]:
    assignment = np.empty(len(order), dtype=np.intp)
    for name in label_names:
        where = np.flatnonzero([labels[i] == name for i in order])
        m = len(where)
        sizes = [int(m * train_frac), int(m * val_frac)]
        sizes.append(m - sum(sizes))
        if m >= len(sizes):
            # Rounding down can leave a small class out of a part; lend it one row from
            # the largest part so every class is seen in training, validation and test.
            for k in range(len(sizes)):
                if sizes[k] == 0:
                    sizes[int(np.argmax(sizes))] -= 1
                    sizes[k] += 1
        assignment[where] = np.repeat(np.arange(len(sizes)), sizes)
    return [order[assignment == k] for k in range(len(SPLIT_NAMES))]


def check_classes(splits: Splits) -> None:
    """Refuse splits a classifier cannot be trained on honestly: a class that appears only
    in validation or test (the model could never predict it; typically the files label
    differently, 0/1 in one and ham/spam in another), or one number written differently
    in different files ("1" in one, "01" in another: one class or two?)."""
    parts = splits.parts()
    held = {name: _classes_of(part) for name, part in parts}
    for group in number_clashes(splits.label_names):
        where = [
            f"{label!r} in {part.source}"
            for label in group
            for name, part in parts
            if label in held[name]
        ]
        raise GPTClassifyError(
            f"labels {' and '.join(map(repr, group))} are one number written differently "
            f"({', '.join(where)}); write each class the same way in every file"
        )
    trained = held["train"]
    unseen: dict[str, list[str]] = {}
    for name, part in parts[1:]:
        for label in sort_labels(held[name] - trained):
            unseen.setdefault(label, []).append(f"{part.source} ({name})")
    if unseen:
        listed = "; ".join(f"{label!r} in {', '.join(files)}" for label, files in unseen.items())
        raise GPTClassifyError(
            f"class(es) never seen in training: {listed}; the training data "
            f"{splits.train.source} has only {', '.join(map(repr, sort_labels(trained)))}. "
            "Label every file the same way, or add training rows of these classes"
        )


def _classes_of(part: LabelledTexts) -> set[str]:
    """The classes a part holds (multi-label: every label of its label sets)."""
    if part.label_sets is not None:
        return {label for labels in part.label_sets for label in labels}
    return set(part.labels)


def rare_class_warnings(
    splits: Splits, source: str, stratified: bool = False, given: bool = False
) -> list[str]:
    """A line for each class that is missing from some part, with its counts per part.
    `given`: the parts came as files or a prepared folder (no split of ours to stratify)."""
    counts = splits.counts()
    out = []
    for label in splits.label_names:
        per_part = {name: counts[name][label] for name in counts}
        missing = [name for name, count in per_part.items() if count == 0]
        if not missing:
            continue
        total = sum(per_part.values())
        shown = ", ".join(f"{name} {count}" for name, count in per_part.items())
        if given:
            advice = "add examples of it to the files that lack it"
        elif not stratified and total >= len(per_part):
            advice = "use --stratify to put it in every part"
        else:
            advice = "add more examples of it"
        out.append(
            f"{source}: class {label!r} is too rare to appear in "
            f"every part: missing from {', '.join(missing)} ({shown}); {advice}"
        )
    return out


def load_split_files(
    train: str | Path,
    validation: str | Path | None = None,
    test: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    seed: int = 123,
    labels: LabelFormat | None = None,
) -> Splits:
    """Splits from raw files (the training command's --train/--validation/--test).

    Without a validation file, `VALIDATION_HOLDOUT` (10%) of the training rows, drawn with
    `RandomState(seed)`, become the validation part; the rest stay in file order. Class
    order covers the labels of all files.
    """

    labels = labels or LabelFormat()
    seed = check_seed(seed)

    def read(path: str | Path) -> LabelledTexts:
        return read_examples(path, text_column, label_column, fmt, strict, labels)

    train_data = read(train)
    if train_data.label_sets is not None and not labels.says_multi:
        labels = LabelFormat(MULTI, labels.label_sep, labels.label_columns)  # lists: all files
    return splits_from_parts(
        train_data,
        read(validation) if validation is not None else None,
        read(test) if test is not None else None,
        seed,
        label_sep=labels.sep,
    )


def splits_from_parts(
    train_data: LabelledTexts,
    val_data: LabelledTexts | None,
    test_data: LabelledTexts | None,
    seed: int = 123,
    label_sep: str = ";",
) -> Splits:
    """Splits from parts already read (files or tables in memory); without a validation
    part, `VALIDATION_HOLDOUT` of the training rows are held out (seeded)."""
    seed = check_seed(seed)
    train = train_data.source
    warnings = list(train_data.warnings)
    meta: dict[str, Any] = {"train": train, "seed": seed}
    rare = {"given": val_data is not None, "stratified": True}  # a held-out part: no --stratify
    if val_data is not None:
        warnings += val_data.warnings
        meta["validation"] = val_data.source
    else:
        n = len(train_data)
        k = int(n * VALIDATION_HOLDOUT)
        if k == 0:
            raise GPTClassifyError(
                f"{train}: {n} rows are too few to hold out {VALIDATION_HOLDOUT:.0%} for "
                "validation; pass a validation file"
            )
        held = np.random.RandomState(seed).choice(n, size=k, replace=False)
        keep = np.setdiff1d(np.arange(n), held)
        val_data = train_data.subset(held.tolist(), source=f"{train} (held-out validation)")
        train_data = train_data.subset(keep.tolist())
        meta["validation"] = f"{VALIDATION_HOLDOUT:.0%} of train held out (seed {seed})"
    if test_data is not None:
        warnings += test_data.warnings
        meta["test"] = test_data.source
    files = [train_data, val_data] + ([test_data] if test_data else [])
    if train_data.label_sets is not None:
        label_names = label_names_of(files)
        if len(label_names) < 2:
            raise GPTClassifyError(
                f"{train}: {len(label_names)} label(s) in the label sets; a multi-label "
                "classifier needs at least two"
            )
        splits = Splits(
            train_data, val_data, test_data, label_names, warnings, meta, MULTI, label_sep
        )
        splits.warnings += rare_class_warnings(splits, str(train), **rare)
        return splits
    everything = [label for part in files for label in part.labels]
    label_names = sort_labels(everything)
    if len(label_names) < 2:
        raise GPTClassifyError(
            f"{train}: only one class ({label_names[0]!r}); a classifier needs at least two"
        )
    splits = Splits(train_data, val_data, test_data, label_names, warnings, meta)
    splits.warnings += rare_class_warnings(splits, str(train), **rare)
    splits.warnings += splits.duplicate_warnings(str(train))
    return splits


def _parts(
    data: LabelledTexts, parts: list[np.ndarray], n: int, fractions: tuple[float, float]
) -> tuple[LabelledTexts, LabelledTexts, LabelledTexts]:
    """The train / validation / test subsets of `data` at row indices `parts` (cut from `n`
    rows); an empty part is refused, naming the fractions that made it."""
    for name, part in zip(SPLIT_NAMES, parts, strict=True):
        if len(part) == 0:
            raise GPTClassifyError(
                f"{data.source}: {n} rows are too few for --split {fractions[0]:g} "
                f"{fractions[1]:g} (the {name} part would be empty)"
            )
    train, validation, test = (
        data.subset(part.tolist(), source=f"{data.source} ({name} part)")
        for name, part in zip(SPLIT_NAMES, parts, strict=True)
    )
    return train, validation, test
