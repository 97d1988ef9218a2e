"""The on-disk embedding cache, keyed by content and shared by every task and run.

Key = hash of (model weights sha256 and spec, preprocessing, precision, what is encoded, dataset
fingerprint, sample ids). An entry is a folder of chunk files ``chunk-<start>-<stop>.safetensors``
(each a contiguous slice of the samples, written atomically as soon as it is computed) and a
``meta.json`` written last, which marks the entry complete. A killed run therefore keeps every
finished chunk and resumes at the first missing one; concurrent writers of the same entry write
identical bytes and each rename is whole, so readers never see a torn file.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
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

    def complete(self, key: str) -> bool:
        return (self.entry(key) / "meta.json").is_file()

    def chunks(self, key: str) -> dict[tuple[int, int], Path]:
        """Finished chunks of an entry: (start, stop) -> file."""
        d = self.entry(key)
        out = {}
        if d.is_dir():
            for p in d.iterdir():
                m = _CHUNK.match(p.name)
                if m:
                    out[(int(m.group(1)), int(m.group(2)))] = p
        return out

    def write_chunk(self, key: str, start: int, tensors: dict[str, torch.Tensor]) -> None:
        n = next(iter(tensors.values())).shape[0]
        path = self.entry(key) / f"chunk-{start:09d}-{start + n:09d}.safetensors"
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp))

    def read_chunk(self, path: Path) -> dict[str, torch.Tensor]:
        return load_file(str(path))

    def finish(self, key: str, n: int, meta: dict) -> None:
        atomic_write_json(self.entry(key) / "meta.json", {**meta, "n": n})

    def meta(self, key: str) -> dict:
        return json.loads((self.entry(key) / "meta.json").read_text())

    def iter_blocks(self, key: str) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """(start, tensors) of a complete entry in sample order, one chunk in memory at a time."""
        for (start, _), path in sorted(self.chunks(key).items()):
            yield start, self.read_chunk(path)

    def load(self, key: str) -> dict[str, torch.Tensor]:
        """All tensors of a complete entry, concatenated in sample order."""
        parts: dict[str, list[torch.Tensor]] = {}
        for _, tensors in self.iter_blocks(key):
            for k, v in tensors.items():
                parts.setdefault(k, []).append(v)
        return {k: torch.cat(v) for k, v in parts.items()}
