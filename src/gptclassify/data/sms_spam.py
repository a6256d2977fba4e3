"""The SMS Spam Collection: the copy shipped in the package, or a download; parse, prepare.

By default the original file shipped with gptclassify is used (assets/sms_spam_collection,
CC BY 4.0, T. A. Almeida and J. M. Gómez Hidalgo), so the default job needs no network for
its data. `download=True` fetches it from UCI (then the book's mirror) once, and any other
copy can be given as a local zip / file or a URL. Every copy is checked against the sha256
of the original UCI file; a downloaded one is kept in the user cache folder
(`GPTCLASSIFY_CACHE` overrides it), written through a temporary file and a rename, so a
failed or corrupted download leaves nothing behind.

Two parses exist: the correct one, one row per line with quoting off (5,574 rows), and the
book's pandas-default one, where double quotes merge lines (5,572 rows). `book_split` uses
the latter so a reader gets the book's exact 1,045 / 149 / 300 rows.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import zipfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from platformdirs import user_cache_dir
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from gptclassify.data.prepared import write_splits
from gptclassify.data.split import DEFAULT_FRACTIONS, Splits, check_fractions, split_labelled
from gptclassify.data.tables import LabelledTexts, decode_utf8
from gptclassify.errors import GPTClassifyError
from gptclassify.files import atomic_write

log = logging.getLogger(__name__)

SMS_SPAM_URLS = (
    "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
    "https://f001.backblazeb2.com/file/LLMs-from-scratch/sms%2Bspam%2Bcollection.zip",
)
"""Where the zip is downloaded from: UCI first, then the book's mirror."""

SMS_SPAM_SHA256 = "7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d"
"""sha256 of `SMSSpamCollection` (v.1, 477,907 bytes), the file inside the zip."""

SMS_SPAM_MEMBER = "SMSSpamCollection"
"""Name of the data file inside the zip, and of the cached copy."""

SMS_SPAM_LABELS = ("ham", "spam")
"""The two classes; ham -> 0, spam -> 1."""

CACHE_ENV = "GPTCLASSIFY_CACHE"
"""Environment variable naming the cache folder (default: the user cache folder)."""

BOOK_SEED = 123
"""The seed the book uses for undersampling and shuffling."""

_MAX_DOWNLOAD = 64 * 1024 * 1024  # the zip is ~200 kB; anything huge is not it
_RETRY_STATUSES = (429, 500, 502, 503, 504)


def cache_root(override: str | Path | None = None) -> Path:
    """The gptclassify cache folder: `override`, else $GPTCLASSIFY_CACHE, else the user cache."""
    if override is not None:
        return Path(override)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(user_cache_dir("gptclassify"))


def shipped_copy() -> Path:
    """The original SMSSpamCollection shipped inside the package."""
    return Path(
        str(resources.files("gptclassify") / "assets" / "sms_spam_collection" / SMS_SPAM_MEMBER)
    )


def sms_spam_file(
    source: str | None = None,
    cache_dir: str | Path | None = None,
    *,
    download: bool = False,
    urls: Sequence[str] = SMS_SPAM_URLS,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.5,
    progress: bool | None = None,
) -> Path:
    """Path of a verified `SMSSpamCollection`.

    `source` is None (the copy shipped with gptclassify; with `download`, the URLs in `urls`,
    in order, downloaded once into the cache), another URL (a zip or the bare file), or a
    local zip / bare file. Every copy must match `SMS_SPAM_SHA256`.
    `retries` and `backoff` (seconds, doubling) apply to connection errors and 429/5xx
    answers of each URL; `timeout` bounds each connect and read. `progress`: None shows a
    bar only on a terminal.
    """
    cached = cache_root(cache_dir) / "sms_spam_collection" / SMS_SPAM_MEMBER
    if source is None and not download:
        shipped = shipped_copy()
        try:
            _verify(shipped.read_bytes(), shipped)
        except OSError as exc:
            raise GPTClassifyError(
                f"{shipped}: the SMS Spam Collection shipped with gptclassify is missing "
                f"({exc.strerror or exc}); reinstall gptclassify, or pass --download"
            ) from None
        return shipped
    if source is not None and not _is_url(source):
        return _local_copy(Path(source), cached)
    if cached.is_file():
        if _sha256(cached.read_bytes()) == SMS_SPAM_SHA256:
            return cached
        log.warning("%s: cached copy is damaged (checksum mismatch); downloading again", cached)
    candidates = [source] if source is not None else list(urls)
    failures = []
    for i, url in enumerate(candidates):
        try:
            content = _extract(_download(url, timeout, retries, backoff, progress), url)
            _verify(content, url)
        except GPTClassifyError as exc:
            failures.append(str(exc))
            if i + 1 < len(candidates):
                log.warning("%s; trying the next source, %s", exc, candidates[i + 1])
            continue
        _write_atomic(cached, content)
        return cached
    raise GPTClassifyError(
        f"could not download the SMS Spam Collection ({'; '.join(failures)}). To work offline, "
        f"get sms+spam+collection.zip from {SMS_SPAM_URLS[0]} by other means and run "
        "`gptclassify data sms-spam --source PATH` (the zip or the extracted SMSSpamCollection)"
    )


