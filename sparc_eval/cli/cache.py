"""``sparc-eval cache info|verify|prune``: what the cache holds, whether it is sound, and making room."""
from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

import click

from . import UserError

_CACHE_DIR = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                          help="Cache folder (default $SPARC_EVAL_CACHE or ~/.cache/sparc-eval), as `run --cache-dir`.")


def _folders(cache_dir: Path | None):
    from ..engine import EmbeddingCache
    from ..fileio import cache_root

    root = cache_dir or cache_root()
    return EmbeddingCache(root / "embeddings"), root / "file-hashes"


def _memo_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []


@click.group()
def cache() -> None:
    """Inspect, check and prune the embedding cache and the file-hash memo."""


@cache.command("info")
@_CACHE_DIR
def cache_info(cache_dir) -> None:
    """Entries, chunks and bytes of the embedding cache, per kind of embedding."""
    store, memo = _folders(cache_dir)
    entries = store.scan()
    done = [e for e in entries if e.complete]
    total = sum(e.bytes for e in entries)
    click.echo(f"embedding cache {store.root}")
    click.echo(f"  {len(done)} complete entries, {len(entries) - len(done)} incomplete; "
               f"{sum(e.chunks for e in entries)} chunks; {total:,} bytes ({total / 1e9:.2f} GB)")
    kinds: dict[str, list] = {}
    for e in entries:
        kinds.setdefault(e.what or "(incomplete)", []).append(e)
    for kind, group in sorted(kinds.items()):
        size = sum(e.bytes for e in group)
        click.echo(f"  {kind}: {len(group)} entries, {sum(e.chunks for e in group)} chunks, {size:,} bytes")
    click.echo(f"file-hash memo {memo}: {len(_memo_files(memo))} entries")


@cache.command("verify")
@_CACHE_DIR
@click.option("--fix", is_flag=True, help="Remove the bad files (they are recomputed when next needed).")
def cache_verify(cache_dir, fix) -> None:
    """Check every chunk against its checksum sidecar (sha256, size, dtypes, shapes), every meta.json and
    every file-hash memo entry; print the bad ones. Exit 1 if any is bad (0 with --fix once removed)."""
    from ..engine.cache import chunk_bounds
    from ..fileio import memo_problem

    store, memo = _folders(cache_dir)
    bad: list[tuple[Path, str]] = []
    entries = store.scan()
    for e in entries:
        bad += store.problems(e.path)
    files = _memo_files(memo)
    for p in files:
        try:
            why = memo_problem(p.name, p.read_text())
        except (OSError, UnicodeDecodeError) as err:
            why = f"unreadable ({type(err).__name__})"
        if why is not None:
            bad.append((p, why))
    for p, why in bad:
        click.secho(f"BAD {p}: {why}", fg="red")
        if fix:
            if chunk_bounds(p):
                store.discard(p, why, warn=False)
            else:
                p.unlink(missing_ok=True)
            click.echo(f"  removed {p}")
    click.echo(f"checked {sum(e.chunks for e in entries)} chunk(s) in {len(entries)} entries and {len(files)} memo "
               f"entries: {len(bad)} bad" + (" (removed)" if fix and bad else ""))
    if bad and not fix:
        sys.exit(1)


@cache.command("prune")
@_CACHE_DIR
@click.option("--older-than", type=click.FloatRange(0), metavar="DAYS", help="Remove entries unused for DAYS.")
@click.option("--max-size", type=click.FloatRange(0), metavar="GB",
              help="Then remove least recently used entries until the rest fit in GB (10^9 bytes).")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
def cache_prune(cache_dir, older_than, max_size, dry_run) -> None:
    """Remove whole embedding-cache entries, least recently used first (meta.json first, then the chunks,
    so an interrupted prune never leaves an entry that looks complete)."""
    from ..engine.cache import prune_plan

    if older_than is None and max_size is None:
        raise UserError("nothing to prune: give --older-than DAYS and/or --max-size GB")
    store, _ = _folders(cache_dir)
    entries = store.scan()
    remove = prune_plan(entries, time.time(), older_than, None if max_size is None else max_size * 1e9)
    for e in remove:
        used = datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{'would remove' if dry_run else 'removed'} {e.path} ({e.what or 'incomplete'}, {e.bytes:,} "
                   f"bytes, last used {used})")
        if not dry_run:
            store.remove_entry(e.path)
    freed = sum(e.bytes for e in remove)
    click.echo(f"{'would free' if dry_run else 'freed'} {freed:,} bytes; {len(entries) - len(remove)} entries "
               f"({sum(e.bytes for e in entries) - freed:,} bytes) remain")


COMMANDS = [cache]
