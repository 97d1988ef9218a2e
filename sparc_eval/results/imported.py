"""CLIP_benchmark result JSONs as imported sparc-eval results (for leaderboards and comparisons).

``clip_benchmark eval`` writes one JSON per (model, dataset, language, task)::

    {"dataset": "wds/cars", "model": "ViT-B-32-quickgelu", "pretrained": "laion400m_e32",
     "task": "zeroshot_classification", "metrics": {"acc1": 0.61, ...}, "language": "en",
     "classnames": [...], "templates": [...]}      # the last two only with --dump_classnames/--dump_templates

:func:`import_clip_benchmark` turns one into a dict of our result shape marked ``"kind": "imported"``:
the task is named by the CLIP_benchmark dataset name (as sparc-eval's CLIP_benchmark tasks are, so both
land in one leaderboard column; another language than English is appended as ``-<lang>``), metric keys are
mapped (``clip_benchmark_names.map_metric``; its ``image_retrieval_recall@k`` is our text->image ``t2i_R@k``),
fractions become percent, ``mean_R@k`` is derived where both directions are present, and keys without an
equivalent or values that are not finite numbers are kept apart (``unmapped``, ``dropped``). There are no
per-sample records, so no intervals (and nothing for the samples checks). The model is open_clip's (the JSON
does not say; CLIP_benchmark's default model type). Imports neither torch nor the models.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..clip_benchmark_names import CB_VERSION, lookup, map_metric, short_name
from ..errors import ConfigError, ResultsError, UnknownNameError
from ..fileio import sha256_file
from ..names import slug
from .schema import SCHEMA, ResultRecord

FIELDS = ("dataset", "model", "pretrained", "task", "metrics")
KIND = "imported"
_TYPES = {"zeroshot_classification": "zeroshot_classification", "zeroshot_retrieval": "retrieval",
          "linear_probe": "linear_probe", "image_caption_selection": "caption_selection", "captioning": "captioning"}


def looks_like_clip_benchmark(obj: Any) -> bool:
    """Whether a parsed JSON object is a CLIP_benchmark result (its five fields, no sparc-eval schema)."""
    return isinstance(obj, Mapping) and "schema" not in obj and all(k in obj for k in FIELDS)


def _task_type(dataset: str, cb_task: str) -> str:
    """Our task type for a CLIP_benchmark (dataset, task) pair: the catalogue's when it agrees on the task."""
    try:
        mapped = lookup(dataset)
    except (ConfigError, UnknownNameError):
        mapped = None
    if mapped is not None and mapped.cb_task == cb_task:
        return mapped.type
    if cb_task == "image_caption_selection" and short_name(dataset) == "winoground":
        return "winoground"
    return _TYPES[cb_task]


def _main_metric(metrics: Mapping[str, float], task_type: str) -> str | None:
    if task_type == "retrieval":
        ks = sorted(int(k.split("@")[1]) for k in metrics if k.startswith("mean_R@"))
        return f"mean_R@{ks[0]}" if ks else None
    preferred = {"zeroshot_classification": "top1", "linear_probe": "top1", "winoground": "group_score",
                 "caption_selection": "acc", "captioning": "CIDEr"}.get(task_type)
    return preferred if preferred in metrics else None


