"""Load result files for leaderboards, checks and comparisons (no torch).

``collect(paths)`` reads every result JSON under the given folders or files and checks each against
its samples (``results.integrity``: a disagreement is refused, never shown). A corrupt, truncated
or foreign JSON is skipped with a warning that names it (one bad file never breaks a board); a path
with no usable result at all is a ``ResultsError``. ``pick`` keeps one result per (model, task) and
reports the others: *mixed* when they differ in task version, config hash, dataset or seed (never
averaged), *duplicate* when they are the same run.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..errors import ResultsError
from .imported import clip_benchmark_files, imported_record
from .integrity import verified_samples
from .schema import DatasetInfo, ResultRecord
from .store import iter_result_files, read_result

Key = tuple[str, str]


def number(value: object) -> float:
    """A metric value as float; None, strings and other non-numbers become NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


class Entry:
    """One result file: its typed record, its path and a short display label. ``result`` may be given
    as a record or as a result JSON object."""

    def __init__(self, path: Path, result: ResultRecord | Mapping, label: str):
        self.path = path
        self.record = result if isinstance(result, ResultRecord) else ResultRecord.from_dict(result)
        self.label = label
        self._records: list[dict] | None = None

    @property
    def model(self) -> str:
        return str(self.record.model.name)

    @property
    def task(self) -> str:
        return str(self.record.task.name)

    @property
    def role(self) -> str:
        """``model``, ``control`` or ``reference`` (``schema.ROLES``)."""
        return self.record.role

    @property
    def seed_group(self) -> str | None:
        """The method this result is one training seed of (None: not part of a seed group)."""
        return self.record.seed_group

    @property
    def version(self) -> object:
        return self.record.task.version

    @property
    def config_sha256(self) -> str:
        return str(self.record.task.config_sha256)

    @property
    def groups(self) -> list[str]:
        groups = self.record.task.groups
        return [str(g) for g in groups] if isinstance(groups, list) else []

    @property
    def dataset(self) -> DatasetInfo:
        return self.record.dataset

    @property
    def fingerprint(self) -> str | None:
        return self.dataset.fingerprint

    @property
    def partial(self) -> bool:
        return bool(self.dataset.partial)

    @property
    def seed(self) -> object:
        return self.record.seed

    @property
    def main_metric(self) -> str:
        return self.record.main_metric

    @property
    def metrics(self) -> dict[str, float]:
        return self.record.metrics

    @property
    def started(self) -> str:
        return str(self.record.provenance.get("started") or "")

    @cached_property
    def signature(self) -> tuple:
        """What must agree for two results of one task to be comparable: (version, config, dataset, seed)."""
        return (self.version, self.config_sha256, self.fingerprint, self.seed)

    @property
    def aggregations(self) -> dict:
        aggs = self.record.aggregations
        return aggs if isinstance(aggs, dict) else {}

    def value(self, metric: str | None = None) -> float:
        return number(self.record.metrics.get(metric or self.main_metric))

    def interval(self, metric: str | None = None) -> tuple[float, float] | None:
        iv = (self.record.intervals or {}).get(metric or self.main_metric)
        if isinstance(iv, list) and len(iv) == 2:
            lo, hi = number(iv[0]), number(iv[1])
            if not (math.isnan(lo) or math.isnan(hi)):
                return lo, hi
        return None

    def chance(self, metric: str | None = None) -> float | None:
        c = number((self.record.chance or {}).get(metric or self.main_metric))
        return None if math.isnan(c) else c

    @property
    def imported(self) -> bool:
        return self.record.imported

    def records(self) -> list[dict]:
        """The per-sample records beside the JSON ([] when it has none), checked against the result
        (``results.integrity``; ``IntegrityError`` when they disagree)."""
        if self._records is None:
            self._records = verified_samples(self.path, self.record)
        return self._records


