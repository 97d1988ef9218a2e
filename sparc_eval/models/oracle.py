"""Oracle models of the shapes world: they read the ground truth instead of looking at the image.

``py:sparc_eval.models.oracle:shapes_oracle [--pretrained WORLD_ROOT]`` (default: the standard world
that ``${shapes}`` tasks use) recognises each image of the world by its decoded pixels and each
caption by its text. Its joint space is ``[scene one-hot (N scenes) | label one-hot (background + 6
kinds)]``:

- an image embeds as its scene's one-hot (weight 3), plus the one-hot of its kind (weight 1) when it
  holds a single shape (an image of the classification view: its kind's one-hot only), so a caption
  true of the image (cosine 3/sqrt(10) for a caption of one scene) always beats a text that only
  names its kind (1/sqrt(10));
- a caption (of the world, or a SugarCrepe positive, also after ARO's ``pre_caption``) embeds as the
  indicator of the scenes it is true of; any other text as the one-hot of the first kind it names
  (``background`` when it names none), so class prompts work;
- dense patch embeddings (one per pixel, at the world's resolution) are the one-hots of the pixel's
  ground-truth label.

So it reaches the best value of retrieval, zero-shot classification, linear probing, zero-shot
segmentation, caption selection and faithfulness. ``shapes_oracle_permuted`` maps captions to a seeded
random permutation of the scene ids, so its retrieval-style scores are chance in expectation. They catch
id mismatches that random models hide (DESIGN.md §5) and give the ceiling row of the demo. The helpers
(``pixel_key``, ``world_pixel_table``, ``caption_truth``, ``label_map``) also serve the tests' oracles.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.synthetic import KINDS, Shape, load_world, render
from ..errors import ModelLoadError
from .base import ModelAdapter, ModelIdentity, PatchEmbeddings
from .transforms import build_image_transform

N_LABELS = len(KINDS) + 1  # background + kinds, as the VOC-style masks
SCENE_WEIGHT = 3.0


def pixel_key(pixels: np.ndarray | Image.Image) -> str:
    """Identity of an image's decoded RGB pixels ([H, W, 3] uint8 array or a PIL image)."""
    arr = np.asarray(pixels.convert("RGB")) if isinstance(pixels, Image.Image) else np.asarray(pixels, np.uint8)
    return hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest()


def world_pixel_table(root: Path) -> dict[str, tuple[str, int]]:
    """Pixel key -> ("scenes", id) for every captioned image (PNGs and the VOC JPEG copies) or
    ("classification", id) for the classification view. Identical pixels in both views (the same shape
    drawn in the same cell) resolve to the captioned scene, whose embedding also holds the kind."""
    world = load_world(root)
    table = {}
    for view in ("classification", "scenes"):
        for entry in world.get(view, []):
            with Image.open(root / entry["file"]) as im:
                table[pixel_key(im)] = (view, entry["id"])
            jpg = root / "VOCdevkit/VOC2012/JPEGImages" / f"{entry['id']:06d}.jpg"
            if view == "scenes" and jpg.is_file():
                with Image.open(jpg) as im:
                    table[pixel_key(im)] = (view, entry["id"])
    return table


def caption_truth(root: Path) -> dict[str, set[int]]:
    """Caption text (as written and after ARO's ``pre_caption``) -> the scenes it is true of."""
    from ..data.aro import pre_caption

    truth: dict[str, set[int]] = {}

    def add(text: str, scene: int) -> None:
        for t in (text.strip(), pre_caption(text)):
            truth.setdefault(t, set()).add(scene)

    for scene in load_world(root)["scenes"]:
        for cap in scene["captions"]:
            add(cap, scene["id"])
    for f in sorted((root / "sugarcrepe").glob("*.json")):
        for item in json.loads(f.read_text()).values():
            add(item["caption"], int(Path(item["filename"]).stem))
    return truth


def label_map(scene: dict, image_size: int) -> np.ndarray:
    """[H, W] ground-truth labels of a world entry (0 background, 1.. kinds), rasterised as the world draws it."""
    shapes = [Shape(**{k: o[k] for k in ("kind", "colour", "size", "row", "col", "cx", "cy")})
              for o in scene["objects"]]
    labels = np.zeros((image_size, image_size), dtype=np.int64)
    for s, m in zip(shapes, render(shapes, image_size)[1]):
        labels[m] = KINDS.index(s.kind) + 1
    return labels


