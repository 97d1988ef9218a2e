"""Paired differences of two result sets (``sparc-eval compare A B``), with intervals and significance.

Pairing: when each side holds one model, its results are paired by task; otherwise by (model, task).
Only full runs are compared (partial ``--limit`` runs are left out with a warning). A pair on the
same dataset (equal fingerprints) with per-sample records on both sides gets a paired bootstrap over
the shared images (``paired.differences``: 1000 seeded replicates, 95% percentile interval,
two-sided p-value); otherwise the two stored intervals are combined (unpaired, normal
approximation). Pairs whose task version, config or seed differ are compared with a note.

Significance: the p-values of all the rows are adjusted together (Holm-Bonferroni,
``metrics.controls.holm``); a difference is significant when its adjusted p-value is at most 0.05 and
its 95% interval excludes 0, and never when both sides are at or below chance (each side's own
interval against the chance level its result stores; marked in the table, ``results.chance``).
Control metrics (``blind_acc``, ``artifact_acc``) are shown but never marked nor counted.

Seed groups (``compare_groups``): when a side holds several models of one seed group (or ``--a`` /
``--b`` name a group), the sides are methods: per task and metric, mean ± sd over each side's seeds and
the method difference B - A with a two-way bootstrap or t-interval over seeds (``results.seeds``),
Holm-adjusted over the rows, and never significant when every seed of both sides is at or below chance.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from ..errors import ResultsError
from ..metrics.controls import holm, significant
from .chance import MARKS, entry_status, is_control_metric, no_skill
from .collect import Collection, Entry, Key, pick
from .formatting import DASH, arrow, interval, num, signed
from .formatting import markdown_escape as md
from .leaderboard import metric_direction
from .paired import Difference, differences, select_metrics
from .seeds import MethodDifference, group_no_skill, method_difference

ALPHA = 0.05


@dataclass
class CompareRow:
    """One (task, metric) of two results: the difference, each side's standing against chance, the
    Holm-adjusted p-value and whether the difference is significant (see the module docstring)."""

    a: Entry
    b: Entry
    difference: Difference
    higher_is_better: bool
    note: str = ""
    a_chance: str | None = None
    b_chance: str | None = None
    p_holm: float = math.nan
    significant: bool = False
    control: bool = False

    @property
    def better(self) -> str:
        """``B`` or ``A`` when the difference is significant, else ``-``."""
        if not self.significant:
            return "-"
        return "B" if (self.difference.diff > 0) == self.higher_is_better else "A"


def _mark_significance(rows: Sequence, p_of: Callable, interval_of: Callable, no_skill_of: Callable) -> None:
    """Holm over the rows that have a noise estimate and are not controls; set ``p_holm``, ``significant``."""
    tested = [i for i, r in enumerate(rows) if not r.control and interval_of(r) is not None and not math.isnan(p_of(r))]
    adjusted = holm([p_of(rows[i]) for i in tested]) if tested else []
    for i, p in zip(tested, adjusted):
        r = rows[i]
        r.p_holm = p
        a_none, b_none = no_skill_of(r)
        r.significant = p <= ALPHA and significant(interval_of(r), a_none, b_none)


def _full(c: Collection, side: str, warn: Callable[[str], None] | None) -> dict[Key, Entry]:
    """One full run per (model, task) of one side; its partial runs are reported and left out."""
    kept, _ = pick(e for e in c.entries if not e.partial)
    partial = sorted(e.label for e in c.entries if e.partial)
    if partial and warn is not None:
        warn(f"warning: {side}: {len(partial)} partial (--limit) result(s) not compared: {', '.join(partial)}")
    if not kept:
        raise ResultsError(f"nothing to compare: {side} holds only partial (--limit) results; compare full runs")
    return kept


def _pairs(kept_a: Mapping[Key, Entry], kept_b: Mapping[Key, Entry]) -> list[tuple[Entry, Entry]]:
    models_a, models_b = {m for m, _ in kept_a}, {m for m, _ in kept_b}
    if len(models_a) == 1 and len(models_b) == 1:
        by_task_b = {t: e for (_, t), e in kept_b.items()}
        pairs = [(e, by_task_b[t]) for (_, t), e in sorted(kept_a.items()) if t in by_task_b]
    else:
        pairs = [(kept_a[k], kept_b[k]) for k in sorted(kept_a) if k in kept_b]
    if not pairs:
        raise ResultsError(f"nothing to compare: A has model(s) {sorted(models_a)} on tasks "
                           f"{sorted({t for _, t in kept_a})}, B has {sorted(models_b)} on {sorted({t for _, t in kept_b})}; "
                           f"pairs need a common task (one model per side) or a common (model, task)")
    return pairs


def _identity_notes(a: Entry, b: Entry) -> list[str]:
    notes = [f"{side} imported (no samples: no paired interval)" for side, e in (("A", a), ("B", b)) if e.imported]
    if a.imported or b.imported:
        return notes
    if a.version != b.version or a.config_sha256 != b.config_sha256:
        notes.append(f"task version/config differ (v{a.version} {a.config_sha256[:8]} vs "
                     f"v{b.version} {b.config_sha256[:8]}): may not be comparable")
    if a.seed != b.seed:
        notes.append(f"seeds differ ({a.seed} vs {b.seed}): may not be comparable")
    return notes


def _check_metrics_known(metrics: str | Sequence[str], pairs: Sequence[tuple[Entry, Entry]]) -> None:
    if isinstance(metrics, str):
        return
    known = sorted({k for ea, eb in pairs for k in ea.metrics if k in eb.metrics})
    unknown = [k for k in metrics if k not in known]
    if unknown:
        raise ResultsError(f"--metrics {', '.join(unknown)}: reported by none of the compared results; "
                           f"known: {', '.join(known) or '(none)'}, or main, all")


def compare(a: Collection, b: Collection, metrics: str | Sequence[str] = "main", seed: int = 0,
            warn: Callable[[str], None] | None = None, a_name: str | None = None,
            b_name: str | None = None) -> list[CompareRow] | list[GroupRow]:
    """Differences ``B - A`` per paired (model, task) and metric (those of ``metrics`` both report);
    ``a_name`` / ``b_name`` keep one model or seed group of a side. When a side is several seeds of one
    method (``group_mode``) or a name is a seed group's, the rows are ``compare_groups``'s."""
    kept_a, kept_b = sides(a, b, a_name, b_name, warn)
    named_group = any(name is not None and all(e.seed_group == name for e in side.values())
                      for name, side in ((a_name, kept_a), (b_name, kept_b)))
    if named_group or group_mode(kept_a, kept_b):
        _check_metrics_known(metrics, [(ea, eb) for ea in kept_a.values() for eb in kept_b.values()
                                       if ea.task == eb.task])
        return compare_groups(kept_a, kept_b, metrics, seed)
    pairs = _pairs(kept_a, kept_b)
    _check_metrics_known(metrics, pairs)
    rows = []
    for ea, eb in pairs:
        keys = [k for k in select_metrics(ea, metrics) if k in eb.metrics]
        diffs, notes = differences(ea, eb, keys, seed, warn=warn)
        note = "; ".join(_identity_notes(ea, eb) + notes)
        rows += [CompareRow(ea, eb, diffs[k], metric_direction(k)[0], note, entry_status(ea, k), entry_status(eb, k),
                            control=is_control_metric(k)) for k in keys]
    _mark_significance(rows, lambda r: r.difference.p_value,
                       lambda r: (r.difference.lo, r.difference.hi) if r.difference.has_noise else None,
                       lambda r: (no_skill(r.a_chance), no_skill(r.b_chance)))
    return rows


@dataclass
class GroupRow:
    """One (task, metric) of two seed groups: the method difference and its marks."""

    task: str
    a_group: str
    b_group: str
    difference: MethodDifference
    higher_is_better: bool
    a_no_skill: bool = False
    b_no_skill: bool = False
    p_holm: float = math.nan
    significant: bool = False
    control: bool = False
    note: str = ""

    @property
    def better(self) -> str:
        if not self.significant:
            return "-"
        return "B" if (self.difference.diff > 0) == self.higher_is_better else "A"


def _side(c: Collection, name: str | None, side: str, warn: Callable[[str], None] | None) -> dict[Key, Entry]:
    """One full run per (model, task) of a side, keeping the models named ``name`` (a model or a seed group)."""
    kept = _full(c, side, warn)
    if name is None:
        return kept
    chosen = {k: e for k, e in kept.items() if e.model == name or e.seed_group == name}
    if not chosen:
        known = sorted({e.model for e in kept.values()} | {e.seed_group for e in kept.values() if e.seed_group})
        raise ResultsError(f"--{side.lower()} {name}: no model or seed group of that name in {side}'s results; "
                           f"found {', '.join(known)}")
    return chosen


def group_mode(a: Mapping[Key, Entry], b: Mapping[Key, Entry]) -> bool:
    """Whether the sides are methods: one of them holds several models, all of one seed group."""
    def one_group(side: Mapping[Key, Entry]) -> bool:
        models = {e.model for e in side.values()}
        groups = {e.seed_group for e in side.values()}
        return len(models) > 1 and len(groups) == 1 and None not in groups
    return one_group(a) or one_group(b)


def sides(a: Collection, b: Collection, a_name: str | None = None, b_name: str | None = None,
          warn: Callable[[str], None] | None = None) -> tuple[dict[Key, Entry], dict[Key, Entry]]:
    """Each side's results, filtered by ``a_name`` / ``b_name`` (a model or a seed group)."""
    return _side(a, a_name, "A", warn), _side(b, b_name, "B", warn)


