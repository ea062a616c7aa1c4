"""Command-line options from dataclasses, as TRL's scripts declare theirs: help in field metadata.

`add_arguments(parser, Cls)` adds one option per field (`positional=True` in the metadata for
positional ones, `choices` for a closed set); `from_args(Cls, namespace)` builds the dataclass back;
`to_argv(*objects)` writes them as a command line again, for a process started with the same options.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from medbench.overrides import field_types


def arg(
    default=dataclasses.MISSING,
    *,
    help: str,
    positional: bool = False,
    choices=None,
    metavar=None,
    flag: str | None = None,
    default_factory=dataclasses.MISSING,
):
    """A dataclass field with its command-line description."""
    meta = {"help": help, "positional": positional, "choices": choices, "metavar": metavar, "flag": flag}
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
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if meta["positional"]:
            parser.add_argument(
                f.name, nargs="?" if has_default else None, default=default, type=_converter(base), **kwargs
            )
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
                type=_converter(base),
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
