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
@click.option("--clip-benchmark", "clip_benchmark", is_flag=True,
              help="CLIP_benchmark's dataset names, each with its task, protocol and what --data-root holds.")
def list_tasks(include, clip_benchmark) -> None:
    """Every task with its type, dataset and main metric (--clip-benchmark: CLIP_benchmark's names)."""
    if clip_benchmark:
        return _list_clip_benchmark()
    from ..tasks import peek_task, task_files

    rows = []
    for name in task_files(include):
        raw = peek_task(name, include)
        ds = raw.get("dataset") or {}
        rows.append((name, str(raw.get("type", "?")), str(ds.get("name") or ds.get("format", "?")),
                     str(raw.get("main_metric", "?")), ",".join(raw.get("groups") or [])))
    table(("task", "type", "dataset", "main metric", "groups"), rows)


def _list_clip_benchmark() -> None:
    from .. import clip_benchmark_names as cb

    rows = []
    for name in cb.names():
        t = cb.lookup(name)
        root = f"Hub {cb.hub_repo(name)} (default), or a wds folder" if t.wds else t.layout
        rows.append((name, f"{t.type}: {t.main_metric}", t.dataset["format"], t.ours or "-", root))
    table(("CLIP_benchmark name", "task type: main metric", "reader", "our own task", "--data-root (= clip_benchmark "
           "eval --dataset_root)"), rows)
    click.echo(f"\nProtocol: CLIP_benchmark {cb.CB_VERSION}'s class names, templates, image order and metrics; "
               f"recall@1, 5 and 10 are reported for retrieval. --data-root takes {{dataset}} and {{dataset_cleaned}} "
               f"as clip_benchmark does (e.g. --data-root '/data/wds_{{dataset_cleaned}}'); wds/<name> without one reads "
               f"the Hub repo clip-benchmark/wds_<name> (downloaded once into the Hugging Face cache). Any other "
               f"wds/<name> reads the folder given. vtab/<name> (TFDS) is not read: use wds/vtab/<name>. Names CLIP_benchmark "
               f"downloads with torchvision (cars, sun397, ...) are read as their wds/ copies.")


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
@click.option("--arch", metavar="NAME", help="Only this open_clip architecture (or those containing NAME).")
def list_models(arch) -> None:
    """Model spec prefixes, and open_clip's architectures with their pretrained tags."""
    from ..models import loaders
    from ..open_clip_configs import open_clip_module

    if arch is None:
        table(("prefix", "loader"), [(p, t) for p, t in sorted(loaders().items())])
        click.echo()
    open_clip = open_clip_module()
    archs = open_clip.list_models()
    if arch is not None:
        archs = [a for a in archs if a == arch] or [a for a in archs if arch.lower() in a.lower()]
        if not archs:
            from ..errors import UnknownNameError

            raise UnknownNameError("open_clip architecture", arch, open_clip.list_models())
    if arch is not None:
        from ..hub import open_clip_tag_source

        rows = []
        for a in archs:
            for tag in open_clip.list_pretrained_tags_by_model(a) or [""]:
                source = open_clip_tag_source(open_clip.get_pretrained_cfg(a, tag) or {}) if tag else None
                hub = f"{source[0]} ({source[1][0]})" if source else ("" if not tag else "no Hub copy (URL only)")
                rows.append((f"open_clip:{a}", f"--pretrained {tag}" if tag else "(random init only)", hub))
        table(("spec", "pretrained", "Hugging Face repo (file), fetched on first use"), rows)
        return
    rows = [(f"open_clip:{a}", ", ".join(open_clip.list_pretrained_tags_by_model(a)) or "(random init only)")
            for a in archs]
    table(("spec", "pretrained tags (--pretrained TAG; --arch NAME shows their Hub repos)"), rows)
    click.echo("\nAlso: open_clip:hf-hub:ORG/NAME[@REV] (an open_clip repo on the Hub), hf:ORG/NAME[@REV] or hf:DIR "
               "(transformers CLIP/SigLIP), sparc:DIR, py:module:function. Hub weights are fetched on first use into "
               "the Hugging Face cache; --offline (HF_HUB_OFFLINE=1) reads the cache only.")


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
