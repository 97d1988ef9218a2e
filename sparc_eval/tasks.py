"""Task and suite definitions: YAML files found in the shipped ``tasks/`` folder and ``--include-path``.

A task YAML (loaded with ``yaml.safe_load``, validated strictly):

    name: coco-retrieval           # must match the file name
    type: retrieval                # a registered task type
    version: 1                     # bump when anything that changes numbers changes
    description: ...
    dataset: {name: coco, format: karpathy, root: "${data_root}/coco", annotations: dataset_coco.json, split: test}
    params: {recall_at: [1, 5, 10]}
    main_metric: mean_R@1
    groups: [coarse, retrieval]

Strings may use ``${data_root}`` (``--data-root`` / ``SPARC_EVAL_DATA``), ``${shapes}`` (the shapes
world, generated on first use), ``${shapes_train}`` (its larger pretraining set) and ``${task_dir}``
(the YAML's folder). ``--param key=value``
overrides ``params.*`` or ``dataset.*`` keys (``params.key`` / ``dataset.key`` to be explicit).
A suite YAML lists tasks and the groups used for aggregation.

CLIP_benchmark's dataset names (``mscoco_captions``, ``imagenet1k``, ``wds/vtab/cifar10``, ...) are tasks too,
defined by ``clip_benchmark_names`` with CLIP_benchmark's protocol; their data root is what ``clip_benchmark
eval --dataset_root`` takes, ``{dataset}``/``{dataset_cleaned}`` templates included. Shipped names win.

A task's ``config_sha256`` hashes its definition as written, before ``${...}`` substitution and
without ``dataset.root`` or speed-only params, so it does not depend on where the data lives
(the dataset fingerprint identifies the data).
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import clip_benchmark_names as cb
from .data.base import Reader, formats, get_reader
from .data.synthetic import default_world, training_world
from .errors import ConfigError, UnknownNameError
from .metrics.registry import check_keys
from .params import Param, parse_assignment, validate
from .task_config import TaskConfig
from .task_types import TaskType, get_task_type
from .yamlio import read_yaml, substitute

__all__ = ["ResolvedTask", "Suite", "TaskConfig", "load_suite", "load_task", "peek_task", "resolve_task",
           "suite_files", "task_files", "task_versions"]

TOP_KEYS = {"name", "type", "version", "description", "dataset", "params", "main_metric", "groups"}
REQUIRED_TOP = ("name", "type", "version", "dataset", "main_metric")
SUITE_KEYS = {"name", "description", "tasks", "groups", "not_supported"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_DATASET_COMMON = {"format": Param("str", help="on-disk format (reader name)"),
                   "name": Param("str", None, "short dataset name used by `data verify`"),
                   "allow_outside_root": Param("bool", False, "read image paths from dataset files that are "
                                               "absolute or leave the root through '..' (refused by default)",
                                               affects_numbers=False)}


def shipped_dir() -> Path:
    """The task folder shipped with the package: ``sparc_eval/_tasks`` when installed from a wheel,
    the source tree's ``tasks/`` in an editable install."""
    here = Path(__file__).resolve().parent
    installed = here / "_tasks"
    return installed if installed.is_dir() else here.parent / "tasks"


def _search_dirs(include: Sequence[Path | str] = ()) -> list[Path]:
    dirs = [Path(p).expanduser() for p in include]
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(f"--include-path {d}: folder does not exist")
    return dirs + [shipped_dir()]


def task_files(include: Sequence[Path | str] = ()) -> dict[str, Path]:
    """Task name -> YAML path; ``--include-path`` folders shadow shipped tasks of the same name."""
    found: dict[str, Path] = {}
    for d in _search_dirs(include):
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found


