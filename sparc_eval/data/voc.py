"""Pascal VOC 2012 semantic segmentation (21 classes with background, or 20 with ``reduce_zero_label``).

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

``reduce_zero_label: true`` gives the 20-class, background-ignored setting (mmsegmentation's VOC20 of
MaskCLIP/TCL); ``false`` keeps background as class 0 (21 classes, scored). The shapes world writes
this layout (``${shapes}/VOCdevkit/VOC2012``, class table ``shapes``). An id listed twice in the split
list, or one that leads out of the image or label folder (``../x``, ``/x``; unless
``dataset.allow_outside_root``), is a ``DataIntegrityError`` naming the line.
"""
from __future__ import annotations

from typing import ClassVar

from ..params import Param
from .base import allow_outside_root, check_unique, path_key, safe_join
from .segmentation import SegmentationReader, read_list_file


class VOCReader(SegmentationReader):
    format = "voc"
    default_table = "voc"
    table_has_background = True
    params: ClassVar[dict[str, Param]] = {
        **SegmentationReader.common_params,
        "reduce_zero_label": Param("bool", False, "drop background: 0 -> ignored, ids shift down by one"),
        "image_dir": Param("str", "JPEGImages", "image folder under root"),
        "label_dir": Param("str", "SegmentationClass", "label folder under root"),
        "split_dir": Param("str", "ImageSets/Segmentation", "folder of the <split>.txt lists under root"),
    }
    layout = """

    <root>/JPEGImages/<id>.jpg
    <root>/SegmentationClass/<id>.png          palette PNG: 0 background, 1-20 classes, 255 void border
    <root>/ImageSets/Segmentation/<split>.txt  one id per line (val: 1,449 images)"""

    def _pairs(self, cfg, root):
        listing = root / cfg["split_dir"] / f"{cfg['split']}.txt"
        lines = read_list_file(listing, self.format)
        check_unique([path_key(i) for _, i in lines], "id", str(listing), lambda k: f"line {lines[k][0]}")
        outside = allow_outside_root(cfg)
        pairs = []
        for n, i in lines:
            where = f"{listing}:{n}: id"
            pairs.append((safe_join(root / cfg["image_dir"], f"{i}.jpg", where, outside),
                          safe_join(root / cfg["label_dir"], f"{i}.png", where, outside), i))
        return pairs, [listing]


READER = VOCReader()
