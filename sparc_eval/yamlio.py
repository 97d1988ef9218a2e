"""YAML files and ``${name}`` variables (floor 0: safe_load only; errors name the file and position)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

_VAR = re.compile(r"\$\{([a-z_]+)\}")


def read_yaml(path: Path) -> Any:
    """``yaml.safe_load`` of a file; a syntax error names the file, line and column."""
    try:
        with path.open(encoding="utf-8") as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where} ({getattr(e, 'problem', e)})") from None


def substitute(value: Any, variables: Mapping[str, Any], where: str) -> Any:
    """Replace ``${name}`` in every string of ``value`` (a callable variable is evaluated on use)."""
    if isinstance(value, str):
        def repl(m: re.Match) -> str:
            var = m.group(1)
            if var not in variables:
                raise ConfigError(f"{where}: unknown variable ${{{var}}}; expected one of "
                                  f"{', '.join('${' + v + '}' for v in variables)}")
            got = variables[var]
            got = got() if callable(got) else got
            if got is None:
                raise ConfigError(f"{where}: needs a data root: set SPARC_EVAL_DATA=DIR (every command, "
                                  f"pretrain included) or pass --data-root DIR (run, data verify)")
            return str(got)
        return _VAR.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables, f"{where}.{k}") for k, v in value.items()}
    return value
