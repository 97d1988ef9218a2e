"""Outputs of ``sparc-eval check``: a console table, JUnit XML for CI systems, a Markdown summary for a
pull-request comment. User strings are escaped for each format (XML by ElementTree)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from rich.console import Console
from rich.markup import escape as rich_escape
from rich.table import Table

from .check import CheckReport, CheckRow
from .formatting import DASH, arrow, interval, markdown_code, num, signed
from .formatting import markdown_escape as md

COLOURS = {"regressed": "red", "missing": "red", "version_changed": "red", "config_changed": "red",
           "dataset_changed": "red", "seed_changed": "red", "improved": "green", "unchanged": "", "new": "cyan"}
ICONS = {"regressed": "🔴", "missing": "⚠️", "version_changed": "⚠️", "config_changed": "⚠️", "dataset_changed": "⚠️",
         "seed_changed": "⚠️", "improved": "🟢", "unchanged": "⚪", "new": "🆕"}
_USER_TEXT = (1, 2, 3, 10)
HEAD = ("status", "model", "task", "metric", "baseline", "current", "Δ", "95% CI of Δ", "p", "tolerance", "note")


def _fields(r: CheckRow, digits: int) -> list[str]:
    d = r.difference
    metric = f"{r.metric} {arrow(r.higher_is_better)}" if r.metric else ""
    return [r.status.replace("_", " "), r.model, r.task, metric, num(r.baseline, digits), num(r.current, digits),
            signed(d.diff, digits) if d else DASH, interval(d.lo, d.hi, digits) if d and d.has_noise else DASH,
            f"{d.p_value:.3f}" if d and d.has_noise else DASH, num(r.tolerance, digits) if r.metric and d else DASH,
            r.message]


def _noise_text(report: CheckReport) -> str:
    methods = {r.difference.method for r in report.rows if r.difference is not None}
    names = {"paired": "paired bootstrap over images", "intervals": "stored 95% intervals (unpaired)",
             "none": "none (tolerance only)"}
    return ", ".join(names[m] for m in sorted(methods)) or DASH


def print_report(report: CheckReport, console: Console | None = None, digits: int = 2) -> None:
    """The report as a table on the console (stdout), failures first, then a one-line verdict."""
    console = console or Console(width=200)
    table = Table(*HEAD, box=None, header_style="bold")
    for r in report.rows:
        cells = [rich_escape(c) for c in _fields(r, digits)]
        colour = COLOURS[r.status]
        cells[0] = f"[{colour}]{cells[0]}[/{colour}]" if colour else cells[0]
        table.add_row(*cells)
    console.print(table)
    console.print(rich_escape(f"{report.summary()} (baseline {report.baseline.path}; noise: {_noise_text(report)})"))


def junit_xml(report: CheckReport, digits: int = 2) -> str:
    """JUnit XML: one testcase per row (classname = model, name = task / metric); failures for failing
    statuses, ``skipped`` for new results."""
    counts = report.counts
    n_fail = sum(1 for r in report.rows if r.failed)
    attrs = {"name": "sparc-eval check", "tests": str(len(report.rows)), "failures": str(n_fail), "errors": "0",
             "skipped": str(counts["new"])}
    suites = ET.Element("testsuites", attrs)
    suite = ET.SubElement(suites, "testsuite", attrs)
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "baseline", "value": str(report.baseline.path)})
    ET.SubElement(props, "property", {"name": "baseline_created", "value": report.baseline.created})
    for r in report.rows:
        name = f"{r.task} / {r.metric}" if r.metric else r.task
        case = ET.SubElement(suite, "testcase", {"classname": r.model, "name": name, "time": "0"})
        detail = "; ".join(f"{h}: {v}" for h, v in zip(HEAD, _fields(r, digits)) if v and v != DASH)
        if r.failed:
            failure = ET.SubElement(case, "failure", {"type": r.status, "message": f"{r.status}: {r.message}"})
            failure.text = detail
        elif r.status == "new":
            ET.SubElement(case, "skipped", {"message": r.message})
        else:
            ET.SubElement(case, "system-out").text = detail
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _md_table(rows: list[CheckRow], digits: int) -> list[str]:
    lines = ["| " + " | ".join(HEAD) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 6 + ["---"]) + "|"]
    for r in rows:
        cells = [md(c) if i in _USER_TEXT else c for i, c in enumerate(_fields(r, digits))]
        cells[0] = f"{ICONS[r.status]} {cells[0]}"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown_summary(report: CheckReport, digits: int = 2) -> str:
    """A Markdown summary for a pull-request comment: verdict, notable rows, unchanged rows folded."""
    icon = "❌" if report.failed else "✅"
    out = [f"### {icon} sparc-eval {md(report.summary())}", "",
           (f"Baseline {markdown_code(report.baseline.path.name)} (created {md(report.baseline.created or '?')}, "
            f"{len(report.baseline.entries)} results). Noise: {md(_noise_text(report))}. A metric regresses only "
            f"when the change exceeds its tolerance, its 95% interval excludes 0 and its p-value survives Holm's "
            f"correction over the compared metrics; never between two values at or below chance."), ""]
    notable = [r for r in report.rows if r.status != "unchanged"]
    quiet = [r for r in report.rows if r.status == "unchanged"]
    if notable:
        out += _md_table(notable, digits) + [""]
    if quiet:
        out += [f"<details><summary>{len(quiet)} unchanged</summary>", ""] + _md_table(quiet, digits)
        out += ["", "</details>"]
    if report.warnings:
        out += [""] + [f"- {md(w)}" for w in report.warnings]
    return "\n".join(out) + "\n"
