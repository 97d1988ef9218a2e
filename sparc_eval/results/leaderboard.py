"""The leaderboard: a model x task table of main metrics, with suite group aggregates (no torch).

``build(entries, suite=..., baseline=...)`` returns a ``Board`` that the renderers (Markdown, CSV,
LaTeX, HTML) only format. Decisions made here:

- Columns: ``Average`` (unweighted mean of every task's main metric, as DataComp), then one column
  per group (unweighted mean of its tasks; groups from ``--suite``, or else the tasks' own
  ``groups`` that hold at least two of the board's tasks), then one per task. When the models have
  different task sets, ``Average``, rank and each group mean are over the tasks every ranked model
  has (the same tasks for every row, never a mean over each model's own subset), and a note says
  which tasks are left out; a group none of whose tasks is shared keeps all of them (a row lacking
  one gets no value there). A row lacking a task of an aggregate gets no value for it.
  Lower-is-better main metrics (CHAIR) are left out of an aggregate that also holds
  higher-is-better ones, and a note says so; so are suite tasks that nobody has results for (their
  column stays, empty). A group's chance level is the mean of its tasks'.
- Rows have the role their results store (``model``, ``control``, ``reference``): models first, then
  controls (e.g. the untrained architecture, which should sit at chance), then references (e.g. the
  ground-truth oracle). Only models are ranked and marked best.
- Rank by ``Average`` (by the task itself when the board has one task), direction-aware; ties share
  the lower rank; models without a value are unranked. The best value of each column is marked.
  Values that agree to ``TIE_DECIMALS`` (9) decimals tie, for the rank and the best mark alike.
- Chance: each task cell is *at chance* or *below chance* when its interval covers the chance level
  its result stores, or lies wholly on the worse side of it (``results.chance``); the renderers mark
  both. Columns of probes with categories a text-only classifier solves (``artifact_acc``) are flagged.
- Seed groups (results naming a ``seed_group``): a second table of mean ± sd over seeds, and, when
  ``baseline`` names a seed group, each other group's method difference per task with its interval
  (``results.seeds``), marked significant after Holm's correction over the table's differences and
  never when both groups are at or below chance. ``baseline`` may name a model or a seed group (deltas
  of the main table are then to the group's mean).
- Partial (``--limit``) results form their own table: no rank, no best marks, deltas only against
  the baseline model's own partial results.
- Flags: several results for one (model, task) that differ (task version, config hash, dataset or
  seed) are *mixed* (the highest version, then the latest run, is shown); a result whose task
  version, config hash or dataset differs from its column's reference (the newest task version,
  then the most common config and dataset), or whose task YAML has since changed version, is *stale*. Flagged values are shown
  with the reason, and aggregates that contain them are flagged too.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from ..errors import ResultsError, UnknownNameError
from ..metrics.controls import holm, significant
from .chance import artifact_flags, artifact_text, entry_status
from .collect import Collection, Entry, Key, pick
from .schema import ROLES
from .seeds import GroupStat, MethodDifference, group_no_skill, group_stat, method_difference, seed_groups

AVERAGE = "average"
TIE_DECIMALS = 9


@dataclass
class Column:
    """One leaderboard column: a task (``kind="task"``), a suite group or the overall average."""

    key: str
    label: str
    kind: str
    higher_is_better: bool = True
    metric: str | None = None
    unit: str = "%"
    chance: float | None = None
    members: list[str] = field(default_factory=list)
    version: object = None
    description: str = ""
    artifact: list[str] = field(default_factory=list)


@dataclass
class Grid:
    """A ``Table`` as numpy arrays ``[model i, column j]`` (renderers read cells from here: fast)."""

    values: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n_used: np.ndarray
    n_total: np.ndarray
    best: np.ndarray
    delta: np.ndarray | None
    rank: np.ndarray
    n_tasks: np.ndarray
    status: np.ndarray


@dataclass
class Table:
    """Values of one table (full or partial runs); rows in display order, columns by ``Column.key``."""

    values: pd.DataFrame
    lo: pd.DataFrame
    hi: pd.DataFrame
    n_used: pd.DataFrame
    n_total: pd.DataFrame
    best: pd.DataFrame
    delta: pd.DataFrame | None
    rank: pd.Series
    n_tasks: pd.Series
    flags: dict[Key, list[str]]
    entries: dict[Key, Entry]
    roles: dict[str, str] = field(default_factory=dict)
    status: pd.DataFrame | None = None

    @cached_property
    def models(self) -> list[str]:
        return list(self.values.index)

    def role(self, model: str) -> str:
        return self.roles.get(model, "model")

    @cached_property
    def grid(self) -> Grid:
        def arr(df: pd.DataFrame) -> np.ndarray:
            return df.to_numpy(dtype=float)

        return Grid(arr(self.values), arr(self.lo), arr(self.hi), arr(self.n_used), arr(self.n_total),
                    self.best.to_numpy(dtype=bool), arr(self.delta) if self.delta is not None else None,
                    self.rank.to_numpy(dtype=float), self.n_tasks.to_numpy(dtype=int),
                    self.status.to_numpy(dtype=object) if self.status is not None
                    else np.full(self.values.shape, None, dtype=object))


@dataclass
class Board:
    """A whole leaderboard: columns (aggregates first, then tasks), the full-run and partial-run tables."""

    title: str
    columns: list[Column]
    full: Table
    partial: Table | None
    baseline: str | None = None
    suite: str | None = None
    notes: list[str] = field(default_factory=list)
    seeds: SeedTable | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)

    @property
    def task_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "task"]

    @property
    def aggregate_columns(self) -> list[Column]:
        return [c for c in self.columns if c.kind != "task"]


@dataclass
class SeedRow:
    """One seed group of the seed table: per column key, the mean ± sd over its seeds and, against the
    baseline group (task columns), the method difference, its Holm-adjusted p-value and whether it is
    significant."""

    group: str
    models: list[str]
    stats: dict[str, GroupStat]
    diff: dict[str, MethodDifference] = field(default_factory=dict)
    p_holm: dict[str, float] = field(default_factory=dict)
    significant: dict[str, bool] = field(default_factory=dict)
    delta: dict[str, float] = field(default_factory=dict)


@dataclass
class SeedTable:
    """Seed groups of the full runs (``results.seeds``); ``baseline`` is the group differences are to."""

    rows: list[SeedRow]
    baseline: str | None = None
    n_tests: int = 0


def metric_direction(key: str) -> tuple[bool, str, float | None, bool]:
    """``(higher_is_better, unit, registry chance, registered)`` of a metric key."""
    from ..metrics.registry import get

    try:
        info = get(key)
    except UnknownNameError:
        return True, "", None, False
    return info.higher_is_better, info.unit, info.chance, True


def _reference(entries: Sequence[Entry]) -> Entry:
    """The entry a column is measured against: highest version, then the most common config+dataset."""
    top = max(e.version if isinstance(e.version, (int, float)) else -math.inf for e in entries)
    candidates = [e for e in entries if (e.version if isinstance(e.version, (int, float)) else -math.inf) == top]
    counts = Counter((e.config_sha256, e.fingerprint) for e in candidates)
    return max(candidates, key=lambda e: (counts[(e.config_sha256, e.fingerprint)], e.started, e.label))


def _by_task(kept: Mapping[Key, Entry]) -> dict[str, list[Entry]]:
    out: dict[str, list[Entry]] = {}
    for (_, task), e in kept.items():
        out.setdefault(task, []).append(e)
    return out


def imported_note(e: Entry) -> str:
    """The mark of an imported result, wherever it is shown."""
    source = (e.record.details.get("source") or {}).get("format", "another tool")
    return f"imported from {source} ({e.label}): no per-sample records, so no interval and no samples check"


def _stale_reasons(e: Entry, ref: Entry, current: object) -> list[str]:
    if e.signature[:3] == ref.signature[:3] and (current is None or e.version == current):
        return []
    reasons = []
    if e.version != ref.version:
        reasons.append(f"stale: task version {e.version}, the column uses version {ref.version}")
    elif e.config_sha256 != ref.config_sha256:
        reasons.append(f"stale: task config {e.config_sha256[:12]} differs from the column's {ref.config_sha256[:12]}")
    if e.fingerprint != ref.fingerprint and e.version == ref.version:
        reasons.append(f"stale: dataset {str(e.fingerprint)[:12]} differs from the column's {str(ref.fingerprint)[:12]}")
    if current is not None and e.version != current:
        reasons.append(f"stale: task version {e.version}; the task YAML is now version {current}")
    return reasons


def _task_columns(tasks: Sequence[str], refs: Mapping[str, Entry], notes: list[str]) -> list[Column]:
    cols = []
    for t in tasks:
        ref = refs.get(t)
        if ref is None:
            cols.append(Column(t, t, "task", description="no results"))
            continue
        hib, unit, chance, registered = metric_direction(ref.main_metric)
        if not registered:
            notes.append(f"{t}: main metric {ref.main_metric!r} is not in the metric registry; "
                         f"treated as higher-is-better")
        own = ref.chance()
        cols.append(Column(t, t, "task", hib, ref.main_metric, unit, own if own is not None else chance,
                           version=ref.version, artifact=artifact_flags(ref)))
    return cols


def _aggregate(key: str, label: str, members: Sequence[Column], notes: list[str], what: str,
               shared: set[str] | None = None) -> Column | None:
    if not members:
        return None
    directions = {c.higher_is_better for c in members}
    used = list(members)
    if len(directions) > 1:
        used = [c for c in members if c.higher_is_better]
        left = [c.key for c in members if not c.higher_is_better]
        notes.append(f"{label}: lower-is-better task(s) {', '.join(left)} left out of the mean "
                     f"(it mixes directions)")
    common = [c for c in used if shared is None or c.key in shared]
    count = f"{len(used)} task{'s' if len(used) != 1 else ''}"
    if common and len(common) < len(used):
        count = f"{len(common)} of {count}: those every ranked model has"
        used = common
    chances = [c.chance for c in used]
    chance = float(np.mean(chances)) if all(ch is not None for ch in chances) else None
    units = {c.unit for c in used}
    return Column(key, label, "group" if key != AVERAGE else "average", used[0].higher_is_better,
                  unit=units.pop() if len(units) == 1 else "", chance=chance, members=[c.key for c in used],
                  description=f"unweighted mean of {what} ({count})")


def _groups(tasks: Sequence[str], refs: Mapping[str, Entry], suite) -> dict[str, list[str]]:
    if suite is not None:
        return {g: [t for t in tasks if t in members] for g, members in suite.groups.items()}
    groups: dict[str, list[str]] = {}
    for t in tasks:
        if t in refs:
            for g in refs[t].groups:
                groups.setdefault(g, []).append(t)
    return {g: members for g, members in sorted(groups.items()) if len(members) > 1}


def _shared_tasks(kept: Mapping[Key, Entry], columns: Sequence[Column], notes: list[str]) -> set[str] | None:
    """Task keys every ranked model (every row, when none is ranked) has a value for; None when that is
    every task (a note names what is left out otherwise)."""
    models = sorted({m for m, _ in kept})
    roles = {m: _role([e for (mm, _), e in kept.items() if mm == m]) for m in models}
    ranked = [m for m in models if roles[m] == "model"] or models
    lacking = {c.key: [m for m in ranked if (m, c.key) not in kept or math.isnan(kept[(m, c.key)].value(c.metric))]
               for c in columns if c.metric is not None}
    if not any(lacking.values()):
        return None
    shared = {t for t, ms in lacking.items() if not ms}
    notes.append("the models have different task sets: Average, rank and group means are over the "
                 f"{len(shared)} task(s) every ranked model has; left out: "
                 + "; ".join(f"{t} (missing for {', '.join(ms)})" for t, ms in lacking.items() if ms))
    return shared


def _role(entries: Sequence[Entry]) -> str:
    """The role of a model's row: the one most of its results store (``model`` on a tie)."""
    counts = Counter(e.role for e in entries)
    top = max(counts.values())
    return next(r for r in ROLES if counts.get(r) == top)


