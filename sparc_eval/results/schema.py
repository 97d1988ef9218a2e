"""The result file, defined once: a typed record used to write results and by every reader.

One JSON per (model, task) run (DESIGN.md §3, the result-file contract)::

    {schema, task{name, type, version, config_sha256, groups, config},
     model{spec, pretrained, name, weights_sha256}, dataset{name, format, fingerprint, n_total, n_used,
     limit, partial}, seed, metrics{...}, main_metric, intervals{metric: [lo, hi]}, chance{...},
     aggregations{...}, details{...}, preprocessing{...}, provenance{...}, run_key, kind,
     samples, samples_sha256, samples_count}

``samples`` names the per-sample JSONL beside the JSON (absent when the task wrote none); its sha256 and
record count (schema v2) let every reader check it (``results.integrity``). ``kind`` is ``measured`` for
results sparc-eval computed and ``imported`` for results converted from other tools (no samples, no
intervals, exempt from the samples checks, never a ``check`` baseline). Schema v1 files (no sums) are read.
``role`` says what the row is for: ``model`` (a model under evaluation: ranked), ``control`` (a row that
should sit at chance, e.g. the untrained architecture) or ``reference`` (a ceiling such as the
ground-truth oracle); leaderboards rank and style rows by it. ``seed_group`` names the method of a
model trained with several seeds: results of one seed group are the seeds of one method (mean ± sd,
method differences over seeds). Files written before these fields read as role ``model``, no group.
``ResultRecord.from_dict`` builds a record leniently (missing optional fields take their defaults);
``validate`` checks the fields every consumer relies on and raises ``ResultsError`` naming the file.
This module imports neither torch nor the models.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import ResultsError

SCHEMA = "sparc-eval/result/v2"
KINDS = ("measured", "imported")
ROLES = ("model", "control", "reference")
_REQUIRED = {"schema": str, "task": dict, "model": dict, "dataset": dict, "metrics": dict, "main_metric": str}


def _pick(cls, data: Mapping) -> dict:
    """The keys of ``data`` that are fields of the dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass
class TaskInfo:
    """Which task and definition produced the result; ``config`` is the resolved task definition."""

    name: str
    type: str | None = None
    version: Any = None
    config_sha256: str | None = None
    groups: list[str] = field(default_factory=list)
    config: dict | None = None

    def to_dict(self) -> dict:
        out = {"name": self.name, "type": self.type, "version": self.version, "config_sha256": self.config_sha256,
               "groups": self.groups}
        if self.config is not None:
            out["config"] = self.config
        return out


@dataclass
class ModelInfo:
    """The model's identity: spec, pretrained tag or file, display name and weights digest."""

    name: str
    spec: str | None = None
    pretrained: str | None = None
    weights_sha256: str | None = None
    source: dict | None = None  # fetched weights: the Hub record {repo, revision, commit, file, sha256}

    def to_dict(self) -> dict:
        out = {"spec": self.spec, "pretrained": self.pretrained, "name": self.name,
               "weights_sha256": self.weights_sha256}
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass
class DatasetInfo:
    """What was read: ``fingerprint`` identifies the data; ``n_used`` < ``n_total`` under ``--limit``."""

    fingerprint: str | None = None
    name: str | None = None
    format: str | None = None
    n_total: int | None = None
    n_used: int | None = None
    limit: int | None = None
    partial: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "format": self.format, "fingerprint": self.fingerprint,
                "n_total": self.n_total, "n_used": self.n_used, "limit": self.limit, "partial": self.partial}


@dataclass
class ResultRecord:
    """One (model, task) result. ``provenance`` is free-form (versions, host, device, timing)."""

    task: TaskInfo
    model: ModelInfo
    dataset: DatasetInfo
    metrics: dict[str, float]
    main_metric: str
    seed: Any = None
    intervals: dict[str, list[float]] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)
    aggregations: dict[str, dict] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    run_key: str | None = None
    kind: str = "measured"
    samples: str | None = None
    samples_sha256: str | None = None
    samples_count: int | None = None
    schema: str = SCHEMA
    role: str = "model"
    seed_group: str | None = None

    @property
    def imported(self) -> bool:
        return self.kind == "imported"

    @classmethod
    def from_dict(cls, data: Mapping) -> ResultRecord:
        """A record from a result JSON object, without validation (see ``validate``)."""
        body = {k: data[k] for k in ("metrics", "main_metric", "seed", "intervals", "chance", "aggregations",
                                     "details", "preprocessing", "provenance", "run_key", "kind", "samples",
                                     "samples_sha256", "samples_count", "schema", "role", "seed_group")
                if k in data and data[k] is not None}
        return cls(task=TaskInfo(**_pick(TaskInfo, data.get("task") or {"name": "?"})),
                   model=ModelInfo(**_pick(ModelInfo, data.get("model") or {"name": "?"})),
                   dataset=DatasetInfo(**_pick(DatasetInfo, data.get("dataset") or {})), **body)

    def to_dict(self) -> dict:
        """The JSON object written to disk (``samples`` only when there are samples)."""
        out = {"schema": self.schema, "task": self.task.to_dict(), "model": self.model.to_dict(),
               "dataset": self.dataset.to_dict(), "seed": self.seed, "metrics": self.metrics,
               "main_metric": self.main_metric, "intervals": self.intervals, "chance": self.chance,
               "aggregations": self.aggregations, "details": self.details, "preprocessing": self.preprocessing,
               "provenance": self.provenance, "run_key": self.run_key, "kind": self.kind, "role": self.role,
               "seed_group": self.seed_group}
        if self.samples is not None:
            out.update(samples=self.samples, samples_sha256=self.samples_sha256, samples_count=self.samples_count)
        return out

    def samples_file(self, json_path: Path | str) -> Path | None:
        """The per-sample JSONL named by this record, beside ``json_path`` (None when it has none)."""
        return Path(json_path).with_name(self.samples) if self.samples else None


def validate(data: object, path: Path | str) -> ResultRecord:
    """Check the fields every consumer relies on and build the record; ``ResultsError`` naming ``path``."""
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    for key, typ in _REQUIRED.items():
        if not isinstance(data.get(key), typ):
            raise ResultsError(f"{path}: field {key!r} missing or not a {typ.__name__} "
                               f"(found {type(data.get(key)).__name__})")
    if not data["schema"].startswith("sparc-eval/result/"):
        raise ResultsError(f"{path}: schema {data['schema']!r} is not a sparc-eval result (expected {SCHEMA})")
    for section, names in (("task", ("name", "type", "version", "config_sha256")),
                           ("model", ("spec", "pretrained", "name", "weights_sha256"))):
        for f in names:
            if f not in data[section]:
                raise ResultsError(f"{path}: field {section}.{f} is missing")
    if data.get("kind", "measured") not in KINDS:
        raise ResultsError(f"{path}: kind {data.get('kind')!r} is not one of {', '.join(KINDS)}")
    if data.get("role", "model") not in ROLES:
        raise ResultsError(f"{path}: role {data.get('role')!r} is not one of {', '.join(ROLES)}")
    if not isinstance(data.get("seed_group"), (str, type(None))):
        raise ResultsError(f"{path}: seed_group {data.get('seed_group')!r}: expected a name or null")
    if data["main_metric"] not in data["metrics"]:
        raise ResultsError(f"{path}: main_metric {data['main_metric']!r} is not among metrics "
                           f"{sorted(data['metrics'])}")
    return ResultRecord.from_dict(data)
