"""Declared, typed parameters for task types and dataset readers, validated strictly.

Task YAMLs, ``--param key=value`` overrides and training configs go through ``validate``: unknown
keys are errors that list the valid ones, values are coerced to the declared type or rejected with
the field name, what was found and what was expected.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from .errors import ConfigError

REQUIRED = object()
TYPES = ("int", "float", "str", "bool", "path", "list[int]", "list[str]", "list[float]", "dict", "any")


@dataclass(frozen=True)
class Param:
    """A typed parameter. ``min``/``max`` bound numbers (each item of a list); ``nonempty`` refuses an
    empty list or string. ``affects_numbers=False`` marks a setting that changes only speed or memory
    (a block size, streaming): it is left out of the task's ``config_sha256``, so changing it neither
    makes results stale nor forces a recompute."""

    type: str
    default: Any = REQUIRED
    help: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    nonempty: bool = False
    affects_numbers: bool = True

    def coerce(self, value: Any, where: str) -> Any:
        if value is None and self.default is None:
            return None
        t = self.type
        try:
            if t == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                out = int(value)
            elif t == "float":
                if isinstance(value, bool):
                    raise ValueError
                out = float(value)
            elif t in ("str", "path"):
                if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                    raise ValueError
                out = str(value)
            elif t == "bool":
                if not isinstance(value, bool):
                    raise ValueError
                out = value
            elif t.startswith("list["):
                item = Param(t[5:-1])
                seq = value if isinstance(value, (list, tuple)) else [value]
                out = [item.coerce(v, where) for v in seq]
            elif t == "dict":
                if not isinstance(value, Mapping):
                    raise ValueError
                out = dict(value)
            else:
                out = value
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected {t}, found {value!r}") from None
        vals = out if isinstance(out, list) else [out]
        if self.choices is not None:
            bad = [v for v in vals if v not in self.choices]
            if bad:
                raise ConfigError(f"{where}: {bad[0]!r} is not allowed; expected one of {list(self.choices)}")
        if self.nonempty and (out == [] or out == ""):
            raise ConfigError(f"{where}: expected at least one value, found an empty {t}")
        for v in vals:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if self.min is not None and v < self.min:
                    raise ConfigError(f"{where}: {v!r} is too small; expected a value >= {self.min:g}")
                if self.max is not None and v > self.max:
                    raise ConfigError(f"{where}: {v!r} is too large; expected a value <= {self.max:g}")
        return out


def validate(values: Mapping[str, Any] | None, schema: Mapping[str, Param], where: str) -> dict[str, Any]:
    """Defaults filled, values coerced; unknown or missing keys raise ``ConfigError`` naming ``where``."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(schema) or 'none'}")
    out = {}
    for key, p in schema.items():
        if key in values:
            out[key] = p.coerce(values[key], f"{where}.{key}")
        elif p.default is REQUIRED:
            raise ConfigError(f"{where}: required key {key!r} is missing ({p.help or p.type})")
        else:
            out[key] = p.default
    return out


def parse_assignment(text: str, where: str = "--param") -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``k=[1,5]`` is a list, ``k=3`` an int)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{where} {text!r}: expected key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value