def _is_url(source: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source) is not None


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _verify(content: bytes, where: str | Path) -> None:
    digest = _sha256(content)
    if digest != SMS_SPAM_SHA256:
        raise GPTClassifyError(
            f"{where}: checksum mismatch (sha256 {digest[:16]}..., expected "
            f"{SMS_SPAM_SHA256[:16]}...): not the original SMS Spam Collection v.1"
        )


def _local_copy(path: Path, cached: Path) -> Path:
    if not path.exists():
        raise GPTClassifyError(f"{path}: file not found (--source takes a URL, a zip or the TSV)")
    if not path.is_file():
        raise GPTClassifyError(f"{path}: not a file (--source takes a URL, a zip or the TSV)")
    payload = path.read_bytes()
    content = _extract(payload, path)
    _verify(content, path)
    if content is payload:
        return path
    # The zip's member has to live somewhere as a plain file: the cache.
    _write_atomic(cached, content)
    return cached


def _download(
    url: str, timeout: float, retries: int, backoff: float, progress: bool | None
) -> bytes:
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=_RETRY_STATUSES,
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )
    with requests.Session() as session:
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        try:
            with session.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                total = int(response.headers.get("content-length") or 0) or None
                if total is not None and total > _MAX_DOWNLOAD:
                    raise GPTClassifyError(f"{url}: {total} bytes is far too large for this file")
                buffer = io.BytesIO()
                name = url.rstrip("/").rsplit("/", 1)[-1] or url
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=f"Downloading {name}",
                    disable=None if progress is None else not progress,
                    leave=False,
                ) as bar:
                    for chunk in response.iter_content(chunk_size=64 * 1024):
                        buffer.write(chunk)
                        bar.update(len(chunk))
                        if buffer.tell() > _MAX_DOWNLOAD:
                            raise GPTClassifyError(
                                f"{url}: download is far too large for this file"
                            )
                return buffer.getvalue()
        except requests.RequestException as exc:
            raise GPTClassifyError(f"{url}: {_reason(exc, timeout)}") from None


