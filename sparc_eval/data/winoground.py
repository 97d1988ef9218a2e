"""Winoground (Thrush et al., CVPR 2022): 400 items of two images and two captions, from the local files
of the Hugging Face dataset ``facebook/winoground`` (gated; download it once, nothing is fetched here).

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

``examples.jsonl`` may also sit directly in ``root``. Images from ``images.zip`` or parquet bytes
are written once, unchanged, to ``<cache>/winoground/<digest>/``. Files are untrusted: item ids and
image stems must be integers or ``[A-Za-z0-9_-]+`` names, parquet image suffixes one of
``IMAGE_SUFFIXES``, and every written path must stay inside the cache folder; zip members with ``..`` or
absolute paths, two members with the same file name, a member above ``MAX_MEMBER_BYTES`` or an
archive above ``MAX_ARCHIVE_BYTES`` (uncompressed) are refused. Parquet files with identical
content are read once (a Hugging Face cache holds one copy per snapshot); an item id found in two
different files is an error (point ``root`` at one snapshot). RGBA images are converted to RGB by
the image transform. Unsafe names and members, a damaged ``images.zip`` (truncated, failing its
CRC) or parquet file, an item id or image stem listed twice, and an empty or non-string caption are
``DataIntegrityError``s naming the file and item.
"""
from __future__ import annotations

import json
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import ClassVar

from ..errors import DataError, DataIntegrityError
from ..fileio import (
    atomic_write_bytes,
    atomic_write_text,
    cache_root,
    sha256_file,
    sha256_json,
)
from ..params import Param
from .base import ImageSet, Reader, check_caption, check_images_exist, check_root, check_unique, fingerprint
from .probes import WinogroundItem, WinogroundSet

FIELDS = ("id", "image_0", "image_1", "caption_0", "caption_1")
TAG_FIELDS = ("tag", "secondary_tag", "num_main_preds", "collapsed_tag")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_MEMBER_BYTES = 64 << 20  # one image of images.zip, uncompressed (Winoground's are < 10 MiB)
MAX_ARCHIVE_BYTES = 4 << 30  # all of images.zip, uncompressed (Winoground's is about 0.4 GiB)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _safe_name(value, where: str) -> str:
    """``value`` as a file-name component: an integer or ``[A-Za-z0-9_-]+`` (``DataError`` otherwise)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and _SAFE_NAME.fullmatch(value):
        return value
    raise DataIntegrityError(f"{where}: {value!r} is not a safe name; expected an integer or letters, digits, '_' and '-'")


def _inside(path: Path, folder: Path, where: str) -> Path:
    if not path.resolve().is_relative_to(folder.resolve()):
        raise DataIntegrityError(f"{where}: {path} would lie outside {folder}; refusing it")
    return path


def _jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {n} is not JSON ({e.msg})") from None
                except RecursionError:
                    raise DataIntegrityError(f"{path}: line {n} is JSON nested too deeply to read") from None
                if not isinstance(row, dict) or any(k not in row for k in FIELDS):
                    missing = [k for k in FIELDS if not isinstance(row, dict) or k not in row]
                    raise DataError(f"{path}: line {n} lacks field(s) {missing}; expected {list(FIELDS)}")
                rows.append(row)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    return rows


def _check_items(rows: list[dict], source: str, label: Callable[[int], str]) -> None:
    """Both captions of every item non-empty text, item ids and image stems each listed once
    (``label(n)`` names item n in messages)."""
    for n, r in enumerate(rows):
        for k in (0, 1):
            check_caption(r[f"caption_{k}"], f"{source}: {label(n)}: caption_{k}")
    ids = [_safe_name(r["id"], f"{source}: {label(n)}: id") for n, r in enumerate(rows)]
    check_unique(ids, "item id", source, label)
    check_unique([r[f"image_{k}"] for r in rows for k in (0, 1)], "image", source,
                 lambda i: f"{label(i // 2)} image_{i % 2}")


def _extract_zip(archive: Path) -> Path:
    """The image folder of ``images.zip``, extracted once (flattened) into the cache; unsafe, duplicate
    or oversized members are refused before anything is written."""
    target = cache_root() / "winoground" / sha256_file(archive)[:16]
    if (target / ".complete").is_file():
        return target
    try:
        _extract_members(archive, target)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DataIntegrityError(f"{archive}: damaged zip archive ({type(e).__name__}: {e}); expected an intact "
                                 f"images.zip (download it again)") from None
    except (NotImplementedError, RuntimeError) as e:  # an unsupported compression method, an encrypted member
        raise DataIntegrityError(f"{archive}: unreadable zip archive ({e}); expected plain (stored or "
                                 f"deflated) members") from None
    atomic_write_text(target / ".complete", "")
    return target


def _extract_members(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        members, seen, total = [], {}, 0
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir():
                continue
            if name.is_absolute() or ".." in name.parts or "\\" in info.filename:
                raise DataIntegrityError(f"{archive}: member {info.filename!r} has an absolute or '..' path; refusing to "
                                f"extract it")
            if name.name in seen:
                raise DataIntegrityError(f"{archive}: members {seen[name.name]!r} and {info.filename!r} have the same file "
                                f"name; refusing to extract them into one folder")
            if info.file_size > MAX_MEMBER_BYTES:
                raise DataIntegrityError(f"{archive}: member {info.filename!r} is {info.file_size} bytes uncompressed; "
                                f"expected at most {MAX_MEMBER_BYTES} for one image")
            total += info.file_size
            if total > MAX_ARCHIVE_BYTES:
                raise DataIntegrityError(f"{archive}: members add up to more than {MAX_ARCHIVE_BYTES} bytes uncompressed; "
                                f"refusing to extract it")
            seen[name.name] = info.filename
            members.append(info)
        for info in members:
            name = PurePosixPath(info.filename).name
            atomic_write_bytes(_inside(target / name, target, str(archive)), zf.read(info))


def _image_folder(base: Path) -> Path:
    if (base / "images").is_dir():
        return base / "images"
    if (base / "images.zip").is_file():
        return _extract_zip(base / "images.zip")
    raise DataError(f"winoground: neither {base / 'images'} nor {base / 'images.zip'} exists")


def _parquet_rows(files: list[Path]) -> tuple[list[dict], dict[str, Path], list[Path]]:
    """Rows of the parquet files, per image stem the cached file holding its bytes, and the files
    read (one of each set of identical files)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise DataError("winoground: reading the parquet files needs pyarrow (pip install pyarrow)") from None
    digests = {}
    for f in files:
        digests.setdefault(sha256_file(f), f)
    files = list(digests.values())
    target = cache_root() / "winoground" / sha256_json(list(digests))[:16]
    rows, stems, source = [], {}, {}
    for f in files:
        try:
            table = pq.read_table(f)
        except (pa.ArrowException, OSError) as e:
            raise DataIntegrityError(f"{f}: damaged parquet file ({type(e).__name__}: {e}); expected an intact "
                                     f"copy (download it again)") from None
        missing = [k for k in FIELDS if k not in table.column_names]
        if missing:
            raise DataError(f"{f}: parquet file lacks column(s) {missing}; found {table.column_names}")
        for row in table.to_pylist():
            item = _safe_name(row["id"], f"{f}: item id")
            if source.get(item) == f:
                raise DataIntegrityError(f"{f}: item id {item} is listed twice; expected each item once")
            if item in source:
                raise DataError(f"{f}: item id {item} is also in {source[item]}; several copies of the dataset "
                                f"(e.g. Hugging Face snapshots) are under root; point root at one of them")
            source[item] = f
            for k in (0, 1):
                cell = row[f"image_{k}"]
                if not isinstance(cell, dict) or not cell.get("bytes"):
                    raise DataError(f"{f}: item {item}: image_{k} holds no image bytes")
                stem = f"ex_{item}_img_{k}"
                suffix = PurePosixPath(str(cell.get("path") or "x.png")).suffix.lower() or ".png"
                if suffix not in IMAGE_SUFFIXES:
                    raise DataError(f"{f}: item {item}: image_{k} path {cell.get('path')!r} has suffix {suffix!r}; "
                                    f"expected one of {list(IMAGE_SUFFIXES)}")
                path = _inside(target / f"{stem}{suffix}", target, f"{f}: item {item}")
                if not path.is_file():
                    atomic_write_bytes(path, cell["bytes"])
                row[f"image_{k}"] = stem
                stems[stem] = path
            rows.append(row)
    return rows, stems, files


