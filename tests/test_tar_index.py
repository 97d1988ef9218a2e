"""Webdataset shards read in place: the offset index gives the samples, keys and bytes the webdataset library
iterates (on shards written by CLIP_benchmark's builder), and PIL decodes members without extraction."""
from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from cb_layouts import export_wds_retrieval
from PIL import Image

from sparc_eval.data.tar_index import index_shards, member
from sparc_eval.data.wds import shard_files
from sparc_eval.errors import DataError


def test_index_matches_the_webdataset_library(small_world, tmp_path):
    import webdataset

    root = export_wds_retrieval(small_world, tmp_path / "wds")
    shards = shard_files(root, "test")
    samples = index_shards(shards)
    theirs = list(webdataset.WebDataset([str(s) for s in shards], shardshuffle=False, empty_check=False))
    assert [s["key"] for s in samples] == [t["__key__"] for t in theirs]
    for s, t in zip(samples, theirs):
        assert member(shards, s, "png").read() == t["png"] and member(shards, s, "txt").read() == t["txt"]
    image = member(shards, samples[5], "png")
    assert "test/0.tar:s0000005.png" in str(image)
    with Image.open(image.open()) as im:
        assert np.asarray(im).shape == (64, 64, 3)
    assert index_shards(shards) == samples  # from the cached index


def _tar(path, members):
    with tarfile.open(path, "w") as t:
        for m, data in members:
            t.addfile(m, io.BytesIO(data) if data is not None else None)


def test_unsafe_compressed_and_truncated_shards(tmp_path):
    evil = tarfile.TarInfo("../x.png")
    evil.size = 1
    _tar(tmp_path / "evil.tar", [(evil, b"x")])
    with pytest.raises(DataError, match="unsafe path"):
        index_shards([tmp_path / "evil.tar"], cache=False)
    with tarfile.open(tmp_path / "z.tar", "w:gz") as t:
        ok = tarfile.TarInfo("a.png")
        ok.size = 1
        t.addfile(ok, io.BytesIO(b"x"))
    with pytest.raises(DataError, match="gzip"):
        index_shards([tmp_path / "z.tar"], cache=False)
    good = tarfile.TarInfo("a.png")
    good.size = 4096
    _tar(tmp_path / "t.tar", [(good, b"\1" * 4096)])
    samples = index_shards([tmp_path / "t.tar"], cache=False)
    with open(tmp_path / "t.tar", "r+b") as f:
        f.truncate(1024)
    with pytest.raises(DataError, match="ends before"):
        member([tmp_path / "t.tar"], samples[0], "png").read()
