"""The SMS Spam Collection: parse counts, the recipe and the book's split, and the download.

Downloads go to a local HTTP server on 127.0.0.1 serving zips built from the shared file;
nothing here touches the network.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import socket
import threading
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from gptclassify.cli import cli
from gptclassify.data import load_prepared, split_labelled
from gptclassify.data.sms_spam import (
    SMS_SPAM_SHA256,
    SMS_SPAM_URLS,
    cache_root,
    prepare_sms_spam,
    read_sms_spam,
    shipped_copy,
    sms_spam_file,
)
from gptclassify.errors import GPTClassifyError

# The download path (--download / a URL): no retries or waits against the local server.
FAST = {"download": True, "retries": 0, "backoff": 0.0, "timeout": 5.0, "progress": False}


def rows(part) -> list[tuple[str, str]]:
    return list(zip(part.texts, part.labels, strict=True))


# ---- parsing ---------------------------------------------------------------------------


def test_correct_parse_counts_and_matches_pandas_quote_none(sms_file):
    data = read_sms_spam(sms_file)
    assert len(data) == 5574
    assert data.class_counts() == {"ham": 4827, "spam": 747}
    assert data.skipped_empty == 0 and data.warnings == []
    ref = pd.read_csv(
        sms_file,
        sep="\t",
        header=None,
        names=["label", "text"],
        quoting=csv.QUOTE_NONE,
        dtype=str,
        na_filter=False,
    )
    assert data.texts == ref["text"].tolist()
    assert data.labels == ref["label"].tolist()


def test_book_parse_merges_quoted_lines(sms_file):
    book = read_sms_spam(sms_file, book=True)
    correct = read_sms_spam(sms_file)
    assert len(book) == 5572
    assert book.class_counts() == {"ham": 4825, "spam": 747}
    # The two lost rows are swallowed whole into an earlier message that opened a quote.
    assert sum(t.count("\n") for t in book.texts) == 2
    assert not any("\n" in t for t in correct.texts)
    assert sum(t.startswith('"') for t in correct.texts) > sum(
        t.startswith('"') for t in book.texts
    )


def test_read_sms_spam_rejects_other_labels(tmp_path):
    path = tmp_path / "SMSSpamCollection"
    path.write_text("ham\thello\nspam\tbuy now\nmaybe\twhat\n", encoding="utf-8")
    with pytest.raises(GPTClassifyError, match=r"line 3: label 'maybe' is not ham or spam"):
        read_sms_spam(path)


def test_read_sms_spam_skips_empty_messages_with_count(tmp_path):
    path = tmp_path / "SMSSpamCollection"
    path.write_text("ham\thello\nspam\t  \nspam\tbuy now\n", encoding="utf-8")
    data = read_sms_spam(path)
    assert data.texts == ["hello", "buy now"]
    assert data.skipped_empty == 1
    assert "skipped 1 row(s) with empty text (line 2)" in data.warnings[0]


# ---- the recipe ------------------------------------------------------------------------


def test_default_recipe_counts_and_files(sms_file, tmp_path):
    out = tmp_path / "sms"
    splits = prepare_sms_spam(out, source=str(sms_file), cache_dir=tmp_path / "cache")
    assert splits.label_names == ["ham", "spam"]
    assert [len(p) for _, p in splits.parts()] == [1045, 149, 300]
    totals = {label: sum(c[label] for c in splits.counts().values()) for label in ("ham", "spam")}
    assert totals == {"ham": 747, "spam": 747}  # 1,494 balanced rows
    ids = splits.label_ids(splits.test)
    assert ids == [0 if label == "ham" else 1 for label in splits.test.labels]
    # Every spam message kept exactly once (the collection has duplicate texts: compare
    # multisets), and the ham rows a subset of the parsed ham.
    all_rows = rows(splits.train) + rows(splits.validation) + rows(splits.test)
    parsed = Counter(rows(read_sms_spam(sms_file)))
    assert Counter(r for r in all_rows if r[1] == "spam") == +Counter(
        {r: n for r, n in parsed.items() if r[1] == "spam"}
    )
    assert not Counter(all_rows) - parsed

    assert sorted(p.name for p in out.iterdir()) == [
        "dataset.json",
        "test.csv",
        "train.csv",
        "validation.csv",
    ]
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["sha256"] == SMS_SPAM_SHA256
    assert meta["seed"] == 123 and meta["book_split"] is False
    assert meta["label_names"] == ["ham", "spam"]
    assert meta["rows"] == {"train": 1045, "validation": 149, "test": 300}
    assert meta["rows_parsed"] == 5574
    assert meta["class_counts"]["train"] == splits.counts()["train"]
    train_csv = pd.read_csv(out / "train.csv", dtype=str, na_filter=False)
    assert list(train_csv.columns) == ["text", "label"]
    assert set(train_csv["label"]) == {"ham", "spam"}
    reloaded = load_prepared(out)
    for (_, a), (_, b) in zip(reloaded.parts(), splits.parts(), strict=True):
        assert rows(a) == rows(b)


def book_procedure(path: Path, quoting: int = csv.QUOTE_MINIMAL) -> list[pd.DataFrame]:
    """Chapter 6's data preparation, as the book writes it (QUOTE_MINIMAL is its default)."""
    df = pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"], quoting=quoting)
    num_spam = df[df["Label"] == "spam"].shape[0]
    ham_subset = df[df["Label"] == "ham"].sample(num_spam, random_state=123)
    balanced = pd.concat([ham_subset, df[df["Label"] == "spam"]])
    balanced["Label"] = balanced["Label"].map({"ham": 0, "spam": 1})
    balanced = balanced.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(balanced) * 0.7)
    validation_end = train_end + int(len(balanced) * 0.1)
    return [balanced[:train_end], balanced[train_end:validation_end], balanced[validation_end:]]