class WinogroundReader(Reader):
    format = "winoground"
    kind = "winoground"
    params: ClassVar[dict[str, Param]] = {
        "root": Param("path", help="the downloaded facebook/winoground folder"),
        "source": Param("str", "auto", "which files to read", ("auto", "jsonl", "parquet")),
    }
    layout = """

    <root>/data/examples.jsonl       {"id", "image_0", "image_1", "caption_0", "caption_1", "tag",
                                      "secondary_tag", "num_main_preds", "collapsed_tag"} per line;
                                      image_k is a file stem such as "ex_0_img_0"
    <root>/data/images/<stem>.png    the extracted images.zip, or <root>/data/images.zip itself

    <root>/**/*.parquet              the hub's parquet conversion: the same columns, image_0/image_1
                                     as {bytes, path} structs (needs pyarrow)"""

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
            for n, r in enumerate(rows):
                for k in (0, 1):
                    r[f"image_{k}"] = _safe_name(r[f"image_{k}"], f"{jsonl}: item {n}: image_{k}")
            _check_items(rows, str(jsonl), lambda n: f"item {n}")
            folder = _image_folder(jsonl.parent)
            images = {r[f"image_{k}"]: folder / f"{r[f'image_{k}']}.png" for r in rows for k in (0, 1)}
            zipped = folder != jsonl.parent / "images"
            annotation_files = [jsonl, jsonl.parent / "images.zip"] if zipped else [jsonl]
            listed = not zipped
        else:
            if not parquet:
                raise DataError(f"winoground: no examples.jsonl and no *.parquet file under {root}")
            rows, images, annotation_files = _parquet_rows(parquet)
            _check_items(rows, str(annotation_files[0] if len(annotation_files) == 1 else root),
                         lambda n: f"item id {rows[n]['id']}")
            listed = False
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
