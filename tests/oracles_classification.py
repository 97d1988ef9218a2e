"""``py:`` models for the classification tests (not a test module).

- ``build``: the package's shapes-world oracle (``sparc_eval.models.oracle``): a single-shape image
  embeds with the one-hot vector of its kind and a class prompt as the one-hot of the kind it names, so
  zero-shot top-1 is exactly 100 and a probe separates the classes perfectly.
- ``build_permuted``: recognises an image of the classification view by its decoded pixels and gives
  it the kind of another one (a seeded permutation, ``permuted_kinds``), so it scores chance in
  expectation.
- ``build_pixel``: a small deterministic image-text model (pixels and character trigrams through
  fixed random projections) whose predictions vary from image to image: the common input of our
  pipeline and CLIP_benchmark in the agreement test.
"""
from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sparc_eval.data.synthetic import KINDS, load_world
from sparc_eval.models.base import ModelAdapter, ModelIdentity
from sparc_eval.models.oracle import pixel_key, shapes_oracle


def single_shape_scenes(root: Path) -> dict[int, int]:
    """Classification-view image id -> kind index, for the world at ``root``."""
    return {c["id"]: KINDS.index(c["objects"][0]["kind"]) for c in load_world(root)["classification"]}


def permuted_kinds(root: Path, seed: int = 0) -> dict[int, int]:
    """Classification-view image id -> the kind the permuted oracle gives it (another image's kind, seeded)."""
    kinds = single_shape_scenes(root)
    ids = sorted(kinds)
    perm = np.random.default_rng(seed).permutation(len(ids))
    return {sid: kinds[ids[perm[i]]] for i, sid in enumerate(ids)}


class _KindOf:
    """Image transform: PIL image -> one-hot [len(KINDS)] of the kind assigned to its scene."""

    def __init__(self, table: dict[str, int]):
        self.table = table

    def __call__(self, img: Image.Image) -> torch.Tensor:
        out = torch.zeros(len(KINDS))
        kind = self.table.get(pixel_key(img))
        if kind is not None:
            out[kind] = 1.0
        return out


class KindOracle(ModelAdapter):
    _WORDS = re.compile(r"\b(" + "|".join(KINDS) + r")\b")

    def _encode_images(self, images):
        return images.float()

    def _encode_texts(self, texts):
        out = torch.zeros(len(texts), len(KINDS))
        for i, t in enumerate(texts):
            m = self._WORDS.search(t)
            if m:
                out[i, KINDS.index(m.group(1))] = 1.0
        return out


build = shapes_oracle


def build_permuted(pretrained: str, seed: int = 0) -> KindOracle:
    files = {c["id"]: c["file"] for c in load_world(Path(pretrained))["classification"]}
    table = {}
    for cid, kind in permuted_kinds(Path(pretrained), seed).items():
        with Image.open(Path(pretrained) / files[cid]) as im:
            table[pixel_key(im)] = kind
    return KindOracle(identity=ModelIdentity("py:oracles_classification", pretrained, "kind-oracle", ""),
                      image_transform=_KindOf(table), preprocessing={"oracle": "shapes kinds", "permuted": True})


class PixelCLIP(torch.nn.Module):
    """encode_image: centred 8x8 RGB pixels @ a fixed random matrix; encode_text: trigram counts @ another."""

    def __init__(self, seed: int = 0, dim: int = 32, buckets: int = 512):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("img_proj", torch.randn(3 * 8 * 8, dim, generator=g))
        self.register_buffer("txt_proj", torch.randn(buckets, dim, generator=g))
        self.buckets = buckets

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return (images.flatten(1) - 0.5) @ self.img_proj

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens @ self.txt_proj


def pixel_transform(img: Image.Image) -> torch.Tensor:
    small = img.convert("RGB").resize((8, 8), Image.BILINEAR)
    return torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


class TrigramTokenizer:
    def __init__(self, buckets: int = 512):
        self.buckets = buckets

    def __call__(self, texts) -> torch.Tensor:
        out = torch.zeros(len(texts), self.buckets)
        for i, t in enumerate(texts):
            s = f"  {t.lower()} "
            for j in range(len(s) - 2):
                out[i, zlib.crc32(s[j:j + 3].encode()) % self.buckets] += 1.0
        return out


def build_pixel(seed: int = 0):
    return PixelCLIP(seed), pixel_transform, TrigramTokenizer()
