"""The table printed at the end of ``sparc-eval run`` (rich; no torch)."""
from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .chance import artifact_text, status


def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}f}"


def print_run_table(evals: Sequence, console: Console | None = None) -> None:
    """One row per (model, task): main metric with its 95% interval, chance level and where the value
    stands against it, then the rest; then the probe categories a text-only classifier solves."""
    from ..metrics.registry import get

    console = console or Console(width=160)
    table = Table(box=None, header_style="bold", title_justify="left")
    for col in ("model", "task", "main metric", "value", "95% CI", "chance", "vs chance", "n", "status",
                "other metrics"):
        table.add_column(col, overflow="fold")
    flagged = []
    for ev in evals:
        r = ev.record
        if r is None:
            table.add_row("", ev.task, "", "", "", "", "", ev.status, ev.reason or "")
            continue
        main = r.main_metric
        lo_hi = r.intervals.get(main)
        ci = f"[{fmt(lo_hi[0])}, {fmt(lo_hi[1])}]" if lo_hi else "-"
        ds = r.dataset
        n = f"{ds.n_used}" + (f"/{ds.n_total} (partial)" if ds.partial else "")
        others = ", ".join(f"{k} {fmt(v)}" for k, v in r.metrics.items() if k != main)
        state = status(r.metrics[main], tuple(lo_hi) if lo_hi else None, r.chance.get(main),
                       get(main).higher_is_better) if _registered(main) else None
        table.add_row(escape(r.model.name), escape(r.task.name), main, fmt(r.metrics[main]), ci,
                      fmt(r.chance.get(main)), (state or "-").replace(" chance", ""), n, ev.status, escape(others))
        cats = (r.details or {}).get("artifact_flagged") or []
        if cats:
            flagged.append(artifact_text(r.task.name, [str(c) for c in cats]))
    console.print(table)
    for line in dict.fromkeys(flagged):
        console.print(escape(f"flagged: {line}"))


def _registered(key: str) -> bool:
    from ..metrics.registry import is_registered

    return is_registered(key)


def print_model_summary(runs: Sequence, console: Console | None = None) -> None:
    """One line per model of a several-model call: tasks computed, skipped and not run, or why it failed."""
    console = console or Console(width=160)
    table = Table(box=None, header_style="bold", title="models", title_justify="left")
    for col in ("model", "pretrained", "status", "computed", "skipped", "unsupported", "error"):
        table.add_column(col, overflow="fold")
    for r in runs:
        count = {s: sum(e.status == s for e in r.evaluations) for s in ("computed", "skipped", "unsupported")}
        table.add_row(escape(r.name or r.spec or ""), escape(r.pretrained or ""), "failed" if r.error else "ok",
                      *(str(count[s]) for s in count), escape(r.error or ""))
    console.print(table)
    failed = sum(1 for r in runs if r.error)
    console.print(f"{len(runs) - failed} of {len(runs)} model(s) evaluated" + (f"; {failed} failed" if failed else ""))