def _table(kept: Mapping[Key, Entry], columns: Sequence[Column], refs: Mapping[str, Entry],
           current: Mapping[str, object], conflicts, ranked: bool, baseline: str | None,
           baseline_members: Sequence[str] = ()) -> Table:
    tasks = [c for c in columns if c.kind == "task"]
    models = sorted({m for m, _ in kept}, key=lambda m: (m.lower(), m))
    roles = {m: _role([e for (mm, _), e in kept.items() if mm == m]) for m in models}
    vals: dict[str, dict[str, float]] = {m: {} for m in models}
    lo: dict[str, dict[str, float]] = {m: {} for m in models}
    hi: dict[str, dict[str, float]] = {m: {} for m in models}
    n_used: dict[str, dict[str, float]] = {m: {} for m in models}
    n_total: dict[str, dict[str, float]] = {m: {} for m in models}
    states: dict[str, dict[str, object]] = {m: {} for m in models}
    flags: dict[Key, list[str]] = {}
    entries: dict[Key, Entry] = {}
    for c in tasks:
        for m in models:
            e = kept.get((m, c.key))
            if e is None:
                continue
            entries[(m, c.key)] = e
            vals[m][c.key] = e.value(c.metric)
            iv = e.interval(c.metric)
            if iv:
                lo[m][c.key], hi[m][c.key] = iv
            states[m][c.key] = entry_status(e, c.metric)
            n_used[m][c.key] = float(e.dataset.n_used or math.nan)
            n_total[m][c.key] = float(e.dataset.n_total or math.nan)
            reasons = [imported_note(e)] if e.imported else _stale_reasons(e, refs[c.key], current.get(c.key))
            if math.isnan(vals[m][c.key]):
                reasons.append(f"metric {c.metric} missing from {e.label}")
            if reasons:
                flags.setdefault((m, c.key), []).extend(reasons)
    for conflict in conflicts:
        if conflict.kind == "mixed":
            key = (conflict.kept.model, conflict.kept.task)
            if key in entries:
                flags.setdefault(key, []).insert(0, conflict.describe())
    keys = [c.key for c in columns]
    frame = pd.DataFrame.from_dict(vals, orient="index").reindex(index=models, columns=keys).astype(float)
    for c in columns:
        if c.kind != "task":
            frame[c.key] = frame[c.members].mean(axis=1, skipna=False) if c.members else np.nan
            for m in models:
                bad = [t for t in c.members if (m, t) in flags]
                if bad and not math.isnan(frame.at[m, c.key]):
                    flags[(m, c.key)] = [f"includes flagged result(s): {', '.join(bad)}"]
    n_tasks = frame[[c.key for c in tasks]].notna().sum(axis=1)
    tied = frame.round(TIE_DECIMALS)
    rank_col = next((c for c in columns if c.key == AVERAGE), tasks[0] if len(tasks) == 1 else None)
    rankable = [m for m in models if roles[m] == "model"]
    if ranked and rank_col is not None:
        rank = tied.loc[rankable, rank_col.key].rank(ascending=not rank_col.higher_is_better, method="min")
        rank = rank.reindex(models)
    else:
        rank = pd.Series(np.nan, index=models)
    role_order = {r: i for i, r in enumerate(ROLES)}
    order = sorted(models, key=lambda m: (role_order[roles[m]], math.isnan(rank[m]),
                                          rank[m] if not math.isnan(rank[m]) else 0, m.lower(), m))
    best = pd.DataFrame(False, index=models, columns=keys)
    if ranked:
        for c in columns:
            s = tied.loc[rankable, c.key]
            if s.notna().sum() >= 2:
                best.loc[rankable, c.key] = (s == (s.max() if c.higher_is_better else s.min())).to_numpy()
    delta = None
    if baseline is not None and baseline in models:
        delta = frame.sub(frame.loc[baseline], axis=1)
    elif baseline_members and all(m in models for m in baseline_members):
        delta = frame.sub(frame.loc[list(baseline_members)].mean(axis=0, skipna=False), axis=1)

    def reorder(df: pd.DataFrame) -> pd.DataFrame:
        return df.reindex(index=order, columns=keys)

    def from_dict(d: dict) -> pd.DataFrame:
        return reorder(pd.DataFrame.from_dict(d, orient="index").reindex(columns=keys).astype(float))

    status = pd.DataFrame.from_dict(states, orient="index").reindex(index=order, columns=keys).astype(object)
    status = status.where(status.notna(), None)
    return Table(values=reorder(frame), lo=from_dict(lo), hi=from_dict(hi), n_used=from_dict(n_used),
                 n_total=from_dict(n_total), best=reorder(best), delta=reorder(delta) if delta is not None else None,
                 rank=rank.reindex(order), n_tasks=n_tasks.reindex(order), flags=flags, entries=entries,
                 roles=roles, status=status)


