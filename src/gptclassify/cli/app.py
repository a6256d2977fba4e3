"""The `gptclassify` command group and its error handling. Commands live one group per
module beside this one; each is a thin call into the Python API, which it imports when it
runs, so `gptclassify --help` never pays for importing torch."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Mapping

import click

from gptclassify import __version__
from gptclassify.errors import GPTClassifyError, interface

# Optional dependencies: the top-level module a command may need -> the extra that brings it.
EXTRAS = {
    "torch": "torch",
    "safetensors": "torch",
    "huggingface_hub": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "mlflow": "track",
    "optuna": "track",
    "tensorboard": "track",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one line to print when an optional dependency is missing, else None."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(top)
    if extra is None:
        return None
    return (
        f'this needs {top}, which is not installed: pip install "gptclassify[{extra}]" '
        f'(in a clone of the repository: pip install ".[{extra}]")'
    )


def printable(line: str) -> str:
    """`line` with anything that cannot be printed as UTF-8 (the lone surrogates Python makes
    of non-UTF-8 bytes in arguments and file names) written as escapes."""
    return line.encode("utf-8", "backslashreplace").decode("utf-8")


def os_error_line(exc: OSError) -> str:
    """'PATH: Permission denied' for an operating-system error (no traceback: the file, the
    disk or the permissions are the user's to fix)."""
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {what}" if exc.filename is not None else what


class _Group(click.Group):
    """Turns GPTClassifyError into click's one-line `Error: ...` and exit status 1; so is a
    missing optional dependency (naming the extra that brings it), and an operating-system
    error that no reader turned into a GPTClassifyError (naming its file). Errors raised
    under it word their advice as flags (errors.interface)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            with interface("cli"):
                return super().invoke(ctx)
        except GPTClassifyError as exc:
            raise click.ClickException(printable(str(exc))) from None
        except ModuleNotFoundError as exc:
            line = missing_extra(exc)
            if line is None:
                raise
            raise click.ClickException(line) from None
        except OSError as exc:
            raise click.ClickException(printable(os_error_line(exc))) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gptclassify")
def cli() -> None:
    """Fine-tune a decoder language model (GPT-2, Llama, SmolLM2, Qwen, Mistral) into a text
    classifier (spam / not spam by default)."""


IDLE_SPINCOUNT = 10_000
"""How long (GNU OpenMP's spin iterations) a waiting thread spins before it sleeps, on a
machine that is not busy: as fast as spinning for good alone, far less held from others
than libgomp's default (300,000); chosen with benchmarks/omp_wait.py (RESULTS.md, issue 35,
round 4 session 5)."""

LOAD_WINDOW_S = 0.05
"""How long `machine_load` watches the running count: reading, not sleeping, so that two
runs started together see each other (a sleeping reader is not running)."""


def openmp_wait_settings(environ: Mapping[str, str], others: int, cpus: int) -> dict[str, str]:
    """The OpenMP waiting variables to set before torch loads OpenMP (which reads them once):
    none where the user set either; sleeping threads (OMP_WAIT_POLICY=PASSIVE) where other
    work wants the CPUs (`others`, the processes runnable besides this one, at least half
    of `cpus`, and at least one); otherwise a short spin (GOMP_SPINCOUNT=IDLE_SPINCOUNT).
    Spinning threads hold CPUs that other work needs; sleeping ones pay a wake-up per
    parallel region, which costs an idle machine most of a second CPU (RESULTS.md, issue 35)."""
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return {}
    if others >= max(1, cpus / 2):
        return {"OMP_WAIT_POLICY": "PASSIVE"}
    return {"GOMP_SPINCOUNT": str(IDLE_SPINCOUNT)}


def machine_load(window_s: float = LOAD_WINDOW_S, min_reads: int = 5) -> tuple[int, int]:
    """(processes runnable besides this one, CPUs this process may use): the median of
    /proc/loadavg's running count read over `window_s` (at least `min_reads` times; the
    load right now: a 1-minute average still counts a job that has just ended and misses two
    started together), and the affinity mask; (0, CPUs) where unknown. It keeps reading
    rather than sleeping between reads: a reader that sleeps is not running, so two runs
    started together, each sleeping while it looked, would not see each other."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    counts: list[int] = []
    deadline = time.monotonic() + window_s
    while len(counts) < min_reads or time.monotonic() < deadline:
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0, cpus
    return max(int(statistics.median(counts)), 0), cpus


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    # Before any command imports torch: how OpenMP's threads wait (openmp_wait_settings).
    os.environ.update(openmp_wait_settings(os.environ, *machine_load()))
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="gptclassify")


def accuracy_line(metrics: dict) -> str:
    """'Accuracy: train 98.85%, validation 96.64%, test 93.33%' from a metrics.json dict."""
    parts = [
        f"{k} {metrics[k]['accuracy'] * 100:.2f}%"
        for k in ("train", "validation", "test")
        if k in metrics
    ]
    return f"Accuracy: {', '.join(parts)}"
