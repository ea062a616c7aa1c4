"""Command-line options from dataclasses, as TRL's scripts declare theirs: help in field metadata.

`add_arguments(parser, Cls)` adds one option per field (`positional=True` in the metadata for
positional ones, `choices` for a closed set); `from_args(Cls, namespace)` builds the dataclass back;
`to_argv(*objects)` writes them as a command line again, for a process started with the same options.

Numbers are checked while the command line is parsed, by one set of argument types that every command shares
(`positive_int`, `non_negative_int`, `positive_float`, `port_number`, `seed_number`, `positive_int_or_auto`; `checked_int` for a bound of its own): a
value out of range is refused before anything loads or starts, in one line, with exit status 2 (`ArgumentParser`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing

from medbench.overrides import field_types


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, whose refusals are one line (`medbench eval: error: argument --limit: ...`), exit status 2:
    the usage it would print first runs to dozens of lines, and pushes the reason off a small screen or a log's tail.
    Subcommands' parsers are of this class too (argparse makes them of their parent's)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def checked_int(minimum: int, maximum: int | None = None, hint: str = ""):
    """An argument type: a whole number from `minimum` (to `maximum`); `hint` says what to do instead."""
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    why = f"; {hint}" if hint else ""

    def whole_number(text: str) -> int:
        value = _whole(text)
        if value is None:
            raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {text!r}{why}")
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got {value}{why}")
        return value

    return whole_number


def checked_float(above: float = 0.0, hint: str = ""):
    """An argument type: a finite number above `above`."""
    why = f"; {hint}" if hint else ""

    def number(text: str) -> float:
        try:
            value = float(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected a number > {above:g}, got {text!r}{why}") from None
        if not math.isfinite(value) or value <= above:
            raise argparse.ArgumentTypeError(f"must be a number > {above:g}, got {text}{why}")
        return value

    return number


def positive_int_or_auto(text: str) -> str:
    """An argument type: `auto` or a whole number >= 1, kept as text (the command reads either)."""
    value = _whole(text)
    if text != "auto" and (value is None or value < 1):
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1 or auto, got {text!r}")
    return text


# The types every command's options use: the same number is checked the same way, whichever command takes it.
positive_int = checked_int(1)
non_negative_int = checked_int(0)
positive_float = checked_float(0.0)
port_number = checked_int(1, 65535)
seed_number = checked_int(0, 2**32 - 1)


def arg(
    default=dataclasses.MISSING,
    *,
    help: str,
    positional: bool = False,
    choices=None,
    metavar=None,
    flag: str | None = None,
    type=None,
    default_factory=dataclasses.MISSING,
):
    """A dataclass field with its command-line description; `type` checks the value as it is parsed (the types
    above), else the field's annotation converts it (int, float) or it stays text."""
    meta = {"help": help, "positional": positional, "choices": choices, "metavar": metavar, "flag": flag, "type": type}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    types_ = field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        meta = f.metadata
        annotation = types_[f.name]
        base = _base_type(annotation)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        default = f.default if f.default is not dataclasses.MISSING else None
        kwargs = {"help": meta["help"]}
        convert = meta.get("type") or _converter(base)
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if meta["positional"]:
            parser.add_argument(f.name, nargs="?" if has_default else None, default=default, type=convert, **kwargs)
        elif base is bool:
            parser.add_argument(
                meta["flag"] or f"--{f.name.replace('_', '-')}", dest=f.name, action="store_true", **kwargs
            )
        elif typing.get_origin(annotation) is list:
            parser.add_argument(
                meta["flag"] or f"--{f.name.replace('_', '-')}", dest=f.name, action="append", default=[], **kwargs
            )
        else:
            parser.add_argument(
                meta["flag"] or f"--{f.name.replace('_', '-')}",
                dest=f.name,
                default=default,
                type=convert,
                required=not has_default,
                **kwargs,
            )


def from_args(cls, namespace: argparse.Namespace, **extra):
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    values = {k: v for k, v in vars(namespace).items() if k in names}
    return cls(**{**values, **extra})


def to_argv(*options) -> list[str]:
    """Dataclass options as a command line (positional fields first) that `add_arguments` parses back to equal
    values: unset values and defaults are left out, so the process parsing it gets them the same way."""
    positional, flags = [], []
    for obj in options:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            flag = f.metadata.get("flag") or f"--{f.name.replace('_', '-')}"
            if f.metadata.get("positional"):
                positional.append(str(value))
            # Compared with its type: 0 == False, and `--eval-limit 0` must reach the other process.
            elif (
                value is None
                or value is False
                or value == []
                or (type(value) is type(f.default) and value == f.default)
            ):
                continue
            elif value is True:
                flags.append(flag)
            elif isinstance(value, list):
                flags += [x for v in value for x in (flag, str(v))]
            else:
                flags += [flag, str(value)]
    return [*positional, *flags]


def _base_type(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _converter(base):
    return base if base in (int, float) else None
