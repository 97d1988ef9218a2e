"""The on-disk embedding cache, keyed by content and shared by every task and run.

Key = hash of (model weights sha256 and spec, preprocessing, precision, what is encoded, dataset
fingerprint, sample ids, stored dtype). An entry is a folder of chunk files
``chunk-<start>-<stop>.safetensors`` (each a contiguous slice of the samples, written atomically as
soon as it is computed) and a ``meta.json`` written last, which marks the entry complete and lists
the chunks that make it up. A killed run therefore keeps every finished chunk and resumes at the
first missing one. Chunk bounds follow the batch size, so a run resumed (or run concurrently) with
another batch size leaves chunk files that overlap; readers use only the chunks ``meta.json`` lists,
and a resumed run reuses only chunks with its own bounds. Concurrent writers of the same chunk write
identical bytes and each rename is whole, so readers never see a torn file.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..fileio import atomic_path, atomic_write_json, cache_root

_CHUNK = re.compile(r"^chunk-(\d{9})-(\d{9})\.safetensors$")


class EmbeddingCache:
    """Chunked tensor store under ``root`` (default ``<cache_root>/embeddings``)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else cache_root() / "embeddings"

    def entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def _chunk_path(self, key: str, start: int, stop: int) -> Path:
        return self.entry(key) / f"chunk-{start:09d}-{stop:09d}.safetensors"

    def meta(self, key: str) -> dict | None:
        """The ``meta.json`` of a finished entry (``n``, ``chunks``, what was encoded, ...), else None."""
        try:
            meta = json.loads((self.entry(key) / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and isinstance(meta.get("chunks"), list) else None

    def complete(self, key: str) -> bool:
        """Whether the entry is finished and every chunk its ``meta.json`` lists is on disk."""
        meta = self.meta(key)
        return meta is not None and all(self._chunk_path(key, a, b).is_file() for a, b in meta["chunks"])

    def chunks(self, key: str) -> dict[tuple[int, int], Path]:
        """Every chunk file of an entry, finished or not, of any chunking: (start, stop) -> file."""
        d = self.entry(key)
        out = {}
        if d.is_dir():
            for p in d.iterdir():
                m = _CHUNK.match(p.name)
                if m:
                    out[(int(m.group(1)), int(m.group(2)))] = p
        return out

    def entry_chunks(self, key: str) -> list[tuple[int, int, Path]]:
        """(start, stop, file) of the chunks that make up a complete entry, in sample order."""
        meta = self.meta(key)
        if meta is None:
            raise ValueError(f"cache entry {key} is not complete")
        return [(a, b, self._chunk_path(key, a, b)) for a, b in meta["chunks"]]

    def write_chunk(self, key: str, start: int, tensors: dict[str, torch.Tensor]) -> None:
        n = next(iter(tensors.values())).shape[0]
        with atomic_path(self._chunk_path(key, start, start + n)) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp))

    def read_chunk(self, path: Path) -> dict[str, torch.Tensor]:
        return load_file(str(path))

    def finish(self, key: str, n: int, chunks: Sequence[tuple[int, int]], meta: dict) -> None:
        """Mark the entry complete: its ``n`` rows are exactly ``chunks`` (contiguous, from 0 to n)."""
        bounds = [(int(a), int(b)) for a, b in chunks]
        if [a for a, _ in bounds] != [0] + [b for _, b in bounds[:-1]] or (bounds[-1][1] if bounds else 0) != n:
            raise ValueError(f"chunks {bounds} do not cover rows [0, {n}) exactly")
        atomic_write_json(self.entry(key) / "meta.json", {**meta, "n": n, "chunks": [list(b) for b in bounds]})

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
