"""The run folder: claimed safely, worked on beside its final name, published in one rename.

A run called RUN works in `RUN.partial/` (train.log, data/, checkpoints/, and at the end the
model files). When everything is written, that folder is renamed to RUN (an old RUN, when
--overwrite allows it, is moved aside first and removed after), and then its checkpoints are
removed (unless --final-checkpoints keep). So RUN is always either the previous complete
model folder or the new complete one, never a mix, and a killed run leaves its work, with
its checkpoints, in RUN.partial, where `--resume RUN` continues it.

A run owns its folder while it lives: it holds an exclusive `flock` on `.RUN.lock` beside
it (holding its pid, for messages), so a second run into the same --out, with or without
--overwrite, or a second --resume, is refused naming the live process instead of replacing
or removing what the first is writing. The kernel drops the lock when its process dies, so a
killed run never leaves it stuck.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gptclassify.artifact import FORMAT_CLASSIFIER, check_target, folder_kind
from gptclassify.errors import GPTClassifyError, option
from gptclassify.files import atomic_write, check_links, move_into_place
from gptclassify.training.checkpoint import CHECKPOINTS, latest_checkpoint

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there do not guard their folder
    fcntl = None  # type: ignore[assignment]

PARTIAL = ".partial"
CONTINUED = ("train.log", "mlflow.json", "tensorboard")
"""What a finished run trained longer takes over besides its checkpoints."""
RUN_FILE = "run.json"
"""In checkpoints/: the run's TrainConfig and what it was started on, for --resume."""