def compare_groups(a: Mapping[Key, Entry], b: Mapping[Key, Entry], metrics: str | Sequence[str] = "main",
                   seed: int = 0) -> list[GroupRow]:
    """Method differences B - A per task both sides have, for ``metrics`` (see ``paired.select_metrics``)."""
    by_task_a: dict[str, list[Entry]] = {}
    by_task_b: dict[str, list[Entry]] = {}
    for (_, t), e in a.items():
        by_task_a.setdefault(t, []).append(e)
    for (_, t), e in b.items():
        by_task_b.setdefault(t, []).append(e)
    name = lambda es: ", ".join(sorted({e.seed_group or e.model for e in es}))  # noqa: E731
    tasks = [t for t in sorted(by_task_a) if t in by_task_b]
    if not tasks:
        raise ResultsError(f"nothing to compare: A has tasks {sorted(by_task_a)}, B has {sorted(by_task_b)}")
    rows = []
    for t in tasks:
        ea, eb = by_task_a[t], by_task_b[t]
        keys = [k for k in select_metrics(ea[0], metrics) if all(k in e.metrics for e in ea + eb)]
        for k in keys:
            d = method_difference(ea, eb, k, seed)
            notes = [d.note] if d.note else []
            if len({(e.version, e.config_sha256) for e in ea + eb}) > 1:
                notes.append("task version/config differ between seeds: may not be comparable")
            rows.append(GroupRow(t, name(ea), name(eb), d, metric_direction(k)[0], group_no_skill(ea, k),
                                 group_no_skill(eb, k), control=is_control_metric(k), note="; ".join(notes)))
    _mark_significance(rows, lambda r: r.difference.p_value, lambda r: r.difference.interval,
                       lambda r: (r.a_no_skill, r.b_no_skill))
    return rows


