"""Leaderboard speed: 200 models x 40 tasks (8000 result files) read, built and rendered in every format;
and the per-sample aggregation behind intervals, ``baseline save``, ``check`` and ``compare``.

    .venv/bin/python bench/leaderboard.py [--models 200] [--tasks 40] [--keep DIR] [--records 1000000]

Writes synthetic result files (realistic size: 9 metrics with intervals, chance, provenance) to a temp
folder, then times each stage in one process (wall and CPU time: on a shared machine the wall time
includes waiting for a core) against the 2 s budget of issue 6. Also checks that nothing imports torch.
``--records N`` (0: skip) times ``ClusterSums`` on N zero-shot records (top1, top5, mean per-class
recall over 1000 classes) against the record-by-record loop it replaced (checked equal), and the peak
memory of ``intervals`` (weights drawn 100 replicates at a time) against the whole weight matrix.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

BUDGET_S = 2.0
GROUPS = ["coarse", "fine", "retrieval", "dense"]


def task_spec(i: int) -> dict:
    if i % 10 == 9:
        return {"name": f"captions-{i:02d}", "main": "CHAIR_i", "keys": ["CHAIR_i", "CHAIR_s"], "chance": None}
    keys = [f"{d}_R@{k}" for d in ("i2t", "t2i", "mean") for k in (1, 5, 10)]
    return {"name": f"task-{i:02d}", "main": "mean_R@1", "keys": keys, "chance": 0.1}


def write_results(root: Path, n_models: int, n_tasks: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    specs = [task_spec(i) for i in range(n_tasks)]
    for m in range(n_models):
        name = f"model-{m:03d}"
        (root / name).mkdir(parents=True, exist_ok=True)
        for t, spec in enumerate(specs):
            base = rng.uniform(5, 90)
            metrics = {k: float(np.clip(base + rng.normal(0, 3), 0, 100)) for k in spec["keys"]}
            result = {
                "schema": "sparc-eval/result/v1",
                "task": {"name": spec["name"], "type": "retrieval", "version": 1, "config_sha256": f"cfg{t:02d}" * 8,
                         "groups": [GROUPS[t % len(GROUPS)]], "config": {"params": {"recall_at": [1, 5, 10]}}},
                "model": {"spec": f"open_clip:{name}", "pretrained": f"/ckpt/{name}.pt", "name": name,
                          "weights_sha256": f"{m:064x}"},
                "dataset": {"name": "bench", "format": "karpathy", "fingerprint": f"fp{t:02d}" * 16, "n_total": 5000,
                            "n_used": 5000, "limit": None, "partial": False},
                "seed": 0, "metrics": metrics, "main_metric": spec["main"],
                "intervals": {k: [v - 1.5, v + 1.5] for k, v in metrics.items()},
                "chance": {k: spec["chance"] for k in spec["keys"]} if spec["chance"] else {},
                "aggregations": {k: {"kind": "mean", "field": k, "scale": 100} for k in spec["keys"]},
                "details": {"n_images": 5000, "n_captions": 25010},
                "preprocessing": {"resolution": 224, "interpolation": "bicubic", "crop": "center"},
                "provenance": {"sparc_eval": "0.1.0", "started": f"2026-11-01T00:{m % 60:02d}:00+00:00", "wall_s": 12.5},
                "run_key": f"{m:032x}{t:032x}", "samples": f"{spec['name']}.samples.jsonl",
            }
            (root / name / f"{spec['name']}.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    return n_models * n_tasks


def _timed(fn):
    """(result, wall seconds, CPU seconds of this process)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def loop_sums(records: list[dict], fields: list[str], group: tuple[str, str]) -> tuple[dict, dict, dict]:
    """The record-by-record accumulation ``ClusterSums`` did before (the reference being timed)."""
    index = {c: i for i, c in enumerate(dict.fromkeys(r["cluster"] for r in records))}
    sums = {f: np.zeros(len(index)) for f in fields}
    counts = {f: np.zeros(len(index)) for f in fields}
    cells: dict = {}
    for r in records:
        c = index[r["cluster"]]
        for f in fields:
            if r.get(f) is not None:
                sums[f][c] += np.asarray(r[f], dtype=np.float64)
                counts[f][c] += 1
        if r.get(group[0]) is not None and r.get(group[1]) is not None:
            cell = cells.setdefault((c, r[group[1]]), [0.0, 0.0])
            cell[0] += float(r[group[0]])
            cell[1] += 1.0
    return sums, counts, cells


