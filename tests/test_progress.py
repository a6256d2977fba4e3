"""Progress of the long stages: a bar on a terminal, plain lines (never carriage-return
frames) in a log, nothing unless asked."""

from __future__ import annotations

import io

import pytest
import torch

from conftest import TINY
from gptclassify import progress
from gptclassify.classifier import GPTClassifier
from gptclassify.data.batches import TokenSource
from gptclassify.data.encode import Encoded, tokenize
from gptclassify.model import GPTModel


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def every_update(monkeypatch):
    monkeypatch.setenv("GPTCLASSIFY_PROGRESS_EVERY", "0")  # a line per update, not per 20 s


def test_a_log_gets_plain_lines_with_count_rate_and_time_left(every_update):
    log = io.StringIO()
    with progress.reporting(), progress.stage("frozen-prefix pass", 4, "text", file=log) as bar:
        for _ in range(4):
            bar.update(1)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0].startswith("frozen-prefix pass: 1/4 texts (25%), ")
    assert "texts/s" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("frozen-prefix pass: 4 texts in ")  # the closing line


def test_a_log_gets_a_line_per_interval_not_per_update(monkeypatch):
    monkeypatch.setenv("GPTCLASSIFY_PROGRESS_EVERY", "3600")
    log = io.StringIO()
    with progress.reporting(), progress.stage("tokenizing", 1000, "text", file=log) as bar:
        for _ in range(1000):
            bar.update(1)
    assert log.getvalue() == ""  # a stage shorter than the interval leaves the log alone


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    monkeypatch.setattr(progress, "TTY_DELAY_S", 0)
    tty = Terminal()
    with (
        progress.reporting(),
        progress.stage("reading x.gguf", 2e6, "B", scale=True, file=tty) as bar,
    ):
        bar.update(1e6)
        bar.update(1e6)
    out = tty.getvalue()
    assert "\r" in out and "reading x.gguf" in out and "B/s" in out  # tqdm's frames, a rate


def test_nothing_is_shown_unless_asked(every_update, capsys):
    log = io.StringIO()
    with progress.stage("quiet", 3, file=log) as bar:  # outside reporting(): a library call
        bar.update(3)
    with progress.reporting(False), progress.stage("quiet", 3, file=log) as bar:
        bar.update(3)
    assert log.getvalue() == ""
    assert not progress.is_reporting()
    with progress.reporting():
        assert progress.is_reporting()
        with progress.reporting(False):
            assert not progress.is_reporting()
    assert not progress.is_reporting()


def test_resumed_work_counts_from_where_it_was(every_update):
    log = io.StringIO()
    bar = progress.make("train", 10, "step", file=log, enabled=True, initial=6)
    bar.update(1)
    bar.set_postfix(loss="0.412", refresh=False)  # tqdm's call, as the training bar makes it
    bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("train: 7/10 steps (70%)")
    assert lines[1].startswith("train: 8/10 steps (80%)") and lines[1].endswith("loss 0.412")
    assert lines[-1].startswith("train: 8 steps in ")


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3725, "1h02m")]
)
def test_durations_read_as_people_write_them(seconds, shown):
    assert progress.duration(seconds) == shown


def test_the_frozen_prefix_pass_and_tokenizing_report_to_a_log(every_update, capsys):
    """The stage that ran 8 minutes silent: under reporting(), to a stderr that is not a
    terminal (pytest's capture), plain lines and no carriage return."""
    from gptclassify.training.prefix_cache import compute_prefix_source

    texts = ["hello there"] * 5 + ["a longer text with more tokens in it"] * 5
    model = GPTClassifier(GPTModel(TINY), 2)
    with progress.reporting():
        ids = tokenize(texts).ids
        compute_prefix_source(model, TokenSource(Encoded.unlabelled(ids), torch.device("cpu")), 1)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "tokenizing: 10 texts in " in err
    # counted in tokens (length-sorted passes start with the longest texts)
    tokens = sum(len(i) for i in ids)
    assert f"frozen-prefix pass (blocks 0-0): {tokens} tokens in " in err