def test_book_split_equals_the_books_procedure_row_for_row(sms_file, tmp_path):
    out = tmp_path / "book"
    splits = prepare_sms_spam(out, source=str(sms_file), book_split=True)
    expected = book_procedure(sms_file)
    assert [len(f) for f in expected] == [1045, 149, 300]
    for (name, part), frame in zip(splits.parts(), expected, strict=True):
        assert part.texts == frame["Text"].tolist(), name
        assert splits.label_ids(part) == frame["Label"].tolist(), name
    # The written files carry the same rows, readable by plain pandas as the book reads CSVs.
    written = pd.read_csv(out / "train.csv")
    assert written["text"].tolist() == expected[0]["Text"].tolist()
    assert written["label"].map({"ham": 0, "spam": 1}).tolist() == expected[0]["Label"].tolist()
    assert json.loads((out / "dataset.json").read_text())["rows_parsed"] == 5572


def test_default_split_is_the_book_recipe_on_the_correct_parse(sms_file):
    splits = prepare_sms_spam(source=str(sms_file))
    expected = book_procedure(sms_file, quoting=csv.QUOTE_NONE)
    for (_, part), frame in zip(splits.parts(), expected, strict=True):
        assert part.texts == frame["Text"].tolist()
        assert splits.label_ids(part) == frame["Label"].tolist()
    book = prepare_sms_spam(source=str(sms_file), book_split=True)
    assert rows(book.train) != rows(splits.train)


def test_split_is_deterministic_and_depends_on_seed(sms_file):
    a = prepare_sms_spam(source=str(sms_file), seed=123)
    b = prepare_sms_spam(source=str(sms_file), seed=123)
    c = prepare_sms_spam(source=str(sms_file), seed=7)
    assert all(rows(x) == rows(y) for (_, x), (_, y) in zip(a.parts(), b.parts(), strict=True))
    assert [len(p) for _, p in c.parts()] == [1045, 149, 300]
    assert rows(c.train) != rows(a.train)
    assert set(rows(c.train)) != set(rows(a.train))  # other ham rows, not just another order


