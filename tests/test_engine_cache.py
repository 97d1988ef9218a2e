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
