"""Custom image-text retrieval sets from two CSV files (your own data, any size).

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

Images keep the order of ``images.csv``; captions are grouped by image in that order (stable).
Images without a caption are left out and counted (``n_total`` counts captioned images only, so a
full run is not marked partial); a caption of an unknown image id is an error. Files are UTF-8.
An image id or image file listed twice, an empty id, path or caption, and a path that is absolute or
leaves ``root`` through ``..`` (unless ``dataset.allow_outside_root``) are ``DataIntegrityError``s
naming the file and line.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError, DataIntegrityError
from ..params import Param
from .base import (
    ImageSet,
    Reader,
    RetrievalSet,
    allow_outside_root,
    check_caption,
    check_images_exist,
    check_unique,
    fingerprint,
    path_key,
    require_str,
    safe_join,
)


def _rows(path: Path, columns: tuple[str, str]) -> list[tuple[int, dict]]:
    """(line number, row) of a CSV with a header holding ``columns``; every row must fill them."""
    if not path.is_file():
        raise DataError(f"csv_retrieval: file {path} is missing")
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise DataError(f"{path}: expected a header with columns {list(columns)}, found {reader.fieldnames}")
            for row in reader:
                missing = [c for c in columns if row.get(c) is None]
                if missing:
                    raise DataError(f"{path}:{reader.line_num}: row has no value for column(s) {missing}; "
                                    f"expected {len(reader.fieldnames)} fields ({', '.join(reader.fieldnames)})")
                rows.append((reader.line_num, row))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{path}: malformed CSV ({e})") from None
    return rows


class CsvRetrievalReader(Reader):
    format = "csv_retrieval"
    kind = "retrieval"
    params = {
        "images": Param("path", help="CSV with columns image_id,path (pass --param images=FILE)"),
        "captions": Param("path", help="CSV with columns image_id,caption (pass --param captions=FILE)"),
        "root": Param("path", "", "folder that relative image paths start from (default: the images CSV's folder)"),
    }
    layout = """

    images.csv     image_id,path            (path relative to `root`, default: the CSV's folder; absolute or
                                            '..' paths need allow_outside_root)
    captions.csv   image_id,caption         (any number of captions per image; quote captions with commas)"""

    def load(self, cfg, check_images: bool = True) -> RetrievalSet:
        images_csv, captions_csv = Path(cfg["images"]).expanduser(), Path(cfg["captions"]).expanduser()
        root = Path(cfg["root"]).expanduser() if cfg["root"] else images_csv.parent
        outside = allow_outside_root(cfg)
        index: dict[str, int] = {}
        paths, ids, lines = [], [], []
        for line, row in _rows(images_csv, ("image_id", "path")):
            iid = require_str(row["image_id"], f"{images_csv}:{line}: image_id", "an image id")
            if iid in index:
                raise DataIntegrityError(f"{images_csv}:{line}: duplicate image_id {iid!r} (first on line "
                                         f"{lines[index[iid]]}); expected each image once")
            index[iid] = len(paths)
            rel = require_str(row["path"], f"{images_csv}:{line}: path", "an image path")
            paths.append(safe_join(root, rel, f"{images_csv}:{line}: path", outside))
            ids.append(iid)
            lines.append(line)
        check_unique([path_key(str(p)) for p in paths], "image file", str(images_csv), lambda k: f"line {lines[k]}")
        caps: list[list[tuple[str, str]]] = [[] for _ in paths]
        for line, row in _rows(captions_csv, ("image_id", "caption")):
            if row["image_id"] not in index:
                raise DataError(f"{captions_csv}:{line}: caption for unknown image_id {row['image_id']!r} "
                                f"(not in {images_csv.name})")
            text = check_caption(row["caption"], f"{captions_csv}:{line}: caption of image_id {row['image_id']!r}")
            caps[index[row["image_id"]]].append((f"{captions_csv.name}:{line}", text.strip()))
        keep = [i for i, c in enumerate(caps) if c]
        if not keep:
            raise DataError(f"{captions_csv}: no captions for any image of {images_csv}")
        images = [paths[i] for i in keep]
        if check_images:
            check_images_exist(images, str(images_csv))
        captions, caption_image, caption_ids = [], [], []
        for new, old in enumerate(keep):
            for cid, text in caps[old]:
                captions.append(text)
                caption_image.append(new)
                caption_ids.append(cid)
        fp = fingerprint("csv_retrieval", [images_csv, captions_csv], images, root)
        return RetrievalSet(ImageSet(images, [ids[i] for i in keep], fp), captions, np.asarray(caption_image),
                            caption_ids, fp, len(keep), {"images_without_captions": len(paths) - len(keep)})


READER = CsvRetrievalReader()
