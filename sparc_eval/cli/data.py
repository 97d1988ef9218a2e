"""``sparc-eval data verify|download|synth``: check datasets on disk, download public ones, generate the
shapes world."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from . import UserError


@click.group()
def data() -> None:
    """Check datasets on disk, download public ones, or generate the synthetic shapes world."""


@data.command("verify")
@click.argument("name", required=False)
@click.option("--data-root", envvar="SPARC_EVAL_DATA", type=click.Path(file_okay=False, path_type=Path))
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE")
@click.option("--include-path", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path))
def data_verify(name, data_root, params, include) -> None:
    """Check the files of dataset NAME (e.g. coco), of task NAME (CLIP_benchmark's names too), or, without NAME,
    of every dataset of the installed tasks found under --data-root; print what is missing and the layout.

    Exit 1 when files are missing or malformed; 2 when a file is corrupt or hostile (an id or image
    listed twice, an empty caption, a path leaving the data root, a field of the wrong type, a
    damaged archive), the same refusal `run` gives."""
    from .. import clip_benchmark_names as cb
    from ..tasks import peek_task, task_files

    files = task_files(include)
    if name is None:
        return _verify_all(data_root, params, include)
    if name in files or cb.is_cb_name(name):
        names = [name]
    else:
        names = [t for t in files if (peek_task(t, include).get("dataset") or {}).get("name") == name]
    if not names:
        known = sorted({(peek_task(t, include).get("dataset") or {}).get("name") for t in files} - {None})
        raise UserError(f"no task or dataset named {name!r}; datasets: {', '.join(known)}")
    bad = unsafe = 0
    for t in names:
        state = _verify_one(t, data_root, params, include, [t])
        bad += state == "bad"
        unsafe += state == "unsafe"
    if unsafe:
        sys.exit(2)
    if bad:
        sys.exit(1)


def _verify_one(task: str, data_root, params, include, users: list[str], cfg=None) -> str:
    """Verify one task's dataset and print the outcome: ``ok``, ``bad`` (files missing or malformed) or
    ``unsafe`` (a corrupt or hostile file, refused as `run` refuses it)."""
    from ..data.base import get_reader
    from ..errors import DataIntegrityError
    from ..tasks import load_task

    cfg = cfg or load_task(task, include=include, data_root=data_root, overrides=params)
    reader = get_reader(cfg.dataset["format"])
    where = cfg.dataset.get("root")
    label = ", ".join(users)
    try:
        problems = reader.verify(cfg.dataset)
    except DataIntegrityError as e:
        click.secho(f"{label}: dataset refused in {where}", fg="red")
        click.echo(f"  - {e}")
        return "unsafe"
    if problems:
        click.secho(f"{label}: {len(problems)} problem(s) in {where}", fg="red")
        for p in problems[:20]:
            click.echo(f"  - {p}")
        click.echo(f"  expected layout ({cfg.dataset['format']}):{reader.layout}")
        return "bad"
    click.secho(f"{label}: OK ({where})", fg="green")
    return "ok"


def _verify_all(data_root, params, include) -> None:
    """Every distinct dataset of the installed task YAMLs that read ``${data_root}`` and whose folder exists
    under it is verified once (the tasks sharing it are listed); ``SHA256SUMS`` written by ``data download``
    is checked too. Exit 2 when a found dataset is refused as corrupt or hostile, else 1 when one has a problem."""
    import json

    from ..data.sources import verify_sums
    from ..errors import SparcEvalError
    from ..tasks import load_task, peek_task, task_files

    if data_root is None:
        raise UserError("data verify without NAME checks every dataset under --data-root DIR (or SPARC_EVAL_DATA): "
                        "give one")
    if not Path(data_root).expanduser().is_dir():
        raise UserError(f"--data-root {data_root}: folder does not exist")
    groups: dict[str, tuple[object, list[str]]] = {}
    absent: list[str] = []
    for t in task_files(include):
        if "${data_root}" not in str(peek_task(t, include).get("dataset")):
            continue  # the shapes world, or a dataset given by --param
        try:
            cfg = load_task(t, include=include, data_root=data_root, overrides=params)
        except SparcEvalError as e:
            click.secho(f"{t}: cannot be resolved ({e})", fg="red")
            groups[f"error:{t}"] = (None, [t])
            continue
        if not Path(str(cfg.dataset.get("root", ""))).expanduser().exists():
            absent.append(t)
            continue
        key = json.dumps(cfg.dataset, sort_keys=True, default=str)
        groups.setdefault(key, (cfg, []))[1].append(t)
    states = ["bad" if cfg is None else _verify_one(users[0], data_root, params, include, users, cfg)
              for cfg, users in groups.values()]
    bad, unsafe = states.count("bad"), states.count("unsafe")
    problems = verify_sums(data_root)
    for p in problems:
        click.secho(f"SHA256SUMS: {p}", fg="red")
    found = len(groups)
    click.echo(f"{found} dataset(s) found under {data_root}, {found - bad - unsafe} usable; {len(absent)} task(s) "
               f"whose data is not there" + (f" ({', '.join(absent[:8])}{', ...' if len(absent) > 8 else ''})"
                                             if absent else ""))
    if unsafe:
        sys.exit(2)
    if bad or problems:
        sys.exit(1)


@data.command("download")
@click.argument("name", required=False)
@click.option("--data-root", envvar="SPARC_EVAL_DATA", type=click.Path(file_okay=False, path_type=Path),
              help="Where the dataset folders go (not used by wds/<name>: the Hugging Face cache holds those).")
@click.option("--split", "splits", multiple=True, default=("test",), show_default=True,
              help="wds/<name>: the split(s) to fetch (repeatable).")
@click.option("--offline", is_flag=True, help="Touch no network: only check what is already there (HF_HUB_OFFLINE=1).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def data_download(name, data_root, splits, offline, quiet) -> None:
    """Download public dataset NAME into --data-root (progress, resume, sha256), or CLIP_benchmark's wds/NAME
    into the Hugging Face cache; for datasets behind a login, print what to fetch and where to put it.
    Without NAME, list what can be downloaded."""
    from ..hub import set_offline

    if offline:
        set_offline(True)  # before anything imports huggingface_hub
    from ..data.sources import CATALOGUE

    if name is None:
        from .listing import table

        table(("name", "what", "tasks"), [(d.name, d.description + (" (login needed: instructions printed)"
                                                                      if d.login else ""), ", ".join(d.tasks))
                                          for d in CATALOGUE.values()])
        click.echo("\nand wds/<name>: any of CLIP_benchmark's webdataset sets (sparc-eval list tasks --clip-benchmark), "
                   "into the Hugging Face cache")
        return
    if name.startswith("wds/"):
        return _download_wds(name, splits, offline)
    dataset = _catalogue_entry(name)
    if data_root is None:
        raise UserError(f"data download {name}: give --data-root DIR (or SPARC_EVAL_DATA), the folder the tasks read")
    from ..data.sources import fetch, plan

    root = Path(data_root).expanduser()
    for ds in plan(dataset.name):
        if ds.sources:
            click.echo(f"{ds.name}: {ds.description}", err=True)
            fetch(ds, root, offline=offline, progress=not quiet, log=lambda m: click.echo(m, err=True))
            click.echo(f"{ds.name}: downloaded into {root}, sha256 recorded in {root / 'SHA256SUMS'}")
        if ds.login:
            click.secho(f"{ds.name}: behind a login, so not downloaded; fetch it yourself: "
                        f"{ds.login.format(root=root)}", fg="yellow")
    click.echo(f"tasks that read it: {', '.join(dataset.tasks)}; `sparc-eval data verify --data-root {root}` checks "
               f"every dataset there")


def _catalogue_entry(name: str):
    """The catalogue entry named ``name``, or the one whose tasks include ``name`` (a task or CLIP_benchmark name)."""
    from ..data.sources import CATALOGUE, get_source

    if name in CATALOGUE:
        return CATALOGUE[name]
    hit = next((d for d in CATALOGUE.values() if name in d.tasks), None)
    return hit if hit is not None else get_source(name)


def _download_wds(name: str, splits, offline: bool) -> None:
    from .. import clip_benchmark_names as cb
    from ..hub import fetch_wds

    cb.lookup(name)  # a valid wds/ name
    repo = cb.hub_repo(name)
    for split in splits:
        snap = fetch_wds(repo, split=split, offline=offline or None)
        size = sum(f.size for f in snap.files)
        click.echo(f"{name}: {repo} commit {snap.commit[:12]}, split {split}: {len(snap.files)} files, "
                   f"{size / 2**20:.1f} MiB, sha256-verified, in the Hugging Face cache ({snap.folder})")
    click.echo(f"`sparc-eval run --task {name} --model ...` reads it from there (with --offline too)")


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
