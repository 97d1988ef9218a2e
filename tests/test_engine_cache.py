"""The embedding engine and cache: order, chunked resume after an interruption, content keys."""
from __future__ import annotations

import pytest
import torch
from conftest import TINY_OPEN_CLIP
from PIL import Image

from sparc_eval.data.base import get_reader
from sparc_eval.engine import EmbeddingCache, Engine
from sparc_eval.models import load_model


class Interrupted(Exception):
    pass


class _Dying:
    """Wraps an adapter's image encoder to fail at the n-th batch, like a killed process."""

    def __init__(self, model, die_at: int):
        self.model, self.die_at, self.calls = model, die_at, 0
        self.original = model._encode_images

    def __call__(self, images):
        self.calls += 1
        if self.calls == self.die_at:
            raise Interrupted
        return self.original(images)


@pytest.fixture(scope="module")
def images(small_world):
    return get_reader("karpathy").load({"root": str(small_world), "annotations": "dataset_shapes.json",
                                        "split": "test", "image_dir": ""}).images


def test_interrupted_extraction_resumes_where_it_stopped(images, tmp_path):
    model = load_model(TINY_OPEN_CLIP)
    reference = Engine(model, cache=None, batch_size=4, num_workers=0, progress=False).image_embeddings(images)
    cache = EmbeddingCache(tmp_path)
    dying = _Dying(model, die_at=7)  # chunks of 2 batches: 3 chunks are on disk when batch 7 fails
    model._encode_images = dying
    engine = Engine(model, cache=cache, batch_size=4, num_workers=0, progress=False, batches_per_chunk=2)
    with pytest.raises(Interrupted):
        engine.image_embeddings(images)
    key = engine._key("image", images.fingerprint, images.ids)
    assert len(cache.chunks(key)) == 3 and not cache.complete(key)
    assert not [p for p in cache.entry(key).iterdir() if p.name.endswith(".tmp")]

    resumed = Engine(model, cache=cache, batch_size=4, num_workers=0, progress=False, batches_per_chunk=2)
    emb = resumed.image_embeddings(images)
    assert resumed.stats.images_cached == 24 and resumed.stats.images_encoded == len(images) - 24
    assert torch.equal(emb, reference)  # same batches, same numbers
    assert cache.complete(key)

    again = Engine(model, cache=cache, batch_size=4, num_workers=0, progress=False, batches_per_chunk=2)
    assert torch.equal(again.image_embeddings(images), reference) and again.stats.forward_batches == 0


def test_workers_and_batch_order_do_not_change_embeddings(images):
    model = load_model(TINY_OPEN_CLIP)
    a = Engine(model, cache=None, batch_size=8, num_workers=0, progress=False).image_embeddings(images)
    b = Engine(model, cache=None, batch_size=8, num_workers=2, progress=False).image_embeddings(images)
    assert torch.equal(a, b)
    one = torch.cat([model.encode_images(model.image_transform(Image.open(p)).unsqueeze(0))
                     for p in images.paths[:3]])
    assert torch.allclose(a[:3], one, atol=1e-6)


def test_text_cache_keyed_by_content(tmp_path):
    model = load_model(TINY_OPEN_CLIP)
    cache = EmbeddingCache(tmp_path)
    e = Engine(model, cache=cache, batch_size=4, progress=False)
    a = e.text_embeddings(["a red circle", "a blue square"])
    e2 = Engine(model, cache=cache, batch_size=4, progress=False)
    b = e2.text_embeddings(["a red circle", "a blue square"])
    assert torch.equal(a, b) and e2.stats.texts_cached == 2
    e2.text_embeddings(["a blue square", "a red circle"])  # other order: other key
    assert e2.stats.texts_encoded == 2


