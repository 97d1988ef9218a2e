"""Training data: image-caption pairs from a CSV, the shapes world, or WebDataset tar shards.

Map-style sources (``csv``, ``shapes``) are a list of ``Pair`` (image path + one or more captions):

- ``csv``: columns ``path`` and ``caption`` (names configurable); relative paths resolve against
  ``image_root`` (default: the CSV's folder). ``captions: per_image`` (default) groups the rows of one
  image into one sample whose caption is drawn per epoch; ``per_row`` makes every row a sample.
- ``shapes``: the shapes world's ``world.json`` (splits ``train`` and ``restval`` by default), every scene
  one sample with its 5-6 captions, one drawn per epoch (so a batch never holds one image twice, which
  would be a false negative for the contrastive losses).

The order is a seeded permutation per epoch and the caption draw is a function of (seed, epoch, index),
so the batches of step s are a function of s alone: resuming at a step replays exactly (``EpochSampler``).
An image that cannot be decoded is counted and replaced by the next index (batch sizes never change).

WebDataset (``webdataset``): local ``.tar`` shards (a list or a brace pattern such as
``/data/shard-{00000..00999}.tar``), members grouped by key as WebDataset does (``key.jpg`` + ``key.txt``).
Each rank reads shards ``rank::world`` of a per-epoch seeded permutation, each DataLoader worker every
n-th of those; a worker left without a shard (more workers than the rank's shards) stops at once.
Undecodable samples, samples missing an image or caption, and the rest of a truncated shard are counted
and skipped; members with absolute paths, ``..`` components, links or special files are refused
(``data.wds.safe_member``; counted, never read). When a worker's pass over its shards yields nothing, the
other shards are searched for one usable sample and ``DataError`` is raised when there is none (wrong
``image_keys``/``caption_keys``, say). Resume is at shard boundaries: the shards that were being read at
the checkpoint are read again from their start, none is skipped.
"""
from __future__ import annotations

import csv
import io
import json
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import IterableDataset, Sampler, get_worker_info

from ..data.wds import member_key, safe_member
from ..errors import ConfigError, DataError

_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass
class Pair:
    path: Path
    captions: list[str]


