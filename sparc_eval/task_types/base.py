"""The task-type contract: a plugin that turns a model and a dataset into metrics.

A task type declares its ``params`` (validated from the YAML's ``params:``), the dataset ``kind`` it
needs, the metric keys it reports and the model capabilities it requires; ``evaluate`` returns a
``TaskResult``. It gets embeddings from the engine (``ctx.engine``), never by looping over the
model itself when the engine can serve.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..data.base import Reader, get_reader
from ..params import Param
from ..task_config import TaskConfig

if TYPE_CHECKING:
    from ..engine import Engine
    from ..models.base import ModelAdapter


@dataclass
class EvalContext:
    """What a task's ``evaluate`` may use besides the model."""

    engine: Engine
    seed: int = 0
    limit: int | None = None
    progress: bool = True
    log: Callable[[str], None] = print
    work_dir: Path | None = None
    predictions: Path | None = None


@dataclass
class TaskResult:
    """Metrics and per-sample records of one (model, task) evaluation.

    ``aggregations`` says how each metric follows from ``records`` (see ``results.aggregate``), which
    gives bootstrap intervals over ``cluster`` (usually the image id); ``intervals`` holds those of
    metrics without an aggregation that the task resamples itself (``artifact_acc``). ``chance`` holds
    the dataset-specific chance level of metrics where it is defined. ``details`` carries task-specific
    facts worth recording (prompt set, chosen regularisation, per-class IoU, truncation counts, how each
    chance level was obtained).
    """

    metrics: dict[str, float]
    main_metric: str
    records: list[dict] | None = None
    aggregations: dict[str, dict] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)
    n_total: int = 0
    n_used: int = 0
    dataset_fingerprint: str = ""


class TaskType:
    """Base class of task types. Subclasses set the class attributes and implement ``evaluate``."""

    name: ClassVar[str]
    dataset_kind: ClassVar[str]
    params: ClassVar[dict[str, Param]] = {}
    requires: ClassVar[tuple[str, ...]] = ()
    needs_model: ClassVar[bool] = True
    description: ClassVar[str] = ""

    def __init__(self, config: TaskConfig, reader: Reader | None = None):
        self.config = config
        self.reader = reader if reader is not None else get_reader(config.dataset["format"])
        self._data: dict = {}

    @classmethod
    def from_config(cls, config: TaskConfig, reader: Reader | None = None) -> TaskType:
        """The task for a validated config; ``reader`` is the config's dataset reader (looked up when None)."""
        return cls(config, reader)

    @classmethod
    def metric_keys(cls, params: Mapping[str, Any]) -> list[str]:
        """Metric keys this task reports with these params (checked against the registry)."""
        raise NotImplementedError

    def load_data(self, limit: int | None = None):
        """The dataset value from the configured reader (limited to the first ``limit`` units). A task
        without a model (``needs_model = False``) never decodes images, so their files need not exist."""
        if limit not in self._data:
            data = self.reader.load_for(self.config.dataset, self.needs_model)
            self._data[limit] = data.limit(limit) if limit is not None and hasattr(data, "limit") else data
        return self._data[limit]

    def evaluate(self, model: ModelAdapter, ctx: EvalContext) -> TaskResult:
        raise NotImplementedError
