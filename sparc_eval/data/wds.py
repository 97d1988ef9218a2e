"""CLIP_benchmark's WebDataset evaluation sets (``wds_<name>``), for classification and retrieval, from a
local folder or from the Hugging Face Hub.

The on-disk layout is the reader's ``layout`` (``sparc-eval data verify`` prints it). ``root`` is a local
folder, or a Hub dataset repo in the form CLIP_benchmark users pass as ``--dataset_root``
(``https://huggingface.co/datasets/clip-benchmark/wds_<name>/tree/<revision>``): its split's shards and
metadata files are downloaded once into the Hugging Face cache (``hub.fetch_wds``: verified against the
Hub's sha256; offline, the cache alone is read) and recorded in the result (``details.source``).

The shards are read in place (``tar_index``): one pass over the tar headers indexes every sample (shard,
key), in shard and member order as the webdataset library iterates them, and each image is decoded
straight from its shard by the engine's workers; nothing is extracted to disk. A sample's image is its
first member among webp, png, jpg, jpeg (CLIP_benchmark's order), its label the ``.cls`` integer and its
captions the ``.txt`` lines. Unusable input is a ``DataError`` naming the file: a missing ``nshards.txt``
or shard, an empty shard, a sample without its image or label, a class index outside the class-name
file, compressed shards, and members with absolute paths, ``..``, links or devices. Multi-label sets are
not supported.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import hub
from ..clip_benchmark_names import parse_hub_root
from ..errors import DataError
from ..fileio import sha256_json
from ..params import Param
from .base import ImageSet, Reader, RetrievalSet, check_root
from .classification import ClassificationSet, read_lines
from .tar_index import TarMember, index_shards, member_key, read_spans, safe_member

__all__ = ["IMAGE_EXTS", "READER", "WdsReader", "dataset_type", "local_root", "member_key", "safe_member",
           "shard_files"]

IMAGE_EXTS = ("webp", "png", "jpg", "jpeg")
_FETCHED: dict[tuple, hub.HubSnapshot] = {}


def shard_files(root: Path, split: str) -> list[Path]:
    """The shard paths of a split, from ``<split>/nshards.txt``."""
    count_file = root / split / "nshards.txt"
    if not count_file.is_file():
        raise DataError(f"wds: {count_file} is missing (expected the number of shards of split {split!r}, as "
                        f"CLIP_benchmark's clip_benchmark_export_wds writes it)")
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


def local_root(root: str | Path, split: str) -> tuple[Path, dict | None]:
    """The local folder of ``root`` and, for a Hub root, the snapshot's record (repo, commit, file sums).
    A Hub root's ``split`` and metadata files are fetched on first use (once per process)."""
    ref = parse_hub_root(str(root))
    if ref is None:
        return check_root({"root": root}, "wds"), None
    repo, revision = ref
    key = (repo, revision, split, hub.offline_mode(), hub.endpoint())
    if key not in _FETCHED:
        _FETCHED[key] = hub.fetch_wds(repo, revision=revision, split=split)
    snapshot = _FETCHED[key]
    return snapshot.folder, snapshot.record()


def _samples(shards: list[Path], kind: str) -> list[dict]:
    """Indexed samples with their image member and label or captions; every shard must hold samples."""
    samples = index_shards(shards)
    counts = np.bincount([s["shard"] for s in samples], minlength=len(shards))
    if (counts == 0).any():
        empty = shards[int(np.flatnonzero(counts == 0)[0])]
        raise DataError(f"wds: shard {empty} holds no samples (an empty or truncated shard); re-export or "
                        f"re-download it")
    need = "cls" if kind == "classification" else "txt"
    for s in samples:
        image = next((e for e in IMAGE_EXTS if e in s["members"]), None)
        if image is None or need not in s["members"]:
            raise DataError(f"wds: {shards[s['shard']]}: sample {s['key']!r} lacks an image "
                            f"({'/'.join(IMAGE_EXTS)}) or its .{need} member")
        s["image"] = image
    by_shard: dict[int, list[dict]] = {}
    for s in samples:
        by_shard.setdefault(s["shard"], []).append(s)
    for i, group in by_shard.items():
        payloads = read_spans(shards[i], [tuple(s["members"][need][1:]) for s in group])
        for s, data in zip(group, payloads):
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{shards[i]}: {s['members'][need][0]} is not UTF-8 text") from None
            if kind == "classification":
                if not text.strip().lstrip("-").isdigit():
                    raise DataError(f"{shards[i]}: {s['members'][need][0]} holds {text.strip()!r:.40}; expected "
                                    f"an integer class index")
                s["label"] = int(text.strip())
            else:
                s["captions"] = [c.strip() for c in text.splitlines() if c.strip()]
    return samples


