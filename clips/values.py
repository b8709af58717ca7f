"""Typed values for dataclasses: cast YAML or command-line strings to each field's annotated type.

A leaf module (it depends only on ``clips.errors``), so that the training config and
the curricula's option dataclasses share one casting rule without importing each other.
"""
from __future__ import annotations

import dataclasses
import typing

from clips.errors import ConfigError


def cast(name: str, typ, value):
    """Cast a YAML or command-line value to the annotated type ``typ`` of field ``name``."""
    origin = typing.get_origin(typ)
    try:
        if origin is tuple:
            inner = typing.get_args(typ)[0]
            if isinstance(value, str):
                items = value.replace("x", ",").split(",")
            else:
                items = list(value) if isinstance(value, (list, tuple)) else [value]
            items = [inner(float(x)) if inner is int else inner(x) for x in items if str(x).strip() != ""]
            if len(items) == 1:
                items = items * 3
            if len(items) != 3:
                raise ValueError("expected 1 or 3 values")
            return tuple(items)
        if typ is bool:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError("expected true or false")
        if typ is int:
            f = float(value)
            if f != int(f):
                raise ValueError("expected a whole number")
            return int(f)
        if typ is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"parameter {name}={value!r}: {exc}") from None


def _nest(values: dict) -> dict:
    """``{"example.patients": 30}`` -> ``{"example": {"patients": 30}}`` (how -P names a nested field)."""
    out: dict = {}
    for key, value in values.items():
        head, dot, rest = str(key).partition(".")
        if dot and head != "curriculum":
            out.setdefault(head, {})
            if not isinstance(out[head], dict):
                raise ConfigError(f"parameter {key!r}: {head} is given both as a value and as a section")
            out[head][rest] = value
        else:
            out[key] = value
    return out


def apply_values(obj, values: dict, where: str, extras: dict | None = None):
    """Set dataclass fields from YAML or string values, cast to each field's type.

    Nested dataclasses take a mapping or dotted names (``example.patients``). Unknown
    names raise, unless ``extras`` is given: then they are collected there (training
    puts them in the curriculum's options). An empty value keeps the current one.
    """
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in _nest(values).items():
        if key not in names:
            if extras is not None:
                extras[key.removeprefix("curriculum.")] = value
                continue
            close = ", ".join(sorted(n for n in names if n[:3] == key[:3])) or "see clips/config.py"
            raise ConfigError(f"unknown parameter {key!r} in {where} (did you mean: {close})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) or isinstance(current, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: {key} must be a mapping (or name its fields as {key}.<field>)")
            if isinstance(current, dict):
                current.update(value)
            else:
                apply_values(current, value, f"{where}:{key}")
            continue
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue  # an empty -P value means "keep the profile's value"
        setattr(obj, key, cast(key, hints[key], value))
