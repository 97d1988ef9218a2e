"""SugarCrepe (Hsieh et al., NeurIPS 2023): one image, its caption and a hard negative, 7 categories.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Keys of a file are string indices and may be non-contiguous; items keep the file's order. The shapes
world writes the same format (``${shapes}/sugarcrepe/*.json``, images in ``${shapes}/images``).
An index twice in one file (or a category listed twice), an empty or non-string caption or file
name, and a ``filename`` that is absolute or leaves ``image_dir`` through ``..`` (unless
``dataset.allow_outside_root``) are ``DataIntegrityError``s naming the file and item.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from ..errors import DataError
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    allow_outside_root,
    check_caption,
    check_images_exist,
    check_root,
    check_unique,
    fingerprint,
    path_key,
    read_json,
    require_fields,
    require_str,
    safe_join,
)
from .probes import CaptionItem, CaptionSelectionSet

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
        outside = allow_outside_root(cfg)
        check_unique(cfg["categories"], "category", "sugarcrepe: dataset.categories", lambda k: f"position {k}")
        files, items, names, paths = [], [], {}, []
        for cat in cfg["categories"]:
            path = root / cfg["annotations"] / f"{cat}.json"
            data = read_json(path, f"sugarcrepe category {cat!r}", unique_keys=True)
            if not isinstance(data, dict):
                raise DataError(f"{path}: expected a JSON object keyed by item index, found {type(data).__name__}")
            for key, entry in data.items():
                where = f"{path}: item {key!r}"
                require_fields(entry, ["filename", "caption", "negative_caption"], where)
                name = require_str(entry["filename"], f"{where}.filename", "a file name (string)")
                if name not in names:
                    names[name] = len(paths)
                    paths.append(safe_join(image_dir, name, f"{where}.filename", outside))
                options = [check_caption(entry[k], f"{where}.{k}").strip() for k in ("caption", "negative_caption")]
                items.append(CaptionItem(f"{cat}/{key}", names[name], options, 0, cat))
            files.append(path)
        if not items:
            raise DataError(f"sugarcrepe: no items in {[str(f) for f in files]}")
        check_unique([path_key(str(p)) for p in paths], "image file", str(image_dir),
                     lambda k: repr(list(names)[k]))
        check_images_exist(paths, "sugarcrepe")
        fp = fingerprint("sugarcrepe", files, paths, image_dir, {"categories": list(cfg["categories"])})
        return CaptionSelectionSet(ImageSet(paths, list(names), fp), items, fp, len(items),
                                   {"annotations": str(root / cfg["annotations"]), "image_dir": str(image_dir)})


READER = SugarCrepeReader()
