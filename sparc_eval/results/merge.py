"""Did every shard of a sharded suite land? Missing, duplicated and stale results under a folder.

A suite run as a job array (``sparc-eval run --suite S --shard i/n``) writes one result per (model,
task), possibly into several output folders. ``merge_report`` finds every result JSON below a
folder and reports, per model: tasks of the suite with no result (and, given n, which shards they
belong to), tasks with more than one result that disagree (duplicates), and results computed with a
different task version or config than the current task definition (stale). Models are named by
their folder slug (``--model-name "My Model"`` finds ``my-model``). No torch is imported.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ResultsError
from ..names import slug
from .schema import ResultRecord
from .store import iter_result_files, read_result


@dataclass
class ModelReport:
    model: str
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    duplicated: dict[str, list[str]] = field(default_factory=dict)
    stale: dict[str, str] = field(default_factory=dict)
    missing_shards: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicated or self.stale)


@dataclass
class MergeReport:
    models: list[ModelReport]
    unreadable: list[str]

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.models) and bool(self.models)


def shard_of(task_index: int, n: int) -> int:
    """The 1-based shard (``--shard i/n``) that runs the task at ``task_index`` of the suite's list."""
    return task_index % n + 1


def merge_report(root: Path | str, tasks: Sequence[str], current: Mapping[str, tuple[int, str]],
                 shards: int | None = None, models: Sequence[str] = ()) -> MergeReport:
    """Check ``root`` against the suite's ``tasks``; ``current`` maps task -> (version, config_sha256)."""
    root = Path(root)
    if not root.exists():
        raise ResultsError(f"{root}: results folder does not exist")
    found: dict[str, dict[str, list[tuple[Path, ResultRecord]]]] = {}
    unreadable = []
    for path in iter_result_files(root):
        try:
            r = read_result(path)
        except ResultsError as e:
            unreadable.append(str(e))
            continue
        found.setdefault(slug(r.model.name), {}).setdefault(r.task.name, []).append((path, r))
    names = list(dict.fromkeys(slug(m) for m in models)) or sorted(found)
    reports = []
    for name in names:
        rep = ModelReport(name)
        have = found.get(name, {})
        for index, task in enumerate(tasks):
            entries = have.get(task, [])
            if not entries:
                rep.missing.append(task)
                if shards:
                    s = shard_of(index, shards)
                    if s not in rep.missing_shards:
                        rep.missing_shards.append(s)
                continue
            rep.present.append(task)
            if len({e[1].run_key for e in entries}) > 1 or len({str(e[1].metrics) for e in entries}) > 1:
                rep.duplicated[task] = [str(p) for p, _ in entries]
            version, sha = current[task]
            r = entries[0][1]
            if r.task.version != version:
                rep.stale[task] = f"task version {r.task.version} (current {version})"
            elif r.task.config_sha256 != sha:
                rep.stale[task] = "task config changed since this result was computed"
        rep.missing_shards.sort()
        reports.append(rep)
    return MergeReport(reports, unreadable)
