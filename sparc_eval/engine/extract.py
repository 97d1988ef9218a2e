"""Batched embedding extraction with DataLoader workers, in a deterministic order, through the cache.

Samples are encoded in their dataset order in fixed batches of ``batch_size``; cache chunks hold a
whole number of batches, so a resumed, cached or data-parallel run encodes exactly the same batches
as a fresh single-process one. Under ``torchrun`` rank r encodes batches r, r+n, ... and every rank
receives all outputs in order (``engine.distributed``); one rank per filesystem writes the cache.
Texts are de-duplicated first (an entry holds each distinct text once, in first-occurrence order)
and, within each chunk, encoded in batches of similar token length, longest first, so adapters that cut
a batch to its longest text (``models.text_batching``) run short batches; rows are scattered back into
entry order. A text entry also records which texts the model truncates, so a cached run does not
tokenize its captions again. Image decoding errors name the file and stop the run with a ``DataError``
(never a worker traceback). Every finished chunk is on disk before the next starts, so a killed run
loses at most one chunk of work.

CPU budget: DataLoader workers plus torch's intra-op threads never exceed the cores this process may
use. On CPU the forward pass is the work, and decoding a 640x480 JPEG costs about a third of a ViT-B/32
forward in core time: a worker process beside a forward on every core would oversubscribe them, and
one on a core of its own leaves the forward short of it. So on CPU each batch is decoded by a pool of
threads in this process (one per core; PIL and torch release the GIL) and then encoded with one torch
thread per core: both phases use every core in turn and never compete. On CUDA, ``min(8, cores - 1)``
DataLoader workers overlap decoding with the GPU and torch's threads are left alone, as they are
wherever ``OMP_NUM_THREADS`` is set (torchrun sets it to 1 for several ranks on one machine; images
are then decoded serially). ``num_workers`` and ``threads`` override this (with workers, the forward
gets the cores they leave).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from .. import distributed, progress
from ..data.base import ImageSet
from ..data.tar_index import TarMember
from ..errors import DataError
from ..fileio import sha256_json
from ..models.base import ModelAdapter, PatchEmbeddings
from ..models.text_batching import dedupe, length_sorted
from .cache import EmbeddingCache
from .sources import CachedSource, GatheredRows, RowSource, TensorRows

_IMAGE_ONLY_KEYS = ("resolution", "interpolation", "crop", "mean", "std", "image_pipeline", "dense", "resized")
_TEXT_ONLY_KEYS = ("trim_text", "text_padding", "text_padding_reason")
CACHE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's intra-op thread count set to ``n`` inside the block (unchanged for None), then restored."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


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
            with Image.open(path.open() if isinstance(path, TarMember) else path) as img:  # a shard member: in place
                img.load()
                if self.boxes is not None and self.boxes[i] is not None:
                    x, y, w, h = self.boxes[i]
                    img = img.crop((x, y, x + w, y + h))
                return i, self.transform(img), None
        except FileNotFoundError:
            return i, None, f"{path}: image file is missing"
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
            return i, None, f"{path}: not a readable image ({type(e).__name__}: {e})"
        except DataError as e:  # a shard that cannot be read
            return i, None, str(e)


def _collate(items):
    errors = [err for _, _, err in items if err]
    if errors:
        return None, None, errors
    return torch.tensor([i for i, _, _ in items]), torch.stack([x for _, x, _ in items]), None


def _threaded_batches(ds: _ImageDataset, batches: list[list[int]], threads: int) -> Iterator:
    """Batches decoded by ``threads`` threads of this process (PIL and torch release the GIL), each batch
    before its forward pass, so decoding and the forward take every core in turn instead of competing."""
    with ThreadPoolExecutor(threads) as pool:
        for b in batches:
            yield _collate(list(pool.map(ds.__getitem__, b)))


@dataclass
class EngineStats:
    """Counts of this engine's work; ``texts_*`` count distinct texts (``texts_duplicate``: the repeats
    served from them), ``*_s`` the wall time spent extracting (encoding or reading the cache)."""

    images_encoded: int = 0
    images_cached: int = 0
    texts_encoded: int = 0
    texts_cached: int = 0
    texts_duplicate: int = 0
    forward_batches: int = 0
    images_s: float = 0.0
    texts_s: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Engine:
    """Serves embeddings of one model to tasks. ``cache=None`` disables the disk cache;
    ``cache_dtype="fp16"`` stores embeddings in half precision (they are returned as float32);
    ``dist=None`` ignores any process group (single-process extraction). ``num_workers`` and
    ``threads`` (torch intra-op threads while extracting) default to the module's CPU budget."""

    model: ModelAdapter
    cache: EmbeddingCache | None = None
    batch_size: int = 64
    num_workers: int | None = None
    threads: int | None = None
    progress: bool = True
    batches_per_chunk: int = 32
    cache_dtype: str = "fp32"
    dist: distributed.DistInfo | None = field(default_factory=distributed.info)
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        self._truncated: dict[str, list[int]] = {}
        self._writes_cache = self.cache is not None and distributed.first_on_filesystem(self.cache.root, self.dist)

    # -- keys ---------------------------------------------------------------------------------------
    def _key(self, what: str, fingerprint: str, ids: Sequence[str]) -> str:
        pre = dict(self.model.preprocessing)
        drop = _IMAGE_ONLY_KEYS if what.startswith("text") else _TEXT_ONLY_KEYS
        pre = {k: v for k, v in pre.items() if k not in drop}
        return sha256_json({"model": self.model.identity.weights_sha256, "spec": self.model.identity.spec,
                            "preprocessing": pre, "precision": self.model.precision, "what": what,
                            "dataset": fingerprint, "ids": sha256_json(list(ids)), "stored": self.cache_dtype})

    def _text_key(self, texts: Sequence[str]) -> str:
        """Key of the entry holding ``texts``: their distinct texts in first-occurrence order."""
        return self._key("text", sha256_json(dedupe(texts)[0]), [])

    def _workers(self, n: int) -> int:
        if self.num_workers is not None:
            return self.num_workers
        if n <= self.batch_size:
            return 0
        if self.model.device.type == "cuda":
            return min(8, max(1, available_cores() - 1))
        return 0

    def _threads(self, workers: int) -> int | None:
        """Intra-op threads for a phase with ``workers`` DataLoader workers (None: leave torch's setting, as
        on CUDA and wherever ``OMP_NUM_THREADS`` is set, e.g. by torchrun for several ranks per machine)."""
        if self.threads is not None:
            return self.threads
        if self.model.device.type == "cuda" or os.environ.get("OMP_NUM_THREADS"):
            return None
        return max(1, available_cores() - workers)

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
        workers = self._workers(sum(map(len, batches)))
        threads = self._threads(workers)
        if workers == 0 and (threads or 1) > 1:
            loader = _threaded_batches(ds, batches, threads)
        else:
            loader = DataLoader(ds, batch_sampler=batches, num_workers=workers, collate_fn=_collate,
                                pin_memory=self.model.device.type == "cuda")
        with torch_threads(threads):
            for index, batch, errors in loader:
                if errors:
                    raise DataError(errors[0] + (f" (and {len(errors) - 1} more in the same batch)"
                                                 if len(errors) > 1 else ""))
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
        """Embeddings [n, D] for ``key``, computing only chunks not on disk (counted in ``stats``, timed in
        ``stats.images_s``/``texts_s``). With ``keep=False`` (streaming) nothing is held in memory and None is
        returned. ``texts`` (text entries, distinct): each chunk is encoded in length-sorted batches, and
        which texts the model truncates is kept in the entry."""
        started = time.perf_counter()
        kind = "texts" if what == "text" else "images"
        detail = desc.rpartition(": ")[2]
        try:
            with progress.phase(kind, n, note=detail if detail != kind else "", bars=self.progress and self.main) as ph:
                return self._extract(what, key, n, produce, keep, texts, ph)
        finally:
            elapsed = time.perf_counter() - started
            if what == "text":
                self.stats.texts_s += elapsed
            else:
                self.stats.images_s += elapsed

    def _extract(self, what: str, key: str, n: int, produce: Callable, keep: bool, texts: list[str] | None,
                 ph: progress.Phase) -> torch.Tensor | None:
        chunk = self.batch_size * self.batches_per_chunk
        ranges = [(s, min(s + chunk, n)) for s in range(0, n, chunk)]
        complete, done = self._cache_state(key, ranges)
        if complete:
            ph.advance(n)
            ph.note = "cached"
            self._count(what, n, 0)
            meta = self.cache.meta(key) or {}
            if texts is not None and isinstance(meta.get("truncated_rows"), list):
                self._truncated[key] = [int(i) for i in meta["truncated_rows"]]
            return self.cache.load(key)["emb"].float() if keep else None
        todo = [r for r in ranges if r not in done]
        cached = n - sum(b - a for a, b in todo)
        if cached:
            ph.advance(cached)
            ph.note = f"{cached} cached"
        counts = None
        if texts is not None:  # one tokenization gives the length order and the truncation flags
            counts = self.model.text_token_counts(texts)
            context = self.model.preprocessing.get("context_length")
            flags = ([c > int(context) for c in counts] if counts is not None and context
                     else self.model.truncated(texts))
            self._truncated[key] = [i for i, f in enumerate(flags) if f]
        batches = [b for lo, hi in todo for b in self._batches(length_sorted(range(lo, hi), counts))]
        parts: dict[int, torch.Tensor] = {}
        if keep:
            for r in ranges:
                if r in done:
                    parts[r[0]] = self.cache.read_chunk(done[r])["emb"].float()
        dtype = CACHE_DTYPES[self.cache_dtype]
        bounds = iter(todo)
        current = next(bounds, None)
        block: torch.Tensor | None = None
        filled = 0
        with torch_threads(self._threads(0) if what == "text" else None):
            for pos, emb in self._map(batches, produce):
                if block is None:
                    block = emb.new_empty((current[1] - current[0], *emb.shape[1:]))
                block[torch.as_tensor(batches[pos]) - current[0]] = emb  # rows back in entry order
                filled += emb.shape[0]
                ph.advance(emb.shape[0])
                if filled == current[1] - current[0]:
                    block = block.to(dtype)
                    if keep:
                        parts[current[0]] = block.float()
                    if self._writes_cache:
                        self.cache.write_chunk(key, current[0], {"emb": block})
                    block, filled = None, 0
                    current = next(bounds, None)
        meta: dict = {"what": what}
        if texts is not None:
            meta["truncated_rows"] = self._truncated[key]
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

    def _distinct(self, texts: Sequence[str]) -> tuple[list[str], list[int] | None]:
        """(distinct texts, index of each text among them; None when all are distinct)."""
        unique, inverse = dedupe(texts)
        self.stats.texts_duplicate += len(inverse) - len(unique)
        return unique, (inverse if len(unique) < len(inverse) else None)

    def text_embeddings(self, texts: Sequence[str], desc: str = "texts") -> torch.Tensor:
        """l2-normalised text embeddings [M, D] (float32) in the given order, cached by the texts' content;
        each distinct text is encoded once."""
        unique, inverse = self._distinct(texts)
        emb = self._cached("text", self._text_key(unique), len(unique), self._encode_text_batches(unique), desc,
                           texts=unique)
        return emb if inverse is None else emb[torch.as_tensor(inverse, dtype=torch.long)]

    def text_source(self, texts: Sequence[str], desc: str = "texts") -> RowSource:
        """Like ``text_embeddings`` but read back block by block from the cache (memory-bounded)."""
        if self.cache is None:
            return TensorRows(self.text_embeddings(texts, desc))
        unique, inverse = self._distinct(texts)
        key = self._text_key(unique)
        self._cached("text", key, len(unique), self._encode_text_batches(unique), desc, keep=False, texts=unique)
        source = CachedSource(self.cache, key)
        return source if inverse is None else GatheredRows(source, inverse)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts exceed the model's text context (and are cut when encoded), repeats included.
        Free after ``text_embeddings`` of the same texts (counted when they were encoded, kept in the cache)."""
        texts = list(texts)
        key = self._text_key(texts)
        if key in self._truncated:
            cut = set(self._truncated[key])
            return sum(1 for j in dedupe(texts)[1] if j in cut)
        return int(sum(self.model.truncated(texts)))
