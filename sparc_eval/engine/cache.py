"""The on-disk embedding cache, keyed by content and shared by every task and run; it proves what it serves.

Key = hash of (model weights sha256 and spec, preprocessing, precision, what is encoded, dataset
fingerprint, sample ids, stored dtype). An entry is a folder of chunk files
``chunk-<start>-<stop>.safetensors`` (each a contiguous slice of the samples, written atomically as
soon as it is computed) and a ``meta.json`` written last, which marks the entry complete and lists
the chunks that make it up. A killed run therefore keeps every finished chunk and resumes at the
first missing one. Chunk bounds follow the batch size, so a run resumed (or run concurrently) with
another batch size leaves chunk files that overlap; readers use only the chunks ``meta.json`` lists,
and a resumed run reuses only chunks with its own bounds. Concurrent writers of the same chunk write
identical bytes and each rename is whole, so readers never see a torn file.

Integrity (threat model: disk faults, killed writers, careless edits; not a forger who rewrites a
file and its sum together). Beside each chunk, a sidecar ``<chunk>.sum`` (JSON: ``sha256``,
``bytes``, and each tensor's ``dtype`` and ``shape``) is written atomically *before* the chunk is
renamed into place, so a killed writer leaves at worst a sidecar whose chunk is missing or older,
which fails the check. A chunk is used only after its file passed the check: size, sha256 of the
whole file, and the safetensors header's dtypes and shapes against the sidecar (rows against the
bounds in its name). A chunk that fails (no sidecar, truncated, changed bytes) is discarded with a
warning naming it and recomputed. A passed check is remembered for the process, keyed by the file's
(inode, size, mtime, ctime), so a chunk read many times (streamed row slices) is hashed once per
process and a replaced or rewritten file is checked again. ``meta.json`` carries ``format`` and a
``check`` (sha256 of the rest); one that fails is ignored and rebuilt from the verified chunks.
Entries of earlier versions (no sidecars, no format) are thus never trusted: they are recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from ..errors import SparcEvalError
from ..fileio import atomic_path, atomic_write_json, cache_root, sha256_json

FORMAT = 2  # 2: chunks with checksum sidecars and a checked meta.json (1: neither)
SIDECAR = ".sum"
_CHUNK = re.compile(r"^chunk-(\d{9})-(\d{9})\.safetensors$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_HEADER = 1 << 24

# chunk path -> (inode, size, mtime_ns, ctime_ns) of the chunk and of its sidecar when the pair passed the check
_VERIFIED: dict[str, tuple] = {}


class CacheWarning(UserWarning):
    """A cache file failed its integrity check and was discarded (it is recomputed)."""


class CorruptChunk(SparcEvalError):
    """A cache chunk failed its integrity check while being read (it was discarded: run again)."""


def sidecar_path(chunk: Path) -> Path:
    return chunk.with_name(chunk.name + SIDECAR)


def chunk_bounds(path: Path) -> tuple[int, int] | None:
    """(start, stop) from a chunk file's name, or None if it is not a chunk file."""
    m = _CHUNK.match(path.name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _identity(path: Path) -> tuple | None:
    """(inode, size, mtime, ctime) of a chunk and of its sidecar; None if either is missing."""
    try:
        return tuple((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                     for st in (path.stat(), sidecar_path(path).stat()))
    except FileNotFoundError:
        return None


def _tensors_of(header: dict) -> dict[str, dict]:
    return {k: {"dtype": v["dtype"], "shape": list(v["shape"])} for k, v in header.items() if k != "__metadata__"}


def _read_header(path: Path) -> dict:
    """The JSON header of a safetensors file (raises ValueError if there is none)."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        if not 0 < size <= _MAX_HEADER:
            raise ValueError(f"no safetensors header (length field {size})")
        raw = f.read(size)
    if len(raw) != size:
        raise ValueError("safetensors header cut short")
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    return header


def _sha256_path(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def chunk_problem(path: Path, memo: bool = True) -> str | None:
    """Why the chunk file at ``path`` cannot be trusted, or None when it matches its sidecar (see the
    module docstring). With ``memo``, a file that passed in this process and is unchanged is not hashed again."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    ident = _identity(path)
    if memo and ident is not None and _VERIFIED.get(str(path)) == ident:
        return None
    try:
        side = json.loads(sidecar_path(path).read_text())
    except FileNotFoundError:
        return f"no checksum sidecar {sidecar_path(path).name} (written before checksums, or removed)"
    except (OSError, ValueError, RecursionError) as e:
        return f"unreadable checksum sidecar ({type(e).__name__})"
    if not (isinstance(side, dict) and isinstance(side.get("sha256"), str) and _SHA256.match(side["sha256"])
            and isinstance(side.get("bytes"), int) and isinstance(side.get("tensors"), dict)):
        return "malformed checksum sidecar (expected sha256, bytes, tensors)"
    if size != side["bytes"]:
        return f"{size} bytes on disk, {side['bytes']} when written (truncated or overwritten)"
    digest = _sha256_path(path)
    if digest != side["sha256"]:
        return f"sha256 {digest[:12]}... differs from the {side['sha256'][:12]}... written beside it (bytes changed)"
    try:
        tensors = _tensors_of(_read_header(path))
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"unreadable safetensors header ({e})"
    if tensors != side["tensors"]:
        return f"tensors {tensors} differ from its sidecar's {side['tensors']}"
    bounds = chunk_bounds(path)
    rows = {t["shape"][0] if t["shape"] else None for t in tensors.values()}
    if bounds is not None and rows != {bounds[1] - bounds[0]}:
        return f"holds {sorted(rows, key=str)} rows, its name says {bounds[1] - bounds[0]}"
    if ident is not None:
        _VERIFIED[str(path)] = ident
    return None


def meta_problem(meta) -> str | None:
    """Why a parsed ``meta.json`` cannot be trusted (old format, failed check, chunks not covering [0, n))."""
    if not isinstance(meta, dict):
        return "not a JSON object"
    if meta.get("format") != FORMAT:
        return f"cache format {meta.get('format', 1)}, expected {FORMAT} (written by an earlier sparc-eval)"
    body = {k: v for k, v in meta.items() if k != "check"}
    if meta.get("check") != sha256_json(body):
        return "its check does not match its content (edited or damaged)"
    chunks, n = meta.get("chunks"), meta.get("n")
    try:
        bounds = [(int(a), int(b)) for a, b in chunks]
    except (TypeError, ValueError):
        return "malformed chunk list"
    if [a for a, _ in bounds] != [0] + [b for _, b in bounds[:-1]] or (bounds[-1][1] if bounds else 0) != n:
        return f"chunks {bounds} do not cover rows [0, {n}) exactly"
    return None


@dataclass
class EntryInfo:
    """One entry folder as found on disk (for ``sparc-eval cache``)."""

    path: Path
    what: str | None  # from a sound meta.json; None when the entry is incomplete
    chunks: int
    bytes: int
    last_used: float  # meta.json's mtime (touched on every cached read), else the newest file's

    @property
    def complete(self) -> bool:
        return self.what is not None


def prune_plan(entries: Sequence[EntryInfo], now: float, older_than_days: float | None = None,
               max_bytes: float | None = None) -> list[EntryInfo]:
    """The entries to remove, least recently used first: those unused for ``older_than_days``, then more
    until the rest fit in ``max_bytes``."""
    lru = sorted(entries, key=lambda e: e.last_used)
    remove = [e for e in lru if older_than_days is not None and e.last_used < now - older_than_days * 86400]
    if max_bytes is not None:
        total = sum(e.bytes for e in lru if e not in remove)
        for e in lru:
            if total <= max_bytes:
                break
            if e not in remove:
                remove.append(e)
                total -= e.bytes
    return remove


def _remove(path: Path) -> None:
    """Best-effort unlink (a file another user owns in a shared cache stays; it fails its check again)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _default_warn(message: str) -> None:
    warnings.warn(message, CacheWarning, stacklevel=4)


class EmbeddingCache:
    """Chunked tensor store under ``root`` (default ``<cache_root>/embeddings``). ``warn`` receives one
    line per discarded file (default: a ``CacheWarning``)."""

    def __init__(self, root: Path | str | None = None, warn: Callable[[str], None] | None = None):
        self.root = Path(root) if root is not None else cache_root() / "embeddings"
        self.warn = warn or _default_warn

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _chunk_path(self, key: str, start: int, stop: int) -> Path:
        return self.entry(key) / f"chunk-{start:09d}-{stop:09d}.safetensors"

    def meta(self, key: str) -> dict | None:
        """The ``meta.json`` of a finished entry (``n``, ``chunks``, what was encoded, ...) if it passes its
        check, else None."""
        try:
            meta = json.loads((self.entry(key) / "meta.json").read_text())
        except (OSError, ValueError, RecursionError):
            return None
        return meta if meta_problem(meta) is None else None

    def complete(self, key: str) -> bool:
        """Whether the entry is finished and every chunk its ``meta.json`` lists is on disk (not verified:
        ``ready`` verifies)."""
        meta = self.meta(key)
        return meta is not None and all(self._chunk_path(key, a, b).is_file() for a, b in meta["chunks"])

    def ready(self, key: str) -> bool:
        """Whether the entry is complete and intact: ``meta.json`` passes its check and every chunk it lists
        passes its (a failing one is discarded with a warning, and the entry is then incomplete). Marks
        the entry used (``meta.json``'s mtime), for ``prune``."""
        meta_file = self.entry(key) / "meta.json"
        try:
            meta = json.loads(meta_file.read_text())
        except FileNotFoundError:
            return False
        except (OSError, ValueError, RecursionError) as e:
            meta = e
        why = meta_problem(meta) if isinstance(meta, dict) else f"unreadable ({type(meta).__name__})"
        if why is not None:
            self.warn(f"embedding cache {meta_file}: {why}; ignored, the entry is rebuilt from its verified chunks")
            _remove(meta_file)
            return False
        paths = [self._chunk_path(key, a, b) for a, b in meta["chunks"]]
        if not all(p.is_file() for p in paths) or len(self.trusted(paths)) != len(paths):
            return False
        try:
            os.utime(meta_file)
        except OSError:
            pass
        return True

    def chunks(self, key: str) -> dict[tuple[int, int], Path]:
        """Every chunk file of an entry, finished or not, of any chunking: (start, stop) -> file (not verified)."""
        d = self.entry(key)
        out = {}
        if d.is_dir():
            for p in d.iterdir():
                bounds = chunk_bounds(p)
                if bounds:
                    out[bounds] = p
        return out

    def trusted_chunks(self, key: str, ranges: Iterable[tuple[int, int]]) -> dict[tuple[int, int], Path]:
        """The chunk files of ``ranges`` that are on disk and pass their check (failing ones are discarded)."""
        on_disk = self.chunks(key)
        found = {r: on_disk[r] for r in ranges if r in on_disk}
        good = set(self.trusted(found.values()))
        return {r: p for r, p in found.items() if p in good}

    def trusted(self, paths: Iterable[Path]) -> list[Path]:
        """The chunk files among ``paths`` that pass their check; the others are discarded with a warning
        naming each (beyond three in one call, one line names the first three and counts the rest). Chunks
        are hashed on up to 4 threads (hashlib releases the GIL)."""
        paths = list(paths)
        if len(paths) > 1:
            with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
                problems = list(pool.map(chunk_problem, paths))
        else:
            problems = [chunk_problem(p) for p in paths]
        good, bad = [], []
        for p, why in zip(paths, problems):
            if why is None:
                good.append(p)
            elif why != "missing":
                bad.append((p, why))
                self.discard(p, why, warn=len(bad) <= 3)
        if len(bad) > 3:
            self.warn(f"embedding cache: {len(bad) - 3} more chunk(s) of {bad[3][0].parent} discarded (e.g. "
                      f"{bad[3][0].name}: {bad[3][1]}); they are recomputed")
        return good

    def discard(self, path: Path, why: str, warn: bool = True) -> None:
        """Remove a failing chunk and its sidecar (and its entry's ``meta.json`` if it lists the chunk), with
        a warning naming the chunk."""
        if warn:
            self.warn(f"embedding cache chunk {path}: {why}; discarded, it is recomputed")
        _VERIFIED.pop(str(path), None)
        meta_file = path.parent / "meta.json"
        try:
            listed = [tuple(c) for c in json.loads(meta_file.read_text()).get("chunks", [])]
        except (OSError, ValueError, AttributeError, TypeError):
            listed = []
        for f in ([meta_file] if chunk_bounds(path) in listed else []) + [path, sidecar_path(path)]:
            _remove(f)

    def entry_chunks(self, key: str) -> list[tuple[int, int, Path]]:
        """(start, stop, file) of the chunks that make up a complete entry, in sample order."""
        meta = self.meta(key)
        if meta is None:
            raise ValueError(f"cache entry {key} is not complete")
        return [(a, b, self._chunk_path(key, a, b)) for a, b in meta["chunks"]]

    def write_chunk(self, key: str, start: int, tensors: dict[str, torch.Tensor]) -> None:
        """Write one chunk: its sidecar first, then the chunk (each atomically)."""
        n = next(iter(tensors.values())).shape[0]
        path = self._chunk_path(key, start, start + n)
        data = save({k: v.contiguous().cpu() for k, v in tensors.items()})
        header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
        side = sidecar_path(path)
        atomic_write_json(side, {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                 "tensors": _tensors_of(header)})
        mine = side.stat()
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        ident = _identity(path)  # trusted without hashing only while the sidecar is still the one written here
        if ident is not None and ident[1] == (mine.st_ino, mine.st_size, mine.st_mtime_ns, mine.st_ctime_ns):
            _VERIFIED[str(path)] = ident

    def require(self, path: Path) -> None:
        """Raise ``CorruptChunk`` (after discarding it) unless the chunk file passes its check."""
        why = chunk_problem(path)
        if why is not None:
            if why != "missing":
                self.discard(path, why)
            raise CorruptChunk(f"embedding cache chunk {path}: {why} (it changed after this run checked it); "
                               f"it was discarded: run again to recompute it")

    def read_chunk(self, path: Path) -> dict[str, torch.Tensor]:
        """The tensors of a chunk file that passes its check (else ``CorruptChunk``)."""
        self.require(path)
        return load_file(str(path))

    def finish(self, key: str, n: int, chunks: Sequence[tuple[int, int]], meta: dict) -> None:
        """Mark the entry complete: its ``n`` rows are exactly ``chunks`` (contiguous, from 0 to n)."""
        bounds = [(int(a), int(b)) for a, b in chunks]
        if [a for a, _ in bounds] != [0] + [b for _, b in bounds[:-1]] or (bounds[-1][1] if bounds else 0) != n:
            raise ValueError(f"chunks {bounds} do not cover rows [0, {n}) exactly")
        body = {**meta, "format": FORMAT, "n": n, "chunks": [list(b) for b in bounds]}
        atomic_write_json(self.entry(key) / "meta.json", {**body, "check": sha256_json(body)})

    def iter_blocks(self, key: str) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """(start, tensors) of a complete entry in sample order, one chunk in memory at a time."""
        for start, _, path in self.entry_chunks(key):
            yield start, self.read_chunk(path)

    def load(self, key: str) -> dict[str, torch.Tensor]:
        """All tensors of a complete entry, concatenated in sample order."""
        parts: dict[str, list[torch.Tensor]] = {}
        for _, tensors in self.iter_blocks(key):
            for k, v in tensors.items():
                parts.setdefault(k, []).append(v)
        return {k: torch.cat(v) for k, v in parts.items()}

    # -- maintenance (``sparc-eval cache``) --------------------------------------------------------------
    def scan(self) -> list[EntryInfo]:
        """Every entry folder under the root, complete or not."""
        out = []
        for d in sorted(self.root.glob("*/*")):
            if not d.is_dir() or d.name[:2] != d.parent.name:
                continue
            files = [p for p in d.iterdir() if p.is_file()]
            meta = self.meta(d.name)
            try:
                last = (d / "meta.json").stat().st_mtime
            except FileNotFoundError:
                last = max((p.stat().st_mtime for p in files), default=d.stat().st_mtime)
            out.append(EntryInfo(d, str(meta.get("what", "?")) if meta else None,
                                 sum(1 for p in files if chunk_bounds(p)), sum(p.stat().st_size for p in files), last))
        return out

    def problems(self, entry: Path) -> list[tuple[Path, str]]:
        """(file, why) for every file of an entry folder that fails its check: each chunk (hashed afresh)
        and ``meta.json`` (its check, and that the chunks it lists are on disk)."""
        bad = []
        meta_file = entry / "meta.json"
        if meta_file.exists():
            try:
                meta = json.loads(meta_file.read_text())
                why = meta_problem(meta)
            except (OSError, ValueError, RecursionError) as e:
                why = f"unreadable ({type(e).__name__})"
            if why is None:
                missing = [f"chunk-{a:09d}-{b:09d}.safetensors" for a, b in meta["chunks"]
                           if not self._chunk_path(entry.name, a, b).is_file()]
                why = f"lists missing chunk(s) {', '.join(missing)}" if missing else None
            if why is not None:
                bad.append((meta_file, why))
        for p in sorted(entry.iterdir()):
            if chunk_bounds(p):
                why = chunk_problem(p, memo=False)
                if why is not None:
                    bad.append((p, why))
        return bad

    def remove_entry(self, entry: Path) -> None:
        """Delete an entry folder: ``meta.json`` first (so the entry is never seen complete with chunks
        missing), then every other file, then the folder (and its prefix folder once empty)."""
        (entry / "meta.json").unlink(missing_ok=True)
        for p in entry.iterdir():
            _VERIFIED.pop(str(p), None)
            if p.is_file():
                p.unlink(missing_ok=True)
        for d in (entry, entry.parent):
            try:
                d.rmdir()
            except OSError:
                break