@dataclass
class RunFolder:
    final: Path
    """Where the model folder appears when the run is done."""
    work: Path
    """Where the run writes until then (final + '.partial')."""
    made: tuple[Path, ...] = ()
    """Parent folders this claim created (e.g. `runs/`), removed again by `discard` when
    empty: a run that fails early leaves nothing behind."""
    lock: RunLock | None = None
    """This process's ownership of the run (None on the ranks that do not write)."""
    copied: Path | None = None
    """A finished run resumed: the newest checkpoint of the copy `work` was made with (the
    copy goes again when the resume ends without a checkpoint of its own)."""

    @property
    def checkpoints(self) -> Path:
        return self.work / CHECKPOINTS

    # ---- claiming ---------------------------------------------------------------------

    @classmethod
    def new(cls, out: str | None, overwrite: bool = False) -> RunFolder:
        """Claim the work folder of a new run (runs/<timestamp> when `out` is None)."""
        if out is None:
            return cls._claim_default()
        final = Path(out)
        if final.exists() and not final.is_dir():
            raise GPTClassifyError(f"{option('out', final)}: exists and is not a folder")
        made = _missing_parents(_work_path(final))
        lock = RunLock.take(final, "out")  # before anything is looked at or removed
        try:
            _check_target(final, overwrite)
            work = _work_path(final)
            if work.exists():
                if not overwrite:
                    raise GPTClassifyError(
                        f"{work}: holds an unfinished run; continue it with "
                        f"{option('resume', final)}, or start over with "
                        f"{option('overwrite', True)}"
                    )
                shutil.rmtree(work)
            _clean_leftovers(final)
            _mkdir(work, exist_ok=False)
        except BaseException:
            lock.release()
            _remove_empty(made)
            raise
        return cls(final, work, made, lock)

    @classmethod
    def _claim_default(cls) -> RunFolder:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            final = Path("runs") / (stamp if n == 1 else f"{stamp}-{n}")
            if final.exists():
                continue
            made = _missing_parents(_work_path(final))
            try:  # mkdir is the claim: two runs started in the same second get two names
                _mkdir(_work_path(final), exist_ok=False)
            except FileExistsError:
                continue
            return cls(final, _work_path(final), made, RunLock.take(final, "out"))
        raise GPTClassifyError(f"runs/{stamp}: too many runs started this second")

    @classmethod
    def resume(cls, run: str | Path) -> RunFolder:
        """The work folder of a run to continue: its .partial, or one made from a finished
        run's checkpoints (to train more epochs)."""
        final = Path(run)
        if final.name.endswith(PARTIAL):
            final = final.with_name(final.name[: -len(PARTIAL)])
        work = _work_path(final)
        if not work.is_dir() and not final.is_dir():
            raise GPTClassifyError(
                f"{final}: no run to resume here (expected {work} or {final / CHECKPOINTS})"
            )
        lock = RunLock.take(final, "resume")
        try:
            return cls._reopen(final, work, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _reopen(cls, final: Path, work: Path, lock: RunLock) -> RunFolder:
        _clean_leftovers(final)
        if work.is_dir():
            check_links(work)  # a resumed run reads and appends only inside its folder
            if not (work / CHECKPOINTS / RUN_FILE).is_file():
                raise GPTClassifyError(
                    f"{work}: no checkpoint to resume from (the run stopped before its first "
                    f"step); start it again with {option('overwrite', True)}"
                )
            return cls(final, work, lock=lock)
        if not (final / CHECKPOINTS / RUN_FILE).is_file():
            raise GPTClassifyError(
                f"{final}: no run to resume here (expected {work} or {final / CHECKPOINTS})"
            )
        check_links(final)  # a longer run reads and appends only inside the folder
        if latest_checkpoint(final) is None:
            raise GPTClassifyError(
                f"{final}: a finished run whose checkpoints were removed when it was published; "
                "it cannot train longer (train it again with "
                f"{option('final_checkpoints', 'keep')} to keep them)"
            )
        # A finished run: continue in a copy, so the published folder stays as it is until
        # the longer run is published in its place.
        staging = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.copytree(final / CHECKPOINTS, staging / CHECKPOINTS)
        # The log, and what --report-to continues (the MLflow run, the TensorBoard events).
        for name in CONTINUED:
            if (final / name).is_file():
                shutil.copy2(final / name, staging / name)
            elif (final / name).is_dir():
                shutil.copytree(final / name, staging / name)
        staging.rename(work)
        return cls(final, work, lock=lock, copied=latest_checkpoint(work))

    @classmethod
    def at(cls, final: Path) -> RunFolder:
        """The paths of a run claimed by another process (no file is touched)."""
        return cls(final, _work_path(final))

    @staticmethod
    def peek_config(run: str | Path) -> dict[str, Any]:
        """The recorded TrainConfig of a run to resume, read without changing anything ({}
        when there is none: resume then says why)."""
        final = Path(run)
        if final.name.endswith(PARTIAL):
            final = final.with_name(final.name[: -len(PARTIAL)])
        for folder in (_work_path(final), final):
            path = folder / CHECKPOINTS / RUN_FILE
            if path.is_file():
                try:
                    return json.loads(path.read_text(encoding="utf-8")).get("train_config", {})
                except (OSError, ValueError):
                    return {}
        return {}

    # ---- the run's record -------------------------------------------------------------

    def write_record(self, record: dict[str, Any]) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        atomic_write(self.checkpoints / RUN_FILE, json.dumps(record, indent=2) + "\n")

    def read_record(self) -> dict[str, Any]:
        path = self.checkpoints / RUN_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GPTClassifyError(f"{path}: unreadable run record ({exc})") from None

    # ---- publishing -------------------------------------------------------------------

    def publish(self, keep_checkpoints: bool = False) -> Path:
        """Rename the finished work folder to its final name (replacing an old one); then,
        unless `keep_checkpoints`, remove its checkpoints (the run record, run.json, stays).

        They go only after the rename: until then a killed run resumes from them, and a
        kill during the removal leaves a complete folder with fewer checkpoints."""
        if self.final.is_dir() and not any(self.final.iterdir()):
            self.final.rmdir()
        move_into_place(self.work, self.final)
        if not keep_checkpoints:
            remove_checkpoints(self.final)
        return self.final

    def discard(self) -> None:
        """Remove the work folder (a run that failed before it had anything worth keeping)."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.release()
        _remove_empty(self.made)

    def release(self) -> None:
        """Give up ownership of the run (at its end, however it ends). A copy of a finished
        run that a refused or failed resume made goes: the run stays as it was."""
        if self.copied is not None and latest_checkpoint(self.work) == self.copied:
            shutil.rmtree(self.work, ignore_errors=True)
        self.copied = None
        if self.lock is not None:
            self.lock.release()


def remove_checkpoints(run: Path) -> None:
    """A published run's checkpoints go (each step-N folder, and leftovers of one being
    written); checkpoints/run.json, the run's record, stays."""
    root = run / CHECKPOINTS
    if not root.is_dir():
        return
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)


