"""CLIP_benchmark's WebDataset evaluation folders (``wds_<name>``), for classification and retrieval.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it).

A sample's key is its member path up to the first dot of the file name (webdataset's rule); samples
keep shard and member order. The engine reads images by path, so the image members are extracted
once into a content-addressed cache folder (``<cache>/extracted/wds/<digest of the shards>``, renamed
into place atomically) beside a ``samples.json`` index. Members with absolute paths, ``..``
components, or that are links or devices are refused, and so are members too large to be a sample
file or adding up to far more than the shard's size (a compressed shard is not a decompression bomb
here). Multi-label folders are not supported.
"""
from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import DataError, DataIntegrityError
from ..fileio import sha256_file, sha256_json
from ..params import Param
from .base import ImageSet, Reader, RetrievalSet, check_root, fingerprint
from .classification import ClassificationSet, cached_folder, read_lines

IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")
MAX_MEMBER_BYTES = 64 << 20  # one member (an image, its .cls or .txt), uncompressed
MAX_EXPANSION = 20  # all members, uncompressed, per byte of the shard file (images barely compress)
_KEY = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")


def member_key(name: str) -> tuple[str, str] | None:
    """WebDataset's (sample key, lower-cased extension) of a member path: the path up to the first dot of
    the file name (``dir/abc.seg.JPG`` -> (``dir/abc``, ``seg.jpg``)); None for a name without extension."""
    m = _KEY.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def safe_member(member: tarfile.TarInfo, shard: Path) -> bool:
    """Whether ``member`` is a regular file (True) or a directory (False) with a safe relative path;
    anything else raises ``DataIntegrityError``."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "\\" in name:
        raise DataIntegrityError(f"{shard}: member {name!r} has an unsafe path (absolute or with '..'); refusing the "
                                 f"shard")
    if member.isdir():
        return False
    if not member.isfile():
        raise DataIntegrityError(f"{shard}: member {name!r} is a link or special file; refusing the shard")
    return True


def _read_shard(shard: Path, index: int, out: Path | None, kind: str) -> list[dict]:
    """Samples of one shard in member order; image members are written under ``out/<index>/``. A member
    above ``MAX_MEMBER_BYTES``, or members adding up to more than ``MAX_EXPANSION`` times the shard's
    size (a compressed shard of zeros: a decompression bomb), refuse the shard before it is written."""
    samples: dict[str, dict] = {}
    budget, total = MAX_EXPANSION * shard.stat().st_size + MAX_MEMBER_BYTES, 0
    try:
        with tarfile.open(shard, "r:*") as tar:
            for member in tar:
                if not safe_member(member, shard):
                    continue
                total += member.size
                if member.size > MAX_MEMBER_BYTES or total > budget:
                    raise DataIntegrityError(
                        f"{shard}: member {member.name!r} is {member.size} bytes uncompressed"
                        + (f"; expected at most {MAX_MEMBER_BYTES} for one sample file" if member.size > MAX_MEMBER_BYTES
                           else f" and brings the shard to {total} bytes, more than {MAX_EXPANSION} times its "
                                f"{shard.stat().st_size} bytes on disk (a decompression bomb?)")
                        + "; refusing the shard")
                split = member_key(member.name)
                if split is None:
                    continue
                key, ext = split
                sample = samples.setdefault(key, {"key": key})
                if ext in IMAGE_EXTS and "image" not in sample:
                    sample["image"] = f"{index}/{member.name}"
                    if out is not None:
                        dest = out / str(index) / member.name
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(tar.extractfile(member).read())
                elif ext == "cls" and kind == "classification":
                    text = tar.extractfile(member).read().decode("utf-8").strip()
                    if not text.lstrip("-").isdigit():
                        raise DataError(f"{shard}: {member.name} holds {text!r:.40}; expected an integer class index")
                    sample["label"] = int(text)
                elif ext == "txt" and kind == "retrieval":
                    sample["captions"] = [c.strip() for c in tar.extractfile(member).read().decode("utf-8").splitlines()
                                          if c.strip()]
    except (tarfile.TarError, OSError, UnicodeDecodeError) as e:
        raise DataIntegrityError(f"{shard}: not a readable tar shard ({type(e).__name__}: {e})") from None
    need = "label" if kind == "classification" else "captions"
    for s in samples.values():
        if "image" not in s or need not in s:
            raise DataError(f"{shard}: sample {s['key']!r} lacks an image ({'/'.join(IMAGE_EXTS)}) or its "
                            f"{'.cls' if need == 'label' else '.txt'} member")
    return list(samples.values())


def shard_files(root: Path, split: str) -> list[Path]:
    """The shard paths of a split, from ``<split>/nshards.txt``."""
    count_file = root / split / "nshards.txt"
    if not count_file.is_file():
        raise DataError(f"wds: {count_file} is missing (expected the number of shards of split {split!r})")
    text = _small_text(count_file, "the number of shards")
    if not text.isdigit() or int(text) < 1:
        raise DataError(f"{count_file}: expected a positive number of shards, found {text!r:.40}")
    shards = [root / split / f"{i}.tar" for i in range(int(text))]
    missing = [s for s in shards if not s.is_file()]
    if missing:
        raise DataError(f"wds: {len(missing)} shard(s) listed in {count_file} are missing, e.g. {missing[0]}")
    return shards


def _small_text(path: Path, what: str) -> str:
    """The stripped content of a one-line text file; ``DataError`` naming it when unreadable."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else f"not UTF-8 text: {e.reason}"
        raise DataError(f"{path}: cannot read {what} ({reason})") from None