@dataclass
class Collection:
    """The readable results under some paths, and the files skipped with the reason."""

    entries: list[Entry]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Conflict:
    """Several results for one (model, task): ``kind`` is ``mixed`` or ``duplicate``; ``kept`` is shown."""

    kind: str
    kept: Entry
    others: list[Entry]

    def describe(self) -> str:
        every = [self.kept, *self.others]
        if self.kind == "duplicate":
            return (f"{len(every)} identical runs ({', '.join(e.label for e in every)}); "
                    f"showing the latest, {self.kept.label}")
        diffs = []
        for name, get in (("task version", lambda e: e.version), ("config", lambda e: e.config_sha256[:12]),
                          ("dataset", lambda e: (e.fingerprint or "?")[:12]), ("seed", lambda e: e.seed)):
            values = list(dict.fromkeys(str(get(e)) for e in every))
            if len(values) > 1:
                diffs.append(f"{name} {' vs '.join(values)}")
        return (f"mixed results ({'; '.join(diffs)}) in {', '.join(e.label for e in every)}; "
                f"showing {self.kept.label} (task version {self.kept.version}), not an average")


def _label(path: Path, root: Path) -> str:
    if path == root:
        return path.name
    try:
        return str(Path(root.name) / path.relative_to(root))
    except ValueError:
        return str(path)


def collect(paths: Sequence[Path | str], warn: Callable[[str], None] | None = None) -> Collection:
    """Read every result JSON under ``paths`` (folders, recursively, or files).

    Unreadable files are skipped and reported through ``warn`` (and ``Collection.skipped``); a missing
    path, or paths holding no readable result, raise ``ResultsError``. A readable result that disagrees
    with its samples, or has a non-finite metric, raises ``IntegrityError`` (``results.integrity``).
    """
    if not paths:
        raise ResultsError("no results folder given; expected e.g. `results/` as written by `sparc-eval run -o results`")
    entries: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    n_files = 0
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise ResultsError(f"{root}: no such file or folder; expected a results folder written by `sparc-eval run`")
        imported = clip_benchmark_files(root)
        for path in imported:
            n_files += 1
            try:
                entries.append(Entry(path, imported_record(path), _label(path, root)))
            except ResultsError as e:
                skipped.append((_label(path, root), str(e).removeprefix(f"{path}: ")))
                if warn is not None:
                    warn(f"warning: skipped {_label(path, root)}: {skipped[-1][1]}")
        for path in iter_result_files(root):
            if path in imported:
                continue
            n_files += 1
            label = _label(path, root)
            try:
                entry = Entry(path, read_result(path), label)
            except ResultsError as e:
                reason = str(e).removeprefix(f"{path}: ")
                skipped.append((label, reason))
                if warn is not None:
                    warn(f"warning: skipped {label}: {reason}")
                continue
            entry.records()  # a result that disagrees with its samples is refused, never shown
            entries.append(entry)
    if not entries:
        where = ", ".join(str(p) for p in paths)
        if n_files == 0:
            raise ResultsError(f"{where}: no result files found; expected <folder>/<model>/<task>.json "
                               f"as written by `sparc-eval run -o <folder>`")
        raise ResultsError(f"{where}: none of the {n_files} JSON file(s) is a readable sparc-eval result "
                           f"(first: {skipped[0][0]}: {skipped[0][1]})")
    return Collection(entries, skipped)


def _version_key(version: object) -> tuple:
    return (0, version, "") if isinstance(version, (int, float)) and not isinstance(version, bool) else (-1, 0, str(version))


def pick(entries: Iterable[Entry]) -> tuple[dict[Key, Entry], list[Conflict]]:
    """One entry per (model, task): the highest task version, then the latest start time.

    Returns the kept entries and one ``Conflict`` per (model, task) that had several results.
    """
    by_key: dict[Key, list[Entry]] = {}
    for e in entries:
        by_key.setdefault((e.model, e.task), []).append(e)
    kept: dict[Key, Entry] = {}
    conflicts: list[Conflict] = []
    for key, group in by_key.items():
        if len(group) == 1:
            kept[key] = group[0]
            continue
        ordered = sorted(group, key=lambda e: (_version_key(e.version), e.started, e.label), reverse=True)
        kept[key] = ordered[0]
        kind = "duplicate" if len({e.signature for e in ordered}) == 1 else "mixed"
        conflicts.append(Conflict(kind, ordered[0], ordered[1:]))
    return kept, conflicts
