"""Cost of the embedding cache's integrity check (issue 15). Prints measured figures and ratios; run on an
otherwise idle machine. Target: a cached re-run with verification takes <= 1.05x the same re-run without.

Each pair of runs alternates the order (verified, unverified / unverified, verified) in one process, and
the in-process memo of verified chunks is cleared before every verified run, as in a fresh process. The
page cache is warm for both arms (a re-run soon after the first run); from a cold disk, reading
dominates both and the ratio is smaller. "Unverified" is the code without the check (the chunk check
replaced by a no-op), i.e. the cost before checksums existed.

(1) sha256 throughput here: hashlib over bytes in memory, and over the cache's chunk files.
(2) A cached re-run of shapes-retrieval (1000 images, 5000 captions; open_clip:ViT-Tiny-8-64) through
    ``api.evaluate``: the real task path (model load, data, metrics, bootstrap).
(3) A cached re-run of a COCO-5k-sized retrieval from synthetic embeddings in the cache format
    (5000 images x 25000 captions, D = 512, fp32: 61 MB): serve both entries + exact recall@k.
(4) Serving alone (the engine's cached path: check + load, no metric) of a large synthetic entry
    (default 300 MB): the overhead where nothing but loading happens, an upper bound.

    python bench/cache_integrity.py                       # all parts, 3 pairs each
    python bench/cache_integrity.py --part 3 --images 20000 --pairs 2
"""
from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

D = 512
CHUNK = 2048  # the engine's default chunk: batch size 64 x 32 batches


def _write_entry(cache, key: str, n: int, seed: int, dtype) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    for s in range(0, n, CHUNK):
        block = torch.nn.functional.normalize(torch.randn(min(CHUNK, n - s), D, generator=g), dim=-1)
        cache.write_chunk(key, s, {"emb": block.to(dtype)})
    cache.finish(key, n, [(s, min(s + CHUNK, n)) for s in range(0, n, CHUNK)], {"what": "synthetic"})


def _serve(cache, key: str):
    """The engine's cached path for a complete entry (``Engine._cached``): verify, then load."""
    assert cache.ready(key)
    return cache.load(key)["emb"].float()


def _pairs(run: Callable[[], object], pairs: int) -> tuple[list[float], list[float], list[float]]:
    """Wall times of ``run`` verified and unverified, ``pairs`` times each, alternating the order, and the
    share of each verified run spent in the check (``EmbeddingCache.trusted`` and ``require``, timed inside
    the run, so the share is not blurred by other load on the machine)."""
    from sparc_eval.engine import cache as cache_mod

    check, cls = cache_mod.chunk_problem, cache_mod.EmbeddingCache
    methods = {name: getattr(cls, name) for name in ("trusted", "require")}
    spent = [0.0]

    def timed(method):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0
        return wrapper

    times: dict[bool, list[float]] = {True: [], False: []}
    shares: list[float] = []
    for i in range(pairs):
        for verified in ((True, False) if i % 2 == 0 else (False, True)):
            cache_mod._VERIFIED.clear()
            cache_mod.chunk_problem = check if verified else (lambda path, memo=True: None)
            for name, method in methods.items():
                setattr(cls, name, timed(method))
            spent[0] = 0.0
            try:
                t0 = time.perf_counter()
                run()
                times[verified].append(time.perf_counter() - t0)
            finally:
                cache_mod.chunk_problem = check
                for name, method in methods.items():
                    setattr(cls, name, method)
            if verified:
                shares.append(spent[0] / times[True][-1])
    return times[True], times[False], shares


def _report(label: str, verified: list[float], plain: list[float], shares: list[float]) -> None:
    """Medians, the median of the per-pair ratios (each pair ran back to back, so load drift cancels), and the
    check's share of the verified runs, measured inside them (the ratio it implies: 1 / (1 - share))."""
    v, p = statistics.median(verified), statistics.median(plain)
    ratios = [a / b for a, b in zip(verified, plain)]
    share = statistics.median(shares)
    print(f"  {label}: verified {v:.3f} s, unverified {p:.3f} s (medians of {len(plain)}; +{v - p:.3f} s) -> "
          f"ratio {statistics.median(ratios):.3f} (median of pairs; range {min(ratios):.3f}-{max(ratios):.3f})")
    print(f"    the check itself: {100 * share:.2f}% of a verified run (median; {100 * min(shares):.2f}-"
          f"{100 * max(shares):.2f}%) -> ratio {1 / (1 - share):.3f}")