def kind_of(text: str) -> int:
    """Label index of the first kind a text names (0: background, when it names none)."""
    words = text.lower().replace(".", " ").replace(",", " ").split()
    return next((KINDS.index(w) + 1 for w in words if w in KINDS), 0)


class ShapesOracle(ModelAdapter):
    """See the module docstring; ``text_labels`` maps the label a text names to the label it embeds as
    (identity for the ground-truth oracle)."""

    def __init__(self, world: dict, table: dict[str, tuple[str, int]], captions: dict[str, set[int]],
                 text_labels: dict[int, int], **kw):
        super().__init__(**kw)
        self.n = len(world["scenes"])
        self.size = world["image_size"]
        self.entries = {view: {e["id"]: e for e in world.get(view, [])} for view in ("scenes", "classification")}
        self.table, self.captions, self.text_labels = table, captions, text_labels

    def _entry(self, image: torch.Tensor) -> tuple[str, dict]:
        pixels = (image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        found = self.table.get(pixel_key(pixels))
        if found is None:
            raise ModelLoadError("shapes oracle: an image that is not in its world (is --pretrained the world the "
                                 "task reads?)")
        view, i = found
        return view, self.entries[view][i]

    def _encode_images(self, images):
        out = torch.zeros(len(images), self.n + N_LABELS)
        for row, image in enumerate(images):
            view, entry = self._entry(image)
            if view == "scenes":
                out[row, entry["id"]] = SCENE_WEIGHT
            if len(entry["objects"]) == 1:
                out[row, self.n + KINDS.index(entry["objects"][0]["kind"]) + 1] = 1.0
        return out

    def _encode_texts(self, texts):
        out = torch.zeros(len(texts), self.n + N_LABELS)
        for row, text in enumerate(texts):
            scenes = self.captions.get(text.strip())
            if scenes:
                out[row, list(scenes)] = 1.0
            else:
                out[row, self.n + self.text_labels[kind_of(text)]] = 1.0
        return out

    def _encode_image_patches(self, images):
        out = torch.zeros(len(images), self.size * self.size, self.n + N_LABELS)
        for row, image in enumerate(images):
            labels = torch.from_numpy(label_map(self._entry(image)[1], self.size)).flatten()
            out[row, torch.arange(labels.numel()), self.n + labels] = 1.0
        return PatchEmbeddings(out, (self.size, self.size))


def build_oracle(root: str | Path | None = None, permute_captions: bool = False, seed: int = 0,
                 text_labels: dict[int, int] | None = None) -> ShapesOracle:
    """A shapes oracle for the world at ``root`` (default: the standard world); ``permute_captions`` sends
    captions to a seeded permutation of the scene ids (``np.random.default_rng(seed).permutation``)."""
    if root is None:
        from ..data.synthetic import default_world

        root = default_world()
    root = Path(root)
    if not (root / "world.json").is_file():
        raise ModelLoadError(f"shapes oracle: --pretrained must be a shapes world folder with world.json, "
                             f"found {str(root)!r}")
    world = load_world(root)
    captions = caption_truth(root)
    if permute_captions:
        sigma = np.random.default_rng(seed).permutation(len(world["scenes"]))
        captions = {t: {int(sigma[s]) for s in scenes} for t, scenes in captions.items()}
    pre = {"resolution": world["image_size"], "interpolation": "nearest", "crop": "squash", "mean": [0.0, 0.0, 0.0],
           "std": [1.0, 1.0, 1.0], "oracle": "shapes-world ground truth", "permuted": permute_captions}
    identity = ModelIdentity("py:sparc_eval.models.oracle", str(root), "oracle", "")
    return ShapesOracle(world, world_pixel_table(root), captions, text_labels or {i: i for i in range(N_LABELS)},
                        identity=identity, image_transform=build_image_transform(pre), preprocessing=pre)


def shapes_oracle(pretrained: str | None = None, seed: int = 0) -> ShapesOracle:
    """The ground-truth oracle of the shapes world at ``pretrained``."""
    return build_oracle(pretrained, False, seed)


def shapes_oracle_permuted(pretrained: str | None = None, seed: int = 0) -> ShapesOracle:
    """The oracle with caption -> scene ids permuted (seeded): chance level in expectation."""
    return build_oracle(pretrained, True, seed)
