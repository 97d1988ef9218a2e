"""Training data: CSV and shapes-world pairs, the epoch sampler (deterministic, rank shares, resume),
corrupt images, WebDataset shards (grouping, corrupt/incomplete samples, unsafe member paths, truncated
shards, rank split, shard-boundary resume), and a short WebDataset training run."""
from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from sparc_eval.errors import ConfigError, DataError
from sparc_eval.pretrain.data import (
    EpochSampler,
    PairDataset,
    ShardCounts,
    ShardStream,
    collate,
    expand_shards,
    read_csv_pairs,
    read_shard,
    shapes_pairs,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """The tiny models run as fast on one thread, and steadier on a shared machine."""


def _ident(img):
    return torch.tensor(img.size, dtype=torch.float32)


def test_csv_pairs_per_image_and_per_row(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "train.csv").write_text("caption,path\na red circle,img/a.png\na red disk,img/a.png\n"
                                        "\"a blue, square\",img/b.png\n")
    per_image = read_csv_pairs(tmp_path / "train.csv")
    assert [(p.path.name, p.captions) for p in per_image] == [("a.png", ["a red circle", "a red disk"]),
                                                              ("b.png", ["a blue, square"])]
    assert per_image[0].path == tmp_path / "img" / "a.png"
    rows = read_csv_pairs(tmp_path / "train.csv", image_root="/data", per_image=False)
    assert [str(p.path) for p in rows] == ["/data/img/a.png", "/data/img/a.png", "/data/img/b.png"]
    (tmp_path / "bad.csv").write_text("file,text\nx.png,hello\n")
    with pytest.raises(DataError, match=r"bad.csv: missing column\(s\) path, caption; the header has file, text"):
        read_csv_pairs(tmp_path / "bad.csv")


def test_shapes_csv_round_trip(small_world, tmp_path):
    pairs = shapes_pairs(small_world)
    world = json.loads((small_world / "world.json").read_text())
    assert len(pairs) == sum(1 for s in world["scenes"] if s["split"] in ("train", "restval")) == 56
    with open(tmp_path / "shapes.csv", "w", newline="", encoding="utf-8") as f:  # one row per caption
        w = csv.writer(f)
        w.writerow(["path", "caption"])
        w.writerows([str(p.path.resolve()), c] for p in pairs for c in p.captions)
    back = read_csv_pairs(tmp_path / "shapes.csv")
    assert [(p.path, p.captions) for p in back] == [(p.path.resolve(), p.captions) for p in pairs]
    with pytest.raises(ConfigError, match=r"data.splits: \['tran'\] not in"):
        shapes_pairs(small_world, ["tran"])


def test_caption_drawn_per_image_and_epoch(small_world):
    ds = PairDataset(shapes_pairs(small_world), _ident, seed=0)
    draws = {ds.caption(3, e) for e in range(40)}
    assert draws == set(ds.pairs[3].captions)  # every caption of the image gets used
    assert ds.caption(3, 7) == PairDataset(shapes_pairs(small_world), _ident, seed=0).caption(3, 7)


def test_epoch_sampler_is_deterministic_shares_and_resumes():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    single = take(EpochSampler(10, 4, seed=1), 6)  # 2 steps per epoch, remainder dropped
    assert [len(b) for b in single] == [4] * 6
    for epoch in range(3):
        idx = [i for b in single[2 * epoch:2 * epoch + 2] for i, e in b]
        assert len(set(idx)) == 4 * 2 and all(e == epoch for b in single[2 * epoch:2 * epoch + 2] for _, e in b)
    assert single[:2] != single[2:4]  # a new permutation per epoch
    ranks = [take(EpochSampler(10, 4, seed=1, rank=r, world=2, accum=2), 12) for r in (0, 1)]
    for step in range(6):  # rank 0's micro-batches then rank 1's = the single-process batch
        assert ranks[0][2 * step] + ranks[0][2 * step + 1] + ranks[1][2 * step] + ranks[1][2 * step + 1] == single[step]
    assert take(EpochSampler(10, 4, seed=1, start_step=3), 3) == single[3:6]
    with pytest.raises(ConfigError, match=r"^batch_size 6: must be divisible by the number of processes \(2\) "
                                          r"times accum_steps \(2\)$"):
        EpochSampler(10, 6, seed=0, world=2, accum=2)


def test_corrupt_images_are_counted_and_replaced(small_world, tmp_path):
    pairs = shapes_pairs(small_world)[:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    pairs[1].path = broken
    pairs[2].path = tmp_path / "missing.png"
    ds = PairDataset(pairs, _ident, seed=0)
    _image, caption, skipped = ds[(1, 0)]
    assert skipped == {"corrupt": 2} and caption in pairs[3].captions
    batch = collate(lambda caps: torch.zeros(len(caps), 3))([ds[(i, 0)] for i in range(4)])
    assert batch["images"].shape == (4, 2) and batch["skipped"] == {"corrupt": 3}


def _png(path: Path) -> bytes:
    return path.read_bytes()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def shards(small_world, tmp_path):
    """4 shards of 3 samples each from the shapes world, with problems in shard 2; shard 3 is cut short after
    its first member (the first sample loses its caption, the rest of the shard is lost)."""
    pairs = shapes_pairs(small_world)
    paths = []
    for s in range(4):
        p = tmp_path / f"shard-{s}.tar"
        with tarfile.open(p, "w") as tar:
            for k in range(3):
                pair = pairs[3 * s + k]
                key = f"s{s}/{k:04d}"
                _add(tar, f"{key}.png", _png(pair.path))
                _add(tar, f"{key}.txt", pair.captions[0].encode())
            if s == 2:
                _add(tar, "../evil.png", b"x")
                _add(tar, "/etc/evil.txt", b"x")
                link = tarfile.TarInfo("s2/link.png")
                link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(link)
                _add(tar, "s2/bad.png", b"not an image")
                _add(tar, "s2/bad.txt", b"a broken sample")
                _add(tar, "s2/lonely.png", _png(pairs[0].path))
        paths.append(p)
    paths[3].write_bytes(paths[3].read_bytes()[:3 * 512 + 100])  # inside its second member's data
    return paths, pairs


def test_shards_are_read_counted_and_split_across_ranks(shards):
    paths, pairs = shards
    counts = ShardCounts()
    samples = list(read_shard(paths[2], counts))
    assert [s["__key__"] for s in samples] == ["s2/0000", "s2/0001", "s2/0002", "s2/bad", "s2/lonely"]
    assert counts.unsafe == 3  # ../evil.png, /etc/evil.txt, the symlink
    counts = ShardCounts()
    list(read_shard(paths[3], counts))
    assert counts.truncated == 1

    stream = ShardStream(paths, _ident, seed=0)
    got, skipped = [], {}
    it = iter(stream)
    for _ in range(10):  # one epoch: 12 good samples minus the truncated shard's lost ones
        _image, caption, skip, (_worker, epoch, ordinal) = next(it)
        got.append((epoch, ordinal, caption))
        for k, v in skip.items():
            skipped[k] = skipped.get(k, 0) + v
        if epoch == 1:
            break
    first_epoch = [g for g in got if g[0] == 0]
    assert {c for _, _, c in first_epoch} >= {pairs[i].captions[0] for i in range(9)}
    assert skipped == {"unsafe": 3, "corrupt": 1, "incomplete": 1, "truncated": 1}
    by_rank = [[o for o in range(4)[r::2]] for r in range(2)]
    assert by_rank == [[0, 2], [1, 3]]
    order = torch.randperm(4, generator=torch.Generator().manual_seed(0)).tolist()
    rank1 = ShardStream(paths, _ident, seed=0, rank=1, world=2)
    first = next(iter(rank1))
    assert first[1] in [pairs[3 * order[1] + k].captions[0] for k in range(3)]
    ordinal = next(o for o in range(1, 4) if order[o] != 3)  # a shard that is not the truncated one
    resumed = next(iter(ShardStream(paths, _ident, seed=0, start=(0, ordinal))))
    assert resumed[3][1:] == (0, ordinal) and resumed[1] == pairs[3 * order[ordinal]].captions[0]
    assert expand_shards(str(paths[0].parent / "shard-{0..2}.tar")) == paths[:3]


def test_webdataset_training_run_logs_skipped_samples(shards, small_world, tmp_path, runner):
    import yaml

    from sparc_eval.cli.pretrain import pretrain
    from sparc_eval.pretrain.checkpoint import load_training_state

    paths, _ = shards
    cfg = {"name": "wds", "output_dir": str(tmp_path / "run"), "steps": 3, "batch_size": 4, "device": "cpu",
           "log_every": 3, "checkpoint_every": 3,
           "model": {"arch": "ViT-Tiny-8-64", "embed_dim": 32, "vision_cfg": {"layers": 1, "width": 64},
                     "text_cfg": {"layers": 1, "width": 64, "heads": 2, "context_length": 16}},
           "loss": {"name": "sparc"},
           "data": {"format": "webdataset", "shards": [str(p) for p in paths], "num_workers": 0}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(pretrain, ["--config", str(tmp_path / "c.yaml"), "-q"])
    assert res.exit_code == 0, res.output
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and log[-1]["skipped"]  # 12 samples read past at least one problem shard
    state = load_training_state(tmp_path / "run" / "checkpoint-3")
    epoch, ordinal = state["data"]["shard_positions"][0]
    assert (epoch, ordinal) >= (0, 2)  # 3 steps x 4 samples: at least 2 shards done


def _loader(stream, workers: int):
    from torch.utils.data import DataLoader

    # timeout: a worker that never delivers fails the test instead of hanging it
    return DataLoader(stream, batch_size=2, num_workers=workers, timeout=120,
                      collate_fn=collate(lambda caps: torch.zeros(len(caps), 3)))


def test_more_workers_than_shards_and_shards_without_samples(shards):
    paths, _ = shards
    it = iter(_loader(ShardStream(paths[:1], _ident, seed=0), workers=2))  # worker 1 has no shard: it stops
    batches = [next(it) for _ in range(4)]  # 3 samples per epoch: crosses epochs
    assert all(b["position"][0] == 0 for b in batches)
    # shard 3 lost every sample: the worker holding it (an epoch's pass without a sample) goes on
    it = iter(_loader(ShardStream([paths[3], paths[0]], _ident, seed=0), workers=2))
    assert [len(next(it)["images"]) for _ in range(4)] == [2, 2, 2, 2]


def test_shards_without_a_usable_sample_raise(shards):
    paths, _ = shards
    message = (r"data.shards: none of the 2 shard\(s\) holds a usable sample \(skipped: incomplete 6\); a sample needs "
               r"an image member .* and a caption member \(caption: data.caption_keys\); the first sample has png, txt")
    with pytest.raises(DataError, match=message):  # wrong caption key: in-process
        next(iter(ShardStream(paths[:2], _ident, seed=0, caption_keys=("caption",))))
    with pytest.raises(DataError, match=message):  # and from DataLoader workers
        next(iter(_loader(ShardStream(paths[:2], _ident, seed=0, caption_keys=("caption",)), workers=2)))


def test_webdataset_batch_must_split_over_micro_batches(shards, tmp_path, runner):
    import yaml

    from sparc_eval.cli.pretrain import pretrain

    paths, _ = shards
    cfg = {"name": "wds", "output_dir": str(tmp_path / "run"), "steps": 3, "batch_size": 6, "accum_steps": 4,
           "device": "cpu", "model": {"arch": "ViT-Tiny-8-64", "embed_dim": 32, "vision_cfg": {"layers": 1, "width": 64},
                                      "text_cfg": {"layers": 1, "width": 64, "heads": 2, "context_length": 16}},
           "loss": {"name": "sparc"}, "data": {"format": "webdataset", "shards": [str(p) for p in paths]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = runner.invoke(pretrain, ["--config", str(tmp_path / "c.yaml"), "-q"])
    assert res.exit_code == 2 and "batch_size 6: must be divisible by the number of processes (1) times " \
                                  "accum_steps (4)" in res.output, res.output
