"""Paired differences of two result sets (``sparc-eval compare A B``), with intervals and significance.

Pairing: when each side holds one model, its results are paired by task; otherwise by (model, task).
Only full runs are compared (partial ``--limit`` runs are left out with a warning). A pair on the
same dataset (equal fingerprints) with per-sample records on both sides gets a paired bootstrap over
the shared images (``paired.differences``: 1000 seeded replicates, 95% percentile interval,
two-sided p-value); otherwise the two stored intervals are combined (unpaired, normal
approximation). Pairs whose task version, config or seed differ are compared with a note.
Significant means the 95% interval of ``B - A`` excludes 0. p-values are not adjusted for the number
of comparisons.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from ..errors import ResultsError
from .collect import Collection, Entry, Key, pick
from .formatting import DASH, arrow, interval, num, signed
from .formatting import markdown_escape as md
from .leaderboard import metric_direction
from .paired import Difference, differences, select_metrics


@dataclass
class CompareRow:
    a: Entry
    b: Entry
    difference: Difference
    higher_is_better: bool
    note: str = ""

    @property
    def better(self) -> str:
        """``B`` or ``A`` when the difference is significant, else ``-``."""
        if not self.difference.significant:
            return "-"
        return "B" if (self.difference.diff > 0) == self.higher_is_better else "A"


def _full(c: Collection, side: str, warn: Callable[[str], None] | None) -> dict[Key, Entry]:
    """One full run per (model, task) of one side; its partial runs are reported and left out."""
    kept, _ = pick(e for e in c.entries if not e.partial)
    partial = sorted(e.label for e in c.entries if e.partial)
    if partial and warn is not None:
        warn(f"warning: {side}: {len(partial)} partial (--limit) result(s) not compared: {', '.join(partial)}")
    if not kept:
        raise ResultsError(f"nothing to compare: {side} holds only partial (--limit) results; compare full runs")
    return kept


def _pairs(a: Collection, b: Collection, warn: Callable[[str], None] | None = None) -> list[tuple[Entry, Entry]]:
    kept_a, kept_b = _full(a, "A", warn), _full(b, "B", warn)
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


def compare(a: Collection, b: Collection, metrics: str | Sequence[str] = "main", seed: int = 0,
            warn: Callable[[str], None] | None = None) -> list[CompareRow]:
    """Differences ``B - A`` per paired (model, task) and metric (those of ``metrics`` both report)."""
    pairs = list(_pairs(a, b, warn))
    if not isinstance(metrics, str):
        known = sorted({k for ea, eb in pairs for k in ea.metrics if k in eb.metrics})
        unknown = [k for k in metrics if k not in known]
        if unknown:
            raise ResultsError(f"--metrics {', '.join(unknown)}: reported by none of the compared results; "
                               f"known: {', '.join(known) or '(none)'}, or main, all")
    rows = []
    for ea, eb in pairs:
        keys = [k for k in select_metrics(ea, metrics) if k in eb.metrics]
        diffs, notes = differences(ea, eb, keys, seed, warn=warn)
        note = "; ".join(_identity_notes(ea, eb) + notes)
        rows += [CompareRow(ea, eb, diffs[k], metric_direction(k)[0], note) for k in keys]
    return rows


HEAD = ("task", "metric", "A", "B", "B - A", "95% CI", "p", "better", "n", "method", "note")


def _fields(r: CompareRow, digits: int) -> list[str]:
    d = r.difference
    pair = f"{r.a.model} / {r.a.task}" if r.a.model == r.b.model else r.a.task
    return [pair, f"{d.metric} {arrow(r.higher_is_better)}", num(d.a, digits), num(d.b, digits), signed(d.diff, digits),
            interval(d.lo, d.hi, digits) or DASH, f"{d.p_value:.3f}" if d.has_noise else DASH, r.better,
            str(d.n_clusters) if d.n_clusters else DASH, d.method, r.note]


def _title(rows: list[CompareRow]) -> str:
    a = sorted({r.a.model for r in rows})
    b = sorted({r.b.model for r in rows})
    return f"B = {', '.join(b)} minus A = {', '.join(a)}"


def print_comparison(rows: list[CompareRow], console: Console | None = None, digits: int = 2) -> None:
    console = console or Console(width=200)
    table = Table(*HEAD, box=None, header_style="bold", title=rich_escape(_title(rows)), title_justify="left")
    for r in rows:
        cells = [rich_escape(c) for c in _fields(r, digits)]
        if r.better != "-":
            colour = "green" if r.better == "B" else "red"
            cells[4] = f"[{colour}]{cells[4]}[/{colour}]"
        table.add_row(*cells)
    console.print(table)
    n_sig = sum(r.better != "-" for r in rows)
    console.print(f"{n_sig} of {len(rows)} difference(s) significant at 95% (p-values not adjusted for multiple comparisons)")


def comparison_markdown(rows: list[CompareRow], digits: int = 2) -> str:
    out = [f"### {md(_title(rows))}", "", "| " + " | ".join(HEAD) + " |",
           "|" + "|".join(["---"] * 2 + ["---:"] * 5 + ["---"] * 4) + "|"]
    out += ["| " + " | ".join(md(c) if i in (0, 1, 10) else c for i, c in enumerate(_fields(r, digits))) + " |"
            for r in rows]
    return "\n".join(out) + "\n"


def _plain(value: float) -> float | None:
    return None if math.isnan(value) else value


def comparison_json(rows: list[CompareRow]) -> str:
    """The rows as a JSON list (NaN written as null)."""
    items = [{"model_a": r.a.model, "model_b": r.b.model, "task": r.a.task, "metric": r.difference.metric,
              "higher_is_better": r.higher_is_better, "a": _plain(r.difference.a), "b": _plain(r.difference.b),
              "diff": _plain(r.difference.diff), "lo": _plain(r.difference.lo), "hi": _plain(r.difference.hi),
              "p_value": _plain(r.difference.p_value),
              "n_clusters": r.difference.n_clusters, "method": r.difference.method,
              "significant": r.difference.significant, "better": r.better, "note": r.note} for r in rows]
    return json.dumps(items, indent=2, allow_nan=False) + "\n"
