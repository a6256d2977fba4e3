"""File helpers shared by every stage that writes: atomic replacement and checksums. No torch.

Outputs are written to a temporary name beside their target and renamed into place, so an
interrupted run never leaves a half-written file under the real name. The temporary file
gets the permissions a plain `open()` would give (umask), not the owner-only mode of
`tempfile.mkstemp` or of safetensors' own writer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gptclassify.errors import GPTClassifyError


def default_file_mode() -> int:
    """0o666 minus the process umask: the mode `open(path, "w")` creates files with."""
    mask = os.umask(0)  # the only portable way to read the umask is to set it
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it goes."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def replace_folder(target: str | Path) -> Iterator[Path]:
    """Yield a new empty folder beside `target`; on success it takes `target`'s place.

    Files are written into the temporary folder, which is then renamed to `target` (an old
    `target` is moved aside first and removed after), so readers find the previous complete
    folder or the new complete one, never a mix. On error the temporary folder is removed.
    """
    target = Path(target).resolve()  # "." or "data/" still get a name and a parent
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir (not mkdtemp, which makes it private): the folder gets the usual permissions.
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        move_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def move_into_place(folder: Path, target: Path) -> None:
    """Rename `folder` to `target`. An existing `target` is first moved aside (to
    `.<name>.old-<id>`, put back if the rename fails) and removed after, so readers find the
    previous complete folder or the new one, never a mix."""
    if not target.exists():
        folder.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    try:
        folder.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: str | Path, content: str | bytes) -> None:
    """Write text (UTF-8) or bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content, encoding="utf-8")


def inside(folder: str | Path, *parts: str) -> Path:
    """`folder/parts...`, refused when it leads out of `folder` through a symbolic link (the
    file itself, or a folder on the way): a model or run folder is only ever read and
    written inside itself. `folder` itself may be a link (the user named it).

    Every reader and writer of a model or run folder's files goes through this one check;
    links that stay inside the folder are fine.
    """
    folder = Path(folder)
    path = folder.joinpath(*parts)
    root = folder.resolve()
    real = path.resolve()  # a dangling link resolves to where it points
    if real != root and not real.is_relative_to(root):
        raise GPTClassifyError(
            f"{path}: leads out of {folder} (to {real}) through a symbolic link; files of a "
            "model or run folder must lie inside it (links out are never followed)"
        )
    return path


def check_links(folder: str | Path) -> None:
    """`inside` for every symbolic link anywhere under `folder` (before a whole folder is
    copied or continued, e.g. a run to resume)."""
    folder = Path(folder)
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(top, name)
            if path.is_symlink():
                inside(folder, str(path.relative_to(folder)))


def read_json(path: str | Path, missing: str = "file not found", unique_keys: bool = False) -> Any:
    """Parsed JSON, or a one-line GPTClassifyError naming the file (`missing` says what to do).
    unique_keys: a key given twice in one object is refused (json keeps the last silently)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        if unique_keys:
            return json.loads(text, object_pairs_hook=_unique(str(path)))
        return json.loads(text)
    except FileNotFoundError:
        raise GPTClassifyError(f"{path}: {missing}") from None
    except OSError as exc:
        raise GPTClassifyError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GPTClassifyError(f"{path}: not valid JSON ({exc})") from None


def _unique(where: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) < len(pairs):
            seen: set[str] = set()
            twice = next(k for k, _ in pairs if k in seen or seen.add(k))
            raise GPTClassifyError(f"{where}: key {twice!r} appears twice in one object")
        return out

    return hook


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