HEAD = ("task", "metric", "A", "B", "B - A", "95% CI", "p", "p Holm", "better", "n", "method", "note")
GROUP_HEAD = ("task", "metric", "A mean ± sd", "B mean ± sd", "B - A", "95% CI", "interval", "p", "p Holm", "better",
              "note")


def _value(v: float, state: str | None, digits: int) -> str:
    return num(v, digits) + (f" {MARKS[state]}" if state in MARKS else "")


def _better(r) -> str:
    return "control" if r.control else r.better


def _fields(r: CompareRow, digits: int) -> list[str]:
    d = r.difference
    pair = f"{r.a.model} / {r.a.task}" if r.a.model == r.b.model else r.a.task
    return [pair, f"{d.metric} {arrow(r.higher_is_better)}", _value(d.a, r.a_chance, digits),
            _value(d.b, r.b_chance, digits), signed(d.diff, digits), interval(d.lo, d.hi, digits) or DASH,
            f"{d.p_value:.3f}" if d.has_noise else DASH, DASH if math.isnan(r.p_holm) else f"{r.p_holm:.3f}",
            _better(r), str(d.n_clusters) if d.n_clusters else DASH, d.method, r.note]


def _group_fields(r: GroupRow, digits: int) -> list[str]:
    d = r.difference
    iv = d.interval

    def stat(s, none: bool) -> str:
        return f"{num(s.mean, digits)} ± {num(s.sd, digits)} (n={s.n})" + (" ≤chance" if none else "")

    return [r.task, f"{d.metric} {arrow(r.higher_is_better)}", stat(d.a, r.a_no_skill), stat(d.b, r.b_no_skill),
            signed(d.diff, digits), interval(iv[0], iv[1], digits) if iv else DASH, d.method,
            DASH if math.isnan(d.p_value) else f"{d.p_value:.3f}", DASH if math.isnan(r.p_holm) else f"{r.p_holm:.3f}",
            _better(r), r.note]


