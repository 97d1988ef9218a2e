"""Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``) for image-text retrieval.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

``split`` selects images (``test``; ``train+restval`` joins splits). Every sentence of an image is
used (COCO has images with more than 5), with its ``raw`` text as written (surrounding whitespace
stripped; no lower-casing or punctuation removal). Images keep the file's order. Image files must
exist, except for tasks that never decode them (scoring a captions file).

Checked over the whole file (every split), as ``DataIntegrityError``s naming the entry: an image id
(``cocoid``, else ``imgid``, else ``filename``) or an image file listed twice, a ``sentid`` used twice
(in the chosen split), an empty or non-string caption, a non-string ``filename``/``filepath``, and a
``filepath`` or ``filename`` that is absolute or leads out through ``..`` (each must stay inside
``<root>/<image_dir>``; unless ``dataset.allow_outside_root``).
"""
from __future__ import annotations

import posixpath

import numpy as np

from ..errors import DataError
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    RetrievalSet,
    allow_outside_root,
    check_caption,
    check_images_exist,
    check_root,
    check_unique,
    fingerprint,
    path_key,
    read_json,
    require_fields,
    require_id,
    require_str,
    safe_rel,
)

SPLITS = ("train", "restval", "val", "test")


class KarpathyReader(Reader):
    format = "karpathy"
    kind = "retrieval"
    params = {
        "root": Param("path", help="dataset folder"),
        "annotations": Param("str", "dataset_coco.json", "Karpathy split JSON, relative to root"),
        "split": Param("str", "test", "split to use; join several with '+' (e.g. train+restval)"),
        "image_dir": Param("str", "", "folder under root holding the images (e.g. flickr30k-images)"),
    }
    layout = """

    <root>/dataset_coco.json            {"images": [{"split", "filename", "filepath"?, "sentences": [{"raw"}]}]}
    <root>/<image_dir>/<filepath>/<filename>   e.g. coco/val2014/COCO_val2014_000000391895.jpg
                                               or flickr30k/flickr30k-images/1000092795.jpg (image_dir)"""

    def load(self, cfg, check_images: bool = True) -> RetrievalSet:
        root = check_root(cfg, "karpathy")
        ann = root / cfg["annotations"]
        data = read_json(ann, "karpathy")
        require_fields(data, ["images"], str(ann))
        wanted = cfg["split"].split("+")
        bad = [s for s in wanted if s not in SPLITS]
        if bad:
            raise DataError(f"dataset.split {cfg['split']!r}: unknown split {bad[0]!r}; expected one of {SPLITS}")
        base = root / cfg["image_dir"]
        outside = allow_outside_root(cfg)
        paths, ids, captions, caption_image, caption_ids = [], [], [], [], []
        file_ids, file_paths, caption_where = [], [], []
        for i, entry in enumerate(data["images"]):
            where = f"{ann}: images[{i}]"
            require_fields(entry, ["split", "filename", "sentences"], where)
            filename = require_str(entry["filename"], f"{where}.filename", "a file name (string)")
            rel = safe_rel(filename, base, f"{where}.filename", outside)
            filepath = entry.get("filepath", "")
            if filepath != "":
                folder = safe_rel(require_str(filepath, f"{where}.filepath", "a folder name (string)"), base,
                                  f"{where}.filepath", outside)
                rel = posixpath.join(folder, rel)
            key = "cocoid" if "cocoid" in entry else "imgid" if "imgid" in entry else None
            image_id = require_id(entry[key], f"{where}.{key}") if key else filename
            file_ids.append(image_id)
            file_paths.append(path_key(rel))
            if require_str(entry["split"], f"{where}.split") not in wanted:
                continue
            sents = entry["sentences"]
            if not isinstance(sents, list) or not sents:
                raise DataError(f"{where}: 'sentences' must be a non-empty list, found {sents!r:.60}")
            img_index = len(paths)
            paths.append(base / rel)
            ids.append(image_id)
            for j, s in enumerate(sents):
                require_fields(s, ["raw"], f"{where}.sentences[{j}]")
                captions.append(check_caption(s["raw"], f"{where}.sentences[{j}].raw").strip())
                caption_image.append(img_index)
                caption_ids.append(require_id(s["sentid"], f"{where}.sentences[{j}].sentid") if "sentid" in s
                                   else f"{image_id}:{j}")
                caption_where.append(f"images[{i}].sentences[{j}]")
        check_unique(file_ids, "image id (cocoid / imgid / filename)", str(ann), lambda k: f"images[{k}]")
        check_unique(file_paths, "image file", str(ann), lambda k: f"images[{k}]")
        check_unique(caption_ids, "sentence id (sentid)", str(ann), lambda k: caption_where[k])
        if not paths:
            found = sorted({str(e.get("split")) for e in data["images"] if isinstance(e, dict)})
            raise DataError(f"{ann}: no images in split {cfg['split']!r}; splits present: {found}")
        if check_images:
            check_images_exist(paths, f"{ann} (split {cfg['split']})")
        fp = fingerprint("karpathy", [ann], paths, root, {"split": cfg["split"]})
        return RetrievalSet(ImageSet(paths, ids, fp), captions, np.asarray(caption_image), caption_ids, fp, len(paths),
                            {"annotations": str(ann)})


READER = KarpathyReader()