def test_no_balance_and_custom_fractions(sms_file):
    splits = prepare_sms_spam(source=str(sms_file), balance=False)
    assert [len(p) for _, p in splits.parts()] == [3901, 557, 1116]
    totals = {k: sum(c[k] for c in splits.counts().values()) for k in ("ham", "spam")}
    assert totals == {"ham": 4827, "spam": 747}
    custom = prepare_sms_spam(source=str(sms_file), fractions=(0.8, 0.1))
    assert [len(p) for _, p in custom.parts()] == [1195, 149, 150]


def test_book_split_refuses_other_recipes_and_pins_seed(sms_file):
    with pytest.raises(GPTClassifyError, match="--book-split"):
        prepare_sms_spam(source=str(sms_file), book_split=True, balance=False)
    with pytest.raises(GPTClassifyError, match="--book-split"):
        prepare_sms_spam(source=str(sms_file), book_split=True, fractions=(0.8, 0.1))
    pinned = prepare_sms_spam(source=str(sms_file), book_split=True, seed=5)
    book = prepare_sms_spam(source=str(sms_file), book_split=True)
    assert rows(pinned.train) == rows(book.train)
    assert any("seed 5 does not change it" in w for w in pinned.warnings)


def test_bad_fractions_fail_before_any_download(tmp_path):
    with pytest.raises(GPTClassifyError, match=r"--split 0.8 0.2: .*sum below 1"):
        prepare_sms_spam(source="http://127.0.0.1:9/never", fractions=(0.8, 0.2))


def test_balanced_recipe_matches_split_labelled(sms_file):
    # prepare_sms_spam is the generic splitter applied to the parse, nothing more.
    data = read_sms_spam(sms_file)
    direct = split_labelled(data, (0.7, 0.1), seed=123, balance=True)
    via = prepare_sms_spam(source=str(sms_file))
    assert rows(direct.test) == rows(via.test)


# ---- download --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sms_bytes(sms_file) -> bytes:
    return sms_file.read_bytes()


def make_zip(member: bytes, name: str = "SMSSpamCollection") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme", "SMS Spam Collection v.1\n")
        archive.writestr(name, member)
    return buffer.getvalue()


