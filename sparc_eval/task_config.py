"""The validated definition of one task (floor 0: a plain value, consumed by task types and results)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .fileio import sha256_json


@dataclass
class TaskConfig:
    """A validated task definition; ``dataset`` and ``params`` are resolved (defaults filled)."""

    name: str
    type: str
    version: int
    dataset: dict[str, Any]
    params: dict[str, Any]
    main_metric: str
    groups: list[str] = field(default_factory=list)
    description: str = ""
    source: Path | None = None
    hash_basis: dict | None = field(default=None, repr=False)

    @property
    def config_sha256(self) -> str:
        """Hash of everything that changes numbers: ``hash_basis`` (the unsubstituted dataset and
        params without ``root`` and speed-only params, set by ``load_task``), else the resolved
        ``dataset`` (without ``root``) and ``params``."""
        basis = self.hash_basis if self.hash_basis is not None else {
            "dataset": {k: v for k, v in self.dataset.items() if k != "root"}, "params": self.params}
        return sha256_json({"type": self.type, "version": self.version, **basis, "main_metric": self.main_metric})

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "version": self.version, "dataset": self.dataset,
                "params": self.params, "main_metric": self.main_metric, "groups": self.groups}
