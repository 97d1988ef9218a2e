"""``sparc-eval leaderboard | plot | check | compare | baseline``: tables, figures and CI gates over result files.

These commands read only result JSON/JSONL files and never import torch (they start fast in a CI job
that has only the results); everything beyond click is imported inside the commands.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from . import log

RESULTS = click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
INCLUDE = click.option("--include-path", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path),
                       help="Extra folder of task/suite YAMLs (repeatable).")


def _write_report(path: Path | None, render: Callable[[], str]) -> None:
    """Write ``render()`` to ``path`` atomically and say so; nothing when the option was not given."""
    if path:
        from ..fileio import atomic_write_text

        atomic_write_text(path, render())
        log(f"wrote {path}")


@click.command()
@RESULTS
@click.option("--output", "-o", "outputs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the board to FILE; format from the suffix: .md .csv .tex .html (repeatable).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "tex", "html"]), default="md", show_default=True,
              help="Format printed on stdout when no --output is given.")
@click.option("--suite", metavar="NAME", help="Columns and groups of a suite (tasks/suites/NAME.yaml).")
@INCLUDE
@click.option("--baseline", "baseline_model", metavar="MODEL",
              help="Show differences to this model, or to this seed group (mean over its seeds; the seed table then "
                   "tests each other group's difference to it).")
@click.option("--title", help="Title of the board (default: Leaderboard[: SUITE]).")
@click.option("--digits", default=1, show_default=True, type=click.IntRange(0, 6), help="Decimals shown.")
@click.option("--long", "long_csv", is_flag=True,
              help="CSV output as one row per model x task x metric (value, interval, n, chance, kind).")
def leaderboard(results, outputs, fmt, suite, include, baseline_model, title, digits, long_csv) -> None:
    """Model x task table of RESULTS folders: group means, ranks, best marks, intervals, deltas, chance marks,
    roles, and a table of seed groups (mean ± sd over seeds, method differences).

    \b
    sparc-eval leaderboard results/ -o leaderboard.html -o leaderboard.md
    sparc-eval leaderboard results/ --suite sparc-paper --baseline clip-vit-b16
    sparc-eval leaderboard results/ clip_benchmark_results/ -o board.csv --long
    """
    from ..results.collect import collect
    from ..results.leaderboard import build
    from ..results.render import format_of, render, write_board
    from ..tasks import load_suite, task_versions

    for path in outputs:
        format_of(path)
    collection = collect(results, warn=log)
    suite_obj = load_suite(suite, include) if suite else None
    tasks = sorted({e.task for e in collection.entries})
    board = build(collection, suite=suite_obj, baseline=baseline_model, title=title,
                  current_versions=task_versions(tasks, include))
    if not outputs:
        click.echo(render(board, "csv-long" if long_csv and fmt == "csv" else fmt, digits), nl=False)
    for path in outputs:
        write_board(board, path, digits, long=long_csv)
        log(f"wrote {path}")


@click.command()
@RESULTS
@click.option("--task", "tasks", multiple=True, required=True, metavar="NAME",
              help="Task, task group or Average to draw (repeatable: panels side by side).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Figure file: .pdf or .svg (vector) or .png.")
@click.option("--width", type=click.IntRange(1, 2), default=1, show_default=True,
              help="1: one paper column (3.5 in), 2: two columns (7 in).")
@click.option("--dpi", type=click.IntRange(50, 1200), default=300, show_default=True, help="Resolution of a .png.")
@click.option("--suite", metavar="NAME", help="Columns and groups of a suite (tasks/suites/NAME.yaml).")
@INCLUDE
@click.option("--digits", default=1, show_default=True, type=click.IntRange(0, 6), help="Decimals in the legend.")
def plot(results, tasks, output, width, dpi, suite, include, digits) -> None:
    """Draw a task's (or a group's) main metric per model for a paper: a dot per model with its 95% interval as an
    error bar, chance as a dashed line; serif 8 pt, colour-blind-safe colours, 3.5 or 7 in wide.

    \b
    sparc-eval plot results/ --task coco-retrieval -o fig.pdf
    sparc-eval plot results/demo --suite demo --task coarse --task fine-grained --width 2 -o fig.svg
    """
    from ..results.collect import collect
    from ..results.leaderboard import build
    from ..results.plot import find_columns, plot_columns
    from ..tasks import load_suite

    board = build(collect(results, warn=log), suite=load_suite(suite, include) if suite else None)
    plot_columns(board, find_columns(board, tasks), output, width=width, dpi=dpi, digits=digits)
    log(f"wrote {output}")


def _metrics_option(value: str | None):
    if value is None or value in ("main", "all"):
        return value
    return [v.strip() for v in value.split(",") if v.strip()]


def _model_map(pairs) -> dict[str, str]:
    from ..errors import ConfigError

    out = {}
    for p in pairs:
        current, sep, base = p.partition("=")
        if not sep or not current or not base:
            raise ConfigError(f"--map {p!r}: expected CURRENT=BASELINE model names")
        out[current] = base
    return out


@click.command()
@RESULTS
@click.option("--baseline", "baseline_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Baseline file written by `sparc-eval baseline save`.")
@click.option("--tolerances", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML with tolerances per task/metric (see `sparc_eval.results.check`).")
@click.option("--tolerance", type=float, help="Default tolerance in metric points (default 1.0).")
@click.option("--metrics", help="Metrics to gate: main, all, or a comma-separated list (default main).")
@click.option("--map", "maps", multiple=True, metavar="CURRENT=BASELINE",
              help="Compare model CURRENT with the baseline's model BASELINE (repeatable).")
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write a JUnit XML report.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a Markdown summary (for a pull-request comment).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the paired bootstrap.")
@click.pass_context
def check(ctx, results, baseline_file, tolerances, tolerance, metrics, maps, junit, markdown, seed) -> None:
    """Gate RESULTS against a baseline: exit 1 on a real regression, a missing result or a changed task
    version, config or dataset; exit 2 on unusable input.

    \b
    sparc-eval check results/ --baseline baselines/main.json --junit report.xml --markdown summary.md
    """
    from ..results.baseline import load_baseline
    from ..results.check import load_rules, run_check
    from ..results.check_report import junit_xml, markdown_summary, print_report
    from ..results.collect import collect

    rules = load_rules(tolerances, tolerance, _metrics_option(metrics))
    mapping = _model_map(maps)
    base = load_baseline(baseline_file)
    report = run_check(collect(results, warn=log), base, rules, mapping, seed)
    for w in report.warnings:
        log(w)
    print_report(report)
    _write_report(junit, lambda: junit_xml(report))
    _write_report(markdown, lambda: markdown_summary(report))
    ctx.exit(report.exit_code)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--a", "a_name", metavar="NAME", help="Side A: this model or seed group of the results.")
@click.option("--b", "b_name", metavar="NAME", help="Side B: this model or seed group of the results.")
@click.option("--metrics", default="main", show_default=True, help="main, all, or a comma-separated list.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the rows as JSON.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Also write a Markdown table.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the bootstrap.")
def compare(paths, a_name, b_name, metrics, json_out, markdown, seed) -> None:
    """Differences B - A of two result sets (A B: folders or files; or one folder with --a and --b naming
    models or seed groups in it), with 95% intervals and Holm-adjusted p-values. A side holding several
    seeds of one method (a seed group) is compared as a method: mean ± sd over seeds, and an interval
    over images and seeds.

    \b
    sparc-eval compare results/modelA results/modelB --metrics all
    sparc-eval compare results/demo --a shapes-clip --b shapes-sparc       # seed groups
    """
    from ..errors import ResultsError
    from ..results.collect import collect
    from ..results.compare import compare as run_compare
    from ..results.compare import comparison_json, comparison_markdown, print_comparison

    if len(paths) > 2:
        raise ResultsError(f"compare takes A and B (two result sets) or one folder with --a/--b, got {len(paths)} paths")
    if len(paths) == 1 and not (a_name and b_name):
        raise ResultsError("compare with one results folder needs --a NAME and --b NAME (models or seed groups in it)")
    a = collect([paths[0]], warn=log)
    b = a if len(paths) == 1 else collect([paths[1]], warn=log)
    rows = run_compare(a, b, _metrics_option(metrics), seed, warn=log, a_name=a_name, b_name=b_name)
    print_comparison(rows)
    _write_report(json_out, lambda: comparison_json(rows))
    _write_report(markdown, lambda: comparison_markdown(rows))


@click.group()
def baseline() -> None:
    """Save or show the baseline files that `sparc-eval check` compares against."""


@baseline.command("save")
@RESULTS
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Baseline file to write (e.g. baselines/main.json).")
def baseline_save(results, output) -> None:
    """Store the results (metrics, intervals, per-image sums for the paired bootstrap) in one JSON file."""
    from ..results.baseline import load_baseline, save_baseline
    from ..results.collect import collect

    save_baseline(collect(results, warn=log), output, warn=log)
    saved = load_baseline(output)
    with_sums = sum(s is not None for s in saved.sums.values())
    log(f"wrote {output}: {len(saved.entries)} result(s), {with_sums} with per-sample sums for the paired bootstrap")


@baseline.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def baseline_show(file) -> None:
    """List the results stored in a baseline file."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..results.baseline import load_baseline
    from ..results.formatting import interval, num

    base = load_baseline(file)
    table = Table("model", "task", "version", "main metric", "value", "95% CI", "n", "clusters", box=None,
                  header_style="bold", title=escape(f"{file} (created {base.created})"), title_justify="left")
    for (model, task), e in sorted(base.entries.items()):
        sums = base.sums[(model, task)]
        iv = e.interval()
        table.add_row(escape(model), escape(task), escape(str(e.version)), escape(e.main_metric), num(e.value(), 2),
                      interval(*iv, 2) if iv else "-", escape(f"{e.dataset.n_used}/{e.dataset.n_total}"),
                      str(len(sums.clusters)) if sums is not None else "-")
    Console(width=200).print(table)


COMMANDS = [leaderboard, plot, check, compare, baseline]
