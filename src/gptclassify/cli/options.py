"""click options from the config dataclasses, through the one walker (args.options), and
the options of every command that loads a model folder.

Each leaf field becomes `--field-name`, typed, with the field's help; booleans that default
to True get `--x/--no-x`. `build` turns the parsed values back into the config object.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import click

from gptclassify.args import Option, options


def _click_option(o: Option) -> Callable:
    kwargs: dict[str, Any] = {"help": o.help}
    if "envvar" in o.extra:
        kwargs["envvar"] = o.extra["envvar"]
    if o.hint is bool:
        if o.default:
            return click.option(f"{o.flag}/--no-{o.flag[2:]}", o.name, default=True, **kwargs)
        return click.option(o.flag, o.name, is_flag=True, default=False, **kwargs)
    if typing.get_origin(o.hint) is tuple:  # tuple[str, ...]: a repeatable flag
        return click.option(o.flag, o.name, multiple=True, **kwargs)
    kwargs.update(default=o.default, show_default=o.default is not None)
    if o.choices is not None:
        kwargs["type"] = click.Choice([str(c) for c in o.choices])
    elif o.hint in (int, float):
        kwargs["type"] = _number_type(o)
    return click.option(o.flag, o.name, **kwargs)


def _number_type(o: Option) -> type | click.ParamType:
    """int or float, or a click range when the field states one (`opt(minimum=...)`)."""
    low, high = o.extra.get("minimum"), o.extra.get("maximum")
    if low is None and high is None:
        return o.hint
    kind = click.IntRange if o.hint is int else click.FloatRange
    return kind(low, high, min_open=o.extra.get("open_minimum", False))


def config_options(cls: type, exclude: tuple[str, ...] = ()) -> Callable:
    """Decorate a click command with an option for every leaf field of `cls`."""

    def decorate(func: Callable) -> Callable:
        for o in reversed(options(cls)):
            if o.name not in exclude:
                func = _click_option(o)(func)
        return func

    return decorate


def build(cls: type, values: dict[str, Any]) -> Any:
    """The config object from parsed option values (popped from `values`)."""
    groups: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for o in options(cls):
        if o.name not in values:
            continue
        value = values.pop(o.name)
        if len(o.path) == 1:
            top[o.path[0]] = value
        else:
            groups.setdefault(o.path[0], {})[o.path[1]] = value
    made = {name: hints[name](**fields) for name, fields in groups.items()}
    return cls(**made, **top)


# ---- loading a model folder (predict, evaluate, serve, explain) ---------------------------

DEVICE = click.option(
    "--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."
)
PRECISION = click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "bf16", "int8"]),
    help="Matmul precision. PyTorch: auto is bf16 where the hardware has fast bf16 "
    "(AMX, AVX512-BF16, recent GPUs), else fp32. ONNX: the graph's own (fp32 or int8).",
)
RUNTIME = click.option(
    "--runtime",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "torch", "onnx"]),
    help="auto: what RUN holds (PyTorch weights, or an ONNX graph from `gptclassify export`).",
)
BASE_MODEL = click.option(
    "--base-model",
    default=None,
    metavar="DIR_OR_PRESET",
    help="LoRA adapters saved alone on a local base: that base (its sha256 is checked). "
    "Presets are found on their own.",
)


def model_options(func: Callable) -> Callable:
    """--device, --precision, --runtime and --base-model: how `Classifier.load` loads RUN."""
    for option in (BASE_MODEL, RUNTIME, PRECISION, DEVICE):
        func = option(func)
    return func


LONG_TEXTS = click.option(
    "--long-texts",
    default="truncate",
    show_default=True,
    type=click.Choice(["truncate", "chunk"]),
    help="A text longer than the model reads: cut it, or classify it in windows of the model's "
    "context and aggregate them (--stride, --aggregate).",
)
STRIDE = click.option(
    "--stride",
    default=None,
    type=click.IntRange(min=1),
    help="--long-texts chunk: tokens between window starts (default: half a window).",
)
AGGREGATE = click.option(
    "--aggregate",
    default="mean",
    show_default=True,
    type=click.Choice(["mean", "max"]),
    help="--long-texts chunk: mean of the windows' probabilities, or max (any window).",
)


def long_text_options(func: Callable) -> Callable:
    """--long-texts, --stride and --aggregate: Classifier.load's long_texts settings."""
    for option in (AGGREGATE, STRIDE, LONG_TEXTS):
        func = option(func)
    return func
