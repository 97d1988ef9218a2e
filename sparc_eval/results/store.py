"""The results store: one JSON per (model, task) at ``<root>/<model-name>/<task>.json``.

Beside each JSON lies ``<task>.samples.jsonl`` with one per-sample record per line (the basis of
intervals, paired bootstrap and ``check``). Both are written atomically (temp file + rename): the
JSONL first, then the JSON that names it, so a reader never sees a result without its samples.
This module imports neither torch nor the models.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import IntegrityError, ResultsError
from ..fileio import atomic_write_bytes, atomic_write_text, sha256_bytes
from ..names import slug
from .schema import ResultRecord, validate


def result_path(root: Path | str, model_name: str, task_name: str) -> Path:
    """``<root>/<model slug>/<task>.json``; a ``/`` in a task name (CLIP_benchmark's ``wds/cars``) becomes
    ``__`` so every result of a model lies in one folder."""
    return Path(root) / slug(model_name) / f"{task_name.replace('/', '__')}.json"


def samples_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name[: -len(".json")] + ".samples.jsonl")


def write_result(path: Path, result: ResultRecord | Mapping, records: Iterable[Mapping] | None) -> Path:
    """Write the per-sample JSONL (if any) and then the result JSON, each atomically. A mapping is
    taken as a result JSON object (``ResultRecord.from_dict``)."""
    record = result if isinstance(result, ResultRecord) else ResultRecord.from_dict(result)
    check_finite(record, path)
    if records is not None:
        sp = samples_path(path)
        lines = [json.dumps(r, sort_keys=True) + "\n" for r in records]
        data = "".join(lines).encode("utf-8")
        atomic_write_bytes(sp, data)
        record.samples, record.samples_sha256, record.samples_count = sp.name, sha256_bytes(data), len(lines)
    atomic_write_text(path, json.dumps(record.to_dict(), indent=2, sort_keys=True, allow_nan=True) + "\n")
    return path


def check_finite(record: ResultRecord, path: Path | str) -> None:
    """Every metric is a finite number, or ``IntegrityError`` naming the file and the metric."""
    for key, value in record.metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise IntegrityError(f"{path}: metric {key!r} is {value!r}, not a finite number; a result with it "
                                 f"is refused (rank and tolerance checks would be meaningless)")


def read_json_file(path: Path | str, what: str) -> object:
    """The parsed JSON of ``path`` (``what`` it should be, for messages); ``ResultsError`` naming the file
    for anything but a regular UTF-8 file of valid JSON (a FIFO would block, deep nesting would crash)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ResultsError(f"{path}: not a regular file; expected {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ResultsError(f"{path}: cannot read {what} ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ResultsError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); expected {what}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                           f"the file may be truncated") from None
    except RecursionError:
        raise ResultsError(f"{path}: JSON nested too deeply; expected {what}") from None


def read_result(path: Path | str) -> ResultRecord:
    """Load and validate one result JSON."""
    record = validate(read_json_file(path, "a result JSON"), path)
    for key in ("n_total", "n_used", "limit"):
        value = getattr(record.dataset, key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ResultsError(f"{path}: field dataset.{key} is {value!r:.40}; expected a number of samples or null")
    return record


def read_samples(result_json: Path | str, result: ResultRecord | Mapping) -> list[dict]:
    """The per-sample records named by ``result`` (the JSON at ``result_json``, as a record or its JSON
    object); [] when it has none."""
    record = result if isinstance(result, ResultRecord) else ResultRecord.from_dict(result)
    path = record.samples_file(result_json)
    if path is None or not path.exists():
        return []
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ResultsError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    return records


def iter_result_files(root: Path | str) -> list[Path]:
    """All result JSONs ``<task>.json`` under ``root`` (recursively), sorted. Hidden/temp files and a
    task's auxiliary files (``<task>.<kind>.json``, e.g. generated captions) are left out: task names
    contain no dots."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*.json") if not p.name.startswith(".") and "." not in p.stem)
