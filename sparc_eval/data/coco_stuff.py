"""COCO-Stuff 164k: 171 classes (80 things + 91 stuff) as train ids, 255 unlabelled.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

The ``_labelTrainIds.png`` maps are written by mmsegmentation's
``tools/dataset_converters/coco_stuff164k.py`` from ``stuffthingmaps_trainval2017.zip``.
"""
from __future__ import annotations

from typing import ClassVar

from ..params import Param
from .segmentation import SegmentationReader, files_with_suffix, paired_by_stem


class CocoStuffReader(SegmentationReader):
    format = "coco_stuff"
    default_table = "coco_stuff"
    fixed_reduce_zero_label = False
    params: ClassVar[dict[str, Param]] = {**SegmentationReader.common_params,
                                          "split": Param("str", "val2017", "images/<split> folder")}
    layout = """

    <root>/images/<split>/<id>.jpg                       split: val2017 (5,000 images) or train2017
    <root>/annotations/<split>/<id>_labelTrainIds.png    train ids 0-170, 255 ignored"""

    def _pairs(self, cfg, root):
        image_dir = root / "images" / cfg["split"]
        images = files_with_suffix(image_dir, ".jpg", self.format)
        return paired_by_stem(images, ".jpg", root / "annotations" / cfg["split"], "_labelTrainIds.png", image_dir), []


READER = CocoStuffReader()
