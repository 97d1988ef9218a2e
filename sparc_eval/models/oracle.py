"""Oracle models of the shapes world: they read the ground truth instead of looking at the image.

``py:sparc_eval.models.oracle:shapes_oracle [--pretrained WORLD_ROOT]`` (default: the standard world
that ``${shapes}`` tasks use) recognises each image of the
world by its decoded pixels and each caption by its text, and embeds both as one-hot vectors of the
scene id, so an image matches exactly its own captions. It reaches the best value of any
retrieval-style metric; ``shapes_oracle_permuted`` maps captions to a seeded random permutation of
the scene ids, so it scores chance in expectation. They exist to catch id mismatches that random
models hide (DESIGN.md §5) and as the upper bound row of the demo.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.synthetic import load_world
from ..errors import ModelLoadError
from .base import ModelAdapter, ModelIdentity


def pixel_key(img: Image.Image) -> str:
    """Identity of an image's decoded RGB pixels."""
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    return hashlib.sha1(rgb.tobytes() + bytes(str(rgb.size), "ascii")).hexdigest()


class _Identify:
    """Image transform: PIL image -> tensor([scene id]) (-1 when the image is not in the world)."""

    def __init__(self, table: dict[str, int]):
        self.table = table

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.tensor([float(self.table.get(pixel_key(img), -1))])


class ShapesOracle(ModelAdapter):
    def __init__(self, n_scenes: int, caption_scenes: dict[str, list[int]], **kw):
        super().__init__(**kw)
        self.n, self.caption_scenes = n_scenes, caption_scenes

    def _one_hot(self, ids: list[list[int]]) -> torch.Tensor:
        out = torch.zeros(len(ids), self.n)
        for row, scene_ids in enumerate(ids):
            for s in scene_ids:
                if s >= 0:
                    out[row, s] = 1.0
        return out

    def _encode_images(self, images):
        return self._one_hot([[int(v)] for v in images[:, 0].tolist()])

    def _encode_texts(self, texts):
        return self._one_hot([self.caption_scenes.get(t.strip(), []) for t in texts])


def _build(root: str | None, permute: bool, seed: int) -> ShapesOracle:
    if root is None:
        from ..data.synthetic import default_world

        root = str(default_world())
    if not (Path(root) / "world.json").is_file():
        raise ModelLoadError(f"shapes oracle: --pretrained must be a shapes world folder with world.json, "
                             f"found {root!r}")
    root_p = Path(root)
    world = load_world(root_p)
    n = len(world["scenes"])
    table: dict[str, int] = {}
    for scene in world["scenes"]:
        with Image.open(root_p / scene["file"]) as im:
            table[pixel_key(im)] = scene["id"]
        jpg = root_p / "VOCdevkit/VOC2012/JPEGImages" / f"{scene['id']:06d}.jpg"
        if jpg.is_file():
            with Image.open(jpg) as im:
                table[pixel_key(im)] = scene["id"]
    mapping = np.arange(n)
    if permute:
        mapping = np.random.default_rng(seed).permutation(n)
    captions: dict[str, list[int]] = {}
    for scene in world["scenes"]:
        for cap in scene["captions"]:
            captions.setdefault(cap, []).append(int(mapping[scene["id"]]))
    identity = ModelIdentity("py:sparc_eval.models.oracle", root, "oracle", "")
    return ShapesOracle(n, captions, identity=identity, image_transform=_Identify(table),
                        preprocessing={"oracle": "shapes-world ground truth", "permuted": permute})


def shapes_oracle(pretrained: str | None = None, seed: int = 0) -> ShapesOracle:
    """The ground-truth oracle of the shapes world at ``pretrained``."""
    return _build(pretrained, False, seed)


def shapes_oracle_permuted(pretrained: str | None = None, seed: int = 0) -> ShapesOracle:
    """The oracle with caption->scene ids permuted (seeded): chance level in expectation."""
    return _build(pretrained, True, seed)
