"""``sparc-eval list tasks|suites|models|metrics|formats``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.group(name="list")
def list_() -> None:
    """List tasks, suites, models, metrics or dataset formats."""


@list_.command("tasks")
@click.option("--include-path", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path))
def list_tasks(include) -> None:
    """Every task with its type, dataset and main metric."""
    from ..tasks import peek_task, task_files

    rows = []
    for name in task_files(include):
        raw = peek_task(name, include)
        ds = raw.get("dataset") or {}
        rows.append((name, str(raw.get("type", "?")), str(ds.get("name") or ds.get("format", "?")),
                     str(raw.get("main_metric", "?")), ",".join(raw.get("groups") or [])))
    table(("task", "type", "dataset", "main metric", "groups"), rows)


@list_.command("suites")
@click.option("--include-path", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path))
def list_suites(include) -> None:
    """Every suite with its tasks."""
    from ..tasks import load_suite, suite_files

    rows = []
    for name in suite_files(include):
        s = load_suite(name, include)
        rows.append((name, str(len(s.tasks)), ", ".join(s.tasks)))
    table(("suite", "tasks", "members"), rows)


@list_.command("models")
def list_models() -> None:
    """Model spec prefixes and the open_clip architectures available offline."""
    from ..models import loaders

    rows = [(p, t) for p, t in sorted(loaders().items())]
    table(("prefix", "loader"), rows)
    click.echo("open_clip architectures: `python -c 'import open_clip; print(open_clip.list_models())'`; "
               "small random-init configs shipped here: ViT-Tiny-8-64, ViT-Small-16-224")


@list_.command("metrics")
def list_metrics() -> None:
    """Registered metric keys with unit and direction."""
    from ..metrics.registry import get, known

    rows = [(k, get(k).unit, "higher" if get(k).higher_is_better else "lower", get(k).description) for k in known()]
    table(("metric", "unit", "better", "description"), rows)


@list_.command("formats")
def list_formats() -> None:
    """Dataset formats (readers) and the kind of data they provide."""
    from ..data.base import formats

    table(("format", "kind"), [(f, r.kind) for f, r in sorted(formats().items())])


def table(header, rows) -> None:
    """Print rows as a plain rich table (stdout)."""
    from rich.console import Console
    from rich.table import Table

    t = Table(*header, box=None, header_style="bold")
    for r in rows:
        t.add_row(*r)
    Console(width=max(100, min(200, os.get_terminal_size().columns if sys.stdout.isatty() else 160))).print(t)



COMMANDS = [list_]
