"""The `gptclassify` command group and its error handling. Commands live one group per
module beside this one; each is a thin call into the Python API, which it imports when it
runs, so `gptclassify --help` never pays for importing torch."""

from __future__ import annotations

import os
import sys

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    # OpenMP threads that wait by spinning hold their CPU while other processes (or this
    # one's other threads) need it: on a busy 2-core machine a SmolLM2-width training step
    # ran 5-10x slower than with threads that sleep (RESULTS.md, issue 35). Read once, when
    # torch loads OpenMP, which no command has done yet here. OMP_WAIT_POLICY=ACTIVE restores
    # spinning.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="gptclassify")


def accuracy_line(metrics: dict) -> str:
    """'Accuracy: train 98.85%, validation 96.64%, test 93.33%' from a metrics.json dict."""
    parts = [
        f"{k} {metrics[k]['accuracy'] * 100:.2f}%"
        for k in ("train", "validation", "test")
        if k in metrics
    ]
    return f"Accuracy: {', '.join(parts)}"
