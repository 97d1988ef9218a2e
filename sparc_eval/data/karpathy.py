"""Karpathy split JSON (``dataset_coco.json``, ``dataset_flickr30k.json``) for image-text retrieval.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

``split`` selects images (``test``; ``train+restval`` joins splits). Every sentence of an image is
used (COCO has images with more than 5), with its ``raw`` text as written (surrounding whitespace
stripped; no lower-casing or punctuation removal). Images keep the file's order. Image files must
exist, except for tasks that never decode them (scoring a captions file).
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from ..params import Param
from .base import ImageSet, Reader, RetrievalSet, check_images_exist, check_root, fingerprint, read_json, require_fields

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
        paths, ids, captions, caption_image, caption_ids = [], [], [], [], []
        for i, entry in enumerate(data["images"]):
            where = f"{ann}: images[{i}]"
            require_fields(entry, ["split", "filename", "sentences"], where)
            if entry["split"] not in wanted:
                continue
            sents = entry["sentences"]
            if not isinstance(sents, list) or not sents:
                raise DataError(f"{where}: 'sentences' must be a non-empty list, found {sents!r:.60}")
            img_index = len(paths)
            paths.append(root / cfg["image_dir"] / entry.get("filepath", "") / entry["filename"])
            ids.append(str(entry.get("cocoid", entry.get("imgid", entry["filename"]))))
            for j, s in enumerate(sents):
                require_fields(s, ["raw"], f"{where}.sentences[{j}]")
                captions.append(str(s["raw"]).strip())
                caption_image.append(img_index)
                caption_ids.append(str(s.get("sentid", f"{ids[-1]}:{j}")))
        if not paths:
            found = sorted({str(e.get("split")) for e in data["images"] if isinstance(e, dict)})
            raise DataError(f"{ann}: no images in split {cfg['split']!r}; splits present: {found}")
        if check_images:
            check_images_exist(paths, f"{ann} (split {cfg['split']})")
        fp = fingerprint("karpathy", [ann], paths, root, {"split": cfg["split"]})
        return RetrievalSet(ImageSet(paths, ids, fp), captions, np.asarray(caption_image), caption_ids, fp, len(paths),
                            {"annotations": str(ann)})


READER = KarpathyReader()
