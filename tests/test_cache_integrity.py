"""The cache proves what it serves (issue 15): damaged chunks, sidecars, meta.json and file-hash memo
entries are detected, discarded with a warning naming them and recomputed; ``sparc-eval cache``."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_OPEN_CLIP
from safetensors.torch import load_file

from sparc_eval.api import evaluate
from sparc_eval.engine import EmbeddingCache, Engine
from sparc_eval.engine.cache import CorruptChunk, sidecar_path
from sparc_eval.models import load_model


def _run(world: Path, cache: Path, logs: list[str], stream: bool = False) -> dict:
    params = [f"root={world}"] + (["stream=true"] if stream else [])
    return evaluate(TINY_OPEN_CLIP, ["shapes-retrieval"], params=params, batch_size=4, cache_dir=cache,
                    write=False, progress=False, log=logs.append)[0].result


def _entry(cache: Path, what: str) -> Path:
    (meta,) = [m for m in (cache / "embeddings").rglob("meta.json") if json.loads(m.read_text())["what"] == what]
    return meta.parent


def _flip(path: Path, offset_from_end: int = 64) -> None:
    """Flip an exponent bit of a float in the tensor data (a disk fault: same size, same file)."""
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def clean(small_world, tmp_path_factory):
    """A clean run with a fresh cache: its result (which every repaired run must equal exactly) and its cache
    folder (each test damages a copy)."""
    cache = tmp_path_factory.mktemp("clean") / "cache"
    return _run(small_world, cache, []), cache


def _copy(clean, tmp_path: Path) -> Path:
    shutil.copytree(clean[1], tmp_path / "cache")
    return tmp_path / "cache"


def _damaged_run(small_world, tmp_path, clean, damage, stream=False):
    cache = _copy(clean, tmp_path)
    chunk = sorted(_entry(cache, "image").glob("chunk-*.safetensors"))[0]
    clean_tensor = load_file(str(chunk))["emb"].clone()  # load_file maps the file: copy before damaging it
    damage(chunk)
    logs: list[str] = []
    again = _run(small_world, cache, logs, stream=stream)
    return clean[0], again, logs, chunk, clean_tensor


@pytest.mark.parametrize("stream", [False, True])
def test_flipped_byte_is_detected_and_recomputed(small_world, tmp_path, clean, stream):
    _, again, logs, chunk, before = _damaged_run(small_world, tmp_path, clean, _flip, stream)
    warned = [m for m in logs if m.startswith("warning:") and chunk.name in m]
    assert warned and "sha256" in warned[0] and "recomputed" in warned[0], logs
    assert again["provenance"]["engine"]["images_encoded"] == 40 and again["provenance"]["engine"]["texts_encoded"] == 0
    assert again["metrics"] == clean[0]["metrics"]
    assert torch.equal(load_file(str(chunk))["emb"], before)  # repaired on disk
    logs = []
    third = _run(small_world, tmp_path / "cache", logs)
    assert third["provenance"]["engine"]["images_encoded"] == 0 and not [m for m in logs if "warning" in m]


def test_truncated_chunk_is_recomputed_not_an_error(small_world, tmp_path, clean):
    def truncate(p: Path) -> None:
        os.truncate(p, p.stat().st_size // 2)

    _, again, logs, chunk, _ = _damaged_run(small_world, tmp_path, clean, truncate)
    assert any(chunk.name in m and "truncated" in m for m in logs), logs
    assert again["provenance"]["engine"]["images_encoded"] == 40 and again["metrics"] == clean[0]["metrics"]


def test_missing_sidecar_means_untrusted(small_world, tmp_path, clean):
    _, again, logs, chunk, _ = _damaged_run(small_world, tmp_path, clean, lambda p: sidecar_path(p).unlink())
    assert any(chunk.name in m and "no checksum sidecar" in m for m in logs), logs
    assert again["provenance"]["engine"]["images_encoded"] == 40 and again["metrics"] == clean[0]["metrics"]
    assert sidecar_path(chunk).is_file()


def test_edited_meta_is_rebuilt_from_verified_chunks(small_world, tmp_path, clean):
    cache = _copy(clean, tmp_path)
    meta_file = _entry(cache, "text") / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["truncated"] += 3  # a careless edit: the check no longer matches
    meta_file.write_text(json.dumps(meta))
    logs: list[str] = []
    again = _run(small_world, cache, logs)
    assert any(str(meta_file) in m and "check" in m for m in logs), logs
    engine = again["provenance"]["engine"]
    assert engine["texts_encoded"] == 0 and engine["images_encoded"] == 0  # the chunks themselves were sound
    assert again["metrics"] == clean[0]["metrics"] and again["details"]["captions_truncated"] == meta["truncated"] - 3
    assert json.loads(meta_file.read_text())["truncated"] == meta["truncated"] - 3


def test_entries_of_earlier_versions_are_recomputed(small_world, tmp_path, clean):
    """No sidecars, no format in meta.json: as an entry written before checksums existed."""
    cache = _copy(clean, tmp_path)
    for side in (cache / "embeddings").rglob("*.sum"):
        side.unlink()
    for meta_file in (cache / "embeddings").rglob("meta.json"):
        meta = json.loads(meta_file.read_text())
        meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k not in ("format", "check")}))
    logs: list[str] = []
    again = _run(small_world, cache, logs)
    assert any("cache format 1" in m for m in logs), logs
    engine = again["provenance"]["engine"]
    assert engine["images_encoded"] == 40 and engine["texts_encoded"] > 0 and again["metrics"] == clean[0]["metrics"]


def test_streamed_chunk_changed_after_the_check_is_refused(small_world, tmp_path):
    from sparc_eval.data.base import get_reader

    images = get_reader("karpathy").load({"root": str(small_world), "annotations": "dataset_shapes.json",
                                          "split": "test", "image_dir": ""}).images
    cache = EmbeddingCache(tmp_path)
    source = Engine(load_model(TINY_OPEN_CLIP), cache=cache, batch_size=4, num_workers=0,
                    progress=False).image_source(images)
    good = source.read(0, 40)
    time.sleep(0.05)  # file timestamps are coarse (a jiffy): let the change get a new mtime
    chunk = source.spans[0][2]
    _flip(chunk)
    with pytest.warns(UserWarning, match=chunk.name), pytest.raises(CorruptChunk, match=chunk.name):
        source.read(0, 40)
    assert not chunk.exists() and good.shape == (40, 64)


def test_poisoned_file_hash_memo_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(tmp_path / "cache"))
    from sparc_eval.fileio import sha256_file

    files = []
    for seed in (1, 2):
        f = tmp_path / f"w{seed}.pt"
        torch.save(load_model(TINY_OPEN_CLIP, seed=seed).model.state_dict(), f)
        files.append(f)
    true = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert [sha256_file(f) for f in files] == true
    memo = {json.loads(p.read_text())["sha256"]: p for p in (tmp_path / "cache" / "file-hashes").iterdir()}
    mine, other = memo[true[0]], memo[true[1]]

    mine.write_text(other.read_text())  # another checkpoint's entry copied over this one's
    assert load_model(TINY_OPEN_CLIP, pretrained=str(files[0])).identity.weights_sha256 == true[0]
    entry = json.loads(mine.read_text())
    mine.write_text(json.dumps({**entry, "sha256": true[1]}))  # a hand edit of the digest alone
    assert sha256_file(files[0]) == true[0]
    mine.write_text(true[1] + "\n")  # an entry of the earlier format (a bare digest) is not trusted either
    assert sha256_file(files[0]) == true[0]
    assert json.loads(mine.read_text())["sha256"] == true[0]  # rewritten, checked


# -- sparc-eval cache info | verify | prune ------------------------------------------------------------------
@pytest.fixture
def entries(tmp_path, monkeypatch):
    """Three complete text entries and two file-hash memo entries under ``tmp_path / "cache"``."""
    from sparc_eval.fileio import sha256_file

    root = tmp_path / "cache"
    cache = EmbeddingCache(root / "embeddings")
    engine = Engine(load_model(TINY_OPEN_CLIP), cache=cache, batch_size=2, batches_per_chunk=1, progress=False)
    keys = []
    for texts in (["a red circle", "a blue square", "two green triangles"], ["one circle"], ["a", "b"]):
        engine.text_embeddings(texts)
        keys.append(engine._text_key(texts))
    monkeypatch.setenv("SPARC_EVAL_CACHE", str(root))
    for i in range(2):
        (tmp_path / f"f{i}").write_bytes(bytes([i]) * 100)
        sha256_file(tmp_path / f"f{i}")
    return root, cache, keys


def _cache_cli(runner, cli, *args):
    return runner.invoke(cli, ["cache", *map(str, args)], catch_exceptions=False)


def test_cache_info_counts_entries_chunks_and_bytes(runner, cli, entries):
    root = entries[0]
    r = _cache_cli(runner, cli, "info", "--cache-dir", root)
    assert r.exit_code == 0, r.output
    size = sum(p.stat().st_size for p in (root / "embeddings").rglob("*") if p.is_file())
    assert "3 complete" in r.output and "4 chunks" in r.output and f"{size:,} bytes" in r.output
    assert "text" in r.output and "2 entries" in r.output  # the memo


def test_cache_verify_names_bad_files_and_fix_removes_them(runner, cli, entries):
    root, cache, keys = entries
    r = _cache_cli(runner, cli, "verify", "--cache-dir", root)
    assert r.exit_code == 0 and "0 bad" in r.output, r.output
    chunk = sorted(cache.entry(keys[0]).glob("chunk-*.safetensors"))[0]
    _flip(chunk, 8)
    memo = sorted((root / "file-hashes").iterdir())[0]
    memo.write_text(json.dumps({**json.loads(memo.read_text()), "sha256": "0" * 64}))
    r = _cache_cli(runner, cli, "verify", "--cache-dir", root)
    assert r.exit_code == 1 and str(chunk) in r.output and str(memo) in r.output and "2 bad" in r.output, r.output
    assert chunk.exists() and memo.exists()
    r = _cache_cli(runner, cli, "verify", "--cache-dir", root, "--fix")
    assert r.exit_code == 0 and "removed" in r.output, r.output
    assert not chunk.exists() and not memo.exists() and not (cache.entry(keys[0]) / "meta.json").exists()
    assert cache.ready(keys[1]) and cache.ready(keys[2])  # the sound entries are untouched
    assert _cache_cli(runner, cli, "verify", "--cache-dir", root).exit_code == 0


def test_cache_prune_removes_least_recently_used_whole_entries(runner, cli, entries):
    root, cache, keys = entries
    now = time.time()
    for age_days, key in zip((30, 20, 10), keys):
        os.utime(cache.entry(key) / "meta.json", (now - age_days * 86400,) * 2)
    assert cache.ready(keys[0])  # serving an entry marks it used: now the most recent
    r = _cache_cli(runner, cli, "prune", "--cache-dir", root, "--older-than", "15", "--dry-run")
    assert r.exit_code == 0 and str(cache.entry(keys[1])) in r.output and str(cache.entry(keys[0])) not in r.output
    assert cache.entry(keys[1]).is_dir()  # dry run: nothing removed

    def size(key):
        return sum(p.stat().st_size for p in cache.entry(key).iterdir())

    keep = size(keys[0]) + size(keys[2])  # the two most recently used
    r = _cache_cli(runner, cli, "prune", "--cache-dir", root, "--max-size", f"{(keep + 1) / 1e9:.12f}")
    assert r.exit_code == 0 and str(cache.entry(keys[1])) in r.output, r.output
    assert not cache.entry(keys[1]).exists() and cache.ready(keys[0]) and cache.ready(keys[2])
    r = _cache_cli(runner, cli, "prune", "--cache-dir", root, "--max-size", "0")
    assert r.exit_code == 0 and not list((root / "embeddings").rglob("*.safetensors"))
    assert (root / "file-hashes").is_dir()  # prune removes embedding entries only
    assert _cache_cli(runner, cli, "prune", "--cache-dir", root).exit_code == 2  # nothing asked for
