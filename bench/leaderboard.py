"""Leaderboard speed: 200 models x 40 tasks (8000 result files) read, built and rendered in every format.

    .venv/bin/python bench/leaderboard.py [--models 200] [--tasks 40] [--keep DIR]

Writes synthetic result files (realistic size: 9 metrics with intervals, chance, provenance) to a temp
folder, then times each stage in one process (wall and CPU time: on a shared machine the wall time
includes waiting for a core) against the 2 s budget of issue 6. Also checks that nothing imports torch.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=40)
    ap.add_argument("--keep", type=Path, help="Write the results and boards here instead of a temp folder.")
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


if __name__ == "__main__":
    main()