def dataset_type(root: Path) -> str:
    """``classification`` or ``retrieval``, from ``dataset_type.txt`` (absent: classification)."""
    path = root / "dataset_type.txt"
    kind = _small_text(path, "the dataset type").lower() if path.is_file() else "classification"
    if kind not in ("classification", "retrieval"):
        raise DataError(f"{path}: dataset type {kind!r} is not supported; expected classification or retrieval")
    return kind


def extract(shards: list[Path], kind: str) -> tuple[Path, list[dict]]:
    """Extracted folder and sample index of ``shards`` (done once per shard content)."""
    digest = sha256_json({"shards": [sha256_file(s) for s in shards], "kind": kind})

    def fill(folder: Path) -> None:
        samples = [s for i, shard in enumerate(shards) for s in _read_shard(shard, i, folder, kind)]
        (folder / "samples.json").write_text(json.dumps(samples))

    folder = cached_folder("wds", digest, fill)
    return folder, json.loads((folder / "samples.json").read_text())


class WdsReader(Reader):
    format = "wds"
    kind = "classification|retrieval"
    params = {
        "root": Param("path", help="local folder of a CLIP_benchmark wds_* dataset"),
        "split": Param("str", "test", "split folder (test, train)"),
        "classnames": Param("str", "classnames.txt", "class-name file relative to root (classification)"),
    }
    layout = """

    <root>/<split>/nshards.txt, 0.tar ... <n-1>.tar    samples <key>.{webp,png,jpg,jpeg} + <key>.cls
                                                       (retrieval: + <key>.txt, one caption per line)
    <root>/classnames.txt                              classification: one class name per line
    <root>/zeroshot_classification_templates.txt       optional: prompt templates with {c}
    <root>/dataset_type.txt                            "retrieval", or absent (= classification)"""

    def load(self, cfg):
        root = check_root(cfg, "wds")
        kind = dataset_type(root)
        shards = shard_files(root, cfg["split"])
        folder, samples = extract(shards, kind)
        if not samples:
            raise DataError(f"wds: the shards of {root / cfg['split']} hold no samples")
        paths = [folder / s["image"] for s in samples]
        ids = [f"{cfg['split']}/{s['image'].split('/', 1)[0]}/{s['key']}" for s in samples]
        images = ImageSet(paths, ids, fingerprint("wds", shards, paths, folder, {"split": cfg["split"], "kind": kind}))
        info = {"split": cfg["split"], "shards": len(shards), "extracted_to": str(folder)}
        if kind == "retrieval":
            captions = [c for s in samples for c in s["captions"]]
            owner = np.asarray([i for i, s in enumerate(samples) for _ in s["captions"]], dtype=np.int64)
            cap_ids = [f"{ids[i]}:{j}" for i, s in enumerate(samples) for j in range(len(s["captions"]))]
            return RetrievalSet(images, captions, owner, cap_ids, sha256_json([images.fingerprint, captions]),
                                len(images), info)
        names = read_lines(root / cfg["classnames"], "wds: classnames")
        labels = np.asarray([s["label"] for s in samples], dtype=np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
        if bad.size:
            first = samples[bad[0]]
            shard = first["image"].split("/", 1)[0]
            raise DataError(f"wds: {root}: sample {first['key']!r} of shard {shard}.tar has class index "
                            f"{int(labels[bad[0]])}, outside [0, {len(names)}) for the {len(names)} names of "
                            f"{root / cfg['classnames']}")
        tfile = root / "zeroshot_classification_templates.txt"
        templates = read_lines(tfile, "wds: templates") if tfile.is_file() else None
        fp = sha256_json({"images": images.fingerprint, "labels": labels.tolist(), "classnames": names})
        return ClassificationSet(images, labels, names, fp, len(images), templates=templates, info=info)


READER = WdsReader()