def _seed_table(entries: Sequence[Entry], columns: Sequence[Column], full: Table, baseline: str | None,
                seed: int) -> SeedTable | None:
    """Mean ± sd over the seeds of every seed group with results in the full table, and the method
    differences to the ``baseline`` group (task columns), Holm-adjusted over the whole table."""
    groups = seed_groups(e for e in entries if e.model in full.roles)
    if not groups:
        return None
    by_col = {c.key: c for c in columns}
    rows = []
    for name, per_task in sorted(groups.items(), key=lambda kv: (kv[0] != baseline, kv[0].lower(), kv[0])):
        models = sorted({e.model for es in per_task.values() for e in es})
        stats = {t: group_stat(es, by_col[t].metric) for t, es in per_task.items() if t in by_col and by_col[t].metric}
        for c in columns:
            if c.kind != "task":
                vals = full.values.loc[models, c.key].to_numpy(dtype=float)
                stats[c.key] = GroupStat([float(v) for v in vals], models)
        rows.append(SeedRow(name, models, stats))
    table = SeedTable(rows, baseline if baseline in groups else None)
    if table.baseline is None:
        return table
    base = groups[table.baseline]
    base_row = rows[0]
    tests: dict[tuple[str, str], float] = {}
    for row in rows[1:]:
        per_task = groups[row.group]
        for c in columns:
            if c.key in row.stats and c.key in base_row.stats:
                row.delta[c.key] = row.stats[c.key].mean - base_row.stats[c.key].mean
            if c.kind == "task" and c.key in per_task and c.key in base:
                d = method_difference(base[c.key], per_task[c.key], c.metric, seed)
                row.diff[c.key] = d
                if d.has_noise:
                    tests[(row.group, c.key)] = d.p_value
    adjusted = holm(tests) if tests else {}
    table.n_tests = len(tests)
    for row in rows[1:]:
        per_task = groups[row.group]
        for key, d in row.diff.items():
            if (row.group, key) not in adjusted:
                continue
            p = adjusted[(row.group, key)]
            row.p_holm[key] = p
            metric = by_col[key].metric
            row.significant[key] = p <= 0.05 and significant(d.interval, group_no_skill(base[key], metric),
                                                            group_no_skill(per_task[key], metric))
    return table