def _title(rows: list) -> str:
    if rows and isinstance(rows[0], GroupRow):
        return f"B = {rows[0].b_group} minus A = {rows[0].a_group} (seed groups: mean over seeds)"
    a = sorted({r.a.model for r in rows})
    b = sorted({r.b.model for r in rows})
    return f"B = {', '.join(b)} minus A = {', '.join(a)}"


def summary(rows: list) -> str:
    """The one-line verdict under a comparison."""
    tested = [r for r in rows if not math.isnan(r.p_holm)]
    n_sig = sum(r.significant for r in rows)
    text = (f"{n_sig} of {len(rows)} difference(s) significant at 95% after Holm's correction over the {len(tested)} "
            f"tested")
    if any(r.control for r in rows):
        text += "; control metrics are shown, never tested"
    return text + "; none where both sides are at or below chance (≈ at, ▾ below, ≤chance: every seed at or below)"


def _layout(rows: list) -> tuple[tuple[str, ...], Callable, set[int]]:
    """Header, field function and the indices of user-text fields of the rows' kind."""
    if rows and isinstance(rows[0], GroupRow):
        return GROUP_HEAD, _group_fields, {0, 1, 10}
    return HEAD, _fields, {0, 1, 11}


def print_comparison(rows: list, console: Console | None = None, digits: int = 2) -> None:
    console = console or Console(width=220)
    head, fields, _ = _layout(rows)
    table = Table(*head, box=None, header_style="bold", title=rich_escape(_title(rows)), title_justify="left")
    for r in rows:
        cells = [rich_escape(c) for c in fields(r, digits)]
        if r.better in ("A", "B"):
            colour = "green" if r.better == "B" else "red"
            cells[4] = f"[{colour}]{cells[4]}[/{colour}]"
        table.add_row(*cells)
    console.print(table)
    console.print(rich_escape(summary(rows)))


def comparison_markdown(rows: list, digits: int = 2) -> str:
    head, fields, text = _layout(rows)
    align = ["---:" if i not in text and h not in ("better", "method", "interval") else "---" for i, h in enumerate(head)]
    out = [f"### {md(_title(rows))}", "", "| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(md(c) if i in text else c for i, c in enumerate(fields(r, digits))) + " |"
            for r in rows]
    return "\n".join(out) + "\n\n" + md(summary(rows)) + "\n"


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else value


def comparison_json(rows: list) -> str:
    """The rows as a JSON list (NaN written as null)."""
    if rows and isinstance(rows[0], GroupRow):
        items = []
        for r in rows:
            d, iv = r.difference, r.difference.interval
            items.append({"group_a": r.a_group, "group_b": r.b_group, "task": r.task, "metric": d.metric,
                          "higher_is_better": r.higher_is_better, "a_values": d.a.values, "b_values": d.b.values,
                          "a_models": d.a.models, "b_models": d.b.models, "a_mean": _plain(d.a.mean),
                          "a_sd": _plain(d.a.sd), "b_mean": _plain(d.b.mean), "b_sd": _plain(d.b.sd),
                          "diff": _plain(d.diff), "lo": _plain(iv[0]) if iv else None,
                          "hi": _plain(iv[1]) if iv else None, "shown": d.shown,
                          "bootstrap": list(d.bootstrap) if d.bootstrap else None, "t": list(d.t) if d.t else None,
                          "p_value": _plain(d.p_value), "p_holm": _plain(r.p_holm), "n_clusters": d.n_clusters,
                          "a_no_skill": r.a_no_skill, "b_no_skill": r.b_no_skill, "control": r.control,
                          "significant": r.significant, "better": r.better, "note": r.note})
        return json.dumps(items, indent=2, allow_nan=False) + "\n"
    items = [{"model_a": r.a.model, "model_b": r.b.model, "task": r.a.task, "metric": r.difference.metric,
              "higher_is_better": r.higher_is_better, "a": _plain(r.difference.a), "b": _plain(r.difference.b),
              "diff": _plain(r.difference.diff), "lo": _plain(r.difference.lo), "hi": _plain(r.difference.hi),
              "p_value": _plain(r.difference.p_value), "p_holm": _plain(r.p_holm),
              "n_clusters": r.difference.n_clusters, "method": r.difference.method, "a_chance": r.a_chance,
              "b_chance": r.b_chance, "control": r.control,
              "significant": r.significant, "better": r.better, "note": r.note} for r in rows]
    return json.dumps(items, indent=2, allow_nan=False) + "\n"
