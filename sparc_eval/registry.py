"""One registry idiom for every kind of plugin: model loaders, task types, dataset readers, losses and
transfer heads (floor 0: imports nothing of the package but the errors).

A registry maps names to lazy ``"module:object"`` references: the built-ins, listed once in code, and
the installed plugins of an entry-point group (a built-in name cannot be replaced by a plugin). An
object is imported on first use and checked: a class must subclass ``base`` (an instance must be one),
and an object with a ``name_attr`` attribute must carry the name it is registered under.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugins of one ``kind`` (used in messages, e.g. "task type")."""

    def __init__(self, kind: str, group: str, builtins: Mapping[str, str], *, base: type | None = None,
                 name_attr: str | None = None):
        self.kind, self.group, self.base, self.name_attr = kind, group, base, name_attr
        self._builtins = dict(builtins)
        self._loaded: dict[str, Any] = {}

    def references(self) -> dict[str, str]:
        """Name -> ``"module:object"`` of every built-in and installed plugin."""
        found = dict(self._builtins)
        for ep in entry_points(group=self.group):
            found.setdefault(ep.name, ep.value)
        return found

    def names(self) -> list[str]:
        return sorted(self.references())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.references()

    def get(self, name: str) -> T:
        """The object registered as ``name`` (imported and checked once); ``UnknownNameError`` otherwise."""
        if name in self._loaded:
            return self._loaded[name]
        refs = self.references()
        if name not in refs:
            raise UnknownNameError(self.kind, name, sorted(refs))
        obj = self._check(name, _import(refs[name]))
        self._loaded[name] = obj
        return obj

    def all(self) -> dict[str, T]:
        """Every registered object by name (imports them all; for listings)."""
        return {name: self.get(name) for name in self.names()}

    def _check(self, name: str, obj: Any) -> Any:
        ref = self.references()[name]
        if self.base is not None:
            ok = issubclass(obj, self.base) if isinstance(obj, type) else isinstance(obj, self.base)
            if not ok:
                raise TypeError(f"{self.kind} {name!r} ({ref}) is not a {self.base.__name__}")
        if self.name_attr is not None:
            own = getattr(obj, self.name_attr, name)
            if own != name:
                raise TypeError(f"{self.kind} {name!r} ({ref}) calls itself {own!r}")
        return obj


def _import(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj
