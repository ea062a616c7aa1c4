"""`--set KEY=VALUE` overrides, typed by the dataclass fields they set.

One coercer for every `--set` (evaluation settings, TRL's SFTConfig): the value's type comes from
the field's annotation, so `none` means None only where None is allowed, and a typo in a key or a
value fails before anything loads.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from functools import cache

from medbench.errors import MedbenchError

_TRUE, _FALSE, _NONE = {"true", "1", "yes"}, {"false", "0", "no"}, {"none", "null"}


class SettingsError(MedbenchError):
    pass


def parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise SettingsError(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value.strip()
    return out


@cache
def field_types(cls) -> dict[str, object]:
    """Each init field's resolved annotation (postponed annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, str) for f in dataclasses.fields(cls) if f.init}


def typed_overrides(cls, raw: dict[str, object], allowed: typing.Iterable[str] | None = None) -> dict[str, object]:
    """{field: value} for `cls`; strings are coerced to the field's type, unknown keys refused."""
    types_ = field_types(cls)
    allowed = set(types_ if allowed is None else allowed)
    out = {}
    for key, value in raw.items():
        if key not in allowed:
            known = f"; known: {', '.join(sorted(allowed))}" if len(allowed) <= 20 else ""
            raise SettingsError(f"unknown setting {key!r}{known}")
        out[key] = coerce(value, types_[key], key) if isinstance(value, str) else value
    return out


def coerce(raw: str, annotation, name: str):
    """`raw` as a value of `annotation` (bool, int, float, str, Literal, Enum, Optional/Union of them)."""
    options = _options(annotation)
    if raw.strip().lower() in _NONE and type(None) in options:
        return None
    for option in options:
        try:
            return _as(option, raw)
        except (ValueError, TypeError):
            continue
    shown = " | ".join(_name(o) for o in options)
    raise SettingsError(f"setting {name} expects {shown}, got {raw!r}")


def _options(annotation) -> list:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        # Try the strictest type first: "1" is an int before it is a str.
        order = {bool: 0, int: 1, float: 2}
        return sorted(args, key=lambda a: order.get(a, 3))
    return [annotation]


def _as(option, raw: str):
    text = raw.strip()
    if option is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(raw)
    if option in (int, float):
        return option(text)
    if option is str or option is typing.Any:
        return raw
    if typing.get_origin(option) is typing.Literal:
        for choice in typing.get_args(option):
            if str(choice) == text:
                return choice
        raise ValueError(raw)
    if isinstance(option, type) and issubclass(option, enum.Enum):
        return option(text).value if isinstance(option(text).value, str) else option(text)
    if option is type(None):
        raise ValueError(raw)
    # dicts, lists and other structured fields: taken as the string the library parses itself
    return raw


def _name(option) -> str:
    if typing.get_origin(option) is typing.Literal:
        return "|".join(map(str, typing.get_args(option)))
    return getattr(option, "__name__", str(option))