def suite_files(include: Sequence[Path | str] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in _search_dirs(include):
        for p in sorted((d / "suites").glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found


@dataclass(frozen=True)
class ResolvedTask:
    """A task resolved once: its validated config, its task type and its dataset reader."""

    config: TaskConfig
    task_type: type[TaskType]
    reader: Reader

    @classmethod
    def of(cls, config: TaskConfig) -> ResolvedTask:
        """Resolve an already built config (e.g. from the training loop)."""
        return cls(config, get_task_type(config.type), get_reader(config.dataset["format"]))

    def build(self) -> TaskType:
        """The task-type instance that evaluates this task."""
        return self.task_type.from_config(self.config, self.reader)


def load_task(name_or_path: str | Path, *, include: Sequence[Path | str] = (), data_root: str | Path | None = None,
              overrides: Iterable[str] | Mapping[str, Any] = ()) -> TaskConfig:
    """Find, parse, validate and resolve one task (by name or YAML path); its ``TaskConfig``."""
    return resolve_task(name_or_path, include=include, data_root=data_root, overrides=overrides).config


def resolve_task(name_or_path: str | Path, *, include: Sequence[Path | str] = (),
                 data_root: str | Path | None = None, overrides: Iterable[str] | Mapping[str, Any] = ()) -> ResolvedTask:
    """Find, parse and validate one task (by name or YAML path), resolving its type and reader once. A name
    that is no task YAML but one of CLIP_benchmark's dataset names (``mscoco_captions``, ``wds/cars``, ...)
    is defined by ``clip_benchmark_names`` for ``data_root`` as CLIP_benchmark's ``--dataset_root`` (its
    ``{dataset}``/``{dataset_cleaned}`` templates filled)."""
    env_root = data_root if data_root is not None else os.environ.get("SPARC_EVAL_DATA")
    p = Path(str(name_or_path))
    if p.suffix in (".yaml", ".yml") and p.is_file():
        path = p
    else:
        files = task_files(include)
        name = str(name_or_path)
        if name not in files:
            return _resolve(_clip_benchmark_task(name, files, env_root), f"task {name!r} (CLIP_benchmark name)",
                            None, Path.cwd(), None, overrides)
        path = files[name]
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of task fields, found {type(raw).__name__}")
    if "name" in raw and raw["name"] != path.stem:
        raise ConfigError(f"{path}: name {raw['name']!r} must match the file name {path.stem!r}")
    if "name" in raw and not _NAME.match(str(raw["name"])):
        raise ConfigError(f"{path}: task name {raw['name']!r} must be lower-case letters, digits, '-' or '_'")
    if env_root is not None and cb.has_template(env_root) and "${data_root}" in str(raw.get("dataset")):
        raise ConfigError(f"--data-root {env_root}: {{dataset}} and {{dataset_cleaned}} are CLIP_benchmark's templates, "
                          f"filled for its dataset names (mscoco_captions, imagenet1k, wds/<name>, ...); task "
                          f"{raw.get('name', path.stem)!r} reads {raw['dataset'].get('root')!r}: run it with the folder "
                          f"that holds its data as --data-root")
    return _resolve(raw, str(path), path, path.parent, env_root, overrides)


def _clip_benchmark_task(name: str, files: Mapping[str, Path], data_root: str | Path | None) -> dict:
    """The task definition of CLIP_benchmark's dataset ``name``; ``UnknownNameError`` (with suggestions from
    both name sets, CLIP_benchmark's pointing to ours) when it is neither a task nor one of its names."""
    known_cb = cb.is_cb_name(name) or name in cb.OTHER_CB_NAMES or name.startswith(("vtab/", "tfds/", "sugar_crepe/"))
    if known_cb:
        return cb.task_config(name, data_root)
    known = sorted(files) + [n for n in cb.names() if n not in files]
    err = UnknownNameError("task", name, known)
    aliases = cb.aliases()
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    notes = [f"{c!r} is CLIP_benchmark's name, sparc-eval's own task on that data in its own layout is {aliases[c]!r}"
             for c in close if c in aliases]
    if notes:
        err.args = (f"{err} ({'; '.join(notes)})",)
    raise err


def _resolve(raw: dict, where: str, source: Path | None, task_dir: Path, env_root: str | Path | None,
             overrides: Iterable[str] | Mapping[str, Any]) -> ResolvedTask:
    """Validate a task definition (a YAML's mapping, or a CLIP_benchmark name's) and resolve it."""
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(TOP_KEYS)}")
    missing = [k for k in REQUIRED_TOP if k not in raw]
    if missing:
        raise ConfigError(f"{where}: required key(s) {missing} missing")
    if not isinstance(raw["version"], int):
        raise ConfigError(f"{where}: version must be an integer, found {raw['version']!r}")
    if not isinstance(raw["dataset"], dict) or "format" not in raw["dataset"]:
        raise ConfigError(f"{where}: dataset must be a mapping with a 'format' key")
    groups = raw.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ConfigError(f"{where}: groups must be a list of names, found {groups!r}")
    if not isinstance(raw.get("params") or {}, dict):
        raise ConfigError(f"{where}: params must be a mapping of parameter names to values, "
                          f"found {type(raw['params']).__name__}")

    cls = get_task_type(str(raw["type"]))
    reader = get_reader(str(raw["dataset"]["format"]))
    if cls.dataset_kind not in reader.kind.split("|"):
        fitting = sorted(f for f, r in formats().items() if cls.dataset_kind in r.kind.split("|"))
        raise ConfigError(f"{where}: task type {cls.name!r} needs a {cls.dataset_kind} dataset, but format "
                          f"{reader.format!r} reads {reader.kind} data; formats that fit: {', '.join(fitting)}")
    dataset = dict(raw["dataset"])
    params = dict(raw.get("params") or {})
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_assignment(o) for o in overrides)
    for key, value in items:
        section, dot, sub = key.partition(".")
        if dot and section in ("params", "dataset"):
            (params if section == "params" else dataset)[sub] = value
        elif key in cls.params:
            params[key] = value
        elif key in reader.params or key in _DATASET_COMMON:
            dataset[key] = value
        else:
            raise ConfigError(f"--param {key}: task {raw['name']!r} has no such parameter; params: "
                              f"{sorted(cls.params)}, dataset: {sorted(set(reader.params) | set(_DATASET_COMMON))}")
    if "format" in dataset and dataset["format"] != raw["dataset"]["format"]:
        raise ConfigError(f"--param format: the dataset format of {raw['name']!r} cannot be changed")

    variables = {"data_root": Path(env_root).expanduser() if env_root else None, "shapes": default_world,
                 "shapes_train": training_world,
                 "task_dir": task_dir}
    schema = {**_DATASET_COMMON, **reader.params}
    dataset = validate(dataset, schema, f"{where}: dataset")
    params = validate(params, cls.params, f"{where}: params")
    hash_basis = {"dataset": {k: v for k, v in dataset.items() if k != "root" and schema[k].affects_numbers},
                  "params": {k: v for k, v in params.items() if cls.params[k].affects_numbers}}
    dataset = substitute(dataset, variables, f"{where}: dataset")
    params = substitute(params, variables, f"{where}: params")
    keys = cls.metric_keys(params)
    check_keys(keys, f"{where}: metrics of task type {cls.name!r}")
    if raw["main_metric"] not in keys:
        raise ConfigError(f"{where}: main_metric {raw['main_metric']!r} is not reported by this task; "
                          f"expected one of {keys}")
    config = TaskConfig(name=raw["name"], type=cls.name, version=raw["version"], dataset=dataset, params=params,
                        main_metric=raw["main_metric"], groups=groups, description=str(raw.get("description", "")),
                        source=source, hash_basis=hash_basis)
    return ResolvedTask(config, cls, reader)