class WdsReader(Reader):
    format = "wds"
    kind = "classification|retrieval"
    params = {
        "root": Param("path", help="local folder of a CLIP_benchmark wds_* dataset, or its Hub repo "
                                   "https://huggingface.co/datasets/ORG/NAME/tree/REV"),
        "split": Param("str", "test", "split folder (test, train)"),
        "classnames": Param("str", "classnames.txt", "class-name file relative to root (classification)"),
    }
    layout = """

    <root>/<split>/nshards.txt, 0.tar ... <n-1>.tar    samples <key>.{webp,png,jpg,jpeg} + <key>.cls
                                                       (retrieval: + <key>.txt, one caption per line)
    <root>/classnames.txt                              classification: one class name per line
    <root>/zeroshot_classification_templates.txt       optional: prompt templates with {c}
    <root>/dataset_type.txt                            "retrieval", or absent (= classification)
    or root = https://huggingface.co/datasets/clip-benchmark/wds_<name>/tree/main (fetched once into the
    Hugging Face cache; --offline reads the cache only)"""

    def load(self, cfg):
        split = cfg["split"]
        root, source = local_root(cfg["root"], split)
        kind = dataset_type(root)
        shards = shard_files(root, split)
        samples = _samples(shards, kind)
        paths = [TarMember(shards[s["shard"]], *s["members"][s["image"]]) for s in samples]
        ids = [f"{split}/{s['shard']}/{s['key']}" for s in samples]
        # what was read, wherever it lies (a local copy and the Hub's give the same fingerprint)
        listing = [(s["shard"], p.name, p.size) for s, p in zip(samples, paths)]
        fp = sha256_json({"format": "wds", "split": split, "kind": kind, "images": listing})
        images = ImageSet(paths, ids, fp)
        info = {"split": split, "shards": len(shards)}
        if source is not None:
            info["source"] = source
        if kind == "retrieval":
            captions = [c for s in samples for c in s["captions"]]
            owner = np.asarray([i for i, s in enumerate(samples) for _ in s["captions"]], dtype=np.int64)
            cap_ids = [f"{ids[i]}:{j}" for i, s in enumerate(samples) for j in range(len(s["captions"]))]
            return RetrievalSet(images, captions, owner, cap_ids, sha256_json([images.fingerprint, captions]),
                                len(images), info)
        names_file = root / cfg["classnames"]
        names = read_lines(names_file, "wds: classnames")
        labels = np.asarray([s["label"] for s in samples], dtype=np.int64)
        bad = np.flatnonzero((labels < 0) | (labels >= len(names)))
        if bad.size:
            first = samples[bad[0]]
            raise DataError(f"wds: {root}: sample {first['key']!r} of shard {shards[first['shard']].name} has class "
                            f"index {int(labels[bad[0]])}, outside [0, {len(names)}) for the {len(names)} names of "
                            f"{names_file}: the class-name file does not fit these shards")
        tfile = root / "zeroshot_classification_templates.txt"
        templates = read_lines(tfile, "wds: templates") if tfile.is_file() else None
        fp = sha256_json({"images": images.fingerprint, "labels": labels.tolist(), "classnames": names})
        return ClassificationSet(images, labels, names, fp, len(images), templates=templates, info=info)


READER = WdsReader()
