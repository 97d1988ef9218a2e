"""Evaluation at scale: torchrun data parallelism, concurrent cache writers, shards and merge,
streamed and faiss retrieval, custom CSV retrieval sets."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_OPEN_CLIP, tasks_on

from sparc_eval.api import plan_tasks
from sparc_eval.data.synthetic import load_world

ORACLE = "py:sparc_eval.models.oracle:shapes_oracle"


def _env(cache: Path) -> dict:
    env = dict(os.environ, SPARC_EVAL_CACHE=str(cache), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("WORLD_SIZE", None)
    return env


def _cache_digest(cache: Path) -> dict[str, str]:
    return {str(p.relative_to(cache)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((cache / "embeddings").rglob("*.safetensors"))}


def _metrics(out: Path, model: str, task: str = "shapes-retrieval") -> dict:
    return json.loads((out / model / f"{task}.json").read_text())["metrics"]


def test_torchrun_gloo_two_processes_equal_single_process(small_world, tmp_path):
    tasks = ("shapes-retrieval", "shapes-zeroshot-seg", "shapes-zeroshot")  # cached, dense, classification
    inc = tasks_on(small_world, tmp_path / "tasks", tasks)
    args = ["run", "-q", *[a for t in tasks for a in ("--task", t)], "--include-path", str(inc),
            "--model", TINY_OPEN_CLIP, "--batch-size", "8"]
    single = subprocess.run([sys.executable, "-m", "sparc_eval", *args, "-o", str(tmp_path / "r1")],
                            env=_env(tmp_path / "c1"), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = Path(sys.executable).with_name("torchrun")
    multi = subprocess.run([str(torchrun), "--nproc-per-node", "2", "-m", "sparc_eval", *args, "-o",
                            str(tmp_path / "r2")], env=_env(tmp_path / "c2"), capture_output=True, text=True,
                           timeout=300)
    assert multi.returncode == 0, multi.stderr[-3000:]
    model = "open_clip-vit-tiny-8-64"
    for task in tasks:
        assert _metrics(tmp_path / "r1", model, task) == _metrics(tmp_path / "r2", model, task)
    for name in ("shapes-retrieval.samples.jsonl", "shapes-zeroshot-seg.samples.jsonl"):
        assert (tmp_path / "r1" / model / name).read_bytes() == (tmp_path / "r2" / model / name).read_bytes()
    digest = _cache_digest(tmp_path / "c1")
    assert digest and digest == _cache_digest(tmp_path / "c2")  # cache contents equal bit for bit
    r2 = json.loads((tmp_path / "r2" / model / "shapes-retrieval.json").read_text())
    assert r2["provenance"]["world_size"] == 2


def test_concurrent_runs_share_a_cache_without_corruption(small_world, tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "sparc_eval", "run", "-q", "--task", "shapes-retrieval", "--model", TINY_OPEN_CLIP,
           "--param", f"root={small_world}", "--batch-size", "4"]
    procs = [subprocess.Popen([*cmd, "-o", str(tmp_path / f"r{i}")], env=_env(cache), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    model = "open_clip-vit-tiny-8-64"
    assert _metrics(tmp_path / "r0", model) == _metrics(tmp_path / "r1", model)
    assert not list(cache.rglob("*.tmp"))
    from sparc_eval.engine import EmbeddingCache

    store = EmbeddingCache(cache / "embeddings")
    entries = [p.parent for p in (cache / "embeddings").rglob("meta.json")]
    assert len(entries) == 2  # the image entry and the caption entry, each complete
    for entry in entries:
        assert store.load(entry.name)["emb"].shape[0] == store.meta(entry.name)["n"]
    # a third run reads everything from the shared cache
    from sparc_eval.api import evaluate

    third = evaluate(TINY_OPEN_CLIP, ["shapes-retrieval"], params=[f"root={small_world}"], batch_size=4,
                     cache_dir=cache, write=False, progress=False, log=lambda m: None)[0].result
    assert third["provenance"]["engine"]["images_encoded"] == 0 and third["provenance"]["engine"]["texts_encoded"] == 0
    assert third["metrics"] == _metrics(tmp_path / "r0", model)


def test_shards_partition_the_jobs():
    names = [f"task-{i}" for i in range(13)]
    for n in range(1, 9):
        shards = [plan_tasks(names, shard=(i, n)) for i in range(1, n + 1)]
        flat = [t for s in shards for t in s]
        assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))


def _suite(folder: Path, world: Path) -> None:
    (folder / "suites").mkdir(parents=True)
    base = (Path(__file__).resolve().parent.parent / "tasks" / "shapes-retrieval.yaml").read_text()
    for k in (1, 2, 3):
        text = base.replace("name: shapes-retrieval", f"name: shard-task-{k}").replace(
            "recall_at: [1, 5, 10]", f"recall_at: [1, {k + 4}]").replace('root: "${shapes}"', f'root: "{world}"')
        (folder / f"shard-task-{k}.yaml").write_text(text)
    (folder / "suites" / "three.yaml").write_text("tasks: [shard-task-1, shard-task-2, shard-task-3]\n")


def test_merge_reports_missing_shards_duplicates_and_stale(runner, cli, small_world, tmp_path):
    inc = tmp_path / "tasks"
    _suite(inc, small_world)
    base = ["run", "-q", "--suite", "three", "--include-path", inc, "--model", ORACLE, "--pretrained", small_world,
            "--model-name", "oracle"]
    for i in (1, 3):
        r = runner.invoke(cli, [*map(str, base), "-o", str(tmp_path / f"shard{i}"), "--shard", f"{i}/3"])
        assert r.exit_code == 0, r.output
    merge = ["merge", str(tmp_path), "--suite", "three", "--include-path", str(inc), "--shards", "3"]
    r = runner.invoke(cli, merge)
    assert r.exit_code == 1 and "shard-task-2" in r.output and "2/3" in r.output, r.output
    r = runner.invoke(cli, [*map(str, base), "-o", str(tmp_path / "shard2"), "--shard", "2/3"])
    assert r.exit_code == 0
    r = runner.invoke(cli, merge)
    assert r.exit_code == 0 and "complete" in r.output, r.output
    r = runner.invoke(cli, [*merge, "--model-name", "Oracle"])  # the name as typed finds its folder's slug
    assert r.exit_code == 0 and "complete" in r.output, r.output
    r = runner.invoke(cli, [*map(str, base), "--shard", "4/3"])
    assert r.exit_code == 2 and "--shard 4/3: expected 1 <= i <= n" in r.output
    # a duplicate that disagrees
    dup = tmp_path / "again" / "oracle" / "shard-task-1.json"
    dup.parent.mkdir(parents=True)
    data = json.loads((tmp_path / "shard1" / "oracle" / "shard-task-1.json").read_text())
    data["metrics"]["mean_R@1"] = 50.0
    dup.write_text(json.dumps(data))
    r = runner.invoke(cli, merge)
    assert r.exit_code == 1 and "duplicated shard-task-1" in r.output
    shutil.rmtree(tmp_path / "again")
    # a task definition that changed since
    yaml = inc / "shard-task-3.yaml"
    yaml.write_text(yaml.read_text().replace("version: 1", "version: 2"))
    r = runner.invoke(cli, merge)
    assert r.exit_code == 1 and "stale shard-task-3: task version 1 (current 2)" in r.output


def test_streamed_and_faiss_retrieval_equal_in_memory(small_world, tmp_path, monkeypatch):
    from sparc_eval.api import evaluate

    monkeypatch.setenv("SPARC_EVAL_CACHE", str(tmp_path / "cache"))
    kw = dict(write=False, progress=False, log=lambda m: None)
    p = [f"root={small_world}", "block=7"]
    exact = evaluate(TINY_OPEN_CLIP, ["shapes-retrieval"], params=p, **kw)[0].metrics
    streamed = evaluate(TINY_OPEN_CLIP, ["shapes-retrieval"], params=[*p, "stream=true"], **kw)[0].metrics
    faiss = evaluate(TINY_OPEN_CLIP, ["shapes-retrieval"], params=[*p, "stream=true", "backend=faiss"], **kw)[0]
    assert streamed == exact
    assert faiss.metrics == pytest.approx(exact, abs=1e-9)
    assert faiss.result["details"]["backend"] == "faiss"


def _csv_from_world(world: Path, folder: Path) -> tuple[Path, Path]:
    folder.mkdir()
    test = [s for s in load_world(world)["scenes"] if s["split"] == "test"]
    images, captions = folder / "images.csv", folder / "captions.csv"
    with images.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "path"])
        for s in test:
            w.writerow([f"img{s['id']}", s["file"]])  # relative to --param root=<world>
    with captions.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_id", "caption"])
        for s in reversed(test):  # captions in another order than the images: grouped by the reader
            for c in s["captions"]:
                w.writerow([f"img{s['id']}", c])
    return images, captions


def test_custom_csv_retrieval(runner, cli, small_world, tmp_path):
    images, captions = _csv_from_world(small_world, tmp_path / "csv")
    r = runner.invoke(cli, ["run", "-q", "--task", "retrieval-custom", "--param", f"images={images}", "--param",
                            f"captions={captions}", "--param", f"root={small_world}", "--model", ORACLE,
                            "--pretrained", str(small_world),
                            "--model-name", "oracle", "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    m = _metrics(tmp_path / "out", "oracle", "retrieval-custom")
    assert all(v == 100.0 for v in m.values())
    bad = tmp_path / "bad.csv"
    bad.write_text("image_id,caption\nimg999999,a red circle\n")
    r = runner.invoke(cli, ["run", "--task", "retrieval-custom", "--param", f"images={images}", "--param",
                            f"captions={bad}", "--model", ORACLE])
    assert r.exit_code == 2 and "bad.csv:2: caption for unknown image_id 'img999999'" in r.output
    bad.write_text("id,text\n1,x\n")
    r = runner.invoke(cli, ["run", "--task", "retrieval-custom", "--param", f"images={images}", "--param",
                            f"captions={bad}", "--model", ORACLE])
    assert r.exit_code == 2 and "expected a header with columns ['image_id', 'caption']" in r.output
    r = runner.invoke(cli, ["run", "--task", "retrieval-custom", "--model", ORACLE])
    assert r.exit_code == 2 and "required key 'images' is missing" in r.output


NODE_SCRIPT = '''
import json, os, sys
import torch.distributed as dist
from sparc_eval.api import evaluate

root, out, rank = sys.argv[1], sys.argv[2], os.environ["RANK"]
quiet = dict(progress=False, log=lambda m: None, batch_size=8)
# each rank has its own cache folder, like nodes with node-local disks; streaming reads the files back
first = evaluate("open_clip:ViT-Tiny-8-64", ["shapes-retrieval"], params=[f"root={root}", "stream=true"],
                 cache_dir=f"{out}/cache{rank}", write=False, **quiet)[0]
again = evaluate("open_clip:ViT-Tiny-8-64", ["shapes-retrieval"], params=[f"root={root}", "stream=true"],
                 cache_dir=f"{out}/cache{rank}", write=False, **quiet)[0]
alone = None
if rank == "0":  # rank 0 evaluates alone (as in periodic evaluation during training): no collectives
    alone = evaluate("open_clip:ViT-Tiny-8-64", ["shapes-retrieval"], params=[f"root={root}"], distributed=False,
                     use_cache=False, write=False, **quiet)[0].metrics
dist.barrier()
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump({"first": first.metrics, "again": again.metrics, "encoded": again.result["provenance"]["engine"],
               "world": first.result["provenance"]["world_size"], "alone": alone}, f)
dist.destroy_process_group()
'''


def test_node_local_caches_and_evaluation_outside_the_process_group(small_world, tmp_path):
    """Two ranks that do not share a cache folder (two nodes) each fill and read their own; rank 0 can
    then evaluate on its own with ``distributed=False`` while the other rank waits (no hang)."""
    import socket

    script = tmp_path / "node.py"
    script.write_text(NODE_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in (0, 1):
        env = dict(_env(tmp_path / "unused"), RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(script), str(small_world), str(tmp_path)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == 2 and r0["first"] == r1["first"] == r0["again"] == r1["again"]
    for r in (r0, r1):  # the second run read every embedding from its own node's cache
        assert r["encoded"]["images_encoded"] == 0 and r["encoded"]["texts_encoded"] == 0
    digest = _cache_digest(tmp_path / "cache0")
    assert len(digest) == 2 and digest == _cache_digest(tmp_path / "cache1")  # image and caption entries
    assert r0["alone"] == pytest.approx(r0["first"], abs=1e-9)
