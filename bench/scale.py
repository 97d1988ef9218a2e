"""Scale benchmarks (issue 10). Prints measured figures; run on an otherwise idle machine.

(1) Retrieval over 1M images x 5M captions of synthetic embeddings (D = 512) stored in fp16 in the
    embedding-cache format on disk and streamed block by block (fp32 compute): time of the
    preparation pass, time of a sample of image blocks, the extrapolated total, and peak memory.
    Needs ~6 GB of free disk (``--workdir``).
(2) Extraction throughput on the shapes world: one process (2 threads) vs ``torchrun`` with 2
    processes (1 thread each), same model, same images.

    python bench/scale.py --part retrieval --images 1000000 --captions-per-image 5
    python bench/scale.py --part extraction --extract-images 2000
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

D = 512


def _write_synthetic(cache_root: Path, key: str, n: int, seed: int, chunk: int) -> None:
    import torch

    from sparc_eval.engine import EmbeddingCache

    cache = EmbeddingCache(cache_root)
    g = torch.Generator().manual_seed(seed)
    bounds = []
    for s in range(0, n, chunk):
        block = torch.nn.functional.normalize(torch.randn(min(chunk, n - s), D, generator=g), dim=-1)
        cache.write_chunk(key, s, {"emb": block.half()})
        bounds.append((s, s + block.shape[0]))
    cache.finish(key, n, bounds, {"what": "synthetic"})


def retrieval(n_images: int, per_image: int, sample_blocks: int, block: int, workdir: Path) -> None:
    import numpy as np

    from sparc_eval.engine import EmbeddingCache
    from sparc_eval.engine.sources import CachedSource
    from sparc_eval.metrics import retrieval as R

    n_caps = n_images * per_image
    root = workdir / "embeddings"
    t0 = time.perf_counter()
    _write_synthetic(root, "i" * 64, n_images, 0, 65536)
    _write_synthetic(root, "t" * 64, n_caps, 1, 65536)
    disk = sum(p.stat().st_size for p in root.rglob("*.safetensors")) / 2**30
    print(f"(1) retrieval {n_images:,} x {n_caps:,} (D={D}, fp16 on disk {disk:.1f} GiB, written in "
          f"{time.perf_counter() - t0:.0f} s), image block {block}")
    cache = EmbeddingCache(root)
    img, txt = CachedSource(cache, "i" * 64), CachedSource(cache, "t" * 64)
    text_image = np.repeat(np.arange(n_images), per_image)
    t0 = time.perf_counter()
    prep = R.prepare(img, txt, text_image, block)
    t_prep = time.perf_counter() - t0
    acc = R.new_accumulator(n_images, n_caps)
    n_blocks = len(prep.bounds)
    use = min(sample_blocks, n_blocks)
    t0 = time.perf_counter()
    for a, b in prep.bounds[:use]:
        R.count_block(prep, a, b, acc)
    t_sample = time.perf_counter() - t0
    total = t_prep + t_sample * n_blocks / use
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  preparation pass (every diagonal block) {t_prep:.0f} s; {use} of {n_blocks} image blocks "
          f"{t_sample:.0f} s -> extrapolated full run {total / 3600:.1f} h")
    print(f"  peak RSS {peak:.0f} MB (in-memory embeddings would need {(n_images + n_caps) * D * 4 / 2**20:.0f} MB; "
          f"a full score matrix {n_images * n_caps * 4 / 2**40:.1f} TiB)")


def extraction(n_images: int, workdir: Path) -> None:
    from sparc_eval.data.synthetic import generate

    world = generate(workdir / "world", {"test": n_images}, seed=0)
    common = ["-m", "sparc_eval", "run", "-q", "--task", "shapes-retrieval", "--param", f"root={world}",
              "--model", "open_clip:ViT-Small-16-224", "--no-cache", "--batch-size", "32"]
    runs = {
        "1 process x 2 threads": ([sys.executable, *common, "-o", str(workdir / "r1")], "2"),
        "2 processes x 1 thread (torchrun, gloo)": ([str(Path(sys.executable).with_name("torchrun")),
                                                     "--nproc-per-node", "2", *common, "-o", str(workdir / "r2")],
                                                    "1"),
    }
    print(f"(2) extraction + retrieval, open_clip:ViT-Small-16-224 random weights, {n_images} images "
          f"(5-6 captions each), no cache")
    times = {}
    for name, (cmd, threads) in runs.items():
        env = dict(os.environ, OMP_NUM_THREADS=threads, SPARC_EVAL_CACHE=str(workdir / "cache"))
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times[name] = time.perf_counter() - t0
        res = json.loads(next((workdir / ("r1" if "1 process" in name else "r2")).rglob("shapes-retrieval.json"))
                         .read_text())
        print(f"  {name:42s} {times[name]:7.1f} s wall (incl. start-up), "
              f"{res['provenance']['wall_s']:.1f} s in the task, mean_R@1 {res['metrics']['mean_R@1']:.3f}")
    a, b = times.values()
    print(f"  speed-up 2 processes / 1 process: {a / b:.2f}x (the machine has {os.cpu_count()} cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["retrieval", "extraction", "all"], default="all")
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--captions-per-image", type=int, default=5)
    ap.add_argument("--sample-blocks", type=int, default=2)
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("--extract-images", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp folder)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="sparc-bench-"))
    try:
        if args.part in ("retrieval", "all"):
            retrieval(args.images, args.captions_per_image, args.sample_blocks, args.block, work)
        if args.part in ("extraction", "all"):
            extraction(args.extract_images, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
