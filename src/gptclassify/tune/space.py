"""Search spaces: which TrainConfig options a search varies, and over what.

From flags, one option each: `lr=loguniform(1e-5,1e-3)`, `epochs=int(2,6)`,
`trainable=choice(last-block,last-2-blocks,lora)`, `weight_decay=uniform(0,0.2)`,
`lora_rank=logint(4,64)`. From a YAML or JSON file: a mapping of option to such a string,
to a list (a choice), or to {type, low, high, log, choices}. Option names and every choice
are checked against TrainConfig's fields (args.option_map) before anything trains.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gptclassify.args import TrainConfig, option_map, parse_value
from gptclassify.errors import GPTClassifyError

KINDS = ("loguniform", "uniform", "int", "logint", "choice")
_SPEC = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.S)
# Not searchable: where the runs go, and what they read (a search compares runs on one split).
FIXED = frozenset({"out", "data", "train", "validation", "test", "text_column", "label_column"})


@dataclass(frozen=True)
class Param:
    """One searched option: its TrainConfig flat name and distribution."""

    name: str
    kind: str
    """One of KINDS."""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial samples for this option."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind in ("int", "logint"):
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.kind == "logint"
            )
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "loguniform")

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.name}=choice({','.join(map(str, self.choices))})"
        return f"{self.name}={self.kind}({self.low:g},{self.high:g})"


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {p.name: p.suggest(trial) for p in self.params}

    def names(self) -> list[str]:
        return [p.name for p in self.params]


def _check_name(name: str, where: str) -> Any:
    options = option_map(TrainConfig)
    if name in FIXED or name not in options:
        raise GPTClassifyError(
            f"{where}: {name!r} is not a TrainConfig option a search can vary "
            "(e.g. lr, epochs, trainable, lora_rank, pool, weight_decay, batch_size)"
        )
    return options[name]


def _scalar(token: str) -> Any:
    """A value written in a flag: a number when it reads as one (YAML 1.1 takes 1e-4 for
    text), else YAML's reading of it (true a bool, null None)."""
    for kind in (int, float):
        try:
            return kind(token)
        except ValueError:
            pass
    try:
        return yaml.safe_load(token)
    except yaml.YAMLError:
        return token


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):
        value = _scalar(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GPTClassifyError(f"{where}: expected a number, got {value!r}")
    return float(value)


def make_param(name: str, kind: str, args: list[Any], where: str) -> Param:
    option = _check_name(name, where)
    where = f"{where}: {name}"
    if kind not in KINDS:
        raise GPTClassifyError(f"{where}: {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "choice":
        if not args:
            raise GPTClassifyError(f"{where}: choice() needs at least one value")
        values = tuple(
            parse_value(option, _scalar(a) if isinstance(a, str) else a, where) for a in args
        )
        if not all(isinstance(v, str | int | float | bool) or v is None for v in values):
            raise GPTClassifyError(f"{where}: choices must be plain values")
        return Param(name, kind, choices=tuple(dict.fromkeys(values)))
    if len(args) != 2:
        raise GPTClassifyError(f"{where}: {kind}(low, high) takes two numbers")
    low, high = (_number(a, where) for a in args)
    if not low < high:
        raise GPTClassifyError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if kind in ("loguniform", "logint") and low <= 0:
        raise GPTClassifyError(f"{where}: {kind} needs low > 0")
    integer = kind in ("int", "logint")
    if integer and (low != int(low) or high != int(high)):
        raise GPTClassifyError(f"{where}: {kind}() takes integers")
    wanted = int if integer else float
    if option.hint is not wanted and not (option.hint is float and integer):
        kind_name = {int: "an integer", float: "a number"}.get(option.hint, "text")
        raise GPTClassifyError(f"{where}: the option takes {kind_name}; use choice(...)")
    return Param(name, kind, low, high)


def parse_flag(spec: str) -> Param:
    """`name=kind(args)` as given to --search."""
    where = f"--search {spec!r}"
    name, sep, rest = spec.partition("=")
    match = _SPEC.match(rest)
    if not sep or match is None:
        raise GPTClassifyError(
            f"{where}: expected NAME=KIND(ARGS), e.g. lr=loguniform(1e-5,1e-3) or "
            "trainable=choice(last-block,lora)"
        )
    args = [a.strip() for a in match.group(2).split(",") if a.strip()]
    return make_param(name.strip().replace("-", "_"), match.group(1).lower(), args, where)


def _from_entry(name: str, value: Any, where: str) -> Param:
    if isinstance(value, list):
        return make_param(name, "choice", value, where)
    if isinstance(value, str):
        match = _SPEC.match(value)
        if match is None:
            raise GPTClassifyError(f"{where}: {name}: expected KIND(ARGS), got {value!r}")
        args = [a.strip() for a in match.group(2).split(",") if a.strip()]
        return make_param(name, match.group(1).lower(), args, where)
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"type", "low", "high", "log", "choices"})
        if unknown:
            raise GPTClassifyError(f"{where}: {name}: unknown key(s) {', '.join(unknown)}")
        if "choices" in value:
            return make_param(name, "choice", list(value["choices"] or []), where)
        kind = str(value.get("type", "float"))
        log = bool(value.get("log", False))
        kind = {"float": "loguniform" if log else "uniform", "int": "logint" if log else "int"}.get(
            kind, kind
        )
        return make_param(name, kind, [value.get("low"), value.get("high")], where)
    raise GPTClassifyError(f"{where}: {name}: expected a string, a list or a mapping")


def load_space_file(path: str | Path) -> list[Param]:
    """A YAML or JSON mapping {option: spec}."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise GPTClassifyError(f"{p}: cannot read the search space ({exc.strerror})") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise GPTClassifyError(
            f"{p}: not valid {p.suffix.lstrip('.') or 'YAML'} ({first})"
        ) from None
    if not isinstance(data, dict) or not data:
        raise GPTClassifyError(f"{p}: expected a mapping of option to search range")
    return [_from_entry(str(k), v, str(p)) for k, v in data.items()]


def build_space(
    flags: list[str] | tuple[str, ...] = (), file: str | Path | None = None
) -> SearchSpace:
    """The search space of a file plus flags (a flag replaces the file's entry of its option)."""
    params: dict[str, Param] = {}
    if file is not None:
        params.update({p.name: p for p in load_space_file(file)})
    for spec in flags:
        param = parse_flag(spec)
        params[param.name] = param
    if not params:
        raise GPTClassifyError(
            "nothing to search: give --search NAME=KIND(ARGS) (e.g. --search "
            "'lr=loguniform(1e-5,1e-3)') or --space FILE"
        )
    return SearchSpace(tuple(params.values()))
