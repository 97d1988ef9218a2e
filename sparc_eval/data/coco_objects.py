"""Ground-truth objects per image from a COCO instances file (``instances_val2014.json``), for CHAIR.

Layout: ``{"images": [{"id"}], "annotations": [{"image_id", "category_id"}], "categories": [{"id", "name"}]}``
(category ids may be gapped, as COCO's 1..90). Returns the category *names* present in each image,
keyed by the image id as a string (the ids the Karpathy and COCO captions readers use); images without
annotations map to an empty set. An image id listed twice, an id that is not an integer or string and
a category name that is not a string are ``DataIntegrityError``s.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import check_unique, read_json, require_fields, require_id, require_str


def image_objects(path: Path | str) -> dict[str, set[str]]:
    """``{image id: {category name, ...}}`` from a COCO instances JSON file."""
    path = Path(path).expanduser()
    data = read_json(path, "COCO instances")
    require_fields(data, ["images", "annotations", "categories"], str(path))
    names = {}
    for i, c in enumerate(data["categories"]):
        require_fields(c, ["id", "name"], f"{path}: categories[{i}]")
        require_id(c["id"], f"{path}: categories[{i}].id")
        names[c["id"]] = require_str(c["name"], f"{path}: categories[{i}].name", "a category name (string)")
    ids = []
    for i, im in enumerate(data["images"]):
        require_fields(im, ["id"], f"{path}: images[{i}]")
        ids.append(require_id(im["id"], f"{path}: images[{i}].id"))
    check_unique(ids, "image id", str(path), lambda k: f"images[{k}]")
    out: dict[str, set[str]] = {i: set() for i in ids}
    for i, a in enumerate(data["annotations"]):
        require_fields(a, ["image_id", "category_id"], f"{path}: annotations[{i}]")
        require_id(a["category_id"], f"{path}: annotations[{i}].category_id")
        if a["category_id"] not in names:
            raise DataError(f"{path}: annotations[{i}] has category_id {a['category_id']!r}, which is not in "
                            f"'categories' (ids {sorted(names)[:10]}...)")
        out.setdefault(str(a["image_id"]), set()).add(names[a["category_id"]])
    return out