class Server:
    """Serves fixed (status, body) routes on 127.0.0.1 and counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[int, bytes]]] = {}
        self.hits: dict[str, int] = {}
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                hits[self.path] = hits.get(self.path, 0) + 1
                answers = routes.get(self.path, [(404, b"not found")])
                # Each answer is used once, the last one forever.
                status, body = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str, *answers: tuple[int, bytes]) -> str:
        if answers:
            self.routes[path] = list(answers)
        return self.base + path


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/sms.zip"


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_primary_404_falls_back_to_mirror(server, sms_bytes, tmp_path, caplog):
    primary = server.url("/uci.zip")  # no route: 404
    mirror = server.url("/mirror.zip", (200, make_zip(sms_bytes)))
    path = sms_spam_file(cache_dir=tmp_path, urls=(primary, mirror), **FAST)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SMS_SPAM_SHA256
    assert path.is_relative_to(tmp_path)
    assert server.hits == {"/uci.zip": 1, "/mirror.zip": 1}
    assert "HTTP 404" in caplog.text and "trying" in caplog.text
    assert files_under(tmp_path) == ["sms_spam_collection/SMSSpamCollection"]


def test_connection_refused_falls_back_quickly(server, sms_bytes, refused_url, tmp_path):
    import time

    mirror = server.url("/mirror.zip", (200, make_zip(sms_bytes)))
    start = time.perf_counter()
    path = sms_spam_file(cache_dir=tmp_path, urls=(refused_url, mirror), **FAST)
    assert time.perf_counter() - start < 5
    assert path.read_bytes() == sms_bytes
    assert server.hits == {"/mirror.zip": 1}


def test_corrupted_payload_is_rejected_and_nothing_is_left(server, sms_bytes, tmp_path):
    corrupted = bytearray(sms_bytes)
    corrupted[1000] ^= 1  # one flipped bit
    bad = server.url("/bad.zip", (200, make_zip(bytes(corrupted))))
    html = server.url("/page.html", (200, b"<html>moved</html>"))
    with pytest.raises(GPTClassifyError) as info:
        sms_spam_file(cache_dir=tmp_path, urls=(bad, html), **FAST)
    message = str(info.value)
    assert message.count("checksum mismatch") == 2
    assert "--source PATH" in message and "\n" not in message
    assert files_under(tmp_path) == []


def test_damaged_zip_falls_back(server, sms_bytes, tmp_path):
    broken = server.url("/broken.zip", (200, make_zip(sms_bytes)[:300]))
    good = server.url("/good.zip", (200, make_zip(sms_bytes)))
    path = sms_spam_file(cache_dir=tmp_path, urls=(broken, good), **FAST)
    assert path.read_bytes() == sms_bytes
    with pytest.raises(GPTClassifyError, match="damaged zip"):
        sms_spam_file(source=broken, cache_dir=tmp_path / "other", **FAST)


def test_zip_without_the_member_is_rejected(server, sms_bytes, tmp_path):
    url = server.url("/other.zip", (200, make_zip(sms_bytes, name="something.txt")))
    with pytest.raises(GPTClassifyError, match="holds no SMSSpamCollection"):
        sms_spam_file(source=url, cache_dir=tmp_path, **FAST)


def test_all_sources_failing_says_how_to_work_offline(server, refused_url, tmp_path):
    missing = server.url("/gone.zip")
    with pytest.raises(GPTClassifyError) as info:
        sms_spam_file(cache_dir=tmp_path, urls=(missing, refused_url), **FAST)
    message = str(info.value)
    assert "HTTP 404" in message and "Connection refused" in message
    assert "--source PATH" in message and SMS_SPAM_URLS[0] in message
    assert files_under(tmp_path) == []


def test_server_errors_are_retried(server, sms_bytes, tmp_path):
    url = server.url("/flaky.zip", (503, b"busy"), (200, make_zip(sms_bytes)))
    path = sms_spam_file(cache_dir=tmp_path, urls=(url,), **{**FAST, "retries": 2})
    assert path.read_bytes() == sms_bytes
    assert server.hits == {"/flaky.zip": 2}


def test_cache_is_reused(server, sms_bytes, refused_url, tmp_path):
    url = server.url("/uci.zip", (200, make_zip(sms_bytes)))
    first = sms_spam_file(cache_dir=tmp_path, urls=(url,), **FAST)
    second = sms_spam_file(cache_dir=tmp_path, urls=(url,), **FAST)
    offline = sms_spam_file(cache_dir=tmp_path, urls=(refused_url,), **FAST)
    assert first == second == offline
    assert server.hits == {"/uci.zip": 1}


def test_damaged_cache_is_downloaded_again(server, sms_bytes, tmp_path):
    cached = tmp_path / "sms_spam_collection" / "SMSSpamCollection"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(sms_bytes[:1000])
    url = server.url("/uci.zip", (200, make_zip(sms_bytes)))
    assert sms_spam_file(cache_dir=tmp_path, urls=(url,), **FAST).read_bytes() == sms_bytes
    assert server.hits == {"/uci.zip": 1}


def test_source_url_serving_the_bare_file(server, sms_bytes, tmp_path):
    url = server.url("/SMSSpamCollection", (200, sms_bytes))
    assert sms_spam_file(source=url, cache_dir=tmp_path, **FAST).read_bytes() == sms_bytes


def test_local_sources(sms_file, sms_bytes, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTCLASSIFY_CACHE", str(tmp_path / "env-cache"))
    assert cache_root() == tmp_path / "env-cache"
    # A bare file is used in place, after the checksum.
    assert sms_spam_file(source=str(sms_file)) == sms_file
    assert not (tmp_path / "env-cache").exists()
    # A zip is extracted into the cache.
    zipped = tmp_path / "sms+spam+collection.zip"
    zipped.write_bytes(make_zip(sms_bytes))
    path = sms_spam_file(source=str(zipped))
    assert path == tmp_path / "env-cache" / "sms_spam_collection" / "SMSSpamCollection"
    assert path.read_bytes() == sms_bytes
    edited = tmp_path / "edited"
    edited.write_bytes(sms_bytes.replace(b"ham\t", b"ham \t", 1))
    with pytest.raises(GPTClassifyError, match=r"edited: checksum mismatch"):
        sms_spam_file(source=str(edited))
    with pytest.raises(GPTClassifyError, match=r"nope\.zip: file not found"):
        sms_spam_file(source=str(tmp_path / "nope.zip"))


# ---- command line ----------------------------------------------------------------------


def test_cli_sms_spam_writes_folder_and_prints_table(sms_file, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTCLASSIFY_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    args = ["data", "sms-spam", "--source", str(sms_file)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    out = tmp_path / "data" / "sms-spam"  # the documented default, relative to cwd
    assert (out / "train.csv").is_file() and (out / "dataset.json").is_file()
    table = [line for line in res.output.splitlines() if "│" in line]
    cells = {line.split("│")[1].strip(): line.split("│")[-2].strip() for line in table}
    assert cells == {"train": "1045", "validation": "149", "test": "300", "all": "1494"}
    assert "ham" in res.output and "spam" in res.output
    # A second run replaces its own folder.
    again = CliRunner().invoke(cli, [*args, "--book-split"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "dataset.json").read_text())["book_split"] is True
    book = book_procedure(sms_file)
    assert pd.read_csv(out / "test.csv")["text"].tolist() == book[2]["Text"].tolist()


def test_cli_sms_spam_errors_are_one_line(sms_file, tmp_path, monkeypatch):
    monkeypatch.setenv("GPTCLASSIFY_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "copy"
    bad.write_bytes(sms_file.read_bytes() + b"ham\textra\n")
    cases = [
        (["--source", str(tmp_path / "missing.zip")], "missing.zip: file not found"),
        (["--source", str(bad)], "checksum mismatch"),
        (["--source", str(sms_file), "--split", "0.9", "0.1"], "sum below 1"),
        (["--source", str(sms_file), "--book-split", "--no-balance"], "--book-split"),
    ]
    for extra, expected in cases:
        res = CliRunner().invoke(cli, ["data", "sms-spam", "--out", str(tmp_path / "o"), *extra])
        assert res.exit_code == 1, res.output
        assert res.output.startswith("Error: ") and expected in res.output
        assert len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    both = CliRunner().invoke(cli, ["data", "sms-spam", "--source", str(sms_file), "--download"])
    assert both.exit_code == 1 and "choose one" in both.output


def test_the_shipped_copy_is_the_default_and_is_verified(tmp_path, monkeypatch):
    # No source and no --download: the copy inside the package, no network, no cache writes.
    monkeypatch.setenv("GPTCLASSIFY_CACHE", str(tmp_path / "cache"))
    path = sms_spam_file(urls=("http://127.0.0.1:9/never",))
    assert path == shipped_copy()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SMS_SPAM_SHA256
    assert not (tmp_path / "cache").exists()
    splits = prepare_sms_spam()
    assert [len(p) for _, p in splits.parts()] == [1045, 149, 300]
    assert splits.meta["source"] == "copy shipped with gptclassify"
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["data", "sms-spam"])
    assert res.exit_code == 0, res.output
    assert len((tmp_path / "data" / "sms-spam" / "test.csv").read_text().splitlines()) > 300
