"""ADE20K (SceneParsing, ADEChallengeData2016): 150 classes, 0 = "other" ignored (reduce_zero_label).

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Images are listed from the image folder, sorted by path (as mmsegmentation).
"""
from __future__ import annotations

from typing import ClassVar

from ..params import Param
from .segmentation import SegmentationReader, files_with_suffix, paired_by_stem


class ADE20KReader(SegmentationReader):
    format = "ade20k"
    default_table = "ade20k"
    fixed_reduce_zero_label = True
    params: ClassVar[dict[str, Param]] = {**SegmentationReader.common_params,
                                          "split": Param("str", "validation", "images/<split> folder")}
    layout = """

    <root>/images/<split>/<id>.jpg           split: validation (2,000 images) or training
    <root>/annotations/<split>/<id>.png      greyscale: 0 other (ignored), 1-150 classes"""

    def _pairs(self, cfg, root):
        image_dir = root / "images" / cfg["split"]
        images = files_with_suffix(image_dir, ".jpg", self.format)
        return paired_by_stem(images, ".jpg", root / "annotations" / cfg["split"], ".png", image_dir), []


READER = ADE20KReader()
