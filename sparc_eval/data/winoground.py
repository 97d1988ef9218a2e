"""Winoground (Thrush et al., CVPR 2022): 400 items of two images and two captions, from the local files
of the Hugging Face dataset ``facebook/winoground`` (gated; download it once, nothing is fetched here).

Layout (``root`` = the downloaded dataset folder), either of::

    <root>/data/examples.jsonl       {"id", "image_0", "image_1", "caption_0", "caption_1", "tag",
                                      "secondary_tag", "num_main_preds", "collapsed_tag"} per line;
                                      image_k is a file stem such as "ex_0_img_0"
    <root>/data/images/<stem>.png    the extracted images.zip, or <root>/data/images.zip itself

    <root>/**/*.parquet              the hub's parquet conversion: the same columns, image_0/image_1
                                     as {bytes, path} structs (needs pyarrow)

``examples.jsonl`` may also sit directly in ``root``. Images from ``images.zip`` or parquet bytes
are written once, unchanged, to ``<cache>/winoground/<digest>/`` (zip members with ``..`` or
absolute paths are refused). RGBA images are converted to RGB by the image transform.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath
from typing import ClassVar

from ..errors import DataError
from ..fileio import (
    atomic_write_bytes,
    atomic_write_text,
    cache_root,
    sha256_file,
    sha256_json,
)
from ..params import Param
from .base import ImageSet, Reader, check_images_exist, check_root, fingerprint
from .probes import WinogroundItem, WinogroundSet

FIELDS = ("id", "image_0", "image_1", "caption_0", "caption_1")
TAG_FIELDS = ("tag", "secondary_tag", "num_main_preds", "collapsed_tag")


def _jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {n} is not JSON ({e.msg})") from None
            if not isinstance(row, dict) or any(k not in row for k in FIELDS):
                raise DataError(f"{path}: line {n} lacks field(s) {[k for k in FIELDS if k not in (row or {})]}; "
                                f"expected {list(FIELDS)}")
            rows.append(row)
    return rows


def _extract_zip(archive: Path) -> Path:
    """The image folder of ``images.zip``, extracted once into the cache (unsafe members refused)."""
    target = cache_root() / "winoground" / sha256_file(archive)[:16]
    if (target / ".complete").is_file():
        return target
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir():
                continue
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise DataError(f"{archive}: member {info.filename!r} has an absolute or '..' path; refusing to "
                                f"extract it")
            atomic_write_bytes(target / name.name, zf.read(info))
    atomic_write_text(target / ".complete", "")
    return target


def _image_folder(base: Path) -> Path:
    if (base / "images").is_dir():
        return base / "images"
    if (base / "images.zip").is_file():
        return _extract_zip(base / "images.zip")
    raise DataError(f"winoground: neither {base / 'images'} nor {base / 'images.zip'} exists")


def _parquet_rows(files: list[Path]) -> tuple[list[dict], dict[str, Path]]:
    """Rows of the parquet files and, per image stem, the cached file holding its bytes."""
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise DataError("winoground: reading the parquet files needs pyarrow (pip install pyarrow)") from None
    target = cache_root() / "winoground" / sha256_json([sha256_file(f) for f in files])[:16]
    rows, stems = [], {}
    for f in files:
        table = pq.read_table(f)
        missing = [k for k in FIELDS if k not in table.column_names]
        if missing:
            raise DataError(f"{f}: parquet file lacks column(s) {missing}; found {table.column_names}")
        for row in table.to_pylist():
            for k in (0, 1):
                cell = row[f"image_{k}"]
                if not isinstance(cell, dict) or not cell.get("bytes"):
                    raise DataError(f"{f}: item {row['id']}: image_{k} holds no image bytes")
                stem = f"ex_{row['id']}_img_{k}"
                suffix = PurePosixPath(str(cell.get("path") or "x.png")).suffix or ".png"
                path = target / f"{stem}{suffix}"
                if not path.is_file():
                    atomic_write_bytes(path, cell["bytes"])
                row[f"image_{k}"] = stem
                stems[stem] = path
            rows.append(row)
    return rows, stems


class WinogroundReader(Reader):
    format = "winoground"
    kind = "winoground"
    params: ClassVar[dict[str, Param]] = {
        "root": Param("path", help="the downloaded facebook/winoground folder"),
        "source": Param("str", "auto", "which files to read", ("auto", "jsonl", "parquet")),
    }
    layout = __doc__.split("Layout (``root`` = the downloaded dataset folder), either of::")[1] \
        .split("``examples.jsonl`` may")[0].rstrip()

    def load(self, cfg) -> WinogroundSet:
        root = check_root(cfg, "winoground")
        jsonl = next((p for p in (root / "data" / "examples.jsonl", root / "examples.jsonl") if p.is_file()), None)
        parquet = sorted(root.rglob("*.parquet"))
        source = cfg["source"]
        if source == "auto":
            source = "jsonl" if jsonl is not None else "parquet"
        if source == "jsonl":
            if jsonl is None:
                raise DataError(f"winoground: {root / 'data' / 'examples.jsonl'} is missing")
            rows = _jsonl(jsonl)
            folder = _image_folder(jsonl.parent)
            images = {r[f"image_{k}"]: folder / f"{r[f'image_{k}']}.png" for r in rows for k in (0, 1)}
            zipped = folder != jsonl.parent / "images"
            annotation_files = [jsonl, jsonl.parent / "images.zip"] if zipped else [jsonl]
            listed = not zipped
        else:
            if not parquet:
                raise DataError(f"winoground: no examples.jsonl and no *.parquet file under {root}")
            rows, images = _parquet_rows(parquet)
            annotation_files, listed = parquet, False
        if not rows:
            raise DataError(f"winoground: no items in {[str(f) for f in annotation_files]}")
        stems = list(dict.fromkeys(r[f"image_{k}"] for r in rows for k in (0, 1)))
        index = {s: i for i, s in enumerate(stems)}
        paths = [images[s] for s in stems]
        check_images_exist(paths, "winoground")
        items = [WinogroundItem(str(r["id"]), (index[r["image_0"]], index[r["image_1"]]),
                                (str(r["caption_0"]), str(r["caption_1"])),
                                {k: r[k] for k in TAG_FIELDS if k in r}) for r in rows]
        fp = fingerprint("winoground", annotation_files, paths if listed else [], root, {"source": source})
        return WinogroundSet(ImageSet(paths, stems, fp), items, fp, len(items),
                             {"source": source, "files": [str(f) for f in annotation_files]})


READER = WinogroundReader()
