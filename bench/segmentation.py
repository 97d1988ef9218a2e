"""Zero-shot segmentation benchmarks (issue 5): 512x512 images, 150 classes. Prints figures and ratios.

(a) per-pixel scoring of one image: patch-grid scores [150, 32, 32] -> bilinear to 512x512 -> argmax,
    chunked over classes (what the task does) vs. the naive full [150, 512, 512] tensor; time per
    image and peak RSS of each in a fresh process.
(b) end to end: ``ade20k-zeroshot-seg`` (sliding windows at shorter side 448, stride half a window,
    dataset-level mIoU) over random 512x512 images written in the ADE20K layout; images/s, the shares
    of the CPU time spent in bare model forward passes over the same windows and in encoding the class
    prompts, and the peak RSS of the run against the size of the [N, 150, H, W] score tensor the task
    never holds.

    python bench/segmentation.py                                  # ViT-B-16 random weights, 8 images, CPU
    python bench/segmentation.py --model open_clip:ViT-Tiny-8-64 --images 32 --device cuda
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

import numpy as np

SIZE, CLASSES, GRID = 512, 150, 32


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scoring_child(kind: str, repeats: int) -> None:
    """Run in a fresh process: time one kind of per-pixel scoring; print JSON with time and peak RSS."""
    import torch
    import torch.nn.functional as F

    from sparc_eval.task_common.windows import chunked_argmax

    torch.set_num_threads(max(1, os.cpu_count() // 2))
    grid = torch.randn(CLASSES, GRID, GRID)
    base = _rss_mb()

    def chunked():
        return chunked_argmax(CLASSES, (SIZE, SIZE), lambda sl: F.interpolate(
            grid[sl][None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0])

    def naive():
        return F.interpolate(grid[None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0].argmax(0)

    fn = chunked if kind == "chunked" else naive
    ref = fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    dt = (time.perf_counter() - t0) / repeats
    assert torch.equal(out, ref)
    print(json.dumps({"s_per_image": dt, "peak_rss_mb": _rss_mb(), "rss_before_mb": base}))


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_a(repeats: int) -> None:
    c = _child(["--child", "chunked", "--repeats", str(repeats)])
    n = _child(["--child", "naive", "--repeats", str(repeats)])
    print(f"(a) per-pixel scoring, {CLASSES} classes, {GRID}x{GRID} grid -> {SIZE}x{SIZE}:")
    grow_c, grow_n = (r["peak_rss_mb"] - r["rss_before_mb"] for r in (c, n))
    print(f"    chunked over classes: {1e3 * c['s_per_image']:.1f} ms/image, peak RSS growth {grow_c:.0f} MB")
    print(f"    naive full tensor:    {1e3 * n['s_per_image']:.1f} ms/image, peak RSS growth {grow_n:.0f} MB")
    print(f"    time ratio chunked/naive {c['s_per_image'] / n['s_per_image']:.2f}, "
          f"memory-growth ratio {grow_c / grow_n:.2f} (identical argmax maps)")


def write_ade(root: Path, n: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for d in ("images/validation", "annotations/validation"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(
            root / f"images/validation/ADE_val_{i:08d}.jpg")
        Image.fromarray(rng.integers(0, CLASSES + 1, (SIZE, SIZE), dtype=np.uint8), mode="L").save(
            root / f"annotations/validation/ADE_val_{i:08d}.png")


def e2e_child(model_spec: str, root: str, device: str, batch_size: int) -> None:
    """Run in a fresh process: the task end to end, then bare forwards over the same windows."""
    import torch

    from sparc_eval.api import evaluate
    from sparc_eval.models import load_model
    from sparc_eval.task_common.windows import (
        rescale_size,
        sliding_windows,
    )

    model = load_model(model_spec, device=device)
    res = int(model.preprocessing["resolution"])
    t0, c0 = time.perf_counter(), time.process_time()
    ev = evaluate(model, ["ade20k-zeroshot-seg"], write=False, use_cache=False, progress=False, log=lambda m: None,
                  params={"root": root}, batch_size=batch_size, device=device)[0]
    total, total_cpu = time.perf_counter() - t0, time.process_time() - c0
    n = ev.result["dataset"]["n_used"]
    w, h = rescale_size(SIZE, SIZE, 448, 2048)
    n_windows = n * len(sliding_windows(h, w, res, res // 2))
    x = torch.randn(min(batch_size, n_windows), 3, res, res)
    model.encode_image_patches(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t1, c1 = time.perf_counter(), time.process_time()
    done = 0
    while done < n_windows:
        model.encode_image_patches(x)
        done += len(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    forward = (time.perf_counter() - t1) * n_windows / done
    forward_cpu = (time.process_time() - c1) * n_windows / done
    prompts = [f"a photo of a {name}." for name in ev.result["details"]["prompt_names"]]
    t2, c2 = time.perf_counter(), time.process_time()
    for s in range(0, len(prompts), batch_size):
        model.encode_texts(prompts[s:s + batch_size])
    text, text_cpu = time.perf_counter() - t2, time.process_time() - c2
    print(json.dumps({"images": n, "windows": n_windows, "total_s": total, "forward_s": forward,
                      "total_cpu_s": total_cpu, "forward_cpu_s": forward_cpu, "text_s": text, "text_cpu_s": text_cpu,
                      "peak_rss_mb": _rss_mb(), "mIoU": ev.metrics["mIoU"]}))


def part_b(model_spec: str, n: int, device: str, batch_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_ade(Path(tmp), n)
        r = _child(["--child", "e2e", "--model", model_spec, "--root", tmp, "--device", device,
                    "--batch-size", str(batch_size)])
    full = n * CLASSES * SIZE * SIZE * 4 / 2**20
    print(f"(b) end to end, {model_spec}, {r['images']} images {SIZE}x{SIZE}, {CLASSES} classes, "
          f"{r['windows']} windows ({device}):")
    print(f"    {r['images'] / r['total_s']:.2f} images/s ({r['total_s']:.1f} s wall, {r['total_cpu_s']:.1f} s CPU); bare "
          f"forwards over the same windows {r['forward_s']:.1f} s wall, {r['forward_cpu_s']:.1f} s CPU = "
          f"{100 * r['forward_cpu_s'] / r['total_cpu_s']:.0f}% of the run's CPU time; encoding the {CLASSES} class "
          f"prompts (once per model and prompt set, then cached) {r['text_cpu_s']:.1f} s CPU = "
          f"{100 * r['text_cpu_s'] / r['total_cpu_s']:.0f}%; the rest (decoding, resizing, scoring, counting) "
          f"{100 * (1 - (r['forward_cpu_s'] + r['text_cpu_s']) / r['total_cpu_s']):.0f}%")
    print(f"    peak RSS {r['peak_rss_mb']:.0f} MB; an [N, C, H, W] float32 score tensor would be {full:.0f} MB "
          f"(ratio {r['peak_rss_mb'] / full:.2f}, and it grows with N while the task's memory does not)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["a", "b", "all"], default="all")
    ap.add_argument("--model", default="open_clip:ViT-B-16")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", choices=["chunked", "naive", "e2e"], help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "e2e":
        e2e_child(args.model, args.root, args.device, args.batch_size)
    elif args.child:
        scoring_child(args.child, args.repeats)
    else:
        if args.part in ("a", "all"):
            part_a(args.repeats)
        if args.part in ("b", "all"):
            part_b(args.model, args.images, args.device, args.batch_size)


if __name__ == "__main__":
    main()