def part1(work: Path) -> None:
    import torch

    from sparc_eval.engine import EmbeddingCache

    print("(1) sha256 throughput")
    data = torch.randn(64 << 20).numpy().tobytes()  # 256 MB
    t0 = time.perf_counter()
    hashlib.sha256(data).hexdigest()
    mem = len(data) / (time.perf_counter() - t0) / 1e9
    cache = EmbeddingCache(work / "throughput")
    _write_entry(cache, "h" * 64, len(data) // (4 * D), 0, torch.float32)
    files = sorted(cache.entry("h" * 64).glob("chunk-*.safetensors"))
    size = sum(f.stat().st_size for f in files)
    t0 = time.perf_counter()
    for f in files:
        with f.open("rb") as fh:
            hashlib.file_digest(fh, "sha256")
    disk = size / (time.perf_counter() - t0) / 1e9
    print(f"  in memory {mem:.2f} GB/s; chunk files (page cache, {len(files)} files, {size / 1e6:.0f} MB) {disk:.2f} GB/s")


def part2(work: Path, pairs: int) -> None:
    from sparc_eval.api import evaluate

    print("(2) cached re-run of shapes-retrieval (open_clip:ViT-Tiny-8-64, 1000 images x 5000 captions)")

    def run():
        ev = evaluate("open_clip:ViT-Tiny-8-64", ["shapes-retrieval"], cache_dir=work / "shapes-cache", write=False,
                      progress=False, log=lambda m: None)[0]
        engine = ev.result["provenance"]["engine"]
        assert engine["images_encoded"] == 0 and engine["texts_encoded"] == 0, engine

    evaluate("open_clip:ViT-Tiny-8-64", ["shapes-retrieval"], cache_dir=work / "shapes-cache", write=False,
             progress=False, log=lambda m: None)  # the first run fills the cache
    size = sum(p.stat().st_size for p in (work / "shapes-cache").rglob("*.safetensors"))
    print(f"  cache entries: {size / 1e6:.1f} MB")
    _report("whole re-run", *_pairs(run, pairs))


def part3(work: Path, pairs: int, n_images: int, per_image: int) -> None:
    import numpy as np
    import torch

    from sparc_eval.engine import EmbeddingCache
    from sparc_eval.metrics.retrieval import recall_at_k, retrieval_counts

    n_caps = n_images * per_image
    cache = EmbeddingCache(work / f"retrieval-{n_images}")
    _write_entry(cache, "i" * 64, n_images, 1, torch.float32)
    _write_entry(cache, "t" * 64, n_caps, 2, torch.float32)
    size = sum(p.stat().st_size for p in cache.root.rglob("*.safetensors"))
    text_image = np.repeat(np.arange(n_images), per_image)
    print(f"(3) cached retrieval re-run, {n_images:,} images x {n_caps:,} captions (D={D}, fp32, {size / 1e6:.0f} MB "
          f"in {len(list(cache.root.rglob('*.safetensors')))} chunks): serve both entries + exact recall@1,5,10")

    def run():
        counts = retrieval_counts(_serve(cache, "i" * 64), _serve(cache, "t" * 64), text_image)
        recall_at_k(counts, [1, 5, 10])

    _report("serve + recall", *_pairs(run, pairs))


def part4(work: Path, pairs: int, mb: int) -> None:
    import torch

    from sparc_eval.engine import EmbeddingCache

    n = mb * 10**6 // (4 * D)
    cache = EmbeddingCache(work / "large")
    _write_entry(cache, "l" * 64, n, 3, torch.float32)
    size = sum(p.stat().st_size for p in cache.root.rglob("*.safetensors"))
    print(f"(4) serving alone: {n:,} rows x {D} fp32 ({size / 1e6:.0f} MB, {-(-n // CHUNK)} chunks), check + load")
    _report("serve only", *_pairs(lambda: _serve(cache, "l" * 64), pairs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", type=int, choices=(1, 2, 3, 4), action="append", help="default: all")
    ap.add_argument("--pairs", type=int, default=3, help="verified/unverified pairs per measurement")
    ap.add_argument("--images", type=int, default=5000, help="part 3: images (captions = 5 per image)")
    ap.add_argument("--large-mb", type=int, default=300, help="part 4: size of the entry")
    ap.add_argument("--workdir", type=Path, help="default: a temporary folder")
    args = ap.parse_args()
    parts = args.part or [1, 2, 3, 4]
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        if 1 in parts:
            part1(work)
        if 2 in parts:
            part2(work, args.pairs)
        if 3 in parts:
            part3(work, args.pairs, args.images, 5)
        if 4 in parts:
            part4(work, args.pairs, args.large_mb)


if __name__ == "__main__":
    main()