class RunLock:
    """An exclusive `flock` on `.RUN.lock` beside a run folder, held while a run writes it."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def take(cls, final: Path, name: str) -> RunLock:
        """Own the run `final`, or a one-line refusal naming the live process that does.
        `name`: the option that named it (out, resume), for the messages."""
        flag = option(name, final)
        path = final.with_name(f".{final.name}.lock")
        if fcntl is None:
            return cls(path, None)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GPTClassifyError(
                f"{flag}: cannot create {path.parent} ({exc.strerror or exc})"
            ) from None
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise GPTClassifyError(
                    f"{flag}: cannot write in {path.parent.absolute()} (its lock file "
                    f"{path.name}: {exc.strerror or exc})"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                    raise GPTClassifyError(
                        f"{flag}: cannot lock {path} ({exc.strerror or exc})"
                    ) from None
                who = f"process {holder}" if holder.isdigit() else "another process"
                raise GPTClassifyError(
                    f"{flag}: a run is writing it now ({who}, still alive); wait for "
                    "it to end or stop it first: a run folder is never replaced while its run "
                    "lives"
                ) from None
            # The previous owner removes the file as it lets go: a lock on a file that is no
            # longer at `path` guards nothing, so take the new one.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                return cls(path, fd)
            os.close(fd)

    def release(self) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # still locked: nobody can take a stale file
        os.close(self.fd)
        self.fd = None


def _remove_empty(made: tuple[Path, ...]) -> None:
    for parent in made:  # deepest first; only when nothing else was put there
        try:
            parent.rmdir()
        except OSError:
            break


def _missing_parents(path: Path) -> tuple[Path, ...]:
    """The ancestors of `path` that do not exist yet, deepest first."""
    out = []
    for parent in path.absolute().parents:
        if parent.exists():
            break
        out.append(parent)
    return tuple(out)


def _work_path(final: Path) -> Path:
    return final.with_name(final.name + PARTIAL)


def _mkdir(path: Path, exist_ok: bool) -> None:
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except FileExistsError:
        raise
    except OSError as exc:
        raise GPTClassifyError(
            f"{path}: cannot create the run folder ({exc.strerror or exc})"
        ) from None


def _check_target(final: Path, overwrite: bool) -> None:
    """`final` must be absent, an empty folder, or (with overwrite) a run folder."""
    out = option("out", final)
    if final.exists() and not final.is_dir():
        raise GPTClassifyError(f"{out}: exists and is not a folder")
    if not final.is_dir():
        parent = next((p for p in final.absolute().parents if p.exists()), None)
        if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
            raise GPTClassifyError(f"{out}: cannot write in {parent}")
        return
    if not os.access(final.parent.absolute(), os.W_OK | os.X_OK):
        raise GPTClassifyError(f"{out}: cannot write in {final.parent.absolute()}")
    if not any(final.iterdir()):
        return
    if folder_kind(final) or not (final / CHECKPOINTS).is_dir():
        check_target(final, FORMAT_CLASSIFIER)  # not another kind of folder
    if not overwrite:
        raise GPTClassifyError(
            f"{out}: already holds a run; pass {option('overwrite', True)} to replace it (it "
            f"stays until the new run is complete), or {option('resume', final)} to continue it"
        )


def _clean_leftovers(final: Path) -> None:
    """Folders left by a publish or resume that was killed half-way: a previous model folder
    moved aside comes back if nothing replaced it; temporary copies go."""
    parent = final.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{final.name}.old-*"))
    if olds and not final.exists():
        olds.pop().rename(final)
    for leftover in olds + list(parent.glob(f".{final.name}.*.tmp")):
        shutil.rmtree(leftover, ignore_errors=True)
