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

from gptclassify.args import LoadOptions, Option, option_map, options


def _click_option(o: Option) -> Callable:
    kwargs: dict[str, Any] = {"help": o.help}
    for key in ("envvar", "metavar"):
        if key in o.extra:
            kwargs[key] = o.extra[key]
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

load_options = config_options(LoadOptions)
"""--device, --precision, --runtime, --base-model, --long-texts, --stride and --aggregate:
how `Classifier.load` loads RUN (`build(LoadOptions, values)` gives them back)."""
DEVICE = _click_option(option_map(LoadOptions)["device"])
BASE_MODEL = _click_option(option_map(LoadOptions)["base_model"])
