"""Batched embedding extraction with DataLoader workers, in a deterministic order, through the cache.

Samples are encoded in their dataset order in fixed batches of ``batch_size``; cache chunks hold a
whole number of batches, so a resumed or cached run encodes exactly the same batches as a fresh
one. Image decoding errors name the file and stop the run with a ``DataError`` (never a worker
traceback). Every finished chunk is on disk before the next starts, so a killed run loses at most
one chunk of work.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.base import ImageSet
from ..errors import DataError
from ..fileio import sha256_json
from ..models.base import ModelAdapter, PatchEmbeddings
from .cache import EmbeddingCache

_IMAGE_ONLY_KEYS = ("resolution", "interpolation", "crop", "mean", "std", "image_pipeline", "dense", "resized")


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
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
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
    """Serves embeddings of one model to tasks. ``cache=None`` disables the disk cache."""

    model: ModelAdapter
    cache: EmbeddingCache | None = None
    batch_size: int = 64
    num_workers: int | None = None
    progress: bool = True
    batches_per_chunk: int = 32
    stats: EngineStats = field(default_factory=EngineStats)

    # -- keys ---------------------------------------------------------------------------------------
    def _key(self, what: str, fingerprint: str, ids: Sequence[str], transform_id: str | None = None) -> str:
        pre = dict(self.model.preprocessing)
        if what.startswith("text"):
            pre = {k: v for k, v in pre.items() if k not in _IMAGE_ONLY_KEYS}
        return sha256_json({"model": self.model.identity.weights_sha256, "spec": self.model.identity.spec,
                            "preprocessing": pre, "precision": self.model.precision, "what": what,
                            "dataset": fingerprint, "ids": sha256_json(list(ids)), "transform": transform_id})

    def _workers(self, n: int) -> int:
        if self.num_workers is not None:
            return self.num_workers
        if n <= self.batch_size:
            return 0
        return min(4, os.cpu_count() or 1)

    # -- generic chunked, cached extraction ------------------------------------------------------
    def _cached(self, key: str, n: int, encode_range: Callable[[list[tuple[int, int]]], Iterator[tuple[int, torch.Tensor]]],
                desc: str, meta: dict) -> tuple[torch.Tensor, int]:
        """Embeddings [n, D] for ``key``, computing only chunks not on disk. Returns (tensor, n_cached)."""
        if self.cache is not None and self.cache.complete(key):
            return self.cache.load(key)["emb"], n
        chunk = self.batch_size * self.batches_per_chunk
        ranges = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
        done = self.cache.chunks(key) if self.cache is not None else {}
        todo = [r for r in ranges if r not in done]
        parts: dict[int, torch.Tensor] = {}
        for r in ranges:
            if r in done:
                parts[r[0]] = self.cache.read_chunk(done[r])["emb"]
        buf: list[torch.Tensor] = []
        bounds = iter(todo)
        current = next(bounds, None)
        filled = 0
        with tqdm(total=sum(b - a for a, b in todo), desc=desc, disable=not self.progress or not todo,
                  unit="it", leave=False) as bar:
            for _, emb in encode_range(todo):
                buf.append(emb)
                filled += emb.shape[0]
                bar.update(emb.shape[0])
                while current is not None and filled >= current[1] - current[0]:
                    block = torch.cat(buf)
                    size = current[1] - current[0]
                    out, rest = block[:size], block[size:]
                    parts[current[0]] = out
                    if self.cache is not None:
                        self.cache.write_chunk(key, current[0], {"emb": out})
                    buf, filled = ([rest] if rest.shape[0] else []), rest.shape[0]
                    current = next(bounds, None)
        result = torch.cat([parts[s] for s, _ in ranges]) if ranges else torch.zeros(0)
        if self.cache is not None:
            self.cache.finish(key, n, meta)
        return result, n - sum(b - a for a, b in todo)

    # -- images ---------------------------------------------------------------------------------------
    def iter_image_batches(self, images: ImageSet, indices: Sequence[int] | None = None,
                           transform: Callable | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(sample indices, transformed image batch) in order, decoded by DataLoader workers."""
        idx = list(range(len(images))) if indices is None else list(indices)
        ds = _ImageDataset(images, transform or self.model.image_transform)
        batches = [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        loader = DataLoader(ds, batch_sampler=batches, num_workers=self._workers(len(idx)), collate_fn=_collate,
                            pin_memory=self.model.device.type == "cuda")
        for index, batch, errors in loader:
            if errors:
                raise DataError(errors[0] + (f" (and {len(errors) - 1} more in the same batch)" if len(errors) > 1
                                             else ""))
            yield index, batch

    def image_embeddings(self, images: ImageSet, desc: str = "images") -> torch.Tensor:
        """l2-normalised global image embeddings [N, D], cached by content."""
        key = self._key("image", images.fingerprint, images.ids)

        def encode(todo):
            idx = [i for a, b in todo for i in range(a, b)]
            for index, batch in self.iter_image_batches(images, idx):
                self.stats.forward_batches += 1
                yield index, self.model.encode_images(batch).cpu()

        emb, cached = self._cached(key, len(images), encode, desc, {"what": "image"})
        self.stats.images_cached += cached
        self.stats.images_encoded += len(images) - cached
        return emb

    def patch_embeddings(self, images: ImageSet, indices: Sequence[int] | None = None,
                         transform: Callable | None = None) -> Iterator[tuple[torch.Tensor, PatchEmbeddings]]:
        """Dense patch embeddings per batch (not cached: [N, P, D] is large); for fine-grained tasks."""
        for index, batch in self.iter_image_batches(images, indices, transform):
            self.stats.forward_batches += 1
            self.stats.images_encoded += len(index)
            yield index, self.model.encode_image_patches(batch)

    # -- texts ----------------------------------------------------------------------------------------
    def text_embeddings(self, texts: Sequence[str], desc: str = "texts") -> torch.Tensor:
        """l2-normalised text embeddings [M, D] in the given order, cached by the texts' content."""
        texts = list(texts)
        key = self._key("text", sha256_json(texts), [])

        def encode(todo):
            for a, b in todo:
                for s in range(a, b, self.batch_size):
                    batch = texts[s:min(s + self.batch_size, b)]
                    self.stats.forward_batches += 1
                    yield s, self.model.encode_texts(batch).cpu()

        emb, cached = self._cached(key, len(texts), encode, desc, {"what": "text"})
        self.stats.texts_cached += cached
        self.stats.texts_encoded += len(texts) - cached
        return emb

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts exceed the model's text context (and are cut when encoded)."""
        return int(sum(self.model.truncated(list(texts))))