def bench_aggregation(n: int) -> None:
    from sparc_eval.results.aggregate import ClusterSums, bootstrap_weights, intervals

    rng = np.random.default_rng(0)
    labels, hit, hit5 = rng.integers(0, 1000, n), rng.random(n) < 0.7, rng.random(n) < 0.9
    records = [{"id": f"img{i}", "cluster": f"img{i}", "label": int(labels[i]), "top1": float(hit[i]),
                "top5": float(hit5[i] or hit[i])} for i in range(n)]
    aggs = {"top1": {"kind": "mean", "field": "top1", "scale": 100}, "top5": {"kind": "mean", "field": "top5", "scale": 100},
            "mean_per_class_recall": {"kind": "group_mean", "field": "top1", "group": "label", "scale": 100}}
    (sums, counts, cells), t_loop, _ = _timed(lambda: loop_sums(records, ["top1", "top5"], ("top1", "label")))
    fast, t_fast, _ = _timed(lambda: ClusterSums(records, aggs))
    same = all(np.array_equal(fast.sums[f], sums[f]) and np.array_equal(fast.counts[f], counts[f]) for f in sums)
    same = same and fast.grouped[("top1", "label")][0].sum() == sum(v[0] for v in cells.values())
    print(f"ClusterSums on {n} records (top1, top5, mean per-class recall over 1000 classes):")
    print(f"  record-by-record loop {t_loop:6.2f} s   vectorised {t_fast:6.2f} s   loop / vectorised = "
          f"{t_loop / t_fast:.1f}x   sums identical: {same}")
    small = records[: min(n, 100_000)]
    tracemalloc.start()
    _, t_iv, _ = _timed(lambda: intervals(small, aggs))
    peak_blocks = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    bootstrap_weights(len(small))
    peak_matrix = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"intervals on {len(small)} clusters ({t_iv:.1f} s): peak {peak_blocks / 2 ** 20:.0f} MiB with weights in "
          f"blocks of 100; the whole [1000, {len(small)}] weight matrix alone takes {peak_matrix / 2 ** 20:.0f} MiB "
          f"(x{n / len(small):.0f} at {n} clusters)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--keep", type=Path, help="Write the results and boards here instead of a temp folder.")
    ap.add_argument("--records", type=int, default=1_000_000, help="Records for the aggregation part (0: skip).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        n = write_results(root / "results", args.models, args.tasks)

        def load_modules():
            from sparc_eval.results import collect, leaderboard, render
            return collect.collect, leaderboard.build, render.write_board

        stages = []
        (collect, build, write_board), *t = _timed(load_modules)
        stages.append(("import", *t, ""))
        collection, *t = _timed(lambda: collect([root / "results"]))
        stages.append(("read", *t, f"{t[1] / n * 1e6:.0f} us CPU per file"))
        board, *t = _timed(lambda: build(collection))
        stages.append(("build", *t, ""))
        for fmt in ("md", "csv", "tex", "html"):
            path, *t = _timed(lambda fmt=fmt: write_board(board, root / f"board.{fmt}"))
            stages.append((f"render {fmt}", *t, f"{path.stat().st_size / 1e6:.2f} MB"))
    print(f"{args.models} models x {args.tasks} tasks = {n} result files")
    print(f"  {'stage':<12} {'wall s':>7} {'CPU s':>7}")
    for name, wall, cpu, note in stages:
        print(f"  {name:<12} {wall:7.3f} {cpu:7.3f}  {note}")
    wall, cpu = sum(s[1] for s in stages), sum(s[2] for s in stages)
    print(f"  {'total':<12} {wall:7.3f} {cpu:7.3f}  CPU = {cpu / BUDGET_S:.2f} x the {BUDGET_S:.0f} s budget "
          f"({'OK' if cpu < BUDGET_S else 'OVER BUDGET'}); wall > CPU means the cores were shared")
    heavy = [m for m in ("torch", "torchvision", "open_clip", "transformers") if m in sys.modules]
    print(f"  heavy modules imported: {heavy or 'none'}")
    if args.records:
        bench_aggregation(args.records)


if __name__ == "__main__":
    main()
