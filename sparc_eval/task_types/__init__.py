"""Task-type registry: built-in types are the modules of this package (``type: retrieval`` ->
``sparc_eval.task_types.retrieval``, which defines ``TASK_TYPE``); plugins add types through the
``sparc_eval.task_types`` entry-point group."""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from ..errors import UnknownNameError
from .base import EvalContext, TaskResult, TaskType

__all__ = ["EvalContext", "TaskResult", "TaskType", "get_task_type", "task_types"]


def get_task_type(name: str) -> type[TaskType]:
    for ep in entry_points(group="sparc_eval.task_types"):
        if ep.name == name:
            return ep.load()
    if name.isidentifier() and not name.startswith("_") and name != "base":
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
        else:
            cls = getattr(module, "TASK_TYPE", None)
            if cls is not None:
                return cls
    raise UnknownNameError("task type", name, sorted(task_types()))


def task_types() -> dict[str, type[TaskType]]:
    """Every known task type (imports the built-in modules)."""
    found: dict[str, type[TaskType]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        cls = getattr(importlib.import_module(f"{__name__}.{info.name}"), "TASK_TYPE", None)
        if cls is not None:
            found[cls.name] = cls
    for ep in entry_points(group="sparc_eval.task_types"):
        found.setdefault(ep.name, ep.load())
    return found
