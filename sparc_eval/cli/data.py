"""``sparc-eval data verify|synth``: check datasets on disk, generate the shapes world."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import UserError


@click.group()
def data() -> None:
    """Check datasets on disk, or generate the synthetic shapes world."""


@data.command("verify")
@click.argument("name")
@click.option("--data-root", envvar="SPARC_EVAL_DATA", type=click.Path(file_okay=False, path_type=Path))
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE")
@click.option("--include-path", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path))
def data_verify(name, data_root, params, include) -> None:
    """Check the files of dataset NAME (e.g. coco) or of task NAME; print what is missing and the layout.

    Exit 1 when files are missing or malformed; 2 when a file is corrupt or hostile (an id or image
    listed twice, an empty caption, a path leaving the data root, a field of the wrong type, a
    damaged archive), the same refusal `run` gives."""
    from ..data.base import get_reader
    from ..errors import DataIntegrityError
    from ..tasks import load_task, peek_task, task_files

    files = task_files(include)
    names = [name] if name in files else [t for t in files if (peek_task(t, include).get("dataset") or {}).get("name") == name]
    if not names:
        known = sorted({(peek_task(t, include).get("dataset") or {}).get("name") for t in files} - {None})
        raise UserError(f"no task or dataset named {name!r}; datasets: {', '.join(known)}")
    bad = unsafe = 0
    for t in names:
        cfg = load_task(t, include=include, data_root=data_root, overrides=params)
        reader = get_reader(cfg.dataset["format"])
        where = cfg.dataset.get("root")
        try:
            problems = reader.verify(cfg.dataset)
        except DataIntegrityError as e:
            unsafe += 1
            click.secho(f"{t}: dataset refused in {where}", fg="red")
            click.echo(f"  - {e}")
            continue
        if problems:
            bad += 1
            click.secho(f"{t}: {len(problems)} problem(s) in {where}", fg="red")
            for p in problems[:20]:
                click.echo(f"  - {p}")
            click.echo(f"  expected layout ({cfg.dataset['format']}):{reader.layout}")
        else:
            click.secho(f"{t}: OK ({where})", fg="green")
    if unsafe:
        sys.exit(2)
    if bad:
        sys.exit(1)


@data.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder to create.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--image-size", default=64, show_default=True, type=click.IntRange(32))
@click.option("--split", "splits", multiple=True, metavar="NAME=N",
              help="Images per split (default train=1600 restval=200 val=300 test=1000).")
def data_synth(out, seed, image_size, splits) -> None:
    """Write the shapes world (all formats) into a new folder."""
    from ..data.synthetic import DEFAULT_SPLITS, generate

    sizes = dict(DEFAULT_SPLITS)
    if splits:
        sizes = {}
        for s in splits:
            k, sep, v = s.partition("=")
            if not sep or not v.isdigit():
                raise UserError(f"--split {s!r}: expected NAME=N")
            sizes[k] = int(v)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: folder exists and is not empty")
    generate(out, sizes, seed, image_size)
    click.echo(f"wrote the shapes world ({sum(sizes.values())} images) to {out}")



COMMANDS = [data]
