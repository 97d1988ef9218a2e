"""``sparc-eval merge``: check that every shard of a sharded suite run landed."""
from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--suite", required=True, metavar="NAME", help="The suite that was sharded.")
@click.option("--shards", type=click.IntRange(1), metavar="N", help="Number of shards (names the missing ones).")
@click.option("--model-name", "models", multiple=True, metavar="NAME",
              help="Models to check (default: every model found).")
@click.option("--include-path", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path))
def merge(results, suite, shards, models, include) -> None:
    """Report missing, duplicated and stale results of SUITE under RESULTS; exit 1 if any.

    \b
    sparc-eval merge results/ --suite sparc-paper --shards 16
    """
    from ..results.merge import merge_report
    from ..tasks import load_suite, load_task
    from .listing import table

    s = load_suite(suite, include)
    current = {}
    for t in s.tasks:
        cfg = load_task(t, include=include, data_root="/data-root-not-needed-for-hashing")
        current[t] = (cfg.version, cfg.config_sha256)
    report = merge_report(results, s.tasks, current, shards, models)
    for problem in report.unreadable:
        click.secho(f"warning: skipped {problem}", fg="yellow", err=True)
    rows = []
    for m in report.models:
        status = "complete" if m.ok else "INCOMPLETE"
        detail = []
        if m.missing:
            detail.append(f"missing {len(m.missing)}: {', '.join(m.missing)}")
        if m.missing_shards:
            detail.append(f"shards not landed: {', '.join(f'{i}/{shards}' for i in m.missing_shards)}")
        for t, paths in m.duplicated.items():
            detail.append(f"duplicated {t}: {', '.join(paths)}")
        for t, why in m.stale.items():
            detail.append(f"stale {t}: {why}")
        rows.append((m.model, f"{len(m.present)}/{len(s.tasks)}", status, "; ".join(detail)))
    if not rows:
        click.secho(f"no results under {results}", fg="red")
        sys.exit(1)
    table(("model", "tasks", "status", "problems"), rows)
    sys.exit(0 if report.ok else 1)


COMMANDS = [merge]
