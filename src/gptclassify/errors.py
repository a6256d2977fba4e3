"""The one exception type users see, and how its advice names options.

Anything that is the user's input being wrong (a file, a flag, a download) raises
`GPTClassifyError` with a one-line message that names the file, line or field. The CLI prints
that line and exits with status 1; it never shows a traceback for these.

It is a `ValueError`: Python's (and scikit-learn's) exception for "the right type, a wrong
value", so code that already catches `ValueError` around a library call (scikit-learn's own
estimator checks among it) catches ours too, and `except GPTClassifyError` still catches only
ours.

A message that tells the user what to change names it the way the user said it: `--overwrite`
and `--model smollm2-135m-instruct-q4` on the command line, `overwrite=True` and
`model='smollm2-135m-instruct-q4'` in Python. The code that raises does not know which
interface called it, so it words its advice through `option(...)` (or `advice(cli, python)`
where the two differ in more than the spelling), and the command line says, once, on entry,
that it is the one running (`with interface("cli"):`, in the CLI's command group). Python is
the default: a library call never gets flag advice.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from typing import Literal


class GPTClassifyError(ValueError):
    """A problem with the user's input or environment, explained in one line."""


Interface = Literal["cli", "python"]

_interface: contextvars.ContextVar[Interface] = contextvars.ContextVar(
    "gptclassify_interface", default="python"
)

_UNSET = object()


@contextlib.contextmanager
def interface(name: Interface) -> Iterator[None]:
    """Word the advice of every error raised inside this block for `name`'s users."""
    token = _interface.set(name)
    try:
        yield
    finally:
        _interface.reset(token)


def current_interface() -> Interface:
    return _interface.get()


def advice(cli: str, python: str) -> str:
    """`cli` under the command line, `python` otherwise: the two wordings of one advice."""
    return cli if _interface.get() == "cli" else python


def option(name: str, value: object = _UNSET, *, flag: str | None = None) -> str:
    """An option (a TrainConfig field, a keyword of the function called) as the user spells
    it: `option("epochs")` is '--epochs' or 'epochs'; `option("overwrite", True)` is
    '--overwrite' or 'overwrite=True'; `option("model", "x")` is '--model x' or
    "model='x'". `flag`: the command line's name when it is not the keyword's (without
    the dashes)."""
    dashed = "--" + (flag or name.replace("_", "-"))
    if value is _UNSET:
        return advice(dashed, name)
    if value is True:
        return advice(dashed, f"{name}=True")
    python = repr(str(value)) if isinstance(value, str | os.PathLike) else repr(value)
    return advice(f"{dashed} {value}", f"{name}={python}")