def build(source: Collection | Sequence[Entry], *, suite=None, baseline: str | None = None, title: str | None = None,
          current_versions: Mapping[str, object] | None = None, seed: int = 0) -> Board:
    """The leaderboard of ``source`` (a ``Collection`` or entries).

    ``suite``: a ``tasks.Suite`` fixing the task columns (in its order) and groups; results of other
    tasks are left out (noted). ``baseline``: a model name or a seed group of the results, for deltas
    (``seed``: of the seed groups' bootstrap).
    ``current_versions``: ``{task: version}`` of the task YAMLs now (see ``tasks.task_versions``).
    """
    entries = source.entries if isinstance(source, Collection) else list(source)
    notes: list[str] = []
    if isinstance(source, Collection):
        notes += [f"skipped unreadable file {label}: {reason}" for label, reason in source.skipped]
    kept_full, conflicts_full = pick(e for e in entries if not e.partial)
    kept_part, conflicts_part = pick(e for e in entries if e.partial)
    seen = sorted({t for _, t in kept_full} | {t for _, t in kept_part})
    if suite is not None:
        tasks = list(suite.tasks)
        outside = [t for t in seen if t not in tasks]
        if outside:
            notes.append(f"results of task(s) outside suite {suite.name!r} left out: {', '.join(outside)}")
        kept_full = {k: e for k, e in kept_full.items() if k[1] in tasks}
        kept_part = {k: e for k, e in kept_part.items() if k[1] in tasks}
        if not kept_full and not kept_part:
            raise ResultsError(f"none of the {len(entries)} result(s) is for a task of suite {suite.name!r} "
                               f"({', '.join(tasks)}); the results hold {', '.join(outside)}")
    else:
        tasks = seen
    refs_full = {t: _reference(es) for t, es in _by_task(kept_full).items()}
    refs_part = {t: _reference(es) for t, es in _by_task(kept_part).items()}
    missing = [t for t in tasks if t not in refs_full and t not in refs_part]
    if missing:
        notes.append(f"no results for task(s): {', '.join(missing)}; left out of Average and the group means")
    task_cols = _task_columns(tasks, {**refs_part, **refs_full}, notes)
    by_key = {c.key: c for c in task_cols if c.metric is not None}
    shared = _shared_tasks(kept_full, task_cols, notes) if len(tasks) > 1 else None
    aggregates: list[Column] = []
    if len(tasks) > 1:
        avg = _aggregate(AVERAGE, "Average", list(by_key.values()), notes, "every task's main metric", shared)
        if avg is not None:
            aggregates.append(avg)
    groups = _groups(tasks, {**refs_part, **refs_full}, suite)
    for g, members in groups.items():
        col = _aggregate(f"group:{g}", g, [by_key[t] for t in members if t in by_key], notes,
                         f"the tasks of group {g!r}", shared)
        if col is not None:
            aggregates.append(col)
    columns = aggregates + task_cols
    current = dict(current_versions or {})
    models = {m for m, _ in kept_full}
    members: list[str] = []
    if baseline is not None and baseline not in models:
        members = sorted({e.model for e in kept_full.values() if e.seed_group == baseline})
        if not members:
            groups = {e.seed_group for e in kept_full.values() if e.seed_group}
            raise UnknownNameError("baseline model or seed group", baseline, sorted(models | groups))
    for c in conflicts_full + conflicts_part:
        if c.kind == "duplicate":
            notes.append(f"{c.kept.model} / {c.kept.task}: {c.describe()}")
    full = _table(kept_full, columns, refs_full, current, conflicts_full, True, baseline, members)
    partial = (_table(kept_part, columns, refs_part, current, conflicts_part, False, baseline, members)
               if kept_part else None)
    for c in task_cols:
        if c.artifact:
            notes.append(artifact_text(c.key, c.artifact))
    seeds = _seed_table(list(kept_full.values()), columns, full, baseline, seed) if full.models else None
    default_title = "Leaderboard" + (f": {suite.name}" if suite is not None else "")
    return Board(title or default_title, columns, full, partial, baseline,
                 suite.name if suite is not None else None, notes, seeds, groups)


def aggregate_interval(table: Table, model: str, column: Column) -> tuple[float, float] | None:
    """An aggregate column's 95% interval for ``model``: the mean of its tasks' interval ends (None unless every
    task has one). Exact if the tasks' errors were perfectly correlated, and never narrower than the interval of
    the mean otherwise (the standard error of a mean is at most the mean of the standard errors)."""
    ends = [(table.lo.at[model, t], table.hi.at[model, t]) for t in column.members]
    if not ends or any(math.isnan(a) or math.isnan(b) for a, b in ends):
        return None
    return float(np.mean([a for a, _ in ends])), float(np.mean([b for _, b in ends]))
