"""Cost of SPARC's objective next to CLIP's and FILIP's (the paper's Table 11, on our implementation).

Two measurements per method (clip, sparc, filip) and batch size B:

- ``step``: one full training step (forward, loss, backward, AdamW) of a fixed dual encoder: ViT width 256,
  6 layers, patch 16 at 224 px (P = 196); text width 256, 6 layers, L = 32; shared dim D = 512;
- ``loss``: the loss alone, forward + backward, on random embeddings (P = 196, L = 32, D = 512).

Time: the median of ``--repeats`` runs, the methods interleaved round-robin in one process so they share
the machine's load. Peak memory: on CPU, the growth of the peak resident set during the first step in a
fresh process (one process per method and B); on CUDA, ``torch.cuda.max_memory_allocated`` growth.
Printed: a table, the ratios SPARC/CLIP and FILIP/SPARC per B, and SPARC loss memory per sample (flat
when memory grows linearly in B). FILIP runs up to B = 256 (its similarity tensor is B x B x P x L).

    python bench/losses.py             # CPU, 1 thread: loss at B = 64..512, full step at B = 64 (~10 min)
    python bench/losses.py --quick     # CPU, 1 thread: loss at B = 64..256, full step at B = 32 (a few minutes)
    python bench/losses.py --device cuda   # full step and loss at B = 64..512

``bench/gpu_check.py`` reuses ``timing_child`` / ``run_child`` for the ViT-B/16 recipe (``model=`` a
``ModelConfig`` mapping: images and ids then follow its resolution and context length).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

METHODS = ("clip", "sparc", "filip")
P, L, D = 196, 32, 512
FILIP_MAX_B = 256


def _model_config(model: dict | None = None):
    """The benchmark's dual encoder, or ``model`` (a ``ModelConfig`` mapping, e.g. a recipe's model section)."""
    from sparc_eval.pretrain.model import ModelConfig

    if model is not None:
        return ModelConfig.from_dict(dict(model))
    return ModelConfig(arch="ViT-Small-16-224", embed_dim=D, vision_cfg={"layers": 6, "width": 256},
                       text_cfg={"layers": 6, "width": 256, "context_length": L})


def random_ids(b: int, g: torch.Generator, length: int = L) -> torch.Tensor:
    """[b, length] token ids with 8..length real tokens per row, then padding (0)."""
    ids = torch.randint(1, 49000, (b, length), generator=g)
    lengths = torch.randint(min(8, length), length + 1, (b,), generator=g)
    return ids.masked_fill(torch.arange(length)[None] >= lengths[:, None], 0)


def random_batch(cfg, b: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images at the model's resolution and random ids at its context length (what a step sees)."""
    from sparc_eval.pretrain.model import default_preprocessing

    pre = default_preprocessing(cfg)
    res = pre["resolution"]
    return torch.randn(b, 3, res, res, generator=g), random_ids(b, g, pre["context_length"])


def _setup(mode: str, method: str, b: int, device: torch.device, model: dict | None = None):
    """A closure running one step of ``mode`` for ``method`` at batch ``b`` (``model``: see ``_model_config``)."""
    from sparc_eval.pretrain.losses import build_loss
    from sparc_eval.pretrain.model import EncoderOutputs

    g = torch.Generator().manual_seed(0)
    params = {"filip": {"token_drop": 0.0}}.get(method, {})
    if mode == "step":
        from sparc_eval.pretrain.model import DualEncoder
        from sparc_eval.pretrain.train import TrainModule

        cfg = _model_config(model)
        torch.manual_seed(0)
        enc = DualEncoder(cfg)
        module = TrainModule(enc, build_loss(method, params, enc.embed_dim), device,
                             "bf16" if device.type == "cuda" else "fp32")
        module.to(device)
        opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
        images, ids = random_batch(cfg, b, g)
        images, ids = images.to(device), ids.to(device)

        def run():
            module(images, ids)["loss"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    loss = build_loss(method, params, D).to(device)
    mask = random_ids(b, g) != 0

    def leaf(*shape):
        return torch.randn(*shape, generator=g).to(device).requires_grad_(True)
    tensors = [leaf(b, D), leaf(b, D), leaf(b, P, D), leaf(b, L, D)]
    scale = torch.tensor(14.3, device=device, requires_grad=True)

    def run():
        out = EncoderOutputs(*tensors, mask.to(device), scale, scale)
        loss(out)["loss"].backward()
        for t in tensors + [scale]:
            t.grad = None
    return run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(mode: str, method: str, b: int) -> dict:
    """Peak memory growth (MB) of the first step, in this fresh process (CPU)."""
    run = _setup(mode, method, b, torch.device("cpu"))
    before = _rss_mb()
    run()
    return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before}


