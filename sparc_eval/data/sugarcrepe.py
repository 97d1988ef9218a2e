"""SugarCrepe (Hsieh et al., NeurIPS 2023): one image, its caption and a hard negative, 7 categories.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Keys of a file are string indices and may be non-contiguous; items keep the file's order. The shapes
world writes the same format (``${shapes}/sugarcrepe/*.json``, images in ``${shapes}/images``).
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..errors import DataError
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    check_images_exist,
    check_root,
    fingerprint,
    read_json,
    require_fields,
)
from .probes import CaptionItem, CaptionSelectionSet, unique_images

CATEGORIES = ("add_att", "add_obj", "replace_att", "replace_obj", "replace_rel", "swap_att", "swap_obj")


class SugarCrepeReader(Reader):
    format = "sugarcrepe"
    kind = "caption_selection"
    params: ClassVar[dict[str, Param]] = {
        "root": Param("path", help="dataset folder"),
        "annotations": Param("str", "data", "folder of the <category>.json files, under root"),
        "image_dir": Param("path", "val2017", "image folder (absolute, or under root)"),
        "categories": Param("list[str]", list(CATEGORIES), "categories (file stems) to evaluate"),
    }
    layout = """

    <root>/<annotations>/<category>.json   {"<index>": {"filename", "caption", "negative_caption"}, ...}
                                           categories: add_att add_obj replace_att replace_obj
                                           replace_rel swap_att swap_obj (RAIVNLab/sugar-crepe data/)
    <image_dir>/<filename>                 COCO val2017 images (image_dir absolute or under root)"""

    def load(self, cfg) -> CaptionSelectionSet:
        root = check_root(cfg, "sugarcrepe")
        image_dir = Path(str(cfg["image_dir"])).expanduser()
        image_dir = image_dir if image_dir.is_absolute() else root / image_dir
        files, raw = [], []
        for cat in cfg["categories"]:
            path = root / cfg["annotations"] / f"{cat}.json"
            data = read_json(path, f"sugarcrepe category {cat!r}")
            if not isinstance(data, dict):
                raise DataError(f"{path}: expected a JSON object keyed by item index, found {type(data).__name__}")
            for key, entry in data.items():
                require_fields(entry, ["filename", "caption", "negative_caption"], f"{path}: item {key!r}")
                raw.append((cat, str(key), entry))
            files.append(path)
        if not raw:
            raise DataError(f"sugarcrepe: no items in {[str(f) for f in files]}")
        names, index = unique_images([str(e["filename"]) for _, _, e in raw])
        paths = [image_dir / n for n in names]
        check_images_exist(paths, "sugarcrepe")
        items = [CaptionItem(f"{cat}/{key}", index[str(e["filename"])],
                             [str(e["caption"]).strip(), str(e["negative_caption"]).strip()], 0, cat)
                 for cat, key, e in raw]
        fp = fingerprint("sugarcrepe", files, paths, image_dir, {"categories": list(cfg["categories"])})
        return CaptionSelectionSet(ImageSet(paths, names, fp), items, fp, len(items),
                                   {"annotations": str(root / cfg["annotations"]), "image_dir": str(image_dir)})


READER = SugarCrepeReader()