def peek_task(name: str, include: Sequence[Path | str] = ()) -> dict:
    """The raw YAML of a task without validation or substitution (for listings)."""
    files = task_files(include)
    if name not in files:
        raise UnknownNameError("task", name, sorted(files))
    raw = read_yaml(files[name])
    return raw if isinstance(raw, dict) else {}


def task_versions(tasks: Sequence[str], include: Sequence[Path | str] = ()) -> dict[str, object]:
    """Current ``version`` of each task YAML that exists (shipped or under ``include``)."""
    files = task_files(include)
    return {t: peek_task(t, include).get("version") for t in tasks if t in files}


@dataclass
class Suite:
    name: str
    tasks: list[str]
    groups: dict[str, list[str]]
    description: str = ""
    not_supported: list[dict] = field(default_factory=list)
    source: Path | None = None


def load_suite(name: str, include: Sequence[Path | str] = ()) -> Suite:
    """A suite by name; groups default to each task's ``groups`` field."""
    files = suite_files(include)
    if name not in files:
        raise UnknownNameError("suite", name, sorted(files))
    path = files[name]
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'tasks', found {type(raw).__name__}")
    unknown = sorted(set(raw) - SUITE_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys are {sorted(SUITE_KEYS)}")
    tasks = raw.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise ConfigError(f"{path}: 'tasks' must be a non-empty list of task names")
    known = task_files(include)
    for t in tasks:
        if t not in known:
            raise ConfigError(f"{path}: task {t!r} does not exist")
    groups = raw.get("groups")
    if groups is None:
        groups = {}
        for t in tasks:
            for g in peek_task(t, include).get("groups") or []:
                groups.setdefault(g, []).append(t)
    elif not isinstance(groups, dict) or not all(isinstance(v, list) and set(v) <= set(tasks) for v in groups.values()):
        raise ConfigError(f"{path}: 'groups' must map group names to lists of the suite's tasks")
    return Suite(name=raw.get("name", name), tasks=tasks, groups=groups, description=str(raw.get("description", "")),
                 not_supported=list(raw.get("not_supported") or []), source=path)