def test_resume_with_another_batch_size_serves_exactly_the_samples(images, tmp_path):
    """Chunk bounds follow the batch size: a run killed at batch size 4 and resumed at 6 leaves
    overlapping chunk files; the entry is exactly its samples, in order, read back every way."""
    model = load_model(TINY_OPEN_CLIP)
    reference = Engine(model, cache=None, batch_size=4, num_workers=0, progress=False).image_embeddings(images)
    cache = EmbeddingCache(tmp_path)
    model._encode_images = _Dying(model, die_at=7)
    killed = Engine(model, cache=cache, batch_size=4, num_workers=0, progress=False, batches_per_chunk=2)
    with pytest.raises(Interrupted):
        killed.image_embeddings(images)
    model._encode_images = model._encode_images.original
    resumed = Engine(model, cache=cache, batch_size=6, num_workers=0, progress=False, batches_per_chunk=2)
    emb = resumed.image_embeddings(images)
    key = resumed._key("image", images.fingerprint, images.ids)
    assert set(cache.chunks(key)) == {(0, 8), (8, 16), (16, 24), (0, 12), (12, 24), (24, 36), (36, 40)}
    assert resumed.stats.images_cached == 0  # no chunk of the old bounds is reused
    assert emb.shape[0] == len(images) and torch.allclose(emb, reference, atol=1e-6)
    assert torch.equal(cache.load(key)["emb"], emb)
    assert [a for a, _ in cache.iter_blocks(key)] == [0, 12, 24, 36]
    streamed = resumed.image_source(images)
    assert streamed.n == len(images) and torch.equal(streamed.read(5, 30), emb[5:30])
    again = Engine(model, cache=cache, batch_size=4, num_workers=0, progress=False, batches_per_chunk=2)
    assert torch.equal(again.image_embeddings(images), emb) and again.stats.forward_batches == 0


def test_concurrent_text_entries_of_two_batch_sizes_do_not_add_rows(tmp_path):
    texts = [f"{n} red circles" for n in range(10)]
    model = load_model(TINY_OPEN_CLIP)
    cache = EmbeddingCache(tmp_path)
    first = Engine(model, cache=cache, batch_size=4, progress=False, batches_per_chunk=1)
    a = first.text_embeddings(texts)
    key = first._text_key(texts)
    (cache.entry(key) / "meta.json").unlink()  # the other run finishes later with its own chunks
    b = Engine(model, cache=cache, batch_size=6, progress=False, batches_per_chunk=1).text_embeddings(texts)
    assert len(cache.chunks(key)) == 5 and cache.meta(key)["chunks"] == [[0, 6], [6, 10]]
    assert cache.load(key)["emb"].shape[0] == 10 and torch.allclose(a, b, atol=1e-6)
    reader = Engine(model, cache=cache, batch_size=4, progress=False)
    assert reader.text_source(texts).n == 10 and reader.text_embeddings(texts).shape[0] == 10


def test_truncation_count_is_kept_with_the_cached_texts(tmp_path):
    model = load_model(TINY_OPEN_CLIP)
    texts = ["a red circle", "a red circle " * 20, "two blue squares"]
    cache = EmbeddingCache(tmp_path)
    Engine(model, cache=cache, progress=False).text_embeddings(texts)
    calls = []
    original = model.truncated
    model.truncated = lambda t: calls.append(len(t)) or original(t)
    cached = Engine(model, cache=cache, progress=False)
    cached.text_embeddings(texts)
    assert cached.count_truncated(texts) == 1 and calls == []  # read from the entry, not re-tokenized
    assert cached.count_truncated(texts[:1]) == 0 and calls == [1]  # other texts: counted on demand


def test_decompression_bomb_is_a_data_error(images, monkeypatch):
    from PIL import Image as PILImage

    from sparc_eval.errors import DataError

    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 64)  # every 64x64 image of the world is now a "bomb"
    engine = Engine(load_model(TINY_OPEN_CLIP), cache=None, batch_size=4, num_workers=0, progress=False)
    with pytest.raises(DataError, match=r"not a readable image \(DecompressionBombError"):
        engine.image_embeddings(images)


def test_cache_files_are_readable_by_others_and_hash_memo_sees_rewrites(tmp_path):
    import os

    from sparc_eval.fileio import default_mode, sha256_file

    cache = EmbeddingCache(tmp_path / "c")
    Engine(load_model(TINY_OPEN_CLIP), cache=cache, progress=False).text_embeddings(["a red circle"])
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == default_mode() for p in files)  # not mkstemp's 0o600
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 100)
    first = sha256_file(f)
    st = f.stat()
    f.write_bytes(b"b" * 100)  # same size, mtime put back: only ctime tells
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(f) != first