def _reason(exc: Exception, timeout: float) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}".strip()
    if isinstance(exc, requests.Timeout):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, requests.exceptions.RetryError):
        return "server kept failing (gave up after retries)"
    # urllib3 wraps the OS error several levels deep; its "[Errno N] ..." text is the useful part.
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    if found:
        return found.group(0).strip()
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _extract(payload: bytes, where: str | Path) -> bytes:
    """The data file's bytes from a zip payload, or the payload itself when it is not a zip."""
    if not payload.startswith(b"PK"):
        return payload
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            members = [m for m in archive.namelist() if m.rsplit("/", 1)[-1] == SMS_SPAM_MEMBER]
            if not members:
                raise GPTClassifyError(
                    f"{where}: the zip holds no {SMS_SPAM_MEMBER} "
                    f"(it has {', '.join(archive.namelist()[:5]) or 'nothing'})"
                )
            return archive.read(members[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise GPTClassifyError(f"{where}: damaged zip ({exc})") from None


def _write_atomic(target: Path, content: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, content)
    except OSError as exc:
        raise GPTClassifyError(
            f"{target.parent}: cannot write the cache ({exc.strerror or exc}); set "
            f"{CACHE_ENV} to a writable folder"
        ) from None


def read_sms_spam(path: str | Path, book: bool = False) -> LabelledTexts:
    """Parse `SMSSpamCollection` (label TAB text per line).

    Default: one row per line, quotes taken literally (5,574 rows: 4,827 ham, 747 spam).
    `book=True`: pandas' default quote handling, as the book reads it (5,572 rows; two
    pairs of lines merged), for reproducing the book's split.
    """
    path = Path(path)
    if not path.is_file():
        raise GPTClassifyError(f"{path}: file not found")
    if book:
        decode_utf8(path.read_bytes(), path)  # so bad bytes are reported with their line
        try:
            frame = pd.read_csv(path, sep="\t", header=None, names=["Label", "Text"])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GPTClassifyError(f"{path}: cannot parse as the SMS TSV ({first})") from None
        pairs = list(zip(frame["Label"].tolist(), frame["Text"].tolist(), strict=True))
        refs = [f"data row {i + 1}" for i in range(len(pairs))]
    else:
        text = decode_utf8(path.read_bytes(), path)
        pairs, refs = [], []
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.removesuffix("\r")
            if not line:
                continue
            label, _, message = line.partition("\t")
            pairs.append((label, message))
            refs.append(f"line {number}")
    texts, labels, empty = [], [], []
    for (label, message), ref in zip(pairs, refs, strict=True):
        if label not in SMS_SPAM_LABELS:
            raise GPTClassifyError(
                f"{path}: {ref}: label {label!r} is not ham or spam (expected label<TAB>text)"
            )
        if not isinstance(message, str) or not message.strip():
            empty.append(ref)
            continue
        texts.append(message)
        labels.append(label)
    warnings = [f"{path}: skipped {len(empty)} row(s) with empty text ({', '.join(empty[:5])})"]
    return LabelledTexts(
        texts,
        labels,
        source=str(path),
        skipped_empty=len(empty),
        warnings=warnings if empty else [],
        text_column="text",
        label_column="label",
    )


def prepare_sms_spam(
    out_dir: str | Path | None = None,
    source: str | None = None,
    seed: int = BOOK_SEED,
    book_split: bool = False,
    balance: bool = True,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    download: bool = False,
    cache_dir: str | Path | None = None,
    dedupe: bool = False,
    label_names: dict[str, str] | None = None,
    **fetch: Any,
) -> Splits:
    """Get, parse, balance, shuffle and split the SMS Spam Collection.

    The book's recipe: undersample ham to the spam count (seed 123), shuffle (seed 123), cut
    70% / 10% / 20% by truncating len * fraction. Returns the splits (label_names ["ham",
    "spam"]); with `out_dir`, also writes them there (see `write_splits`). `book_split`
    reproduces the book's 1,045 / 149 / 300 rows exactly: it needs the book's balancing and
    fractions, and always splits with the book's seed 123 (another `seed` is noted in
    `warnings`). `source`, `download`, `cache_dir` and `fetch` (timeout, retries, backoff,
    progress) go to `sms_spam_file`. `dedupe`: one row per distinct message before
    balancing (the collection repeats some; not with `book_split`). `label_names`: classes
    renamed ({"ham": "ok"}), order kept.
    """
    fractions = check_fractions(fractions)  # before any download
    notes = []
    if book_split:
        if not balance or fractions != DEFAULT_FRACTIONS:
            raise GPTClassifyError(
                "--book-split reproduces the book's split exactly (balanced, --split 0.7 0.1); "
                "drop --no-balance/--split or drop --book-split"
            )
        if seed != BOOK_SEED:
            # Not an error: the training command passes its own seed, which still
            # governs training; only the data split is pinned to the book's.
            notes.append(
                f"--book-split uses the book's seed {BOOK_SEED} for the split; seed {seed} "
                "does not change it"
            )
            seed = BOOK_SEED
        if dedupe:
            raise GPTClassifyError(
                "--dedupe changes the rows; --book-split reproduces the book's: choose one"
            )
    path = sms_spam_file(source, cache_dir, download=download, **fetch)
    data = read_sms_spam(path, book=book_split)
    splits = split_labelled(data, fractions, seed=seed, balance=balance, dedupe=dedupe)
    if label_names is not None:
        splits.rename_labels(label_names)
    splits.warnings = notes + splits.warnings
    splits.meta = {
        "dataset": "sms-spam",
        "source": source
        if source is not None
        else (SMS_SPAM_URLS[0] if download else "copy shipped with gptclassify"),
        "sha256": SMS_SPAM_SHA256,
        "parse": (
            "book: pandas default quoting (lines with quotes merged)"
            if book_split
            else "one row per line, quoting off"
        ),
        "book_split": book_split,
        "rows_parsed": len(data),
        "class_counts_parsed": data.class_counts(),
        **splits.meta,
    }
    if out_dir is not None:
        write_splits(splits, out_dir, splits.meta)
    return splits
