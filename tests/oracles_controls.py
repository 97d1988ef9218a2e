"""A model for the permutation checks of the segmentation chance level, built on the shapes oracle.

``seg_prior_sampler`` (``--pretrained WORLD``) ignores the image: each pixel's dense embedding is the
one-hot of a class drawn from the class frequencies of the evaluated ground truth (the VOC ``val``
masks of the world, background left out as ``reduce_zero_label`` does), seeded by ``--seed``. It is
the *prior sampling* predictor of ``metrics.controls.segmentation_chance``, so its mIoU must land on the
stated chance within its interval.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sparc_eval.models.oracle import KINDS, ShapesOracle, build_oracle


def val_label_areas(world: Path) -> np.ndarray:
    """[images, kinds] foreground pixel counts of the world's VOC val masks (label k -> column k - 1)."""
    voc = Path(world) / "VOCdevkit/VOC2012"
    ids = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    rows = []
    for i in ids:
        lab = np.asarray(Image.open(voc / "SegmentationClass" / f"{i}.png"))
        rows.append([int((lab == k).sum()) for k in range(1, len(KINDS) + 1)])
    return np.asarray(rows)


class PriorSampler(ShapesOracle):
    def __init__(self, base: ShapesOracle, prior: np.ndarray, seed: int):
        self.__dict__.update(base.__dict__)
        self.prior = prior
        self.rng = np.random.default_rng(seed)

    def _encode_image_patches(self, images):
        from sparc_eval.models.base import PatchEmbeddings

        out = torch.zeros(len(images), self.size * self.size, self.n + len(KINDS) + 1)
        for row in range(len(images)):
            labels = 1 + self.rng.choice(len(KINDS), size=self.size * self.size, p=self.prior)
            out[row, torch.arange(labels.size), self.n + torch.from_numpy(labels)] = 1.0
        return PatchEmbeddings(out, (self.size, self.size))


def seg_prior_sampler(pretrained=None, seed: int = 0) -> PriorSampler:
    areas = val_label_areas(Path(pretrained))
    prior = areas.sum(0) / areas.sum()
    return PriorSampler(build_oracle(pretrained), prior, seed)
