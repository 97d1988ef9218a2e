"""sparc-eval run vs CLIP_benchmark's ``clip_benchmark eval``: wall time side by side (issue 16).

Both tools are real CLI processes, started fresh in rounds on the same files and the same ViT-B-32
with seeded random weights saved to a local .pt file: fp32 on CPU (``--device cuda``: CLIP_benchmark's
default fp16 autocast vs ``--precision fp16``), batch 64, CLIP_benchmark with 2 workers, sparc-eval
with its own CPU budget and no embedding cache. Each round runs CLIP_benchmark, sparc-eval and the
bare forward (below), the order rotating every round, so load drift cancels in the medians.
Workloads, from the shapes world rendered as 640x480 JPEG photos:

- retrieval: N photos with 5 captions each, written as CLIP_benchmark's ``mscoco_captions`` layout
  (``val2014/*.jpg`` + ``coco_test_karpathy.json``) and as the Karpathy JSON our ``coco-retrieval``
  reads (``dataset_coco.json``) over the same files;
- zero-shot: C classes (the first C ImageNet class names) x CLIP's 80 templates, K photos per class,
  an ImageFolder read by our ``imagefolder-zeroshot`` and by CLIP_benchmark's plain ``ImageFolder``
  dataset entry (``imagenet_sketch``) with the class names and templates given as custom files.

Printed per task: each run's wall and CPU seconds; the ratio sparc-eval / CLIP_benchmark per round and
its median (target <= 0.40; the CPU-seconds ratio beside it is steadier on a busy machine); whether the
metrics are identical (at most one query may differ: then which one and why, its score margin under
CLIP_benchmark's computation); and the extraction efficiency, the bare forward passes over the unique
inputs at their trimmed length (pre-decoded images, pre-tokenized texts, sorted by length, own code,
all cores) / the extraction wall time sparc-eval reports (target >= 0.8). Exit status 1 when more
than one query differs.

    python bench/vs_clip_benchmark.py                 # 3 retrieval + 2 zero-shot rounds, ~16 min on 2 cores
    python bench/vs_clip_benchmark.py --quick         # small sizes, 1 round each, ~2-3 min
    python bench/vs_clip_benchmark.py --task zeroshot --pairs 3
    python bench/vs_clip_benchmark.py --retrieval-data DIR   # your own folder in the layout above
    python bench/vs_clip_benchmark.py --baseline /tmp/old-checkout   # before/after in the same rounds

Defaults: retrieval 300 photos (1500 captions); zero-shot 100 classes x 80 templates (8000 prompts),
2 photos per class, 2 rounds because each CLIP_benchmark run encodes the 8000 prompts at 77 tokens
(~4 min on 2 cores). The workload and the weights are generated once into ``--workdir`` (default: a
folder in the sparc-eval cache) and reused. sparc-eval runs from the checkout holding this script.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT))  # this checkout's sparc_eval, here and in the processes it starts
ARCH = "ViT-B-32"
BATCH = 64
CB_WORKERS = 2
RECALL_K = (1, 5, 10)
TARGET_RATIO = 0.40
TARGET_EFFICIENCY = 0.8
NEAR_TIE = 1e-5  # cosine-similarity gap below which fp32 rounding may order two candidates either way
SIZES = {"full": {"images": 300, "classes": 100, "per_class": 2, "pairs": 3, "zeroshot_pairs": 2},
         "quick": {"images": 60, "classes": 20, "per_class": 1, "pairs": 1, "zeroshot_pairs": 1}}


# -- workload ---------------------------------------------------------------------------------------
def _photo(shapes, size=(640, 480)):
    """A shapes-world scene rendered at the photo's height and centred on a grey 640x480 canvas."""
    from PIL import Image

    from sparc_eval.data.synthetic import BACKGROUND, render

    side = min(size)
    img, _ = render(shapes, side)
    canvas = Image.new("RGB", size, BACKGROUND)
    canvas.paste(img, ((size[0] - side) // 2, (size[1] - side) // 2))
    return canvas


def _scenes(n: int, seed: int) -> list[tuple[list, list[str]]]:
    """``n`` scenes with 5 captions each, every caption distinct (so per-query ids are unambiguous)."""
    from sparc_eval.data.synthetic import captions, sample_scene

    rng, used, out = random.Random(seed), set(), []
    while len(out) < n:
        shapes = sample_scene(rng, 480)
        caps = captions(shapes, 5)
        if len(set(caps)) < 5 or used & set(caps):
            continue
        used.update(caps)
        out.append((shapes, caps))
    return out


def write_retrieval(root: Path, n: int, seed: int = 0) -> None:
    """CLIP_benchmark's mscoco_captions layout and our Karpathy JSON over the same JPEGs."""
    (root / "val2014").mkdir(parents=True, exist_ok=True)
    coco = {"info": {"description": "sparc-eval bench photos"}, "licenses": [], "images": [], "annotations": []}
    karpathy = []
    sent = 0
    for i, (shapes, caps) in enumerate(_scenes(n, seed)):
        name = f"COCO_val2014_{i:012d}.jpg"
        _photo(shapes).save(root / "val2014" / name, quality=90)
        coco["images"].append({"id": i, "file_name": name, "width": 640, "height": 480})
        sentences = []
        for cap in caps:
            coco["annotations"].append({"id": sent, "image_id": i, "caption": cap})
            sentences.append({"raw": cap, "sentid": sent})
            sent += 1
        karpathy.append({"split": "test", "filepath": "val2014", "filename": name, "cocoid": i,
                         "sentences": sentences})
    (root / "coco_test_karpathy.json").write_text(json.dumps(coco))
    (root / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": karpathy}))


def templates() -> list[str]:
    from sparc_eval.data.classification import resource_path

    return [t for t in resource_path("templates_openai_imagenet.txt").read_text().splitlines() if t.strip()]


def write_zeroshot(root: Path, n_classes: int, per_class: int, seed: int = 1) -> None:
    """An ImageFolder (``c000``... in label order) with ``classnames.txt`` (first ImageNet names) and
    CLIP_benchmark's custom class-name and template files."""
    from sparc_eval.data.classification import resource_path

    names = resource_path("imagenet1k_classnames.txt").read_text().splitlines()[:n_classes]
    scenes = _scenes(n_classes * per_class, seed)
    for c in range(n_classes):
        folder = root / f"c{c:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            _photo(scenes[c * per_class + j][0]).save(folder / f"{j:04d}.jpg", quality=90)
    (root / "classnames.txt").write_text("".join(n + "\n" for n in names))
    (root / "cb_classnames.json").write_text(json.dumps({"imagenet_sketch": names}))
    (root / "cb_templates.json").write_text(json.dumps({"imagenet_sketch": templates()}))


def write_weights(path: Path, seed: int = 0) -> None:
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(ARCH)
    torch.save(model.state_dict(), path)


def prepare(workdir: Path, sizes: dict, tasks: list[str], retrieval_data: Path | None) -> dict:
    """Paths of the weights and each task's data, generated when missing (atomically, reused)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = {"weights": workdir / f"{ARCH}-seed0.pt"}
    if not out["weights"].is_file():
        write_weights(workdir / "weights.tmp.pt")
        (workdir / "weights.tmp.pt").rename(out["weights"])
    jobs = {"retrieval": (f"retrieval-{sizes['images']}", lambda d: write_retrieval(d, sizes["images"])),
            "zeroshot": (f"zeroshot-{sizes['classes']}x{sizes['per_class']}",
                         lambda d: write_zeroshot(d, sizes["classes"], sizes["per_class"]))}
    for task in tasks:
        if task == "retrieval" and retrieval_data is not None:
            out[task] = retrieval_data
            continue
        name, write = jobs[task]
        target = workdir / name
        if not target.is_dir():
            tmp = workdir / f".{name}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            print(f"writing the {task} workload into {target} ...", flush=True)
            write(tmp)
            tmp.rename(target)
        out[task] = target
    return out


# -- the two tools ----------------------------------------------------------------------------------
def _cb_command() -> list[str]:
    script = Path(sys.executable).with_name("clip_benchmark")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from clip_benchmark.cli import main; main()"]


def cb_args(task: str, data: Path, weights: Path, out: Path, device: str) -> list[str]:
    common = ["eval", "--model", ARCH, "--pretrained", str(weights), "--batch_size", str(BATCH),
              "--num_workers", str(CB_WORKERS), "--dataset_root", str(data), "--split", "test",
              "--output", str(out), "--quiet"]
    if device == "cpu":
        common.append("--no_amp")  # its default CPU autocast is bfloat16; the comparison is fp32
    if task == "retrieval":
        return common + ["--dataset", "mscoco_captions", "--task", "zeroshot_retrieval",
                         "--recall_k", *map(str, RECALL_K)]
    return common + ["--dataset", "imagenet_sketch", "--task", "zeroshot_classification",
                     "--custom_classname_file", str(data / "cb_classnames.json"),
                     "--custom_template_file", str(data / "cb_templates.json")]


def ours_args(task: str, data: Path, weights: Path, out: Path, device: str) -> list[str]:
    args = ["run", "--model", f"open_clip:{ARCH}", "--pretrained", str(weights), "--model-name", "bench",
            "--batch-size", str(BATCH), "--no-cache", "--overwrite", "-q", "-o", str(out), "--device", device,
            "--precision", "fp32" if device == "cpu" else "fp16", "--param", f"root={data}"]
    if task == "retrieval":
        return args + ["--task", "coco-retrieval"]
    return args + ["--task", "imagefolder-zeroshot", "--param", "classnames=classnames.txt"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children, stdout) of a fresh process."""
    c0, t0 = _children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}")
    return wall, cpu, proc.stdout


def read_cb(path: Path, task: str) -> dict:
    m = json.loads(path.read_text())["metrics"]
    if task == "retrieval":
        out = {}
        for k in RECALL_K:
            out[f"t2i_R@{k}"] = 100 * m[f"image_retrieval_recall@{k}"]
            out[f"i2t_R@{k}"] = 100 * m[f"text_retrieval_recall@{k}"]
        return out
    return {"top1": 100 * m["acc1"], "top5": 100 * m["acc5"]}


def read_ours(folder: Path, task: str) -> dict:
    name = "coco-retrieval" if task == "retrieval" else "imagefolder-zeroshot"
    path = folder / "bench" / f"{name}.json"
    result = json.loads(path.read_text())
    samples = path.with_name(f"{name}.samples.jsonl")
    return {"metrics": result["metrics"], "engine": result["provenance"].get("engine", {}),
            "preprocessing": result.get("preprocessing", {}), "n": result["dataset"]["n_used"],
            "samples": samples if samples.is_file() else None}


# -- metric agreement -------------------------------------------------------------------------------
def differing_queries(task: str, ours: dict, theirs: dict, n_images: int, n_texts: int) -> int:
    """Queries whose hit differs, from the metrics: per direction the largest count difference over k."""
    total = 0
    if task == "retrieval":
        for direction, n in (("i2t", n_images), ("t2i", n_texts)):
            total += max(round(abs(ours[f"{direction}_R@{k}"] - theirs[f"{direction}_R@{k}"]) * n / 100)
                         for k in RECALL_K)
        return total
    return max(round(abs(ours[k] - theirs[k]) * n_images / 100) for k in ("top1", "top5"))


def explain(task: str, data: Path, weights: Path, samples: Path | None) -> None:
    """Recompute CLIP_benchmark's ranks in a fresh process (stock open_clip, full 77-token padding) and
    print the queries whose rank differs from ours, with their score margins."""
    if samples is None:
        print("  (no per-sample file to compare)")
        return
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "explain", task, str(data), str(weights),
           str(samples)]
    print(subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout, end="")


def _load_stock(weights: Path):
    import open_clip
    import torch

    model, _, transform = open_clip.create_model_and_transforms(ARCH, pretrained=str(weights))
    model.eval()
    torch.set_grad_enabled(False)
    return model, transform, open_clip.get_tokenizer(ARCH)


def _retrieval_inputs(data: Path):
    ann = json.loads((data / "dataset_coco.json").read_text())["images"]
    paths = [data / e["filepath"] / e["filename"] for e in ann]
    captions = [(s["raw"].strip(), str(s["sentid"]), i) for i, e in enumerate(ann) for s in e["sentences"]]
    return ann, paths, captions


def _zeroshot_inputs(data: Path):
    names = (data / "classnames.txt").read_text().splitlines()
    folders = sorted(p for p in data.iterdir() if p.is_dir())
    paths = [(p, c) for c, f in enumerate(folders) for p in sorted(f.glob("*.jpg"))]
    prompts = [t.replace("{c}", n) for n in names for t in templates()]
    return names, paths, prompts


def _why(gap: float) -> str:
    if gap < NEAR_TIE:
        return ("a near-tie that float rounding decides (a trimmed and a 77-token forward differ by ~1e-7, "
                "batch composition by as much)")
    return "NOT a near-tie: the embeddings differ beyond rounding"


def child_explain(task: str, data: Path, weights: Path, samples: Path) -> None:
    import torch
    import torch.nn.functional as F
    from PIL import Image

    model, transform, tok = _load_stock(weights)
    records = {r["id"]: r for r in map(json.loads, samples.read_text().splitlines())}

    def encode_images(paths):
        return torch.cat([F.normalize(model.encode_image(torch.stack([transform(Image.open(p)) for p in
                                                                      paths[i:i + BATCH]])), dim=-1)
                          for i in range(0, len(paths), BATCH)])

    def encode_texts(texts):
        return torch.cat([F.normalize(model.encode_text(tok(texts[i:i + BATCH])), dim=-1)
                          for i in range(0, len(texts), BATCH)])

    shown = 0
    if task == "retrieval":
        ann, paths, captions = _retrieval_inputs(data)
        img, txt = encode_images(paths), encode_texts([c for c, _, _ in captions])
        owner = torch.tensor([i for _, _, i in captions])
        scores = txt @ img.T
        for j, (cap, sid, i) in enumerate(captions):
            pos = scores[j, i]
            rank = int((scores[j] > pos).sum())
            ours = records.get(f"caption:{sid}", {}).get("rank")
            if ours is not None and ours != rank:
                gap = (scores[j] - pos).abs()
                gap[i] = float("inf")
                print(f"  t2i caption {sid} {cap!r}: rank {ours} (sparc-eval) vs {rank} (CLIP_benchmark's "
                      f"computation); nearest competing image is {float(gap.min()):.2e} from the true one in cosine "
                      f"similarity: {_why(float(gap.min()))}")
                shown += 1
        for i, e in enumerate(ann):
            sims = scores[:, i]
            pos = sims[owner == i].max()
            rank = int((sims[owner != i] > pos).sum())
            ours = records.get(f"image:{e['cocoid']}", {}).get("rank")
            if ours is not None and ours != rank:
                gap = (sims[owner != i] - pos).abs().min()
                print(f"  i2t image {e['cocoid']}: rank {ours} vs {rank}; nearest competing caption is "
                      f"{float(gap):.2e} from its best caption: {_why(float(gap))}")
                shown += 1
    else:
        names, paths, prompts = _zeroshot_inputs(data)
        img = encode_images([p for p, _ in paths])
        cls = F.normalize(encode_texts(prompts).view(len(names), -1, img.shape[1]).mean(1), dim=-1)
        scores = img @ cls.T
        for k, (p, c) in enumerate(paths):
            rank = int((scores[k] > scores[k, c]).sum())
            ours = records.get(p.relative_to(data).as_posix(), {}).get("rank")
            if ours is not None and ours != rank:
                gap = (scores[k] - scores[k, c]).abs()
                gap[c] = float("inf")
                print(f"  image {p.relative_to(data)}: rank {ours} vs {rank}; nearest class is "
                      f"{float(gap.min()):.2e} away in cosine similarity: {_why(float(gap.min()))}")
                shown += 1
    if not shown:
        print("  no per-query rank differs from CLIP_benchmark's computation")


# -- bare forward (the limit) -----------------------------------------------------------------------
def child_bare(task: str, data: Path, weights: Path) -> None:
    """Forward passes only, over pre-decoded images and pre-tokenized unique texts, texts sorted by
    length and each batch cut to its longest sequence (positional embedding and causal mask sliced)."""
    import torch
    from PIL import Image

    model, transform, tok = _load_stock(weights)
    if task == "retrieval":
        _, paths, captions = _retrieval_inputs(data)
        texts = [c for c, _, _ in captions]
    else:
        _, pairs, texts = _zeroshot_inputs(data)
        paths = [p for p, _ in pairs]
    pixels = torch.stack([transform(Image.open(p)) for p in paths])
    ids = tok(list(dict.fromkeys(texts)))
    ids = ids[ids.argmax(-1).argsort(descending=True)]
    t0 = time.perf_counter()
    for i in range(0, len(pixels), BATCH):
        model.encode_image(pixels[i:i + BATCH])
    t1 = time.perf_counter()
    tokens = 0
    for i in range(0, len(ids), BATCH):
        batch = ids[i:i + BATCH]
        n = int(batch.argmax(-1).max()) + 1
        tokens += batch.shape[0] * n
        x = model.token_embedding(batch[:, :n]) + model.positional_embedding[:n]
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
        x[torch.arange(len(batch)), batch[:, :n].argmax(-1)] @ model.text_projection
    t2 = time.perf_counter()
    print(json.dumps({"images_s": t1 - t0, "texts_s": t2 - t1, "images": len(pixels), "texts": len(ids),
                      "mean_tokens": tokens / max(len(ids), 1), "threads": torch.get_num_threads()}))


# -- the comparison ---------------------------------------------------------------------------------
def compare(task: str, paths: dict, pairs: int, device: str, scratch: Path, bare: bool,
            baseline: Path | None) -> list[dict]:
    """``pairs`` rounds of CLIP_benchmark, sparc-eval, (``baseline``) sparc-eval from another checkout and
    (``bare``) the bare forward, each a fresh process, the order rotating every round."""
    data, weights = paths[task], paths["weights"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    path = os.pathsep.join(p for p in (str(CHECKOUT), os.environ.get("PYTHONPATH", "")) if p)
    envs = {"ours": {**env, "PYTHONPATH": path}}  # this script's checkout (processes run in a neutral folder)
    envs["bare"] = envs["ours"]
    if baseline:
        envs["base"] = {**env, "PYTHONPATH": str(baseline)}
    labels = {"cb": "CLIP_benchmark", "ours": "sparc-eval", "base": "sparc-eval (baseline)", "bare": "bare forward"}
    rows = []
    for p in range(pairs):
        out_cb, out_ours, out_base = (scratch / f"{task}-cb-{p}.json", scratch / f"{task}-ours-{p}",
                                      scratch / f"{task}-base-{p}")
        runs = {"cb": _cb_command() + cb_args(task, data, weights, out_cb, device),
                "ours": [sys.executable, "-m", "sparc_eval", *ours_args(task, data, weights, out_ours, device)]}
        if baseline:
            runs["base"] = [sys.executable, "-m", "sparc_eval", *ours_args(task, data, weights, out_base, device)]
        if bare:
            runs["bare"] = [sys.executable, str(Path(__file__).resolve()), "--child", "bare", task, str(data),
                            str(weights)]
        order = list(runs)[p % len(runs):] + list(runs)[:p % len(runs)]
        row = {}
        for who in order:
            wall, cpu, stdout = timed(runs[who], envs.get(who, env), scratch)
            row[who], row[f"{who}_cpu"] = wall, cpu
            if who == "bare":
                row["bare_out"] = json.loads(stdout.strip().splitlines()[-1])
            print(f"  round {p + 1}/{pairs}: {labels[who]:14s} {wall:7.1f} s wall, {cpu:7.1f} s CPU", flush=True)
        row["theirs"], row["mine"] = read_cb(out_cb, task), read_ours(out_ours, task)
        if baseline:
            row["base_metrics"] = read_ours(out_base, task)["metrics"]
        rows.append(row)
    return rows


def report(task: str, rows: list[dict], paths: dict) -> bool:
    """Print the figures of one task; False when more than one query differs."""
    med = statistics.median
    cb, ours = [r["cb"] for r in rows], [r["ours"] for r in rows]
    ratios = [o / c for o, c in zip(ours, cb)]
    cpu_ratio = med(r["ours_cpu"] / r["cb_cpu"] for r in rows)
    print(f"\n{task}: CLIP_benchmark {med(cb):.1f} s, sparc-eval {med(ours):.1f} s (medians of {len(rows)})")
    print(f"  ratio sparc-eval / CLIP_benchmark: per round {', '.join(f'{r:.2f}' for r in ratios)}; median "
          f"{med(ratios):.2f} (target <= {TARGET_RATIO:.2f}: {'met' if med(ratios) <= TARGET_RATIO else 'NOT met'}); "
          f"CPU seconds {cpu_ratio:.2f}")
    if "base" in rows[0]:
        base = [r["base"] / r["cb"] for r in rows]
        same = all(r["base_metrics"] == r["mine"]["metrics"] for r in rows)
        print(f"  baseline checkout: {med(r['base'] for r in rows):.1f} s; ratio to CLIP_benchmark per round "
              f"{', '.join(f'{x:.2f}' for x in base)}, median {med(base):.2f}; CPU seconds "
              f"{med(r['base_cpu'] / r['cb_cpu'] for r in rows):.2f}; metrics "
              f"{'identical to' if same else 'DIFFERENT from'} this checkout's")
    last = rows[-1]["mine"]
    pre = last["preprocessing"]
    print(f"  sparc-eval text padding: {pre.get('text_padding', '?')} ({pre.get('text_padding_reason', 'not recorded')})")
    n_texts = len(_retrieval_inputs(paths[task])[2]) if task == "retrieval" else 0
    ok = True
    for i, r in enumerate(rows):
        mine, theirs = r["mine"]["metrics"], r["theirs"]
        diff = differing_queries(task, mine, theirs, r["mine"]["n"], n_texts)
        line = ", ".join(f"{k} {mine[k]:.2f}/{theirs[k]:.2f}" for k in sorted(theirs))
        verdict = "identical" if diff == 0 else f"{diff} quer{'y' if diff == 1 else 'ies'} differ"
        print(f"  metrics, round {i + 1} (sparc-eval/CLIP_benchmark): {verdict}; {line}")
        if diff:
            explain(task, paths[task], paths["weights"], r["mine"]["samples"])
            if diff > 1:
                print("  FAILED: more than one query differs")
                ok = False
    if "bare" in rows[0]:
        b = rows[-1]["bare_out"]
        print(f"  bare forward over unique inputs at trimmed length: images {med(r['bare_out']['images_s'] for r in rows):.1f} s "
              f"({b['images']}), texts {med(r['bare_out']['texts_s'] for r in rows):.1f} s ({b['texts']}, "
              f"{b['mean_tokens']:.1f} tokens on average), {b['threads']} threads")
        if "images_s" in last["engine"] and "texts_s" in last["engine"]:
            eng = [r["mine"]["engine"] for r in rows]
            effs = [(r["bare_out"]["images_s"] + r["bare_out"]["texts_s"]) / (e["images_s"] + e["texts_s"])
                    for r, e in zip(rows, eng)]
            print(f"  sparc-eval extraction {med(e['images_s'] + e['texts_s'] for e in eng):.1f} s (images "
                  f"{med(e['images_s'] for e in eng):.1f} s, texts {med(e['texts_s'] for e in eng):.1f} s): efficiency "
                  f"per round {', '.join(f'{x:.2f}' for x in effs)}; median {med(effs):.2f} "
                  f"(target >= {TARGET_EFFICIENCY}: {'met' if med(effs) >= TARGET_EFFICIENCY else 'NOT met'})")
        else:
            print("  efficiency: this sparc-eval does not report its extraction time")
    return ok


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        what, task, data, weights = sys.argv[2], sys.argv[3], Path(sys.argv[4]), Path(sys.argv[5])
        if what == "bare":
            child_bare(task, data, weights)
        else:
            child_explain(task, data, weights, Path(sys.argv[6]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small workloads and one round each (~2-3 min on 2 cores)")
    ap.add_argument("--task", choices=["retrieval", "zeroshot", "both"], default="both")
    ap.add_argument("--pairs", type=int, help="rounds per task (default: 3 for retrieval, 2 for zero-shot, whose "
                                              "CLIP_benchmark runs take ~4 min each on 2 cores; --quick: 1)")
    ap.add_argument("--images", type=int, help="retrieval photos (5 captions each)")
    ap.add_argument("--classes", type=int, help="zero-shot classes (x 80 templates)")
    ap.add_argument("--per-class", type=int, help="zero-shot photos per class")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--retrieval-data", type=Path, help="a folder with val2014/, coco_test_karpathy.json and "
                                                        "dataset_coco.json instead of the generated one")
    ap.add_argument("--workdir", type=Path, help="where the workload is written and reused")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare-forward (efficiency) measurement")
    ap.add_argument("--baseline", type=Path, metavar="DIR", help="also run sparc-eval from this checkout (its "
                                                                   "PYTHONPATH) in every round: before/after figures")
    args = ap.parse_args()
    sizes = dict(SIZES["quick" if args.quick else "full"])
    for key, value in (("images", args.images), ("classes", args.classes), ("per_class", args.per_class),
                       ("pairs", args.pairs), ("zeroshot_pairs", args.pairs)):
        if value is not None:
            sizes[key] = value
    tasks = ["retrieval", "zeroshot"] if args.task == "both" else [args.task]
    from sparc_eval.fileio import cache_root

    workdir = args.workdir or cache_root() / "bench" / "vs-clip-benchmark"
    paths = prepare(workdir, sizes, tasks, args.retrieval_data)
    import torch

    print(f"{ARCH} seeded random weights, batch {BATCH}, {args.device}, torch {torch.__version__}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; sizes {sizes}")
    scratch = workdir / f"runs-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    ok = True
    started = time.perf_counter()
    try:
        for task in tasks:
            pairs = sizes["pairs"] if task == "retrieval" else sizes["zeroshot_pairs"]
            print(f"\n== {task} ==", flush=True)
            rows = compare(task, paths, pairs, args.device, scratch, bare=not args.no_bare and args.device == "cpu",
                           baseline=args.baseline)
            ok = report(task, rows, paths) and ok
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\ntook {(time.perf_counter() - started) / 60:.1f} min; load average now {os.getloadavg()[0]:.2f}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
