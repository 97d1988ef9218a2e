"""Oracle models of the shapes world for the fine-grained tasks (segmentation, compositional probes).

They read the ground truth instead of looking at the image: an image is recognised by its decoded
pixels, so the oracle scores the best value of each task, and the permuted variants map ground-truth
ids through a seeded permutation, so their scores are known analytically.

- ``seg_oracle`` (``--pretrained WORLD``): ``encode_image_patches`` returns, for every pixel, the
  one-hot vector of its VOC label (0 background, 1-6 kinds) on a grid of the label's size, and a
  class prompt embeds as the one-hot of the kind it names, so the predicted map equals the ground
  truth. ``seg_oracle_permuted`` embeds kind k as kind perm(k) with perm a derangement of the six
  kinds (background fixed), so every foreground pixel is predicted wrong.
- ``probe_oracle``: images embed as the one-hot of their scene, a caption as the indicator of the
  scenes it is true of (the world's captions and the SugarCrepe positives, also after ARO's
  ``pre_caption``), so the right caption scores 1 and a negative 0. ``probe_oracle_permuted`` sends
  each caption's scenes through a seeded permutation of the scene ids.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sparc_eval.data.aro import pre_caption
from sparc_eval.data.synthetic import KINDS, load_world
from sparc_eval.models.base import ModelAdapter, ModelIdentity, PatchEmbeddings
from sparc_eval.models.transforms import build_image_transform

SEG_PREPROCESSING = {"interpolation": "nearest", "crop": "squash", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                     "dense": "oracle"}
KIND_DERANGEMENT = {0: 0, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 1}


def _key(rgb: np.ndarray) -> bytes:
    return rgb.astype(np.uint8).tobytes()


def _world_images(root: Path) -> dict[bytes, int]:
    """Decoded pixels (PNG and VOC JPEG copies) -> scene id."""
    table = {}
    for scene in load_world(root)["scenes"]:
        with Image.open(root / scene["file"]) as im:
            table[_key(np.asarray(im.convert("RGB")))] = scene["id"]
        jpg = root / "VOCdevkit/VOC2012/JPEGImages" / f"{scene['id']:06d}.jpg"
        if jpg.is_file():
            with Image.open(jpg) as im:
                table[_key(np.asarray(im.convert("RGB")))] = scene["id"]
    return table


class SegOracle(ModelAdapter):
    def __init__(self, root: Path, permuted: bool, **kw):
        super().__init__(**kw)
        self.root, self.table = root, _world_images(root)
        self.kind_map = KIND_DERANGEMENT if permuted else {k: k for k in range(len(KINDS) + 1)}

    def _mask(self, pixels: torch.Tensor) -> np.ndarray:
        rgb = (pixels.permute(1, 2, 0).cpu().numpy() * 255).round()
        scene = self.table[_key(rgb)]
        with Image.open(self.root / "VOCdevkit/VOC2012/SegmentationClass" / f"{scene:06d}.png") as im:
            return np.asarray(im)

    def _encode_image_patches(self, images):
        out = []
        for x in images:
            mask = self._mask(x).astype(np.int64)
            mask[mask == 255] = 0
            out.append(torch.nn.functional.one_hot(torch.from_numpy(mask).flatten(), len(KINDS) + 1).float())
        return PatchEmbeddings(torch.stack(out), tuple(images.shape[-2:]))

    def _encode_texts(self, texts):
        out = torch.zeros(len(texts), len(KINDS) + 1)
        for row, text in enumerate(texts):
            hits = [k + 1 for k, name in enumerate(KINDS) if name in text] or [0]
            out[row, self.kind_map[hits[0]]] = 1.0
        return out

    def _encode_images(self, images):
        raise NotImplementedError("the segmentation oracle only has dense outputs")


def _build_seg(pretrained, permuted: bool) -> SegOracle:
    root = Path(pretrained)
    size = load_world(root)["image_size"]
    pre = {"resolution": size, **SEG_PREPROCESSING}
    return SegOracle(root, permuted, identity=ModelIdentity("py:oracle", str(root), "seg-oracle", ""),
                     image_transform=build_image_transform(pre), preprocessing=pre)


def seg_oracle(pretrained=None):
    return _build_seg(pretrained, False)


def seg_oracle_permuted(pretrained=None):
    return _build_seg(pretrained, True)


class _SceneOf:
    """Image transform: PIL image -> tensor([scene id]) (-1 when unknown). Picklable."""

    def __init__(self, table: dict[bytes, int]):
        self.table = table

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return torch.tensor([float(self.table.get(_key(np.asarray(img.convert("RGB"))), -1))])


def caption_truth(root: Path) -> dict[str, set[int]]:
    """Caption text (as written and after ``pre_caption``) -> the scenes it is true of."""
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


class ProbeOracle(ModelAdapter):
    def __init__(self, n: int, truth: dict[str, set[int]], mapping: np.ndarray, **kw):
        super().__init__(**kw)
        self.n, self.truth, self.mapping = n, truth, mapping

    def _encode_images(self, images):
        out = torch.zeros(len(images), self.n)
        for row, s in enumerate(images[:, 0].long().tolist()):
            if s >= 0:
                out[row, s] = 1.0
        return out

    def _encode_texts(self, texts):
        out = torch.zeros(len(texts), self.n)
        for row, text in enumerate(texts):
            for s in self.truth.get(text.strip(), ()):
                out[row, int(self.mapping[s])] = 1.0
        return out


def probe_permutation(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def _build_probe(pretrained, permuted: bool, seed: int) -> ProbeOracle:
    root = Path(pretrained)
    n = len(load_world(root)["scenes"])
    mapping = probe_permutation(n, seed) if permuted else np.arange(n)
    return ProbeOracle(n, caption_truth(root), mapping,
                       identity=ModelIdentity("py:oracle", str(root), "probe-oracle", ""),
                       image_transform=_SceneOf(_world_images(root)), preprocessing={"oracle": "shapes world"})


def probe_oracle(pretrained=None, seed: int = 0):
    return _build_probe(pretrained, False, seed)


def probe_oracle_permuted(pretrained=None, seed: int = 0):
    return _build_probe(pretrained, True, seed)
