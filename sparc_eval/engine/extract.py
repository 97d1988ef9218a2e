"""Batched embedding extraction with DataLoader workers, in a deterministic order, through the cache.

Samples are encoded in their dataset order in fixed batches of ``batch_size``; cache chunks hold a
whole number of batches, so a resumed, cached or data-parallel run encodes exactly the same batches
as a fresh single-process one. Under ``torchrun`` rank r encodes batches r, r+n, ... and every rank
receives all outputs in order (``engine.distributed``); one rank per filesystem writes the cache.
A text entry also records how many texts the model truncates, so a cached run does not tokenize its
captions again. Image decoding
errors name the file and stop the run with a ``DataError`` (never a worker traceback). Every
finished chunk is on disk before the next starts, so a killed run loses at most one chunk of work.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .. import distributed
from ..data.base import ImageSet
from ..errors import DataError
from ..fileio import sha256_json
from ..models.base import ModelAdapter, PatchEmbeddings
from .cache import EmbeddingCache
from .sources import CachedSource, RowSource, TensorRows

_IMAGE_ONLY_KEYS = ("resolution", "interpolation", "crop", "mean", "std", "image_pipeline", "dense", "resized")
CACHE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


class _ImageDataset(Dataset):
    """Decodes one image (optionally cropped to a box) and applies the transform; errors are returned,
    not raised, so the main process can report the file cleanly."""

    def __init__(self, images: ImageSet, transform: Callable):
        self.paths, self.boxes, self.transform = images.paths, images.boxes, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            with Image.open(path) as img:
                img.load()
                if self.boxes is not None and self.boxes[i] is not None:
                    x, y, w, h = self.boxes[i]
                    img = img.crop((x, y, x + w, y + h))
                return i, self.transform(img), None
        except FileNotFoundError:
            return i, None, f"{path}: image file is missing"
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            return i, None, f"{path}: not a readable image ({type(e).__name__}: {e})"


def _collate(items):
    errors = [err for _, _, err in items if err]
    if errors:
        return None, None, errors
    return torch.tensor([i for i, _, _ in items]), torch.stack([x for _, x, _ in items]), None


@dataclass
class EngineStats:
    images_encoded: int = 0
    images_cached: int = 0
    texts_encoded: int = 0
    texts_cached: int = 0
    forward_batches: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Engine:
    """Serves embeddings of one model to tasks. ``cache=None`` disables the disk cache;
    ``cache_dtype="fp16"`` stores embeddings in half precision (they are returned as float32);
    ``dist=None`` ignores any process group (single-process extraction)."""

    model: ModelAdapter
    cache: EmbeddingCache | None = None
    batch_size: int = 64
    num_workers: int | None = None
    progress: bool = True
    batches_per_chunk: int = 32
    cache_dtype: str = "fp32"
    dist: distributed.DistInfo | None = field(default_factory=distributed.info)
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        self._truncated: dict[str, int] = {}
        self._writes_cache = self.cache is not None and distributed.first_on_filesystem(self.cache.root, self.dist)

    # -- keys ---------------------------------------------------------------------------------------
    def _key(self, what: str, fingerprint: str, ids: Sequence[str]) -> str:
        pre = dict(self.model.preprocessing)
        if what.startswith("text"):
            pre = {k: v for k, v in pre.items() if k not in _IMAGE_ONLY_KEYS}
        return sha256_json({"model": self.model.identity.weights_sha256, "spec": self.model.identity.spec,
                            "preprocessing": pre, "precision": self.model.precision, "what": what,
                            "dataset": fingerprint, "ids": sha256_json(list(ids)), "stored": self.cache_dtype})

    def _text_key(self, texts: list[str]) -> str:
        return self._key("text", sha256_json(texts), [])

    def _workers(self, n: int) -> int:
        if self.num_workers is not None:
            return self.num_workers
        if n <= self.batch_size:
            return 0
        return min(4, os.cpu_count() or 1)

    def _batches(self, indices: Sequence[int]) -> list[list[int]]:
        idx = list(indices)
        return [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]

    @property
    def main(self) -> bool:
        return self.dist is None or self.dist.main

    # -- the ordered batch map (single process or data-parallel) ----------------------------------
    def _map(self, batches: list[list[int]], produce: Callable[[list[list[int]]], Iterator]) -> Iterator[tuple[int, object]]:
        """(position, output) for every batch in order. ``produce(batches)`` lazily yields one output per
        batch it is given; under torchrun each rank produces only its share and outputs are gathered."""
        d = self.dist
        if d is None:
            yield from enumerate(produce(batches))
            return
        mine = produce(batches[d.rank::d.world])
        for g in range(0, len(batches), d.world):
            out = next(mine) if g + d.rank < len(batches) else None
            for j, o in enumerate(distributed.gather(out, d)):
                if g + j < len(batches):
                    yield g + j, o

    def _image_loader(self, images: ImageSet, batches: list[list[int]], transform: Callable | None = None):
        ds = _ImageDataset(images, transform or self.model.image_transform)
        loader = DataLoader(ds, batch_sampler=batches, num_workers=self._workers(sum(map(len, batches))),
                            collate_fn=_collate, pin_memory=self.model.device.type == "cuda")
        for index, batch, errors in loader:
            if errors:
                raise DataError(errors[0] + (f" (and {len(errors) - 1} more in the same batch)" if len(errors) > 1
                                             else ""))
            yield index, batch

    # -- generic chunked, cached extraction ------------------------------------------------------
    def _cache_state(self, key: str, ranges: list[tuple[int, int]]) -> tuple[bool, dict[tuple[int, int], Path]]:
        """(complete?, reusable chunk files of ``ranges``) as every rank agrees, every chunk verified against
        its checksum first (a failing one is discarded with a warning and recomputed): complete only where
        every rank's filesystem has the intact entry, and only chunks that every rank trusts."""
        if self.cache is None:
            return False, {}
        complete = self.cache.ready(key)
        if self.dist is not None:
            complete = all(distributed.gather(complete, self.dist))
        if complete:
            return True, {}
        done = self.cache.trusted_chunks(key, ranges)
        if self.dist is not None:
            common = set.intersection(*(set(map(tuple, s)) for s in distributed.gather(sorted(done), self.dist)))
            done = {r: p for r, p in done.items() if r in common}
        return False, done

    def _count(self, what: str, cached: int, encoded: int) -> None:
        if what == "text":
            self.stats.texts_cached += cached
            self.stats.texts_encoded += encoded
        else:
            self.stats.images_cached += cached
            self.stats.images_encoded += encoded

    def _cached(self, what: str, key: str, n: int, produce: Callable, desc: str, keep: bool = True,
                texts: list[str] | None = None) -> torch.Tensor | None:
        """Embeddings [n, D] for ``key``, computing only chunks not on disk (counted in ``stats``).
        With ``keep=False`` (streaming) nothing is held in memory and None is returned. ``texts``
        (text entries): their truncation count is computed when encoding and kept in the entry."""
        chunk = self.batch_size * self.batches_per_chunk
        ranges = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
        complete, done = self._cache_state(key, ranges)
        if complete:
            self._count(what, n, 0)
            meta = self.cache.meta(key) or {}
            if texts is not None and meta.get("truncated") is not None:
                self._truncated[key] = int(meta["truncated"])
            return self.cache.load(key)["emb"].float() if keep else None
        todo = [r for r in ranges if r not in done]
        batches = [b for lo, hi in todo for b in self._batches(range(lo, hi))]
        parts: dict[int, torch.Tensor] = {}
        if keep:
            for r in ranges:
                if r in done:
                    parts[r[0]] = self.cache.read_chunk(done[r])["emb"].float()
        dtype = CACHE_DTYPES[self.cache_dtype]
        bounds = iter(todo)
        current = next(bounds, None)
        buf: list[torch.Tensor] = []
        filled = 0
        with tqdm(total=sum(b - a for a, b in todo), desc=desc, disable=not (self.progress and todo and self.main),
                  unit="it", leave=False) as bar:
            for _, emb in self._map(batches, produce):
                buf.append(emb)
                filled += emb.shape[0]
                bar.update(emb.shape[0])
                if current is not None and filled == current[1] - current[0]:
                    block = torch.cat(buf).to(dtype)
                    if keep:
                        parts[current[0]] = block.float()
                    if self._writes_cache:
                        self.cache.write_chunk(key, current[0], {"emb": block})
                    buf, filled = [], 0
                    current = next(bounds, None)
        meta: dict = {"what": what}
        if texts is not None:
            self._truncated[key] = meta["truncated"] = int(sum(self.model.truncated(texts)))
        if self._writes_cache:
            self.cache.finish(key, n, ranges, meta)
        distributed.barrier(self.dist)
        encoded = sum(b - a for a, b in todo)
        self._count(what, n - encoded, encoded)
        if not keep:
            return None
        return torch.cat([parts[s] for s, _ in ranges]) if ranges else torch.zeros(0)

    # -- images ---------------------------------------------------------------------------------------
    def _encode_image_batches(self, images: ImageSet, encode: Callable[[torch.Tensor], torch.Tensor]):
        def produce(batches):
            for _, batch in self._image_loader(images, batches):
                self.stats.forward_batches += 1
                yield encode(batch).cpu()
        return produce

    def image_embeddings(self, images: ImageSet, desc: str = "images") -> torch.Tensor:
        """l2-normalised global image embeddings [N, D] (float32), cached by content."""
        key = self._key("image", images.fingerprint, images.ids)
        return self._cached("image", key, len(images), self._encode_image_batches(images, self.model.encode_images),
                            desc)

    def image_features(self, images: ImageSet, desc: str = "image features") -> torch.Tensor:
        """Pre-projection image features [N, F] (float32, not normalised), cached by content."""
        key = self._key("image_features", images.fingerprint, images.ids)
        return self._cached("image_features", key, len(images),
                            self._encode_image_batches(images, self.model.encode_image_features), desc)

    def image_source(self, images: ImageSet, desc: str = "images") -> RowSource:
        """Like ``image_embeddings`` but read back block by block from the cache (memory-bounded);
        falls back to an in-memory source when the cache is disabled."""
        if self.cache is None:
            return TensorRows(self.image_embeddings(images, desc))
        key = self._key("image", images.fingerprint, images.ids)
        self._cached("image", key, len(images), self._encode_image_batches(images, self.model.encode_images), desc,
                     keep=False)
        return CachedSource(self.cache, key)

    def patch_embeddings(self, images: ImageSet, indices: Sequence[int] | None = None,
                         transform: Callable | None = None) -> Iterator[tuple[torch.Tensor, PatchEmbeddings]]:
        """Dense patch embeddings per batch, in order (not cached: [N, P, D] is large). Under torchrun the
        batches are shared out and every rank receives every batch's output."""
        batches = self._batches(range(len(images)) if indices is None else indices)

        def produce(mine):
            for index, batch in self._image_loader(images, mine, transform):
                self.stats.forward_batches += 1
                out = self.model.encode_image_patches(batch)
                yield index, PatchEmbeddings(out.embeddings.cpu(), out.grid)

        for _, (index, out) in self._map(batches, produce):
            self._count("image", 0, len(index))
            yield index, out

    # -- texts ----------------------------------------------------------------------------------------
    def _encode_text_batches(self, texts: list[str]):
        def produce(batches):
            for b in batches:
                self.stats.forward_batches += 1
                yield self.model.encode_texts([texts[i] for i in b]).cpu()
        return produce

    def text_embeddings(self, texts: Sequence[str], desc: str = "texts") -> torch.Tensor:
        """l2-normalised text embeddings [M, D] (float32) in the given order, cached by the texts' content."""
        texts = list(texts)
        return self._cached("text", self._text_key(texts), len(texts), self._encode_text_batches(texts), desc,
                            texts=texts)

    def text_source(self, texts: Sequence[str], desc: str = "texts") -> RowSource:
        """Like ``text_embeddings`` but read back block by block from the cache (memory-bounded)."""
        if self.cache is None:
            return TensorRows(self.text_embeddings(texts, desc))
        texts = list(texts)
        key = self._text_key(texts)
        self._cached("text", key, len(texts), self._encode_text_batches(texts), desc, keep=False, texts=texts)
        return CachedSource(self.cache, key)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts exceed the model's text context (and are cut when encoded). Free after
        ``text_embeddings`` of the same texts (counted when they were encoded, kept in the cache)."""
        texts = list(texts)
        key = self._text_key(texts)
        if key not in self._truncated:
            self._truncated[key] = int(sum(self.model.truncated(texts)))
        return self._truncated[key]
