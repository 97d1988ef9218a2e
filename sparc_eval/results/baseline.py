"""Baseline files: what ``sparc-eval check`` compares new results against (no torch).

A baseline is one self-contained JSON file (commit it; CI needs nothing else)::

    {"schema": "sparc-eval/baseline/v1", "created": ISO time, "sources": [folders],
     "results": [
       {"result": <the result JSON without "details" and "samples">,
        "clusters": {"ids": [cluster ids], "count": [records per cluster],
                     "fields": {field: {"sum": [...], "count": [...] if it differs}},
                     "grouped": [{"field", "group", "rows", "cols", "sum", "count"}, ...] if any} | null},
       ...]}

``clusters`` holds, per cluster (image) of the per-sample records, the sums and counts of every record
field the result's ``aggregations`` use, and for ``group_mean`` the non-zero (cluster, group) cells
(``rows``/``cols`` index the clusters and the groups): exactly what the bootstrap resamples, so
``check`` runs a paired bootstrap against new per-sample records without the old samples files, for
every aggregation kind (mean, ratio, classwise_ratio, mean_of, group_mean). It is ``null`` when the
result had no per-sample records; ``check`` then falls back to the stored 95% intervals. One result
per line, so diffs stay readable. Only full runs are stored: partial (``--limit``) runs are left out.
"""
from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ResultsError
from ..fileio import atomic_write_text
from .aggregate import ClusterSums
from .collect import Collection, Entry, Key, pick
from .integrity import check_derived
from .paired import stored_sums, sums_to_json
from .schema import validate
from .store import check_finite, read_json_file

SCHEMA = "sparc-eval/baseline/v1"
DROPPED = ("details", "samples")


@dataclass
class Baseline:
    """A loaded baseline: one ``Entry`` per (model, task) plus its per-cluster sums (or None)."""

    path: Path
    entries: dict[Key, Entry]
    sums: dict[Key, ClusterSums | None]
    created: str = ""
    sources: list[str] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return sorted({m for m, _ in self.entries})


def baseline_record(entry: Entry) -> dict:
    """One ``results`` item of a baseline file (reads the entry's per-sample records)."""
    result = {k: v for k, v in entry.record.to_dict().items() if k not in DROPPED}
    records = entry.records()
    aggs = entry.aggregations
    clusters = sums_to_json(ClusterSums(records, aggs)) if records and aggs else None
    return {"result": result, "clusters": clusters}


def save_baseline(collection: Collection, path: Path | str, warn: Callable[[str], None] | None = None) -> Path:
    """Write a baseline of every full result in ``collection`` (one per (model, task): see ``collect.pick``);
    partial (``--limit``) runs are left out with a warning, and a ``ResultsError`` when nothing else is left."""
    kept, conflicts = pick(e for e in collection.entries if not e.partial and not e.imported)
    partial = sorted(e.label for e in collection.entries if e.partial)
    imported = sorted(e.label for e in collection.entries if e.imported)
    if imported and warn is not None:
        warn(f"warning: {len(imported)} imported result(s) left out of the baseline (no samples to check "
             f"against): {', '.join(imported)}")
    if not kept:
        raise ResultsError(f"no full results to save: the {len(collection.entries)} result(s) are all partial (--limit) "
                           f"runs{' or imported results' if imported else ''}; a baseline needs full runs computed "
                           f"by sparc-eval")
    if warn is not None:
        if partial:
            warn(f"warning: {len(partial)} partial (--limit) result(s) left out of the baseline: {', '.join(partial)}")
        for c in conflicts:
            warn(f"warning: {c.kept.model} / {c.kept.task}: {c.describe()}")
    items = [baseline_record(kept[k]) for k in sorted(kept)]
    sources = sorted({e.label.split("/", 1)[0] for e in kept.values()})
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    head = json.dumps({"schema": SCHEMA, "created": created, "sources": sources}, sort_keys=True)[:-1]
    lines = [head + ', "results": [']
    lines += [json.dumps(item, sort_keys=True, separators=(",", ":"), allow_nan=True)
              + ("," if i < len(items) - 1 else "") for i, item in enumerate(items)]
    lines.append("]}")
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def load_baseline(path: Path | str) -> Baseline:
    """Read and validate a baseline file; ``ResultsError`` naming the file and the bad item otherwise."""
    path = Path(path)
    data = read_json_file(path, "a baseline file")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise ResultsError(f"{path}: not a sparc-eval baseline (schema {found!r}, expected {SCHEMA!r}); "
                           f"write one with `sparc-eval baseline save RESULTS -o {path}`")
    items = data.get("results")
    if not isinstance(items, list):
        raise ResultsError(f"{path}: field 'results' missing or not a list")
    entries: dict[Key, Entry] = {}
    sums: dict[Key, ClusterSums | None] = {}
    for i, item in enumerate(items):
        where = f"{path}: results[{i}]"
        if not isinstance(item, dict):
            raise ResultsError(f"{where}: expected an object with 'result' and 'clusters'")
        result = validate(item.get("result"), where)
        check_finite(result, where)
        entry = Entry(path, result, f"{path.name}:{result.model.name}/{result.task.name}")
        key = (entry.model, entry.task)
        if key in entries:
            raise ResultsError(f"{where}: a second result for model {key[0]!r}, task {key[1]!r}")
        entries[key] = entry
        clusters = item.get("clusters")
        sums[key] = stored_sums(clusters, entry.aggregations, where) if clusters else None
        if sums[key] is not None:  # the stored values must be the ones the stored sums give
            check_derived(where, result, sums[key].compute(), "its stored per-image sums")
    return Baseline(path, entries, sums, str(data.get("created", "")), list(data.get("sources") or []))
