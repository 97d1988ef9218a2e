"""Retrieval benchmarks (issue 2). Prints measured figures and ratios; run on an otherwise idle machine.

(a) metric time and peak memory (RSS high-water mark of a fresh process) of the chunked recall
    computation for 5k x 25k and 100k x 500k embeddings (D = 512). The large case is measured on a
    sample of image blocks and extrapolated (``--full`` runs it all: hours on 2 cores).
(b) toolkit efficiency: bare model forward passes over pre-decoded batches / end-to-end ``evaluate``
    time (process start-up excluded, reported separately), ViT-B-32 random weights, >= 2000 images.
(c) cached re-run time / first-run time (``--overwrite`` with a warm embedding cache).

    python bench/retrieval.py                 # all three
    python bench/retrieval.py --part a --full # the whole 100k x 500k computation
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

D = 512


def _metric_child(n_img: int, n_txt: int, blocks: int | None, block: int) -> None:
    """Runs in a fresh process: time the counts for ``blocks`` image blocks (None: all)."""
    import numpy as np
    import torch

    from sparc_eval.metrics import retrieval as R

    torch.manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(n_img, D), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(n_txt, D), dim=-1)
    text_image = np.repeat(np.arange(n_img), n_txt // n_img)
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    prep = R.prepare(R.as_rows(img), R.as_rows(txt), text_image, block)
    n_blocks = len(prep.bounds)
    use = n_blocks if blocks is None else min(blocks, n_blocks)
    acc = R.new_accumulator(n_img, n_txt)
    t1 = time.perf_counter()
    for a, b in prep.bounds[:use]:
        R.count_block(prep, a, b, acc)
    t2 = time.perf_counter()
    # the full run is the preparation pass plus n_blocks calls of count_block (the same code timed here)
    total = (t1 - t0) + (t2 - t1) * n_blocks / use
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images": n_img, "texts": n_txt, "blocks_timed": use, "blocks": n_blocks, "seconds": total,
                      "extrapolated": use != n_blocks, "peak_rss_mb": peak, "inputs_rss_mb": rss_inputs,
                      "full_matrix_mb": n_img * n_txt * 4 / 2**20}))


def part_a(full: bool) -> None:
    print("(a) chunked recall@{1,5,10}: time and peak memory")
    for n_img, n_txt, blocks in ((5_000, 25_000, None), (100_000, 500_000, None if full else 2)):
        out = subprocess.run([sys.executable, __file__, "--child", str(n_img), str(n_txt), str(blocks or 0)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        how = f"extrapolated from {r['blocks_timed']}/{r['blocks']} image blocks" if r["extrapolated"] else "measured"
        print(f"  {n_img:>7} x {n_txt:>7}: {r['seconds']:9.1f} s ({how}); peak RSS {r['peak_rss_mb']:7.0f} MB "
              f"(embeddings alone {r['inputs_rss_mb']:.0f} MB; a full score matrix would be "
              f"{r['full_matrix_mb']:.0f} MB)")


def _world(n_images: int, root: Path) -> Path:
    from sparc_eval.data.synthetic import generate

    return generate(root / "world", {"test": n_images}, seed=0)


def part_bc(n_images: int, workdir: Path) -> None:
    import torch
    from PIL import Image

    from sparc_eval.api import evaluate, load_model
    from sparc_eval.data.base import get_reader

    os.environ["SPARC_EVAL_CACHE"] = str(workdir / "cache")
    world = _world(n_images, workdir)
    data = get_reader("karpathy").load({"root": str(world), "annotations": "dataset_shapes.json", "split": "test",
                                        "image_dir": ""})
    spec, bs = "open_clip:ViT-B-32", 64
    print(f"(b) toolkit efficiency: {spec} random weights, {len(data.images)} images, {len(data.captions)} captions, "
          f"batch {bs}, {torch.get_num_threads()} threads")
    model = load_model(spec, seed=0)
    images = torch.stack([model.image_transform(Image.open(p)) for p in data.images.paths])
    t0 = time.perf_counter()
    for s in range(0, len(images), bs):
        model.encode_images(images[s:s + bs])
    for s in range(0, len(data.captions), bs):
        model.encode_texts(data.captions[s:s + bs])
    bare = time.perf_counter() - t0

    kw = dict(params=[f"root={world}"], output=workdir / "results", progress=False, log=lambda m: None,
              batch_size=bs)
    t0 = time.perf_counter()
    evaluate(spec, ["shapes-retrieval"], **kw)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    evaluate(spec, ["shapes-retrieval"], overwrite=True, **kw)
    cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sparc_eval.cli, torch, open_clip"], check=True)
    startup = time.perf_counter() - t0
    print(f"  bare forward passes {bare:8.1f} s | end-to-end evaluate {first:8.1f} s | "
          f"efficiency {bare / first:.3f} (target >= 0.8)")
    print(f"  process start-up (imports, excluded above) {startup:.1f} s")
    print(f"(c) cached re-run {cached:.2f} s / first run {first:.1f} s = {cached / first:.4f} (target <= 0.05)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["a", "bc", "all"], default="all")
    ap.add_argument("--full", action="store_true", help="(a): compute the whole 100k x 500k case")
    ap.add_argument("--images", type=int, default=2000, help="(b, c): shapes-world test images")
    ap.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        n_img, n_txt, blocks = args.child
        _metric_child(n_img, n_txt, blocks or None, 1024)
        return
    if args.part in ("a", "all"):
        part_a(args.full)
    if args.part in ("bc", "all"):
        with tempfile.TemporaryDirectory() as tmp:
            part_bc(args.images, Path(tmp))


if __name__ == "__main__":
    main()
