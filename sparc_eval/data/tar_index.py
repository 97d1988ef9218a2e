"""Random access to the members of uncompressed tar shards, so webdataset images are read in place.

A plain (uncompressed) tar stores each member's bytes contiguously after its header, so one pass over the
headers (no data read) gives every member's offset and size; a member is then read with one seek. This is
what lets a WebDataset split be indexed up front, sample by sample with stable ids (shard, key), and its
images decoded straight from the shards by DataLoader workers in any order: the embedding cache, chunked
resume, ``--limit`` and the torchrun split then behave as with a folder of files, and nothing is extracted
to disk. Samples group members by webdataset's key rule (``wds.member_key``) in shard order, as the
webdataset library iterates them. Compressed shards (``.tar.gz``) have no such offsets and are refused.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import DataError, DataIntegrityError
from ..fileio import atomic_write_text, cache_root, sha256_json

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


@dataclass(frozen=True)
class TarMember:
    """One member of a shard: ``read()`` returns its bytes, ``open()`` a binary file object (what
    ``PIL.Image.open`` takes); ``str()`` names it as ``<shard>:<member>`` in messages."""

    shard: Path
    name: str
    offset: int
    size: int

    def read(self) -> bytes:
        try:
            with open(self.shard, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as e:
            raise DataError(f"{self}: cannot read ({e.strerror})") from None
        if len(data) != self.size:
            raise DataError(f"{self}: the shard ends before the member does (truncated shard?)")
        return data

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.read())

    def __str__(self) -> str:
        return f"{self.shard}:{self.name}"


def index_shard(shard: Path) -> list[tuple[str, int, int]]:
    """(member name, data offset, size) of every regular file of an uncompressed tar, in order; unsafe
    members (absolute, ``..``, links, devices) refuse the shard."""
    with open(shard, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        raise DataError(f"{shard}: a gzip-compressed shard cannot be read in place; decompress it (gunzip) first")
    out = []
    try:
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                if safe_member(member, shard):
                    out.append((member.name, member.offset_data, member.size))
    except tarfile.TarError as e:
        raise DataError(f"{shard}: not a readable tar shard ({e})") from None
    return out


def index_shards(shards: list[Path], cache: bool = True) -> list[dict]:
    """Samples of ``shards`` in order: ``{"shard": i, "key": key, "members": {ext: (name, offset, size)}}``.
    The index of a shard is cached by its path, size and modification time (``<cache>/wds-index``)."""
    samples = []
    for i, shard in enumerate(shards):
        st = shard.stat()
        memo = cache_root() / "wds-index" / f"{sha256_json([str(shard.resolve()), st.st_size, st.st_mtime_ns])}.json"
        if cache and memo.is_file():
            members = [tuple(m) for m in json.loads(memo.read_text())]
        else:
            members = index_shard(shard)
            if cache:
                atomic_write_text(memo, json.dumps(members))
        current: dict | None = None
        for name, offset, size in members:
            split = member_key(name)
            if split is None:
                continue
            key, ext = split
            if current is None or current["key"] != key:
                current = {"shard": i, "key": key, "members": {}}
                samples.append(current)
            current["members"].setdefault(ext, (name, offset, size))
    return samples


def read_spans(shard: Path, spans: list[tuple[int, int]]) -> list[bytes]:
    """The bytes at each (offset, size) of one shard, read through one open file (small members: labels,
    captions)."""
    out = []
    try:
        with open(shard, "rb") as f:
            for offset, size in spans:
                f.seek(offset)
                data = f.read(size)
                if len(data) != size:
                    raise DataError(f"{shard}: the shard ends before its member at byte {offset} does (truncated?)")
                out.append(data)
    except OSError as e:
        raise DataError(f"{shard}: cannot read ({e.strerror})") from None
    return out


def member(shards: list[Path], sample: dict, ext: str) -> TarMember:
    """The ``ext`` member of an indexed sample."""
    name, offset, size = sample["members"][ext]
    return TarMember(shards[sample["shard"]], name, offset, size)