def _model_name(spec: str, pretrained: str) -> str:
    """The default name of an imported model: slug of spec and the tag (a weights file contributes its stem)."""
    tag = Path(pretrained).stem if Path(pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt") \
        else pretrained
    return slug(f"{spec}-{tag}" if tag else spec)


def import_clip_benchmark(path: Path | str, *, model_name: str | None = None) -> dict:
    """One CLIP_benchmark result JSON as an imported result dict (see the module docstring); ``ResultsError``
    naming the file when it is not one."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ResultsError(f"{path}: cannot read ({e.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not a JSON file ({e})") from None
    if not looks_like_clip_benchmark(raw):
        missing = [k for k in FIELDS if not isinstance(raw, Mapping) or k not in raw]
        raise ResultsError(f"{path}: not a CLIP_benchmark result JSON (missing field(s) {missing}; expected "
                           f"{list(FIELDS)})")
    dataset, cb_task = str(raw["dataset"]), str(raw["task"])
    if cb_task not in _TYPES:
        raise ResultsError(f"{path}: CLIP_benchmark task {cb_task!r} is not known; expected one of {sorted(_TYPES)}")
    if not isinstance(raw["metrics"], Mapping):
        raise ResultsError(f"{path}: 'metrics' must be an object, found {type(raw['metrics']).__name__}")
    task_type = _task_type(dataset, cb_task)
    metrics: dict[str, float] = {}
    unmapped: dict[str, Any] = {}
    dropped: dict[str, str] = {}
    for key, value in raw["metrics"].items():
        ours = map_metric(dataset, cb_task, key)
        if ours is None:
            unmapped[key] = value
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            dropped[key] = repr(value)
        else:
            metrics[ours] = 100.0 * float(value)
    for key in [k for k in metrics if k.startswith("i2t_R@")]:
        k = key.split("@")[1]
        if f"t2i_R@{k}" in metrics:
            metrics[f"mean_R@{k}"] = (metrics[key] + metrics[f"t2i_R@{k}"]) / 2
    main = _main_metric(metrics, task_type)
    if main is None:
        raise ResultsError(f"{path}: no usable main metric among {sorted(raw['metrics'])} for a {cb_task} result")
    language = str(raw.get("language") or "en")
    spec = f"open_clip:{raw['model']}"
    pretrained = str(raw["pretrained"]) if raw["pretrained"] not in (None, "") else None
    return {
        "schema": SCHEMA,
        "kind": KIND,
        "source": {"format": "clip_benchmark", "version": CB_VERSION, "path": str(path), "sha256": sha256_file(path)},
        "task": {"name": dataset if language == "en" else f"{dataset}-{language}", "type": task_type, "version": None,
                 "config_sha256": None, "clip_benchmark": {"dataset": dataset, "task": cb_task, "language": language}},
        "model": {"spec": spec, "pretrained": pretrained, "name": model_name or _model_name(spec, pretrained or ""),
                  "weights_sha256": None},
        "dataset": {"name": dataset, "fingerprint": None, "n_total": None, "n_used": None, "limit": None},
        "seed": None,
        "metrics": metrics,
        "main_metric": main,
        "intervals": {},
        "samples": None,
        "unmapped": unmapped,
        "dropped": dropped,
        "details": {k: raw[k] for k in ("classnames", "templates") if k in raw},
    }


def imported_record(path: Path | str, *, model_name: str | None = None) -> ResultRecord:
    """``import_clip_benchmark`` as a typed record: what the file was, and what was not carried over,
    are kept in ``details`` (``source``, ``unmapped``, ``dropped``)."""
    data = import_clip_benchmark(path, model_name=model_name)
    record = ResultRecord.from_dict(data)
    record.details.update({k: data[k] for k in ("source", "unmapped", "dropped")})
    record.task.config = {"clip_benchmark": data["task"]["clip_benchmark"]}
    return record


def clip_benchmark_files(root: Path | str) -> list[Path]:
    """The CLIP_benchmark result JSONs under ``root`` (a file or a folder, recursively): files that are
    not sparc-eval results (no ``schema``) and carry CLIP_benchmark's fields. Only the first 4 KiB of a
    file is read to rule it out."""
    root = Path(root)
    found = []
    for p in [root] if root.is_file() else sorted(root.rglob("*.json")):
        if p.name.startswith(".") or not p.is_file():  # a FIFO would block the sniffing
            continue
        try:
            with p.open("rb") as f:
                head = f.read(4096)
        except OSError:
            continue
        if b'"schema"' in head or not (b'"dataset"' in head and b'"task"' in head):
            continue
        try:
            if looks_like_clip_benchmark(json.loads(p.read_text(encoding="utf-8"))):
                found.append(p)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            continue
    return found