def timing_child(mode: str, b: int, methods: list[str], repeats: int, device: torch.device,
                 model: dict | None = None) -> dict:
    """Median step time (s) per method, methods interleaved; on CUDA also the peak memory growth."""
    runs, out = {}, {m: {"times": []} for m in methods}
    for m in methods:
        runs[m] = _setup(mode, m, b, device, model)
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            runs[m]()
            _sync(device)
            out[m]["peak_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        else:
            runs[m]()  # warm-up
    for _ in range(repeats):
        for m in methods:
            _sync(device)
            t = time.perf_counter()
            runs[m]()
            _sync(device)
            out[m]["times"].append(time.perf_counter() - t)
    return {m: {**v, "time_s": statistics.median(v["times"])} for m, v in out.items()}


def run_child(args: list, timeout: float | None = None) -> dict:
    """Run ``[threads, kind, ...]`` in a fresh process and return its JSON answer (RuntimeError with the
    end of its stderr when it fails, e.g. CUDA out of memory)."""
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(args[1:]), "--threads", str(args[0])],
                          check=False, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--loss-batches", type=str)
    ap.add_argument("--step-batches", type=str)
    ap.add_argument("--repeats", type=int)
    ap.add_argument("--threads", type=int, default=1,
                    help="CPU threads per process (default 1: steadier ratios on a shared machine)")
    ap.add_argument("--child", type=str, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.child:
        kind, *rest = json.loads(a.child)
        res = memory_child(*rest) if kind == "memory" else timing_child(rest[0], rest[1], rest[2], rest[3],
                                                                        torch.device(rest[4]), *rest[5:])
        print(json.dumps(res))
        return
    cuda = a.device.startswith("cuda")
    loss_b = [64, 128, 256, 512] if not a.quick else [64, 128, 256]
    step_b = [64, 128, 256, 512] if cuda else ([32] if a.quick else [64])
    loss_b = [int(x) for x in a.loss_batches.split(",")] if a.loss_batches else loss_b
    step_b = [int(x) for x in a.step_batches.split(",")] if a.step_batches else step_b
    repeats = a.repeats or (10 if cuda else (2 if a.quick else 3))
    device = f"{torch.cuda.get_device_name(0)} ({a.device})" if cuda else f"CPU, {a.threads} thread(s)"
    print(f"# bench/losses.py on {device}; P={P} L={L} D={D}; median of {repeats} runs; torch {torch.__version__}")
    rows = []
    for mode, batches in (("loss", loss_b), ("step", step_b)):
        for b in batches:
            methods = [m for m in METHODS if m != "filip" or b <= FILIP_MAX_B]
            t0 = time.perf_counter()
            timing = run_child([a.threads, "timing", mode, b, methods, repeats, a.device])
            for m in methods:
                mem = timing[m].get("peak_mb")
                if not cuda:
                    mem = run_child([a.threads, "memory", mode, m, b])["peak_mb"]
                rows.append({"mode": mode, "B": b, "method": m, "time_s": timing[m]["time_s"], "peak_mb": mem})
            print(f"#   {mode} B={b}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"\n{'mode':5} {'B':>5} {'method':6} {'time (s)':>10} {'peak MB':>9}")
    for r in rows:
        print(f"{r['mode']:5} {r['B']:>5} {r['method']:6} {r['time_s']:>10.4f} {r['peak_mb']:>9.1f}")
    get = {(r["mode"], r["B"], r["method"]): r for r in rows}
    print(f"\n{'mode':5} {'B':>5} {'SPARC/CLIP time':>16} {'SPARC/CLIP mem':>15} {'FILIP/SPARC time':>17} "
          f"{'FILIP/SPARC mem':>16}")
    for mode, batches in (("loss", loss_b), ("step", step_b)):
        for b in batches:
            c, s, f = (get.get((mode, b, m)) for m in METHODS)
            print(f"{mode:5} {b:>5} {_fmt_ratio(s['time_s'], c['time_s']):>16} {_fmt_ratio(s['peak_mb'], c['peak_mb']):>15} "
                  f"{_fmt_ratio(f and f['time_s'], s['time_s']):>17} {_fmt_ratio(f and f['peak_mb'], s['peak_mb']):>16}")
    per_sample = [get[("loss", b, "sparc")]["peak_mb"] / b for b in loss_b]
    print("\nSPARC loss peak memory per sample (MB), flat = linear in B: "
          + ", ".join(f"B={b}: {v:.3f}" for b, v in zip(loss_b, per_sample)))
    worst = max(get[("step", b, "sparc")]["time_s"] / get[("step", b, "clip")]["time_s"] for b in step_b)
    print(f"target SPARC/CLIP full-step time <= 1.10: worst {worst:.3f} -> {'met' if worst <= 1.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
