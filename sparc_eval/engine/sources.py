"""Row-block access to embeddings, in memory or streamed from a cache entry on disk.

Large retrieval (1M images x 5M captions) reads its embeddings a block of rows at a time, so its
memory is bounded by the block size, not the dataset. Rows are returned as float32 whatever the
stored precision (fp16 on disk halves the cache).
"""
from __future__ import annotations

import bisect

import torch
from safetensors import safe_open

from ..metrics.rows import RowSource, TensorRows
from .cache import EmbeddingCache

__all__ = ["CachedSource", "RowSource", "TensorRows"]


class CachedSource:
    """Rows of a complete cache entry, read lazily from the chunk files its ``meta.json`` lists (only the
    slices needed). A chunk is checked against its sidecar (whole-file sha256, size, dtypes, shapes) the
    first time the process touches it, and again whenever its file changed since (``CorruptChunk`` if it
    fails: it is discarded, and the next run recomputes it)."""

    def __init__(self, cache: EmbeddingCache, key: str):
        self.cache = cache
        self.spans = cache.entry_chunks(key)
        self.starts = [a for a, _, _ in self.spans]
        self.n = self.spans[-1][1] if self.spans else 0

    def read(self, start: int, stop: int) -> torch.Tensor:
        parts = []
        i = max(bisect.bisect_right(self.starts, start) - 1, 0)
        while start < stop and i < len(self.spans):
            a, b, path = self.spans[i]
            lo, hi = max(start, a), min(stop, b)
            if lo < hi:
                self.cache.require(path)
                with safe_open(str(path), framework="pt") as f:
                    parts.append(f.get_slice("emb")[lo - a:hi - a].float())
                start = hi
            i += 1
        return torch.cat(parts) if parts else torch.zeros(0)