# -- map-style sources --------------------------------------------------------------------------------------
def read_csv_pairs(path: Path | str, image_root: Path | str | None = None, path_column: str = "path",
                   caption_column: str = "caption", per_image: bool = True) -> list[Pair]:
    """Pairs of a CSV with a header row; ``per_image`` groups the rows of one image (first-seen order)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.path: training CSV {path} not found")
    root = Path(image_root) if image_root else path.parent
    grouped: dict[Path, Pair] = {}
    rows: list[Pair] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in (path_column, caption_column) if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header has "
                            f"{', '.join(reader.fieldnames or []) or 'no columns'} (set data.path_column / "
                            f"data.caption_column)")
        for line, row in enumerate(reader, start=2):
            rel, cap = (row.get(path_column) or "").strip(), (row.get(caption_column) or "").strip()
            if not rel or not cap:
                raise DataError(f"{path}, line {line}: empty {path_column if not rel else caption_column!r}")
            p = root / rel
            if per_image:
                grouped.setdefault(p, Pair(p, [])).captions.append(cap)
            else:
                rows.append(Pair(p, [cap]))
    pairs = list(grouped.values()) if per_image else rows
    if not pairs:
        raise DataError(f"{path}: no rows")
    return pairs


def shapes_pairs(root: Path | str, splits: Sequence[str] = ("train", "restval")) -> list[Pair]:
    """One pair per scene of the shapes world in ``splits``, with all its captions."""
    root = Path(root)
    world_file = root / "world.json"
    if not world_file.is_file():
        raise ConfigError(f"data.root: {root} is not a shapes world (no world.json); generate one with "
                          f"sparc_eval.data.synthetic.generate or use ${{shapes}}")
    world = json.loads(world_file.read_text(encoding="utf-8"))
    have = sorted({s["split"] for s in world["scenes"]})
    unknown = [s for s in splits if s not in have]
    if unknown:
        raise ConfigError(f"data.splits: {unknown} not in {world_file}; it has splits {have}")
    return [Pair(root / s["file"], list(s["captions"])) for s in world["scenes"] if s["split"] in splits]


class PairDataset(torch.utils.data.Dataset):
    """Items are ``(index, epoch)``: the image (transformed) and its caption for that epoch."""

    def __init__(self, pairs: list[Pair], transform: Callable, seed: int):
        self.pairs, self.transform, self.seed = pairs, transform, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def caption(self, index: int, epoch: int) -> str:
        caps = self.pairs[index].captions
        if len(caps) == 1:
            return caps[0]
        return caps[int(np.random.default_rng([self.seed, epoch, index]).integers(len(caps)))]

    def __getitem__(self, item: tuple[int, int]):
        index, epoch = item
        skipped = 0
        for k in range(len(self.pairs)):
            i = (index + k) % len(self.pairs)
            try:
                with Image.open(self.pairs[i].path) as img:
                    img.load()
                    image = self.transform(img)
                return image, self.caption(i, epoch), {"corrupt": skipped} if skipped else {}
            except _DECODE_ERRORS:
                skipped += 1
        raise DataError(f"no image of the training data could be read (first: {self.pairs[index].path})")


def micro_batch_size(global_batch: int, world: int, accum: int) -> int:
    """Samples per micro-batch and process: the global batch split over ``world`` processes and ``accum``
    micro-batches, which must divide it."""
    if global_batch % (world * accum):
        raise ConfigError(f"batch_size {global_batch}: must be divisible by the number of processes ({world}) "
                          f"times accum_steps ({accum})")
    return global_batch // (world * accum)


class EpochSampler(Sampler):
    """Infinite micro-batches of ``(index, epoch)`` for one rank, starting at optimizer step ``start_step``.

    Step s of epoch e takes ``perm_e[s*B:(s+1)*B]`` (B = global batch, the last partial batch of an epoch
    dropped); rank r takes its contiguous 1/W of it, cut into ``accum`` micro-batches. ``perm_e`` is a
    permutation seeded by (seed, e), so the data of a step depends on the step alone."""

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1, accum: int = 1,
                 start_step: int = 0):
        micro_batch_size(global_batch, world, accum)
        if n < global_batch:
            raise ConfigError(f"batch_size {global_batch}: larger than the training data ({n} samples)")
        self.n, self.batch, self.seed, self.rank, self.world, self.accum = n, global_batch, seed, rank, world, accum
        self.start_step = start_step

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, step = divmod(self.start_step, self.steps_per_epoch)
        share = self.batch // self.world
        micro = share // self.accum
        while True:
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
            for s in range(step, self.steps_per_epoch):
                mine = perm[s * self.batch + self.rank * share:s * self.batch + (self.rank + 1) * share].tolist()
                for j in range(self.accum):
                    yield [(i, epoch) for i in mine[j * micro:(j + 1) * micro]]
            epoch, step = epoch + 1, 0


# -- WebDataset shards --------------------------------------------------------------------------------------
def expand_shards(shards: str | Sequence[str]) -> list[Path]:
    """Local shard paths from a brace pattern or a list (each may be a pattern); checks each is a tar file."""
    from braceexpand import braceexpand

    patterns = [shards] if isinstance(shards, str) else list(shards)
    paths = [Path(p).expanduser() for pat in patterns for p in braceexpand(str(pat))]
    if not paths:
        raise ConfigError("data.shards: no shards given")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise ConfigError(f"data.shards: {len(missing)} of {len(paths)} shard(s) not found, e.g. {missing[0]}")
    for p in paths:
        if not tarfile.is_tarfile(p):
            raise DataError(f"data.shards: {p} is not a tar archive (bad shard)")
    return paths


@dataclass
class ShardCounts:
    """Problems met while reading shards (summed over workers and ranks by the trainer)."""

    corrupt: int = 0
    incomplete: int = 0
    unsafe: int = 0
    truncated: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if v}


def read_shard(path: Path, counts: ShardCounts) -> Iterator[dict[str, bytes]]:
    """Samples (extension -> bytes, plus ``__key__``) of one tar shard, in archive order, grouped by
    ``data.wds.member_key``; members without an extension belong to no sample and are passed over."""
    current: dict = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                try:
                    if not safe_member(member, path):
                        continue  # a directory
                except DataError:  # absolute path, '..', link or special file: never read
                    counts.unsafe += 1
                    continue
                split = member_key(member.name)
                if split is None:
                    continue
                key, ext = split
                if current and current["__key__"] != key:
                    yield current
                    current = {}
                current.setdefault("__key__", key)
                current[ext] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError):
        counts.truncated += 1
        return
    if current:
        yield current


class ShardStream(IterableDataset):
    """Decoded ``(image, caption, skipped-by-reason, position)`` from this rank's shards, epoch after epoch (infinite).
    ``position`` = (worker id, epoch, shard ordinal in the epoch's order); ``start`` = (epoch, ordinal) to
    resume from."""

    def __init__(self, shards: list[Path], transform: Callable, seed: int, rank: int = 0, world: int = 1,
                 image_keys: Sequence[str] = ("jpg", "jpeg", "png", "webp"), caption_keys: Sequence[str] = ("txt",),
                 start: tuple[int, int] = (0, 0)):
        if len(shards) < world:
            raise ConfigError(f"data.shards: {len(shards)} shard(s) for {world} processes; need at least one each")
        self.shards, self.transform, self.seed, self.rank, self.world = shards, transform, seed, rank, world
        self.image_keys, self.caption_keys, self.start = tuple(image_keys), tuple(caption_keys), tuple(start)

    def _sample(self, s: dict, counts: ShardCounts):
        img_key = next((k for k in self.image_keys if k in s), None)
        cap_key = next((k for k in self.caption_keys if k in s), None)
        if img_key is None or cap_key is None:
            counts.incomplete += 1
            return None
        try:
            caption = s[cap_key].decode("utf-8").strip()
            if cap_key == "json":
                caption = str(json.loads(caption).get("caption", "")).strip()
            with Image.open(io.BytesIO(s[img_key])) as img:
                img.load()
                image = self.transform(img)
        except (*_DECODE_ERRORS, UnicodeDecodeError, AttributeError):
            counts.corrupt += 1
            return None
        if not caption:
            counts.incomplete += 1
            return None
        return image, caption

    def _check_usable(self) -> None:
        """Raise ``DataError`` unless some shard holds a usable sample (stops at the first one)."""
        counts, first_members = ShardCounts(), None
        for path in self.shards:
            for s in read_shard(path, counts):
                first_members = first_members or sorted(k for k in s if k != "__key__")
                if self._sample(s, counts) is not None:
                    return
        found = ", ".join(f"{k} {v}" for k, v in counts.as_dict().items()) or "no samples at all"
        raise DataError(f"data.shards: none of the {len(self.shards)} shard(s) holds a usable sample (skipped: "
                        f"{found}); a sample needs an image member ({', '.join(self.image_keys)}: data.image_keys) "
                        f"and a caption member ({', '.join(self.caption_keys)}: data.caption_keys)"
                        + (f"; the first sample has {', '.join(first_members)}" if first_members else ""))

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        if wid >= len(range(self.rank, len(self.shards), self.world)):
            return  # more DataLoader workers than this rank's shards: this one stays idle
        epoch, first = self.start
        counts, reported = ShardCounts(), {}
        usable = False
        while True:
            order = torch.randperm(len(self.shards), generator=torch.Generator().manual_seed(self.seed * 1_000_003
                                                                                            + epoch)).tolist()
            mine = order[self.rank::self.world]
            for ordinal in range(wid, len(mine), nw):
                if ordinal < first:
                    continue
                for s in read_shard(self.shards[mine[ordinal]], counts):
                    got = self._sample(s, counts)
                    if got is not None:
                        usable = True
                        now = counts.as_dict()
                        yield got[0], got[1], {k: v - reported.get(k, 0) for k, v in now.items()
                                               if v != reported.get(k, 0)}, (wid, epoch, ordinal)
                        reported = now
            if not usable:  # a whole pass without a sample: go on only if another shard has one
                self._check_usable()
                usable = True
            epoch, first = epoch + 1, 0


def collate(tokenizer: Callable) -> Callable:
    """Collate ``(image, caption, skipped[, position])`` items -> dict(images, ids, skipped[, position]);
    ``skipped`` sums the items' counts of skipped samples by reason."""
    def fn(items):
        skipped: dict[str, int] = {}
        for it in items:
            for k, v in it[2].items():
                skipped[k] = skipped.get(k, 0) + v
        out = {"images": torch.stack([it[0] for it in items]), "ids": tokenizer([it[1] for it in items]),
               "skipped": skipped}
        if len(items[0]) > 3:
            out["position"] = items[-1][3]
        return out
    return fn
